package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/roost-iot/roost/internal/client"
	"github.com/roost-iot/roost/internal/telemetry"
)

const monitorUsage = "roost monitor-events [--device ID] [--module M] [--consumer-group G] " +
	"[--from start|end|checkpoint|<RFC 3339 time>|<duration such as 10m>] [--properties[=sys,anno,app]] " +
	"[--timeout D] [--output json]"

// runMonitorEvents prints device-to-cloud messages as they arrive, in the shape
// `az iot hub monitor-events` prints them.
func runMonitorEvents(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cf clientFlags
	fs := newFlagSet("monitor-events", stderr, monitorUsage)
	cf.register(fs)
	device := fs.String("device", "", "only this device's messages (and its modules')")
	module := fs.String("module", "", "only this module's messages")
	group := fs.String("consumer-group", telemetry.DefaultConsumerGroup, "consumer group to read as")
	from := fs.String("from", "end", "where to start: start, end (only new messages), checkpoint, an RFC 3339 time, or a duration back from now (10m)")
	props := propsFlag{}
	fs.Var(&props, "properties", "also print properties: --properties for all, or --properties=sys,anno,app")
	timeout := fs.Duration("timeout", 0, "stop after this long without a message (0: run until interrupted)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "roost monitor-events: unexpected argument %q\nUsage: %s\n", rest[0], monitorUsage)
		return 2
	}
	if cf.output != "table" && cf.output != "json" {
		fmt.Fprintf(stderr, "roost monitor-events: --output %q: use json (one event per line) or leave it out\n", cf.output)
		return 2
	}
	start, err := parseFrom(*from, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "roost monitor-events: --from: %v\n", err)
		return 2
	}
	c, err := cf.client()
	if err != nil {
		return fail(stderr, "monitor-events", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var idle *time.Timer
	if *timeout > 0 {
		idle = time.AfterFunc(*timeout, cancel)
		defer idle.Stop()
	}
	fmt.Fprintln(stderr, "Starting event monitor, use ctrl-c to stop...")
	err = c.StreamEvents(ctx, client.EventsQuery{
		ConsumerGroup: *group, From: start, DeviceID: *device, ModuleID: *module,
	}, func(m *telemetry.Message) error {
		if idle != nil {
			idle.Reset(*timeout)
		}
		return printEvent(stdout, m, props, cf.output == "json")
	})
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fail(stderr, "monitor-events", errors.New("the hub ended the stream (is it shutting down?)"))
	}
	if err != nil {
		return fail(stderr, "monitor-events", err)
	}
	return 0
}

// parseFrom turns --from into the hub's from parameter.
func parseFrom(s string, now time.Time) (string, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "end", "now", "latest":
		return "end", nil
	case "start", "beginning", "earliest":
		return "start", nil
	case "checkpoint":
		return "checkpoint", nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d).UTC().Format(time.RFC3339Nano), nil
	}
	return "", fmt.Errorf("%q is not start, end, checkpoint, an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (10m)", s)
}

// propsFlag is --properties: alone it means every kind, else a list of sys, anno, app, all.
type propsFlag map[string]bool

func (p propsFlag) String() string {
	var out []string
	for _, k := range []string{"sys", "anno", "app"} {
		if p[k] {
			out = append(out, k)
		}
	}
	return strings.Join(out, ",")
}

func (p propsFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		switch s = strings.ToLower(strings.TrimSpace(s)); s {
		case "true", "all":
			p["sys"], p["anno"], p["app"] = true, true, true
		case "false":
			clear(p)
		case "sys", "anno", "app":
			p[s] = true
		case "":
		default:
			return fmt.Errorf("%q is not sys, anno, app or all", s)
		}
	}
	return nil
}

func (p propsFlag) IsBoolFlag() bool { return true }

// field and object keep JSON keys in the order az prints them.
type field struct {
	k string
	v any
}

type object []field

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := marshalPlain(f.k)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		v, err := marshalPlain(f.v)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshalPlain is json.Marshal without HTML escaping (payloads are shown as sent).
func marshalPlain(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

func millis(t time.Time) int64 { return t.UnixMilli() }

// azEvent renders a message as az iot hub monitor-events does: origin, module, interface,
// component, then (if asked) properties.system / properties.application and annotations, then
// the payload, parsed as JSON when the content type says JSON.
func azEvent(m *telemetry.Message, props propsFlag) object {
	ev := object{
		{"origin", m.DeviceID},
		{"module", m.ModuleID},
		{"interface", m.InterfaceID},
		{"component", m.ComponentName},
	}
	if props["sys"] || props["app"] {
		var p object
		if props["sys"] {
			var sys object
			add := func(k, v string) {
				if v != "" {
					sys = append(sys, field{k, v})
				}
			}
			add("message_id", m.MessageID)
			add("correlation_id", m.CorrelationID)
			add("user_id", m.UserID)
			add("to", m.To)
			add("content_type", m.ContentType)
			add("content_encoding", m.ContentEncoding)
			if !m.Expiry.IsZero() {
				sys = append(sys, field{"absolute_expiry_time", millis(m.Expiry)})
			}
			if sys != nil { // az leaves out an empty system section
				p = append(p, field{"system", sys})
			}
		}
		if props["app"] {
			app := object{}
			if !m.CreationTime.IsZero() {
				app = append(app, field{telemetry.PropCreationTime, m.CreationTime.UTC().Format("2006-01-02T15:04:05.000Z")})
			}
			if m.MessageSchema != "" {
				app = append(app, field{telemetry.PropMessageSchema, m.MessageSchema})
			}
			for _, ap := range m.Properties {
				app = append(app, field{ap.Name, ap.Value})
			}
			p = append(p, field{"application", app})
		}
		if p == nil {
			p = object{}
		}
		ev = append(ev, field{"properties", p})
	}
	if props["anno"] {
		anno := object{{telemetry.PropDeviceID, m.DeviceID}}
		if m.ModuleID != "" {
			anno = append(anno, field{telemetry.PropModuleID, m.ModuleID})
		}
		anno = append(anno,
			field{telemetry.PropAuthMethod, m.AuthMethod},
			field{telemetry.PropAuthGenerationID, m.AuthGenerationID},
			field{telemetry.PropEnqueuedTime, millis(m.EnqueuedTime)},
			field{telemetry.PropMessageSource, telemetry.MessageSourceTelemetry})
		if m.ComponentName != "" {
			anno = append(anno, field{telemetry.PropComponentName, m.ComponentName})
		}
		if m.InterfaceID != "" {
			anno = append(anno, field{telemetry.PropInterfaceID, m.InterfaceID})
		}
		if m.OutputName != "" {
			anno = append(anno, field{telemetry.PropOutputName, m.OutputName})
		}
		anno = append(anno,
			field{telemetry.PropSequenceNumber, m.SequenceNumber},
			field{telemetry.PropOffset, fmt.Sprint(m.SequenceNumber)},
			field{telemetry.PropXEnqueuedTime, millis(m.EnqueuedTime)})
		ev = append(ev, field{"annotations", anno})
	}
	ev = append(ev, field{"payload", payload(m)})
	return object{{"event", ev}}
}

// payload is the body as text, or the JSON value it holds when the content type is JSON.
func payload(m *telemetry.Message) any {
	if strings.Contains(strings.ToLower(m.ContentType), "application/json") && json.Valid(m.Body) {
		return json.RawMessage(m.Body)
	}
	if utf8.Valid(m.Body) {
		return string(m.Body)
	}
	return strings.ToValidUTF8(string(m.Body), "\uFFFD")
}

// printEvent writes one event: az's indented form, or one line of JSON with --output json.
func printEvent(w io.Writer, m *telemetry.Message, props propsFlag, oneLine bool) error {
	b, err := marshalPlain(azEvent(m, props))
	if err != nil {
		return err
	}
	if !oneLine {
		var ind bytes.Buffer
		if err := json.Indent(&ind, b, "", "    "); err != nil {
			return err
		}
		b = ind.Bytes()
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}
