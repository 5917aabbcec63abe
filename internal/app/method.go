package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/roost-iot/roost/internal/client"
)

const methodUsage = `Usage: roost method invoke DEVICE METHOD [--module M] [--payload JSON]
                           [--response-timeout 30] [--connect-timeout 0]

Calls a direct method on a connected device (or module) and prints its answer,
{"status": <the device's status>, "payload": <the device's JSON>}, as az iot hub
invoke-device-method does. The device's status is printed whatever it is; the command fails
only when the hub does (404103 the device is not listening, 504101 it did not answer in time...).

Common flags: --connection-string, --data-dir, --server, --ca-file
`

func runMethod(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "invoke" {
		fmt.Fprint(stderr, methodUsage)
		if len(args) > 0 && (args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
			return 0
		}
		return 2
	}
	var cf clientFlags
	fs := newFlagSet("method invoke", stderr, "roost method invoke DEVICE METHOD [flags]")
	cf.register(fs)
	module := fs.String("module", "", "call the method on this module of the device")
	payload := fs.String("payload", "null", "the method's payload, as JSON")
	respTimeout := fs.Int("response-timeout", 30, "seconds the device has to answer (5-300)")
	connTimeout := fs.Int("connect-timeout", 0, "seconds to wait for the device to connect (0-300)")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return 2
	}
	if len(pos) != 2 {
		fmt.Fprint(stderr, methodUsage)
		return 2
	}
	if !json.Valid([]byte(*payload)) {
		fmt.Fprintf(stderr, "roost method invoke: --payload is not valid JSON (a string needs quotes: --payload '\"text\"')\n")
		return 2
	}
	c, err := cf.client()
	if err != nil {
		return fail(stderr, "method invoke", err)
	}
	res, err := c.InvokeMethod(ctx, pos[0], *module, client.MethodCall{
		MethodName:               pos[1],
		Payload:                  json.RawMessage(*payload),
		ResponseTimeoutInSeconds: *respTimeout,
		ConnectTimeoutInSeconds:  *connTimeout,
	})
	if err != nil {
		return fail(stderr, "method invoke", err)
	}
	printJSON(stdout, res)
	return 0
}
