package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/roost-iot/roost/internal/c2d"
)

const c2dUsage = `Usage: roost c2d send DEVICE [--data TEXT | --file PATH] [message flags]
       roost c2d purge DEVICE
       roost c2d feedback [--peek] [--wait 0s] [--output json]

send      queues a cloud-to-device message for DEVICE and prints its message id. Message flags:
          --id, --correlation-id, --user-id, --content-type, --content-encoding,
          --ack none|positive|negative|full (feedback to ask for), --expiry (an RFC 3339 time or
          a duration from now, such as 10m; default: the hub's c2d-default-ttl),
          --property name=value (repeatable; names arrive lower-cased)
purge     removes every message waiting for DEVICE and prints how many there were
feedback  receives the feedback waiting for senders that asked for it, prints it and completes
          it (--peek abandons it instead, so it stays queued); --wait keeps polling that long

Common flags: --connection-string, --data-dir, --server, --ca-file, --output
`

func runC2D(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, c2dUsage)
		return 2
	}
	switch args[0] {
	case "send":
		return runC2DSend(ctx, args[1:], stdout, stderr)
	case "purge":
		return runC2DPurge(ctx, args[1:], stdout, stderr)
	case "feedback":
		return runC2DFeedback(ctx, args[1:], stdout, stderr)
	case "help", "--help", "-h":
		fmt.Fprint(stdout, c2dUsage)
		return 0
	}
	fmt.Fprintf(stderr, "roost c2d: unknown command %q\n\n%s", args[0], c2dUsage)
	return 2
}

// propertyFlags collects repeated --property name=value flags.
type propertyFlags []c2d.Property

func (p *propertyFlags) String() string { return "" }

func (p *propertyFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q is not name=value", v)
	}
	*p = append(*p, c2d.Property{Name: name, Value: value})
	return nil
}

func runC2DSend(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cf clientFlags
	fs := newFlagSet("c2d send", stderr, "roost c2d send DEVICE [flags]")
	cf.register(fs)
	data := fs.String("data", "", "the message body as text")
	file := fs.String("file", "", "read the message body from this file (- for standard input)")
	var m c2d.Message
	fs.StringVar(&m.MessageID, "id", "", "message id (default: a GUID the hub assigns)")
	fs.StringVar(&m.CorrelationID, "correlation-id", "", "correlation id")
	fs.StringVar(&m.UserID, "user-id", "", "user id")
	fs.StringVar(&m.ContentType, "content-type", "", "content type, e.g. application/json")
	fs.StringVar(&m.ContentEncoding, "content-encoding", "", "content encoding, e.g. utf-8")
	ack := fs.String("ack", "none", "feedback to ask for: none, positive, negative or full")
	expiry := fs.String("expiry", "", "when the message expires: an RFC 3339 time or a duration from now")
	var props propertyFlags
	fs.Var(&props, "property", "application property name=value (repeatable)")
	pos, err := parseArgs(fs, args)
	if err != nil || len(pos) != 1 {
		fmt.Fprint(stderr, c2dUsage)
		return 2
	}
	if *data != "" && *file != "" {
		fmt.Fprintln(stderr, "roost c2d send: give --data or --file, not both")
		return 2
	}
	switch {
	case *file == "-":
		m.Body, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	case *file != "":
		m.Body, err = os.ReadFile(*file)
	default:
		m.Body = []byte(*data)
	}
	if err != nil {
		return fail(stderr, "c2d send", err)
	}
	m.Ack, m.Properties = c2d.Ack(*ack), props
	if *expiry != "" {
		if d, err := time.ParseDuration(*expiry); err == nil {
			m.Expiry = time.Now().Add(d)
		} else if t, err := time.Parse(time.RFC3339Nano, *expiry); err == nil {
			m.Expiry = t
		} else {
			fmt.Fprintf(stderr, "roost c2d send: --expiry %q is neither an RFC 3339 time nor a duration\n", *expiry)
			return 2
		}
	}
	c, err := cf.client()
	if err != nil {
		return fail(stderr, "c2d send", err)
	}
	id, err := c.SendC2D(ctx, pos[0], m)
	if err != nil {
		return fail(stderr, "c2d send", err)
	}
	if cf.output == "json" {
		printJSON(stdout, map[string]string{"messageId": id, "deviceId": pos[0]})
		return 0
	}
	fmt.Fprintln(stdout, id)
	return 0
}

func runC2DPurge(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cf clientFlags
	fs := newFlagSet("c2d purge", stderr, "roost c2d purge DEVICE [flags]")
	cf.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil || len(pos) != 1 {
		fmt.Fprint(stderr, c2dUsage)
		return 2
	}
	c, err := cf.client()
	if err != nil {
		return fail(stderr, "c2d purge", err)
	}
	n, err := c.PurgeC2D(ctx, pos[0])
	if err != nil {
		return fail(stderr, "c2d purge", err)
	}
	if cf.output == "json" {
		printJSON(stdout, map[string]any{"totalMessagesPurged": n, "deviceId": pos[0], "moduleId": nil})
		return 0
	}
	fmt.Fprintf(stdout, "purged %d message(s) for %s\n", n, pos[0])
	return 0
}

func runC2DFeedback(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cf clientFlags
	fs := newFlagSet("c2d feedback", stderr, "roost c2d feedback [--peek] [--wait D]")
	cf.register(fs)
	peek := fs.Bool("peek", false, "abandon the feedback after printing it, so it stays queued")
	wait := fs.Duration("wait", 0, "keep polling this long for feedback when there is none")
	if _, err := parseArgs(fs, args); err != nil {
		return 2
	}
	c, err := cf.client()
	if err != nil {
		return fail(stderr, "c2d feedback", err)
	}
	var tw *tabwriter.Writer
	if cf.output != "json" {
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tMESSAGE ID\tSTATUS\tTIME")
	}
	var held []string // with --peek, abandoned at the end so each batch is printed once
	defer func() {
		for _, tok := range held {
			_ = c.AbandonFeedback(context.WithoutCancel(ctx), tok)
		}
	}()
	deadline := time.Now().Add(*wait)
	for {
		tok, recs, err := c.ReceiveFeedback(ctx)
		if err != nil {
			return fail(stderr, "c2d feedback", err)
		}
		if tok == "" {
			if time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return 0
			case <-time.After(time.Second):
			}
			continue
		}
		for _, r := range recs {
			if tw != nil {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.DeviceID, r.OriginalMessageID, r.StatusCode, r.EnqueuedTimeUTC)
			} else {
				printJSON(stdout, r)
			}
		}
		if tw != nil {
			_ = tw.Flush()
		}
		if *peek {
			held = append(held, tok)
			continue
		}
		if err := c.CompleteFeedback(ctx, tok); err != nil {
			return fail(stderr, "c2d feedback", err)
		}
	}
	if tw != nil {
		_ = tw.Flush()
	}
	return 0
}
