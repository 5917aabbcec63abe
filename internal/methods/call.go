package methods

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/roost-iot/roost/internal/errcode"
)

// Limits of a direct method call (spec/device-protocol.md section 7, spec/service-api.md 2.7).
const (
	// MaxPayload is the largest request or response payload, in bytes (128 KB).
	MaxPayload = 128 << 10
	// MaxNameLength caps a method name, in bytes. IoT Hub documents no limit; this one keeps the
	// MQTT topic that carries the name well inside the protocol's 65,535 bytes.
	MaxNameLength = 1024

	DefaultResponseTimeout = 30 * time.Second
	MinResponseTimeout     = 5 * time.Second
	MaxResponseTimeout     = 300 * time.Second
	MaxConnectTimeout      = 300 * time.Second
)

// Call is one direct method invocation.
type Call struct {
	DeviceID string
	// ModuleID names a module of the device; empty calls the device itself.
	ModuleID   string
	MethodName string
	// Payload is the JSON the device receives, exactly as the caller sent it. Empty means null.
	Payload []byte
	// ResponseTimeout is how long the device has to answer once the call reaches it: 5 to 300
	// seconds. Zero means 30 seconds.
	ResponseTimeout time.Duration
	// ConnectTimeout is how long to wait for the device to connect and subscribe to direct
	// methods: 0 to 300 seconds. Zero means the device must already be listening.
	ConnectTimeout time.Duration
}

// Result is the device's answer.
type Result struct {
	// Status is the status the device answered with, passed on as it is.
	Status int
	// Payload is the JSON the device answered with, byte for byte; "null" when it sent none.
	Payload []byte
}

// DecodeCall parses the service API's body, {"methodName", "payload",
// "responseTimeoutInSeconds", "connectTimeoutInSeconds"}, and checks it against IoT Hub's rules.
// Field names match in any case, as IoT Hub's JSON reader does; a missing or null timeout takes
// its default. The ids are left for the caller to fill from the path.
func DecodeCall(body []byte) (Call, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return Call{}, errcode.New(errcode.ArgumentNull, "the request has no body; it must be a JSON object with methodName")
	}
	var raw struct {
		MethodName json.RawMessage `json:"methodName"`
		Payload    json.RawMessage `json:"payload"`
		Response   json.RawMessage `json:"responseTimeoutInSeconds"`
		Connect    json.RawMessage `json:"connectTimeoutInSeconds"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return Call{}, errcode.Wrap(errcode.IotHubFormatError, err, "the request body must be a JSON object, not %s", ute.Value)
		}
		return Call{}, errcode.Wrap(errcode.IotHubFormatError, err, "the request body is not valid JSON")
	}
	var c Call
	if !isNull(raw.MethodName) {
		if err := json.Unmarshal(raw.MethodName, &c.MethodName); err != nil {
			return Call{}, errcode.New(errcode.ArgumentInvalid, "methodName must be a string")
		}
	}
	if !isNull(raw.Payload) {
		c.Payload = raw.Payload
	}
	var err error
	if c.ResponseTimeout, err = seconds(raw.Response, "responseTimeoutInSeconds", MinResponseTimeout, MaxResponseTimeout); err != nil {
		return Call{}, err
	}
	if c.ConnectTimeout, err = seconds(raw.Connect, "connectTimeoutInSeconds", 0, MaxConnectTimeout); err != nil {
		return Call{}, err
	}
	if err := c.Check(); err != nil {
		return Call{}, err
	}
	return c, nil
}

// isNull reports whether a raw JSON value is absent or null.
func isNull(v json.RawMessage) bool {
	return len(v) == 0 || string(v) == "null"
}

// seconds reads a timeout given in whole seconds and checks its range. Absent or null gives 0,
// which a [Call] reads as the default.
func seconds(v json.RawMessage, field string, lo, hi time.Duration) (time.Duration, error) {
	if isNull(v) {
		return 0, nil
	}
	if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
		return 0, errcode.New(errcode.ArgumentInvalid, "%s must be a number of seconds", field)
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f != math.Trunc(f) {
		return 0, errcode.New(errcode.ArgumentInvalid, "%s must be a whole number of seconds", field)
	}
	if f < lo.Seconds() || f > hi.Seconds() {
		return 0, errcode.New(errcode.ArgumentInvalid, "%s is %s; it must be between %d and %d", field, v, int(lo.Seconds()), int(hi.Seconds()))
	}
	return time.Duration(f) * time.Second, nil
}

// Check reports whether the call obeys IoT Hub's rules: a valid method name, a JSON payload of at
// most [MaxPayload] bytes, and timeouts in range (zero being the default).
func (c Call) Check() error {
	if err := checkName(c.MethodName); err != nil {
		return err
	}
	if len(c.Payload) > MaxPayload {
		return errcode.New(errcode.ArgumentInvalid, "the payload is %d bytes; a direct method payload must be at most %d bytes", len(c.Payload), MaxPayload)
	}
	if len(c.Payload) > 0 && !json.Valid(c.Payload) {
		return errcode.New(errcode.ArgumentInvalid, "the payload is not valid JSON")
	}
	if rt := c.ResponseTimeout; rt != 0 && (rt < MinResponseTimeout || rt > MaxResponseTimeout) {
		return errcode.New(errcode.ArgumentInvalid, "responseTimeoutInSeconds is %d; it must be between 5 and 300", int64(rt/time.Second))
	}
	if ct := c.ConnectTimeout; ct < 0 || ct > MaxConnectTimeout {
		return errcode.New(errcode.ArgumentInvalid, "connectTimeoutInSeconds is %d; it must be between 0 and 300", int64(ct/time.Second))
	}
	return nil
}

// responseTimeout returns the call's response timeout with the default applied.
func (c Call) responseTimeout() time.Duration {
	if c.ResponseTimeout == 0 {
		return DefaultResponseTimeout
	}
	return c.ResponseTimeout
}

// describe names a character for an error message without writing characters that the SDKs'
// error parsers split on.
func describe(b byte) string {
	switch {
	case b == ' ':
		return "a space"
	case b == '"':
		return "a quote"
	case b == ';':
		return "a semicolon"
	case b == '\\':
		return "a backslash"
	case b < ' ' || b == 0x7f:
		return "a control character"
	case b > 0x7f:
		return "a non-ASCII character"
	}
	return "'" + string(rune(b)) + "'"
}

// forbidden are the printable ASCII characters IoT Hub does not allow in method names.
const forbidden = `$()<>@,;:\"/[]?={}`

// checkName applies IoT Hub's rule for method names: printable US-ASCII without spaces and
// without any of $ ( ) < > @ , ; : \ " / [ ] ? = { }.
func checkName(name string) error {
	if name == "" {
		return errcode.New(errcode.ArgumentNull, "methodName is required")
	}
	if len(name) > MaxNameLength {
		return errcode.New(errcode.ArgumentInvalid, "methodName is %d bytes long; the limit is %d", len(name), MaxNameLength)
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if b <= ' ' || b > '~' || bytes.IndexByte([]byte(forbidden), b) >= 0 {
			shown := name
			if len(shown) > 64 {
				shown = shown[:64] + "..."
			}
			return errcode.New(errcode.ArgumentInvalid,
				"methodName '%s' holds %s: method names are printable US-ASCII without spaces, quotes, semicolons, backslashes or any of $()<>@,:/[]?={}",
				shown, describe(b))
		}
	}
	return nil
}
