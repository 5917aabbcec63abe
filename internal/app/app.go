// Package app is the roost command: it parses the command line, wires the hub's packages
// together for `roost serve`, and runs the client commands that manage a hub over its REST API.
//
// It is the only package that sees everything; cmd/roost only calls [Run].
package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Version is set at build time with -ldflags "-X github.com/roost-iot/roost/internal/app.Version=...".
var Version = "dev"

const usage = `roost — a self-hosted IoT hub that speaks Azure IoT Hub's protocols

Usage:
  roost serve [flags]                  run the hub (see roost serve --help)
  roost connection-string [flags]      print a service or device connection string
  roost ca-cert [flags]                print the hub's CA certificate (PEM)
  roost device <command> [flags]       manage device identities (create, list, show, update,
                                       delete, enable, disable, keys)
  roost sas-token [flags]              make a SAS token for a device, module or policy
  roost monitor-events [flags]         print device-to-cloud messages as they arrive (like
                                       az iot hub monitor-events)
  roost method invoke DEVICE METHOD    call a direct method on a device and print its answer
  roost twin show|update DEVICE        read a device's or module's twin, change its desired
                                       properties and tags
  roost query "SELECT ..." [flags]     run an IoT Hub query over the twins and print every page
  roost errors [explain <code|name>]   list IoT Hub error codes, or explain one
  roost logs query|tail|explain        query diagnostic logs with KQL (also exported IoT Hub logs
                                       with --file), follow them, summarize their errors
  roost metrics                        print the hub's IoT Hub metrics
  roost throttle                       print the IoT Hub tier enforced: rates, shares, daily quota
  roost faults add|list|remove|clear   inject IoT Hub's transient failures (fault injection)
  roost alerts list|set|apply|history  alert rules on metrics and logs, sent to webhooks
  roost events subscribe|list|delete   device events (Event Grid schema) delivered to webhooks
  roost diagnose --device-connection-string CS   check a device's path to the hub (DNS, TCP,
                                       TLS, clock, MQTT connect) and print the fixes
  roost files list|get|notifications  read uploaded files and file upload notifications
  roost c2d send|purge|feedback        send cloud-to-device messages, empty a device's queue, read
                                       the feedback on them
  roost jobs list|show|cancel|schedule-twin|schedule-method   scheduled twin updates and
                                       direct methods over many devices (jobs v2)
  roost bench registry [flags]         measure a running hub's identity registry (load generator)
  roost version                        print the version

Client commands find the hub through --connection-string, ROOST_CONNECTION_STRING, or the
local data dir of a running 'roost serve' (--data-dir, default ./roost-data).
`

// Run runs the roost command with args (without the program name) and returns the exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "connection-string":
		return runConnectionString(ctx, rest, stdout, stderr)
	case "ca-cert":
		return runCACert(rest, stdout, stderr)
	case "device", "devices":
		return runDevice(ctx, rest, stdout, stderr)
	case "sas-token":
		return runSASToken(ctx, rest, stdout, stderr)
	case "errors", "error":
		return runErrors(rest, stdout, stderr)
	case "monitor-events":
		return runMonitorEvents(ctx, rest, stdout, stderr)
	case "method", "methods":
		return runMethod(ctx, rest, stdout, stderr)
	case "query":
		return runQueryCommand(ctx, rest, stdout, stderr)
	case "twin", "twins":
		return runTwin(ctx, rest, stdout, stderr)
	case "files", "file":
		return runFiles(ctx, rest, stdout, stderr)
	case "c2d":
		return runC2D(ctx, rest, stdout, stderr)
	case "jobs", "job":
		return runJobs(ctx, rest, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "logs", "log":
		return runLogs(ctx, rest, stdout, stderr)
	case "metrics":
		return runMetrics(ctx, rest, stdout, stderr)
	case "throttle":
		return runThrottle(ctx, rest, stdout, stderr)
	case "faults", "fault":
		return runFaults(ctx, rest, stdout, stderr)
	case "alerts", "alert":
		return runAlerts(ctx, rest, stdout, stderr)
	case "events":
		return runEvents(ctx, rest, stdout, stderr)
	case "diagnose":
		return runDiagnose(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "roost", Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "roost: unknown command %q\n\n%s", cmd, usage)
	return 2
}
