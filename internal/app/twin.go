package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
)

const twinUsage = `Usage: roost twin show DEVICE [--module M]
       roost twin update DEVICE [--module M] [--desired JSON] [--tags JSON] [--etag E] [--replace]

show prints the twin of a device (or module) as the service API returns it: tags, desired and
reported properties with their $metadata and $version, and the identity's status.

update merges --desired into the desired properties and --tags into the tags (a null deletes a
key), as az iot hub device-twin update does, and prints the updated twin. With --replace the
twin's tags and desired properties become exactly what is given. --etag makes the change fail
with 412001 if the twin changed since you read that etag.

Common flags: --connection-string, --data-dir, --server, --ca-file
`

func runTwin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "show" && args[0] != "update" {
		fmt.Fprint(stderr, twinUsage)
		if len(args) > 0 && (args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
			return 0
		}
		return 2
	}
	sub := args[0]
	var cf clientFlags
	fs := newFlagSet("twin "+sub, stderr, "roost twin "+sub+" DEVICE [flags]")
	cf.register(fs)
	module := fs.String("module", "", "the module's twin instead of the device's")
	var desired, tags, etag *string
	var replace *bool
	if sub == "update" {
		desired = fs.String("desired", "", "desired properties to merge, as a JSON object")
		tags = fs.String("tags", "", "tags to merge, as a JSON object")
		etag = fs.String("etag", "", "change the twin only if this is still its etag")
		replace = fs.Bool("replace", false, "replace tags and desired properties instead of merging")
	}
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprint(stderr, twinUsage)
		return 2
	}
	var patch json.RawMessage
	if sub == "update" {
		p := map[string]any{}
		for _, in := range []struct {
			flag, text string
			put        func(json.RawMessage)
		}{
			{"--desired", *desired, func(v json.RawMessage) { p["properties"] = map[string]any{"desired": v} }},
			{"--tags", *tags, func(v json.RawMessage) { p["tags"] = v }},
		} {
			if in.text == "" {
				continue
			}
			var obj map[string]json.RawMessage
			if err := json.Unmarshal([]byte(in.text), &obj); err != nil {
				fmt.Fprintf(stderr, "roost twin update: %s is not a JSON object: %v\n", in.flag, err)
				return 2
			}
			in.put(json.RawMessage(in.text))
		}
		if len(p) == 0 && !*replace {
			fmt.Fprintln(stderr, "roost twin update: nothing to change: give --desired and/or --tags")
			return 2
		}
		patch, _ = json.Marshal(p)
	}
	c, err := cf.client()
	if err != nil {
		return fail(stderr, "twin "+sub, err)
	}
	var tw json.RawMessage
	if sub == "show" {
		tw, err = c.GetTwin(ctx, pos[0], *module)
	} else {
		tw, err = c.UpdateTwin(ctx, pos[0], *module, patch, *etag, *replace)
	}
	if err != nil {
		return fail(stderr, "twin "+sub, err)
	}
	printJSON(stdout, tw)
	return 0
}
