package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/telemetry"
)

// batchContentType marks a request body holding a JSON array of messages.
const batchContentType = "application/vnd.microsoft.iothub.json"

// maxBatchBody bounds a batch request's body. Bodies are base64 in JSON, so 256 KB of messages
// takes about 350 KB; anything over this limit is certainly over 256 KB of messages.
const maxBatchBody = 1 << 20

// deviceTelemetryRoutes serves HTTPS device telemetry (device-protocol.md §11.1).
func (a *API) deviceTelemetryRoutes() {
	a.deviceRoute("POST /devices/{id}/messages/events", diag.DeviceTelemetry, "ingress", a.postDeviceEvents)
	a.deviceRoute("POST /devices/{id}/modules/{mid}/messages/events", diag.DeviceTelemetry, "ingress", a.postDeviceEvents)
}

// postDeviceEvents stores one message (the body, with iothub-* headers) or a batch
// (Content-Type application/vnd.microsoft.iothub.json) and answers 204 once every message is in
// the engine.
func (a *API) postDeviceEvents(w http.ResponseWriter, r *http.Request, c *deviceCall) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	c.batch = strings.EqualFold(mt, batchContentType)
	limit := int64(telemetry.MaxMessageSize)
	if c.batch {
		limit = maxBatchBody
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return errcode.Wrap(errcode.GenericBadRequest, err, "could not read the request body")
	}
	if int64(len(body)) > limit {
		c.size = len(body)
		if r.ContentLength > 0 {
			c.size = int(r.ContentLength)
		}
		return errcode.New(errcode.MessageTooLarge, "the request body is larger than %d bytes; a message may be at most %d bytes", limit, telemetry.MaxMessageSize)
	}
	var msgs []*telemetry.Message
	if c.batch {
		c.size = len(body)
		if msgs, err = parseBatch(body); err != nil {
			return err
		}
	} else {
		m := &telemetry.Message{Body: body}
		if err := messageFromHeaders(r.Header, m); err != nil {
			return err
		}
		msgs = []*telemetry.Message{m}
	}
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.TelemetryAttempts.Add(float64(len(msgs)))
	}
	total := 0
	for _, m := range msgs {
		m.DeviceID, m.ModuleID = c.id.DeviceID, c.id.ModuleID
		m.AuthMethod, m.AuthGenerationID, m.Protocol = c.id.AuthMethodJSON(), c.id.GenerationID, "Https"
		total += telemetry.Size(m)
	}
	c.size = total
	if total > telemetry.MaxMessageSize {
		return errcode.New(errcode.MessageTooLarge, "the messages are %d bytes (bodies, system property values, application property names and values); the limit is %d", total, telemetry.MaxMessageSize)
	}
	pending := make([]*telemetry.Pending, 0, len(msgs))
	for _, m := range msgs {
		pd, err := a.cfg.Telemetry.SendAsync(m)
		if err != nil {
			return err
		}
		pending = append(pending, pd)
	}
	for _, pd := range pending {
		if _, err := pd.Wait(r.Context()); err != nil {
			return err
		}
		if a.cfg.Metrics != nil {
			a.cfg.Metrics.TelemetrySuccess.Inc()
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// messageFromHeaders reads a single message's properties from its request headers. Header names
// match without regard to case; application property names (iothub-app-<name>) arrive
// lower-cased, since HTTP does not keep the case of header names (HTTP/2 lower-cases them all),
// and in name order, since it does not keep their order either.
func messageFromHeaders(h http.Header, m *telemetry.Message) error {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		vals := h[k]
		lk := strings.ToLower(k)
		if name, ok := strings.CutPrefix(lk, "iothub-app-"); ok {
			for _, v := range vals {
				m.Properties = append(m.Properties, telemetry.Property{Name: name, Value: v})
			}
			continue
		}
		if len(vals) == 0 {
			continue
		}
		// The last value wins: Node sends iothub-to twice, the events path first and the
		// message's own 'to' (if any) second.
		if err := setSystemProperty(m, lk, vals[len(vals)-1]); err != nil {
			return err
		}
	}
	return nil
}

// setSystemProperty applies one iothub-* system property by its lower-cased HTTP name; other
// names are ignored.
func setSystemProperty(m *telemetry.Message, name, v string) error {
	switch name {
	case "iothub-messageid":
		m.MessageID = v
	case "iothub-correlationid":
		m.CorrelationID = v
	case "iothub-userid":
		m.UserID = v
	case "iothub-to":
		m.To = v
	case "iothub-contenttype":
		m.ContentType = v
	case "iothub-contentencoding":
		m.ContentEncoding = v
	case "iothub-interface-id":
		m.InterfaceID = v
	case "iothub-outputname":
		m.OutputName = v
	case "iothub-messageschema", "iothub-message-schema":
		m.MessageSchema = v
	case "iothub-dt-subject", "dt-subject":
		m.ComponentName = v
	case "iothub-expiry":
		t, err := parseHeaderTime(v)
		if err != nil {
			return errcode.Wrap(errcode.ArgumentInvalid, err, "iothub-expiry '%s' is not a date and time", sanitize(v))
		}
		m.Expiry = t
	case "iothub-creation-time-utc":
		t, err := parseHeaderTime(v)
		if err != nil {
			return errcode.Wrap(errcode.ArgumentInvalid, err, "iothub-creation-time-utc '%s' is not a date and time", sanitize(v))
		}
		m.CreationTime = t
	}
	return nil
}

// parseHeaderTime accepts the forms SDKs send: ISO 8601 / RFC 3339 (with or without a zone,
// UTC when absent), HTTP dates, and JavaScript's Date.toString() (what Node sends for a Date
// expiryTimeUtc).
func parseHeaderTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, " ("); i > 0 { // "... GMT+0000 (Coordinated Universal Time)"
		s = s[:i]
	}
	layouts := []string{
		time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05.999999999Z0700",
		time.RFC1123, time.RFC1123Z, "Mon Jan 02 2006 15:04:05 GMT-0700", "Mon Jan 02 2006 15:04:05 MST-0700",
	}
	var firstErr error
	for _, l := range layouts {
		t, err := time.Parse(l, s)
		if err == nil {
			return t.UTC(), nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return time.Time{}, firstErr
}

// batchEntry is one message of a batch. The Node SDK sends {"body":"<base64>","properties":
// {"iothub-app-k":"v"}}; the C SDK adds "base64Encoded":false for a body sent as text.
type batchEntry struct {
	Body          *string         `json:"body"`
	Base64Encoded *bool           `json:"base64Encoded"`
	Properties    json.RawMessage `json:"properties"`
}

// parseBatch reads a batch body: a JSON array of entries.
func parseBatch(body []byte) ([]*telemetry.Message, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errcode.New(errcode.ArgumentNull, "the batch is empty")
	}
	var entries []batchEntry
	if err := json.Unmarshal(body, &entries); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return nil, errcode.Wrap(errcode.ArgumentInvalid, err, "a batch is a JSON array of objects with a body and properties")
		}
		return nil, errcode.Wrap(errcode.IotHubFormatError, err, "the batch is not valid JSON")
	}
	if len(entries) == 0 {
		return nil, errcode.New(errcode.ArgumentInvalid, "the batch holds no message")
	}
	out := make([]*telemetry.Message, 0, len(entries))
	for i, e := range entries {
		m := &telemetry.Message{}
		if e.Body != nil {
			if e.Base64Encoded == nil || *e.Base64Encoded {
				b, err := base64.StdEncoding.DecodeString(*e.Body)
				if err != nil {
					return nil, errcode.Wrap(errcode.ArgumentInvalid, err, "message %d of the batch: the body is not base64 (mark a text body with base64Encoded false)", i)
				}
				m.Body = b
			} else {
				m.Body = []byte(*e.Body)
			}
		}
		props, err := orderedProperties(e.Properties)
		if err != nil {
			return nil, errcode.Wrap(errcode.ArgumentInvalid, err, "message %d of the batch: properties must be an object of string values", i)
		}
		for _, p := range props {
			lk := strings.ToLower(p.Name)
			if len(p.Name) > len("iothub-app-") && strings.HasPrefix(lk, "iothub-app-") {
				m.Properties = append(m.Properties, telemetry.Property{Name: p.Name[len("iothub-app-"):], Value: p.Value})
				continue
			}
			if isSystemHeader(lk) {
				if err := setSystemProperty(m, lk, p.Value); err != nil {
					return nil, err
				}
				continue
			}
			m.Properties = append(m.Properties, p)
		}
		out = append(out, m)
	}
	return out, nil
}

func isSystemHeader(lk string) bool {
	switch lk {
	case "iothub-messageid", "iothub-correlationid", "iothub-userid", "iothub-to", "iothub-contenttype",
		"iothub-contentencoding", "iothub-interface-id", "iothub-outputname", "iothub-messageschema",
		"iothub-message-schema", "iothub-dt-subject", "dt-subject", "iothub-expiry", "iothub-creation-time-utc":
		return true
	}
	return false
}

// orderedProperties reads a JSON object of string values in order.
func orderedProperties(raw json.RawMessage) ([]telemetry.Property, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not an object")
	}
	var out []telemetry.Property
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := kt.(string)
		var v string
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, telemetry.Property{Name: name, Value: v})
	}
	return out, nil
}
