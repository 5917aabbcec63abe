package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

const jobsUsage = `Usage: roost jobs <command> [flags]

Jobs v2: a twin update or a direct method scheduled over every device whose twin matches a
condition (what az iot hub job and the SDKs' JobClient do).

  roost jobs list [--type scheduleUpdateTwin|scheduleDeviceMethod] [--status S] [--output json]
  roost jobs show JOB
  roost jobs cancel JOB
  roost jobs schedule-twin JOB --condition COND [--tags JSON] [--desired JSON] [--etag E]
                           [--start RFC3339] [--max-time 3600]
  roost jobs schedule-method JOB --condition COND --method NAME [--payload JSON]
                           [--response-timeout 30] [--connect-timeout 0] [--start RFC3339]
                           [--max-time 3600]

COND is a condition of the query language over device twins, e.g. "tags.site = 'north'" or
"deviceId IN ['d1', 'd2']", or * for every device. Per-device results:
roost query "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'JOB'".

Common flags: --connection-string, --data-dir, --server, --ca-file
`

func runJobs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, jobsUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	var cf clientFlags
	fs := newFlagSet("jobs "+sub, stderr, "roost jobs "+sub+" [flags]")
	cf.register(fs)
	switch sub {
	case "list":
		typ := fs.String("type", "", "only jobs of this type: scheduleUpdateTwin or scheduleDeviceMethod")
		status := fs.String("status", "", "only jobs in this status: queued, scheduled, running, completed, failed, cancelled")
		if _, err := parseArgs(fs, rest); err != nil {
			return 2
		}
		c, err := cf.client()
		if err != nil {
			return fail(stderr, "jobs list", err)
		}
		list, err := c.ListJobs(ctx, *typ, *status)
		if err != nil {
			return fail(stderr, "jobs list", err)
		}
		if cf.output == "json" {
			if list == nil {
				list = []map[string]any{}
			}
			printJSON(stdout, list)
			return 0
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "JOB\tTYPE\tSTATUS\tSTART\tDEVICES\tSUCCEEDED\tFAILED\tCONDITION")
		for _, j := range list {
			st, _ := j["deviceJobStatistics"].(map[string]any)
			fmt.Fprintf(tw, "%v\t%v\t%v\t%v\t%v\t%v\t%v\t%v\n", j["jobId"], j["type"], j["status"], j["startTime"],
				st["deviceCount"], st["succeededCount"], st["failedCount"], j["queryCondition"])
		}
		_ = tw.Flush()
		return 0
	case "show", "cancel":
		pos, err := parseArgs(fs, rest)
		if err != nil {
			return 2
		}
		if len(pos) != 1 {
			fmt.Fprint(stderr, jobsUsage)
			return 2
		}
		c, err := cf.client()
		if err != nil {
			return fail(stderr, "jobs "+sub, err)
		}
		get := c.GetJob
		if sub == "cancel" {
			get = c.CancelJob
		}
		j, err := get(ctx, pos[0])
		if err != nil {
			return fail(stderr, "jobs "+sub, err)
		}
		printJSON(stdout, j)
		return 0
	case "schedule-twin", "schedule-method":
		cond := fs.String("condition", "", "which devices: a twin condition, or * for all (required)")
		start := fs.String("start", "", "start time, RFC 3339 (default: now)")
		maxTime := fs.Int("max-time", 3600, "maxExecutionTimeInSeconds")
		tags := fs.String("tags", "", "schedule-twin: tags to merge, as a JSON object")
		desired := fs.String("desired", "", "schedule-twin: desired properties to merge, as a JSON object")
		etag := fs.String("etag", "*", "schedule-twin: each twin's If-Match")
		method := fs.String("method", "", "schedule-method: the method's name")
		payload := fs.String("payload", "null", "schedule-method: the payload, as JSON")
		respTimeout := fs.Int("response-timeout", 30, "schedule-method: seconds each device has to answer (5-300)")
		connTimeout := fs.Int("connect-timeout", 0, "schedule-method: seconds to wait for each device to connect (0-300)")
		pos, err := parseArgs(fs, rest)
		if err != nil {
			return 2
		}
		if len(pos) != 1 || *cond == "" {
			fmt.Fprint(stderr, jobsUsage)
			return 2
		}
		desc := map[string]any{"queryCondition": *cond, "maxExecutionTimeInSeconds": *maxTime}
		if *start != "" {
			t, err := time.Parse(time.RFC3339, *start)
			if err != nil {
				fmt.Fprintf(stderr, "roost jobs %s: --start %q is not an RFC 3339 time such as 2026-03-04T12:00:00Z\n", sub, *start)
				return 2
			}
			desc["startTime"] = t.UTC().Format(time.RFC3339)
		}
		raw := func(flag, s string) (json.RawMessage, bool) {
			if !json.Valid([]byte(s)) {
				fmt.Fprintf(stderr, "roost jobs %s: --%s is not valid JSON\n", sub, flag)
				return nil, false
			}
			return json.RawMessage(s), true
		}
		if sub == "schedule-twin" {
			patch := map[string]any{"etag": *etag}
			if *tags != "" {
				v, ok := raw("tags", *tags)
				if !ok {
					return 2
				}
				patch["tags"] = v
			}
			if *desired != "" {
				v, ok := raw("desired", *desired)
				if !ok {
					return 2
				}
				patch["properties"] = map[string]any{"desired": v}
			}
			desc["type"], desc["updateTwin"] = "scheduleUpdateTwin", patch
		} else {
			p, ok := raw("payload", *payload)
			if !ok {
				return 2
			}
			desc["type"] = "scheduleDeviceMethod"
			desc["cloudToDeviceMethod"] = map[string]any{"methodName": *method, "payload": p,
				"responseTimeoutInSeconds": *respTimeout, "connectTimeoutInSeconds": *connTimeout}
		}
		c, err := cf.client()
		if err != nil {
			return fail(stderr, "jobs "+sub, err)
		}
		j, err := c.ScheduleJob(ctx, pos[0], desc)
		if err != nil {
			return fail(stderr, "jobs "+sub, err)
		}
		printJSON(stdout, j)
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, jobsUsage)
		return 0
	}
	fmt.Fprintf(stderr, "roost jobs: unknown command %q\n\n%s", sub, jobsUsage)
	return 2
}
