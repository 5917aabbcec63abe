// Package events publishes device events as IoT Hub's Event Grid integration does:
// Microsoft.Devices.DeviceCreated, DeviceDeleted, DeviceConnected, DeviceDisconnected and
// DeviceTelemetry, in the Event Grid schema (or CloudEvents 1.0 on request), delivered to webhook
// subscriptions with filters, retried with back-off, and dead-lettered when delivery finally
// fails.
//
// Events come from facts already in the engine, so the cluster needs no extra coordination:
// connection events from the Connections diagnostic records, lifecycle events from the registry's
// changes, telemetry from the telemetry streams (through a consumer group of its own). One node
// (under an engine lease) turns them into events, stored in the EVENTS stream with
// deduplicating ids, and delivers each subscription's events from its own checkpoint, so a slow
// or failing endpoint delays only its own subscription.
//
// The sequenceNumber of connection events is the connection record's position in the engine,
// as 64 hex digits: strictly increasing per device (and across devices), compared as strings.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/alerts"
)

// Event types.
const (
	DeviceCreated      = "Microsoft.Devices.DeviceCreated"
	DeviceDeleted      = "Microsoft.Devices.DeviceDeleted"
	DeviceConnected    = "Microsoft.Devices.DeviceConnected"
	DeviceDisconnected = "Microsoft.Devices.DeviceDisconnected"
	DeviceTelemetry    = "Microsoft.Devices.DeviceTelemetry"
)

// Types lists the event types.
var Types = []string{DeviceCreated, DeviceDeleted, DeviceConnected, DeviceDisconnected, DeviceTelemetry}

// Schemas.
const (
	SchemaEventGrid   = "EventGridSchema"
	SchemaCloudEvents = "CloudEventSchemaV1_0"
)

// Event is one event in the Event Grid schema.
type Event struct {
	ID              string          `json:"id"`
	Topic           string          `json:"topic"`
	Subject         string          `json:"subject"`
	EventType       string          `json:"eventType"`
	EventTime       string          `json:"eventTime"`
	Data            json.RawMessage `json:"data"`
	DataVersion     string          `json:"dataVersion"`
	MetadataVersion string          `json:"metadataVersion"`
}

// CloudEvent is the same event in the CloudEvents 1.0 schema.
type CloudEvent struct {
	ID          string          `json:"id"`
	Source      string          `json:"source"`
	Subject     string          `json:"subject"`
	Type        string          `json:"type"`
	Time        string          `json:"time"`
	Data        json.RawMessage `json:"data"`
	SpecVersion string          `json:"specversion"`
}

// CloudEvent converts an event.
func (e Event) CloudEvent() CloudEvent {
	return CloudEvent{ID: e.ID, Source: e.Topic, Subject: e.Subject, Type: e.EventType, Time: e.EventTime, Data: e.Data, SpecVersion: "1.0"}
}

// DeviceID returns the event's device.
func (e Event) DeviceID() string {
	var d struct {
		DeviceID string `json:"deviceId"`
	}
	_ = json.Unmarshal(e.Data, &d)
	return d.DeviceID
}

// Filter is an advanced filter on the event's fields (data.deviceId, data.hubName, subject,
// eventType): Operator is StringIn, StringNotIn, StringBeginsWith, StringEndsWith,
// StringContains, NumberGreaterThan, NumberLessThan, BoolEquals or IsNotNull.
type Filter struct {
	Key      string `json:"key"`
	Operator string `json:"operatorType"`
	Values   []any  `json:"values,omitempty"`
}

// Subscription is an event subscription with a webhook destination.
type Subscription struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
	// EventTypes selects the types (full or short names: DeviceConnected). Empty means all.
	EventTypes []string `json:"includedEventTypes,omitempty"`
	// SubjectBeginsWith and SubjectEndsWith filter on the subject (devices/{deviceId}).
	SubjectBeginsWith string   `json:"subjectBeginsWith,omitempty"`
	SubjectEndsWith   string   `json:"subjectEndsWith,omitempty"`
	AdvancedFilters   []Filter `json:"advancedFilters,omitempty"`
	// Schema is EventGridSchema (default) or CloudEventSchemaV1_0.
	Schema string `json:"eventDeliverySchema,omitempty"`
	// MaxDeliveryAttempts is 1 to 30 (default 30).
	MaxDeliveryAttempts int `json:"maxDeliveryAttempts,omitempty"`
	// EventTimeToLive bounds how long delivery is retried (default 24h, 1m to 24h).
	EventTimeToLive alerts.Duration `json:"eventTimeToLive,omitempty"`
	Created         time.Time       `json:"created"`
}

// Normalize checks a subscription and fills its defaults.
func Normalize(s *Subscription) error {
	s.Name = strings.TrimSpace(s.Name)
	if s.Name == "" || len(s.Name) > 64 || strings.ContainsAny(s.Name, "/\\ \t\n") {
		return errors.New("a subscription needs a name of 1 to 64 characters without spaces or slashes")
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("endpoint %q is not an http(s) URL", s.Endpoint)
	}
	var types []string
	for _, t := range s.EventTypes {
		full := t
		if !strings.HasPrefix(t, "Microsoft.Devices.") {
			full = "Microsoft.Devices." + t
		}
		if !slices.Contains(Types, full) {
			return fmt.Errorf("event type %q is not one of DeviceCreated, DeviceDeleted, DeviceConnected, DeviceDisconnected, DeviceTelemetry", t)
		}
		types = append(types, full)
	}
	slices.Sort(types)
	s.EventTypes = slices.Compact(types)
	switch s.Schema {
	case "":
		s.Schema = SchemaEventGrid
	case SchemaEventGrid, SchemaCloudEvents:
	case "CloudEvents", "cloudevents":
		s.Schema = SchemaCloudEvents
	default:
		return fmt.Errorf("schema %q is not EventGridSchema or CloudEventSchemaV1_0", s.Schema)
	}
	if s.MaxDeliveryAttempts == 0 {
		s.MaxDeliveryAttempts = 30
	}
	if s.MaxDeliveryAttempts < 1 || s.MaxDeliveryAttempts > 30 {
		return errors.New("maxDeliveryAttempts is 1 to 30")
	}
	if s.EventTimeToLive == 0 {
		s.EventTimeToLive = alerts.Duration(24 * time.Hour)
	}
	if d := time.Duration(s.EventTimeToLive); d < time.Minute || d > 24*time.Hour {
		return errors.New("eventTimeToLive is 1m to 24h")
	}
	for _, f := range s.AdvancedFilters {
		if f.Key == "" {
			return errors.New("an advanced filter needs a key")
		}
		if _, ok := filterOps[strings.ToLower(f.Operator)]; !ok {
			return fmt.Errorf("advanced filter operator %q is not supported", f.Operator)
		}
	}
	return nil
}

var filterOps = map[string]bool{
	"stringin": true, "stringnotin": true, "stringbeginswith": true, "stringendswith": true, "stringcontains": true,
	"numbergreaterthan": true, "numberlessthan": true, "numberin": true, "boolequals": true, "isnotnull": true,
}

// Wants reports whether the subscription takes the event.
func (s *Subscription) Wants(e Event) bool {
	if len(s.EventTypes) > 0 && !slices.Contains(s.EventTypes, e.EventType) {
		return false
	}
	if s.SubjectBeginsWith != "" && !strings.HasPrefix(strings.ToLower(e.Subject), strings.ToLower(s.SubjectBeginsWith)) {
		return false
	}
	if s.SubjectEndsWith != "" && !strings.HasSuffix(strings.ToLower(e.Subject), strings.ToLower(s.SubjectEndsWith)) {
		return false
	}
	if len(s.AdvancedFilters) == 0 {
		return true
	}
	var doc map[string]any
	b, _ := json.Marshal(e)
	if json.Unmarshal(b, &doc) != nil {
		return false
	}
	for _, f := range s.AdvancedFilters {
		if !f.match(lookup(doc, f.Key)) {
			return false
		}
	}
	return true
}

// lookup finds a dotted key (data.deviceId) in the event, case-insensitively.
func lookup(doc map[string]any, key string) any {
	var cur any = doc
	for _, part := range strings.Split(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		var next any
		found := false
		for k, v := range m {
			if strings.EqualFold(k, part) {
				next, found = v, true
				break
			}
		}
		if !found {
			return nil
		}
		cur = next
	}
	return cur
}

func (f Filter) match(v any) bool {
	op := strings.ToLower(f.Operator)
	if op == "isnotnull" {
		return v != nil
	}
	if v == nil {
		return op == "stringnotin"
	}
	switch op {
	case "numbergreaterthan", "numberlessthan", "numberin":
		n, ok := v.(float64)
		if !ok {
			return false
		}
		for _, x := range f.Values {
			t, ok := x.(float64)
			if !ok {
				continue
			}
			switch {
			case op == "numbergreaterthan" && n > t, op == "numberlessthan" && n < t, op == "numberin" && n == t:
				return true
			}
		}
		return false
	case "boolequals":
		b, ok := v.(bool)
		return ok && len(f.Values) > 0 && f.Values[0] == b
	}
	s := strings.ToLower(fmt.Sprint(v))
	any := false
	for _, x := range f.Values {
		t := strings.ToLower(fmt.Sprint(x))
		switch op {
		case "stringin", "stringnotin":
			any = any || s == t
		case "stringbeginswith":
			any = any || strings.HasPrefix(s, t)
		case "stringendswith":
			any = any || strings.HasSuffix(s, t)
		case "stringcontains":
			any = any || strings.Contains(s, t)
		}
	}
	if op == "stringnotin" {
		return !any
	}
	return any
}

// DeadLetter is an event whose delivery finally failed.
type DeadLetter struct {
	Subscription string    `json:"subscription"`
	Reason       string    `json:"deadLetterReason"`
	Attempts     int       `json:"deliveryAttempts"`
	LastError    string    `json:"lastDeliveryOutcome"`
	Time         time.Time `json:"deadLetteredTime"`
	Event        Event     `json:"event"`
}
