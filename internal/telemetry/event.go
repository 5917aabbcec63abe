package telemetry

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Names of the system properties and annotations a read message carries, as Event Hubs clients
// (e.g. @azure/event-hubs systemProperties) see them on IoT Hub's built-in endpoint.
const (
	PropDeviceID         = "iothub-connection-device-id"
	PropModuleID         = "iothub-connection-module-id"
	PropAuthMethod       = "iothub-connection-auth-method"
	PropAuthGenerationID = "iothub-connection-auth-generation-id"
	PropEnqueuedTime     = "iothub-enqueuedtime"
	PropMessageSource    = "iothub-message-source"
	PropSequenceNumber   = "x-opt-sequence-number"
	PropOffset           = "x-opt-offset"
	PropXEnqueuedTime    = "x-opt-enqueued-time"
	PropMessageID        = "message-id"
	PropCorrelationID    = "correlation-id"
	PropUserID           = "user-id"
	PropTo               = "to"
	PropContentType      = "content-type"
	PropContentEncoding  = "content-encoding"
	PropExpiry           = "absolute-expiry-time"
	PropCreationTime     = "iothub-creation-time-utc"
	PropOutputName       = "iothub-outputname"
	PropInterfaceID      = "iothub-interface-id"
	PropComponentName    = "dt-subject"
	PropMessageSchema    = "iothub-message-schema"

	// MessageSourceTelemetry is the iothub-message-source of device telemetry.
	MessageSourceTelemetry = "Telemetry"
)

// AppendEventJSON appends the JSON form of a read message to b, on one line, as the hub's event
// stream serves it:
//
//	{"body":"...","partition":1,"sequenceNumber":7,"offset":"7","enqueuedTime":"...",
//	 "systemProperties":{"iothub-connection-device-id":"d1",...},"properties":{"k":"v"}}
//
// The body is text when it is valid UTF-8, else base64 with "base64Encoded":true. Application
// properties keep their order. Times are RFC 3339 in UTC.
func AppendEventJSON(b []byte, m *Message) []byte {
	b = append(b, `{"body":`...)
	if utf8.Valid(m.Body) {
		b = appendJSONString(b, m.Body)
	} else {
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, m.Body)
		b = append(b, `","base64Encoded":true`...)
	}
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(m.Partition), 10)
	b = append(b, `,"sequenceNumber":`...)
	b = strconv.AppendUint(b, m.SequenceNumber, 10)
	b = append(b, `,"offset":"`...)
	b = strconv.AppendUint(b, m.SequenceNumber, 10)
	b = append(b, `","enqueuedTime":`...)
	b = appendJSONTime(b, m.EnqueuedTime)

	b = append(b, `,"systemProperties":{`...)
	first := true
	str := func(name, v string) {
		if v == "" {
			return
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, []byte(name))
		b = append(b, ':')
		b = appendJSONString(b, []byte(v))
	}
	tm := func(name string, t time.Time) {
		if t.IsZero() {
			return
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, []byte(name))
		b = append(b, ':')
		b = appendJSONTime(b, t)
	}
	str(PropDeviceID, m.DeviceID)
	str(PropModuleID, m.ModuleID)
	str(PropAuthMethod, m.AuthMethod)
	str(PropAuthGenerationID, m.AuthGenerationID)
	tm(PropEnqueuedTime, m.EnqueuedTime)
	str(PropMessageSource, MessageSourceTelemetry)
	if !first {
		b = append(b, ',')
	}
	first = false
	b = append(b, `"`+PropSequenceNumber+`":`...)
	b = strconv.AppendUint(b, m.SequenceNumber, 10)
	str(PropOffset, strconv.FormatUint(m.SequenceNumber, 10))
	tm(PropXEnqueuedTime, m.EnqueuedTime)
	str(PropMessageID, m.MessageID)
	str(PropCorrelationID, m.CorrelationID)
	str(PropUserID, m.UserID)
	str(PropTo, m.To)
	str(PropContentType, m.ContentType)
	str(PropContentEncoding, m.ContentEncoding)
	tm(PropExpiry, m.Expiry)
	tm(PropCreationTime, m.CreationTime)
	str(PropOutputName, m.OutputName)
	str(PropInterfaceID, m.InterfaceID)
	str(PropComponentName, m.ComponentName)
	str(PropMessageSchema, m.MessageSchema)
	b = append(b, `},"properties":{`...)
	for i, p := range m.Properties {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, []byte(p.Name))
		b = append(b, ':')
		b = appendJSONString(b, []byte(p.Value))
	}
	return append(b, "}}"...)
}

func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendJSONString appends s as a JSON string. s must be valid UTF-8 for a faithful result;
// invalid bytes become U+FFFD, as encoding/json does.
func appendJSONString(b []byte, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' { // valid JSON, but not in JavaScript source
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// ParseEventJSON reads a message back from its [AppendEventJSON] form: a client of the event
// stream gets a [Message] with the annotations, system and application properties set.
func ParseEventJSON(data []byte) (*Message, error) {
	var ev struct {
		Body             string                     `json:"body"`
		Base64Encoded    bool                       `json:"base64Encoded"`
		Partition        int                        `json:"partition"`
		SequenceNumber   uint64                     `json:"sequenceNumber"`
		EnqueuedTime     time.Time                  `json:"enqueuedTime"`
		SystemProperties map[string]json.RawMessage `json:"systemProperties"`
		Properties       json.RawMessage            `json:"properties"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("telemetry: event: %w", err)
	}
	m := &Message{Partition: ev.Partition, SequenceNumber: ev.SequenceNumber, EnqueuedTime: ev.EnqueuedTime}
	if ev.Base64Encoded {
		body, err := base64.StdEncoding.DecodeString(ev.Body)
		if err != nil {
			return nil, fmt.Errorf("telemetry: event body: %w", err)
		}
		m.Body = body
	} else if ev.Body != "" {
		m.Body = []byte(ev.Body)
	}
	var firstErr error
	str := func(name string, dst *string) {
		raw, ok := ev.SystemProperties[name]
		if !ok {
			return
		}
		if err := json.Unmarshal(raw, dst); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("telemetry: event property %s: %w", name, err)
		}
	}
	tm := func(name string, dst *time.Time) {
		var s string
		str(name, &s)
		if s == "" {
			return
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("telemetry: event property %s: %w", name, err)
		}
		*dst = t
	}
	str(PropDeviceID, &m.DeviceID)
	str(PropModuleID, &m.ModuleID)
	str(PropAuthMethod, &m.AuthMethod)
	str(PropAuthGenerationID, &m.AuthGenerationID)
	str(PropMessageID, &m.MessageID)
	str(PropCorrelationID, &m.CorrelationID)
	str(PropUserID, &m.UserID)
	str(PropTo, &m.To)
	str(PropContentType, &m.ContentType)
	str(PropContentEncoding, &m.ContentEncoding)
	tm(PropExpiry, &m.Expiry)
	tm(PropCreationTime, &m.CreationTime)
	str(PropOutputName, &m.OutputName)
	str(PropInterfaceID, &m.InterfaceID)
	str(PropComponentName, &m.ComponentName)
	str(PropMessageSchema, &m.MessageSchema)
	if firstErr != nil {
		return nil, firstErr
	}
	props, err := orderedStrings(ev.Properties)
	if err != nil {
		return nil, fmt.Errorf("telemetry: event properties: %w", err)
	}
	m.Properties = props
	return m, nil
}

// orderedStrings reads a JSON object of string values keeping its order (and repeated names).
func orderedStrings(raw json.RawMessage) ([]Property, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
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
	var out []Property
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
		out = append(out, Property{Name: name, Value: v})
	}
	return out, nil
}
