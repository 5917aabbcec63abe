package app

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/faults"
)

const faultsUsage = `Usage:
  roost faults add --operation OP[,OP] --error ERR [--device ID]... [--rate 0.5] [--count N] [--duration 10m] [--id NAME]
  roost faults list [--output json]
  roost faults remove ID
  roost faults clear

Makes chosen operations of chosen devices fail as IoT Hub's transient errors do, so you can prove
your devices and services recover. Injected failures are answered and logged exactly like real
ones; their diagnostic records carry faultInjected "true" and the rule's id.

  operations: connect, telemetry, twin, methods, c2d, registry, upload, query, *, or a diagnostic
              category (Connections) or category/operation (DeviceIdentityOperations/get)
  errors:     ` + faults.Errors

func runFaults(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, faultsUsage)
		return 2
	}
	var af adminFlags
	fs := newFlagSet("faults "+args[0], stderr, faultsUsage)
	af.register(fs)
	var ops, devices multiFlag
	fs.Var(&ops, "operation", "operations to fail (repeatable or comma-separated)")
	fs.Var(&devices, "device", "devices to hit (repeatable; a trailing * matches a prefix; default all)")
	errName := fs.String("error", "", "the failure: "+faults.Errors)
	rate := fs.Float64("rate", 1, "share of matching operations that fail, 0 to 1")
	count := fs.Int64("count", 0, "fail this many operations, then stop (0: no limit)")
	duration := fs.Duration("duration", 0, "remove the rule after this long (0: keep it)")
	id := fs.String("id", "", "name of the rule (default: generated)")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return 2
	}
	ad, err := af.admin()
	if err != nil {
		return fail(stderr, "faults", err)
	}
	switch args[0] {
	case "add":
		r := faults.Rule{ID: *id, Operations: ops, Devices: devices, Error: *errName, Rate: *rate, Count: *count}
		if *duration > 0 {
			r.Expires = time.Now().Add(*duration).UTC()
		}
		if err := faults.Normalize(&r); err != nil {
			fmt.Fprintf(stderr, "roost faults add: %v\n", err)
			return 2
		}
		var out faults.Rule
		if err := ad.Do(ctx, "POST", "/faults", r, &out); err != nil {
			return fail(stderr, "faults add", err)
		}
		if af.output == "json" {
			printJSON(stdout, out)
			return 0
		}
		fmt.Fprintf(stdout, "added fault %s: %s fail with %s for %s\n", out.ID, strings.Join(out.Operations, ", "), out.Error, deviceList(out.Devices))
		return 0
	case "list":
		var rules []faults.Rule
		if err := ad.Do(ctx, "GET", "/faults", nil, &rules); err != nil {
			return fail(stderr, "faults list", err)
		}
		printList(stdout, af.output, rules, "ID\tOPERATIONS\tDEVICES\tERROR\tRATE\tCOUNT LEFT\tEXPIRES", func(r faults.Rule) string {
			left, exp := "-", "-"
			if r.Count > 0 {
				left = fmt.Sprint(r.Count)
			}
			if !r.Expires.IsZero() {
				exp = r.Expires.Format(time.RFC3339)
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%g\t%s\t%s", r.ID, strings.Join(r.Operations, ","), deviceList(r.Devices), r.Error, r.Rate, left, exp)
		})
		return 0
	case "remove", "delete":
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "roost faults remove: give the rule's id")
			return 2
		}
		if err := ad.Do(ctx, "DELETE", "/faults/"+url.PathEscape(pos[0]), nil, nil); err != nil {
			return fail(stderr, "faults remove", err)
		}
		fmt.Fprintf(stdout, "removed fault %s\n", pos[0])
		return 0
	case "clear":
		var out struct {
			Removed int `json:"removed"`
		}
		if err := ad.Do(ctx, "DELETE", "/faults", nil, &out); err != nil {
			return fail(stderr, "faults clear", err)
		}
		fmt.Fprintf(stdout, "removed %d fault(s)\n", out.Removed)
		return 0
	}
	fmt.Fprintf(stderr, "roost faults: unknown command %q\n%s\n", args[0], faultsUsage)
	return 2
}

func deviceList(d []string) string {
	if len(d) == 0 {
		return "all devices"
	}
	return strings.Join(d, ",")
}
