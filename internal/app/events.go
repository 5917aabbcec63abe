package app

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/alerts"
	"github.com/roost-iot/roost/internal/events"
)

const eventsUsage = `Usage:
  roost events subscribe NAME --endpoint URL [--type DeviceConnected]... [--subject-begins-with devices/d1]
                         [--subject-ends-with S] [--filter data.deviceId:StringIn:d1,d2]... [--schema cloudevents]
                         [--max-attempts 30] [--ttl 24h]
  roost events list [--output json]
  roost events delete NAME
  roost events deadletters [--subscription NAME] [--since 24h] [--output json]

Delivers DeviceCreated, DeviceDeleted, DeviceConnected, DeviceDisconnected and DeviceTelemetry
events to a webhook as IoT Hub's Event Grid integration does (Event Grid schema, or CloudEvents
1.0 with --schema cloudevents), retrying with back-off and dead-lettering what never arrives.`

func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, eventsUsage)
		return 2
	}
	var af adminFlags
	fs := newFlagSet("events "+args[0], stderr, eventsUsage)
	af.register(fs)
	endpoint := fs.String("endpoint", "", "webhook URL")
	var types, filters multiFlag
	fs.Var(&types, "type", "event type (repeatable): DeviceCreated, DeviceDeleted, DeviceConnected, DeviceDisconnected, DeviceTelemetry")
	fs.Var(&filters, "filter", "advanced filter KEY:OPERATOR:V1,V2 (repeatable), e.g. data.deviceId:StringBeginsWith:press-")
	begins := fs.String("subject-begins-with", "", "only subjects starting so (devices/press-)")
	ends := fs.String("subject-ends-with", "", "only subjects ending so")
	schema := fs.String("schema", "", "eventgrid (default) or cloudevents")
	attempts := fs.Int("max-attempts", 30, "deliveries tried before dead-lettering, 1 to 30")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long delivery is retried, 1m to 24h")
	sub := fs.String("subscription", "", "deadletters: only this subscription's")
	since := fs.String("since", "24h", "deadletters: RFC 3339 time or duration back from now")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return 2
	}
	ad, err := af.admin()
	if err != nil {
		return fail(stderr, "events", err)
	}
	switch args[0] {
	case "subscribe", "set":
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "roost events subscribe: give the subscription's name")
			return 2
		}
		s := events.Subscription{Name: pos[0], Endpoint: *endpoint, EventTypes: types, SubjectBeginsWith: *begins, SubjectEndsWith: *ends,
			MaxDeliveryAttempts: *attempts, EventTimeToLive: alerts.Duration(*ttl)}
		switch strings.ToLower(*schema) {
		case "", "eventgrid", "eventgridschema":
		case "cloudevents", "cloudeventschemav1_0":
			s.Schema = events.SchemaCloudEvents
		default:
			fmt.Fprintf(stderr, "roost events subscribe: --schema %q: use eventgrid or cloudevents\n", *schema)
			return 2
		}
		for _, f := range filters {
			parts := strings.SplitN(f, ":", 3)
			if len(parts) < 2 {
				fmt.Fprintf(stderr, "roost events subscribe: --filter %q is not KEY:OPERATOR[:VALUES]\n", f)
				return 2
			}
			flt := events.Filter{Key: parts[0], Operator: parts[1]}
			if len(parts) == 3 {
				for _, v := range strings.Split(parts[2], ",") {
					flt.Values = append(flt.Values, v)
				}
			}
			s.AdvancedFilters = append(s.AdvancedFilters, flt)
		}
		if err := events.Normalize(&s); err != nil {
			fmt.Fprintf(stderr, "roost events subscribe: %v\n", err)
			return 2
		}
		var out events.Subscription
		if err := ad.Do(ctx, "PUT", "/events/subscriptions/"+url.PathEscape(s.Name), s, &out); err != nil {
			return fail(stderr, "events subscribe", err)
		}
		fmt.Fprintf(stdout, "subscription %s delivers %s to %s\n", out.Name, typeList(out.EventTypes), out.Endpoint)
		return 0
	case "list":
		var subs []events.Subscription
		if err := ad.Do(ctx, "GET", "/events/subscriptions", nil, &subs); err != nil {
			return fail(stderr, "events list", err)
		}
		printList(stdout, af.output, subs, "NAME\tENDPOINT\tEVENTS\tSCHEMA\tATTEMPTS\tTTL", func(s events.Subscription) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%s", s.Name, s.Endpoint, typeList(s.EventTypes), s.Schema, s.MaxDeliveryAttempts, time.Duration(s.EventTimeToLive))
		})
		return 0
	case "delete", "remove", "unsubscribe":
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "roost events delete: give the subscription's name")
			return 2
		}
		if err := ad.Do(ctx, "DELETE", "/events/subscriptions/"+url.PathEscape(pos[0]), nil, nil); err != nil {
			return fail(stderr, "events delete", err)
		}
		fmt.Fprintf(stdout, "subscription %s deleted\n", pos[0])
		return 0
	case "deadletters", "dead-letters":
		q := url.Values{"since": {*since}}
		if *sub != "" {
			q.Set("subscription", *sub)
		}
		var dl []events.DeadLetter
		if err := ad.Do(ctx, "GET", "/events/deadletters?"+q.Encode(), nil, &dl); err != nil {
			return fail(stderr, "events deadletters", err)
		}
		if af.output == "json" {
			printJSON(stdout, dl)
			return 0
		}
		for _, d := range dl {
			fmt.Fprintf(stdout, "%s  %-20s %-34s %s after %d attempts: %s\n", d.Time.Format(time.RFC3339), d.Subscription,
				d.Event.EventType, d.Event.Subject, d.Attempts, d.LastError)
		}
		if len(dl) == 0 {
			fmt.Fprintln(stdout, "No dead-lettered events in that time.")
		}
		return 0
	}
	fmt.Fprintf(stderr, "roost events: unknown command %q\n%s\n", args[0], eventsUsage)
	return 2
}

func typeList(t []string) string {
	if len(t) == 0 {
		return "all events"
	}
	short := make([]string, len(t))
	for i, s := range t {
		short[i] = strings.TrimPrefix(s, "Microsoft.Devices.")
	}
	return strings.Join(short, ",")
}
