package c2d

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/roost-iot/roost/internal/errcode"
)

// Limits IoT Hub puts on cloud-to-device messages
// (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling#other-limits).
const (
	// MaxMessageSize is the largest message, in bytes, as [Size] counts it.
	MaxMessageSize = 64 * 1024
	// MaxQueueDepth is how many messages a device's queue holds; one more is refused with
	// 403004 DeviceMaximumQueueDepthExceeded.
	MaxQueueDepth = 50
	// MaxTTL is the longest a message may wait, whatever the hub's default or the message's
	// own expiry say.
	MaxTTL = 48 * time.Hour
	// MinDefaultTTL is the shortest default time to live a hub may be configured with.
	MinDefaultTTL = time.Minute
	// LockDuration is how long a delivered message stays invisible (locked) before it returns to
	// the queue. IoT Hub fixes it at one minute.
	LockDuration = time.Minute
	// maxIDLength bounds message and correlation ids.
	maxIDLength = 128
)

// Ack says which outcomes of a message its sender wants to hear about as feedback.
type Ack string

// The values of iothub-ack.
const (
	AckNone     Ack = "none"
	AckPositive Ack = "positive" // completed
	AckNegative Ack = "negative" // dead-lettered: rejected, expired, delivery count exceeded, purged
	AckFull     Ack = "full"     // both
)

// ParseAck reads an iothub-ack value in any case; empty means none.
func ParseAck(s string) (Ack, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "none":
		return AckNone, nil
	case "positive":
		return AckPositive, nil
	case "negative":
		return AckNegative, nil
	case "full":
		return AckFull, nil
	}
	return "", errcode.New(errcode.ArgumentInvalid, "iothub-ack '%s' is not none, positive, negative or full", printable(s))
}

func (a Ack) wantsSuccess() bool { return a == AckPositive || a == AckFull }
func (a Ack) wantsFailure() bool { return a == AckNegative || a == AckFull }

// LogName is how C2DCommands records name the acknowledgement (deliveryAcknowledgement).
func (a Ack) LogName() string {
	switch a {
	case AckPositive:
		return "PositiveOnly"
	case AckNegative:
		return "NegativeOnly"
	case AckFull:
		return "Full"
	}
	return "None"
}

// Property is one application property.
type Property struct{ Name, Value string }

// Message is a cloud-to-device message: what the sender set, and what the hub stamps on it.
type Message struct {
	// System properties the sender may set.
	MessageID, CorrelationID, UserID, ContentType, ContentEncoding string
	// Ack is the feedback the sender asked for.
	Ack Ack
	// Expiry is when the message expires. Zero on [Service.Send] means the hub's default time
	// to live from now; once sent it is always set.
	Expiry time.Time
	// Properties are the application properties, in order. Names may repeat.
	Properties []Property
	Body       []byte

	// Set by the hub.

	// DeviceID is the device the message is for; To is its address, /devices/{id}/messages/deviceBound.
	DeviceID, To string
	// EnqueuedTime is when the hub accepted the message.
	EnqueuedTime time.Time
	// SequenceNumber orders a device's messages; it is unique in the hub and never reused.
	SequenceNumber uint64
	// GenerationID is the device's generationId when the message was sent.
	GenerationID string
	// ExpirySet reports whether the sender gave Expiry (true) or the hub's default applied.
	ExpirySet bool
}

// timeSize is what a date-time system property counts toward [Size].
const timeSize = 24

// Size returns a message's size as counted against [MaxMessageSize]: the body, the system
// property values the sender set, and application property names and values.
func Size(m *Message) int {
	n := len(m.Body) + len(m.MessageID) + len(m.CorrelationID) + len(m.UserID) + len(m.ContentType) + len(m.ContentEncoding)
	if m.ExpirySet {
		n += timeSize
	}
	for _, p := range m.Properties {
		n += len(p.Name) + len(p.Value)
	}
	return n
}

// validate checks what a sender set against IoT Hub's rules. now is the time of sending.
func validate(m *Message, now time.Time) error {
	if size := Size(m); size > MaxMessageSize {
		return errcode.New(errcode.MessageTooLarge, "the message is %d bytes (body, system property values, application property names and values); the limit is %d", size, MaxMessageSize)
	}
	if err := checkID("message id", m.MessageID); err != nil {
		return err
	}
	if len(m.CorrelationID) > maxIDLength || !printableASCII(m.CorrelationID) {
		return errcode.New(errcode.ArgumentInvalid, "the correlation id must be at most %d printable ASCII characters", maxIDLength)
	}
	for _, v := range []struct{ name, val string }{{"user id", m.UserID}, {"content type", m.ContentType}, {"content encoding", m.ContentEncoding}} {
		if len(v.val) > maxIDLength || !printableASCII(v.val) {
			return errcode.New(errcode.ArgumentInvalid, "the %s must be at most %d printable ASCII characters", v.name, maxIDLength)
		}
	}
	if _, err := ParseAck(string(m.Ack)); err != nil {
		return err
	}
	for _, p := range m.Properties {
		if err := checkPropertyName(p.Name); err != nil {
			return err
		}
		if !utf8.ValidString(p.Value) || strings.ContainsFunc(p.Value, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return errcode.New(errcode.ArgumentInvalid, "the value of application property '%s' holds control characters or is not UTF-8", printable(p.Name))
		}
	}
	if !m.Expiry.IsZero() {
		if !m.Expiry.After(now) {
			return errcode.New(errcode.InvalidMessageExpiryTime, "the expiry time %s is not in the future", m.Expiry.UTC().Format(time.RFC3339))
		}
		if m.Expiry.Sub(now) > MaxTTL {
			return errcode.New(errcode.InvalidMessageExpiryTime, "the expiry time %s is more than %s away; a message may wait at most two days", m.Expiry.UTC().Format(time.RFC3339), MaxTTL)
		}
	}
	return nil
}

// checkID applies IoT Hub's rule for message ids: at most 128 ASCII letters, digits and
// - : . + % _ # * ? ! ( ) , = @ ; $ '.
func checkID(what, id string) error {
	if len(id) > maxIDLength {
		return errcode.New(errcode.ArgumentInvalid, "the %s is longer than %d characters", what, maxIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-:.+%_#*?!(),=@;$'", c) >= 0) {
			return errcode.New(errcode.ArgumentInvalid, "the %s '%s' may contain only ASCII letters, digits and - : . + %% _ # * ? ! ( ) , = @ ; $ '", what, printable(id))
		}
	}
	return nil
}

// checkPropertyName accepts the names an HTTP header can carry (RFC 7230 token characters), the
// rule IoT Hub applies to properties over HTTPS, except the prefixes of system properties ($. and
// iothub-), which a device would read as such.
func checkPropertyName(name string) error {
	if name == "" {
		return errcode.New(errcode.ArgumentInvalid, "an application property has an empty name")
	}
	if strings.HasPrefix(name, "$.") || len(name) >= 7 && strings.EqualFold(name[:7], "iothub-") {
		return errcode.New(errcode.ArgumentInvalid, "application property name '%s' is reserved: names starting with $. or iothub- are system properties", printable(name))
	}
	if len(name) > 256 {
		return errcode.New(errcode.ArgumentInvalid, "application property name '%s...' is longer than 256 characters", printable(name[:32]))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return errcode.New(errcode.ArgumentInvalid, "application property name '%s' may contain only ASCII letters, digits and ! # $ %% & ' * + - . ^ _ ` | ~", printable(name))
		}
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// printable makes untrusted text safe inside an error message.
func printable(s string) string {
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == ';' || r == utf8.RuneError {
			return '?'
		}
		return r
	}, s)
}

// newGUID returns a random version 4 UUID in its usual text form.
func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatGUID(b)
}

func formatGUID(b [16]byte) string {
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}

// errBadToken means a lock token is not one the hub handed out.
var errBadToken = errors.New("malformed lock token")

// parseGUID reads a GUID in the form formatGUID writes (any case).
func parseGUID(s string) ([16]byte, error) {
	var b [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return b, errBadToken
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(b[:], []byte(h)); err != nil {
		return b, errBadToken
	}
	return b, nil
}

// lockToken is the lock of one delivery: the message's sequence number and a random nonce that
// only the current holder knows. On the wire it is a GUID: 8 bytes of sequence, 8 of nonce.
type lockToken struct {
	seq   uint64
	nonce string // 16 hex digits
}

func (t lockToken) String() string {
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(t.seq >> (56 - 8*i))
	}
	_, _ = hex.Decode(b[8:], []byte(t.nonce))
	return formatGUID(b)
}

// parseLockToken reads a token made by lockToken.String.
func parseLockToken(s string) (lockToken, error) {
	b, err := parseGUID(strings.TrimSpace(s))
	if err != nil {
		return lockToken{}, err
	}
	var seq uint64
	for i := 0; i < 8; i++ {
		seq = seq<<8 | uint64(b[i])
	}
	if seq == 0 {
		return lockToken{}, errBadToken
	}
	return lockToken{seq: seq, nonce: hex.EncodeToString(b[8:])}, nil
}

func newNonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// envelope is how a message is stored: a JSON line of metadata, a newline, then the body.
type envelope struct {
	MessageID       string      `json:"mid,omitempty"`
	CorrelationID   string      `json:"cid,omitempty"`
	UserID          string      `json:"uid,omitempty"`
	ContentType     string      `json:"ct,omitempty"`
	ContentEncoding string      `json:"ce,omitempty"`
	Ack             Ack         `json:"ack,omitempty"`
	Expiry          int64       `json:"exp"` // unix milliseconds
	ExpirySet       bool        `json:"xs,omitempty"`
	Enqueued        int64       `json:"enq"` // unix milliseconds
	GenerationID    string      `json:"gen,omitempty"`
	Properties      [][2]string `json:"p,omitempty"`
}

func encode(m *Message) []byte {
	env := envelope{
		MessageID: m.MessageID, CorrelationID: m.CorrelationID, UserID: m.UserID,
		ContentType: m.ContentType, ContentEncoding: m.ContentEncoding, Ack: m.Ack,
		Expiry: m.Expiry.UnixMilli(), ExpirySet: m.ExpirySet, Enqueued: m.EnqueuedTime.UnixMilli(),
		GenerationID: m.GenerationID,
	}
	if env.Ack == AckNone {
		env.Ack = ""
	}
	for _, p := range m.Properties {
		env.Properties = append(env.Properties, [2]string{p.Name, p.Value})
	}
	// JSON escapes control characters, so the metadata holds no newline; with HTML escaping off
	// it is at most twice the size of the properties.
	var buf bytes.Buffer
	buf.Grow(256 + len(m.Body))
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(env) // ends with the newline that separates the body
	buf.Write(m.Body)
	return buf.Bytes()
}

// decode reverses encode for the message stored at seq for deviceID.
func decode(deviceID string, seq uint64, data []byte) (*Message, error) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		return nil, errors.New("c2d: stored message has no metadata")
	}
	var env envelope
	if err := json.Unmarshal(data[:i], &env); err != nil {
		return nil, err
	}
	m := &Message{
		MessageID: env.MessageID, CorrelationID: env.CorrelationID, UserID: env.UserID,
		ContentType: env.ContentType, ContentEncoding: env.ContentEncoding, Ack: env.Ack,
		Expiry: time.UnixMilli(env.Expiry).UTC(), ExpirySet: env.ExpirySet,
		EnqueuedTime: time.UnixMilli(env.Enqueued).UTC(), GenerationID: env.GenerationID,
		Body: data[i+1:], DeviceID: deviceID, To: toAddress(deviceID), SequenceNumber: seq,
	}
	if m.Ack == "" {
		m.Ack = AckNone
	}
	for _, p := range env.Properties {
		m.Properties = append(m.Properties, Property{Name: p[0], Value: p[1]})
	}
	return m, nil
}

// toAddress is a message's "to" system property.
func toAddress(deviceID string) string { return "/devices/" + deviceID + "/messages/deviceBound" }

// FormatTime writes a time as .NET's round-trip format ("o") in UTC, with seven fractional
// digits: what the C# SDK parses exactly and what IoT Hub writes in its headers.
func FormatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.0000000Z")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
