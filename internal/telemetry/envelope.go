package telemetry

import (
	"encoding/binary"
	"errors"
	"time"
)

// The stored form of a message:
//
//	version   1 byte (envelopeV1)
//	hdrLen    uvarint: the length of the header
//	header    fields, each: tag (1 byte), uvarint length, value
//	body      the rest
//
// Strings are UTF-8 or raw bytes, as received. Times are 12 bytes: seconds since 1970 (int64,
// big-endian) then nanoseconds (uint32, big-endian). A property's value is uvarint(len(name)),
// name, value. Empty strings and zero times are left out. Decoders skip tags they do not know, so
// fields can be added without a new version; a change of meaning needs a new version byte.
const envelopeV1 = 1

// Field tags. Never reuse a number.
const (
	tagDeviceID         = 1
	tagModuleID         = 2
	tagMessageID        = 3
	tagCorrelationID    = 4
	tagUserID           = 5
	tagTo               = 6
	tagContentType      = 7
	tagContentEncoding  = 8
	tagOutputName       = 9
	tagInterfaceID      = 10
	tagComponentName    = 11
	tagMessageSchema    = 12
	tagCreationTime     = 13
	tagExpiry           = 14
	tagProperty         = 15
	tagAuthMethod       = 16
	tagAuthGenerationID = 17
	tagProtocol         = 18
	tagEnqueuedTime     = 19
)

const timeLen = 12

// ErrCorrupt means stored bytes are not a message envelope.
var ErrCorrupt = errors.New("telemetry: corrupt message envelope")

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func strFieldLen(s string) int {
	if s == "" {
		return 0
	}
	return 1 + uvarintLen(uint64(len(s))) + len(s)
}

func timeFieldLen(t time.Time) int {
	if t.IsZero() {
		return 0
	}
	return 1 + 1 + timeLen
}

func headerLen(m *Message) int {
	n := strFieldLen(m.DeviceID) + strFieldLen(m.ModuleID) +
		strFieldLen(m.MessageID) + strFieldLen(m.CorrelationID) + strFieldLen(m.UserID) +
		strFieldLen(m.To) + strFieldLen(m.ContentType) + strFieldLen(m.ContentEncoding) +
		strFieldLen(m.OutputName) + strFieldLen(m.InterfaceID) + strFieldLen(m.ComponentName) +
		strFieldLen(m.MessageSchema) + timeFieldLen(m.CreationTime) + timeFieldLen(m.Expiry) +
		strFieldLen(m.AuthMethod) + strFieldLen(m.AuthGenerationID) + strFieldLen(m.Protocol) +
		timeFieldLen(m.EnqueuedTime)
	for _, p := range m.Properties {
		v := uvarintLen(uint64(len(p.Name))) + len(p.Name) + len(p.Value)
		n += 1 + uvarintLen(uint64(v)) + v
	}
	return n
}

// Encode returns the stored form of m, in one allocation. Partition and SequenceNumber are not
// stored: they are where the message is, not what it is.
func Encode(m *Message) []byte {
	h := headerLen(m)
	b := make([]byte, 0, 1+uvarintLen(uint64(h))+h+len(m.Body))
	b = append(b, envelopeV1)
	b = binary.AppendUvarint(b, uint64(h))
	b = appendStr(b, tagDeviceID, m.DeviceID)
	b = appendStr(b, tagModuleID, m.ModuleID)
	b = appendStr(b, tagMessageID, m.MessageID)
	b = appendStr(b, tagCorrelationID, m.CorrelationID)
	b = appendStr(b, tagUserID, m.UserID)
	b = appendStr(b, tagTo, m.To)
	b = appendStr(b, tagContentType, m.ContentType)
	b = appendStr(b, tagContentEncoding, m.ContentEncoding)
	b = appendStr(b, tagOutputName, m.OutputName)
	b = appendStr(b, tagInterfaceID, m.InterfaceID)
	b = appendStr(b, tagComponentName, m.ComponentName)
	b = appendStr(b, tagMessageSchema, m.MessageSchema)
	b = appendTime(b, tagCreationTime, m.CreationTime)
	b = appendTime(b, tagExpiry, m.Expiry)
	for _, p := range m.Properties {
		v := uvarintLen(uint64(len(p.Name))) + len(p.Name) + len(p.Value)
		b = append(b, tagProperty)
		b = binary.AppendUvarint(b, uint64(v))
		b = binary.AppendUvarint(b, uint64(len(p.Name)))
		b = append(b, p.Name...)
		b = append(b, p.Value...)
	}
	b = appendStr(b, tagAuthMethod, m.AuthMethod)
	b = appendStr(b, tagAuthGenerationID, m.AuthGenerationID)
	b = appendStr(b, tagProtocol, m.Protocol)
	b = appendTime(b, tagEnqueuedTime, m.EnqueuedTime)
	return append(b, m.Body...)
}

func appendStr(b []byte, tag byte, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, tag)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, tag byte, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = append(b, tag, timeLen)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

// Decode fills m from an envelope made by [Encode]. m.Body shares data's memory; every string
// shares one copy of the header. Fields not in the envelope are left zero. It returns an error
// wrapping [ErrCorrupt], and never panics, on any input that is not an envelope.
func Decode(data []byte, m *Message) error {
	if len(data) < 2 || data[0] != envelopeV1 {
		return ErrCorrupt
	}
	h, n := binary.Uvarint(data[1:])
	if n <= 0 || h > uint64(len(data)-1-n) {
		return ErrCorrupt
	}
	start := 1 + n
	hdr := string(data[start : start+int(h)])
	body := data[start+int(h):]

	// First pass: check the framing and count the properties, so the slice is allocated once.
	props := 0
	for i := 0; i < len(hdr); {
		tag, v, next, ok := field(hdr, i)
		if !ok {
			return ErrCorrupt
		}
		if tag == tagProperty {
			if _, _, ok := splitProperty(v); !ok {
				return ErrCorrupt
			}
			props++
		}
		i = next
	}
	*m = Message{}
	if len(body) > 0 {
		m.Body = body
	}
	if props > 0 {
		m.Properties = make([]Property, 0, props)
	}
	for i := 0; i < len(hdr); {
		tag, v, next, _ := field(hdr, i)
		i = next
		switch tag {
		case tagDeviceID:
			m.DeviceID = v
		case tagModuleID:
			m.ModuleID = v
		case tagMessageID:
			m.MessageID = v
		case tagCorrelationID:
			m.CorrelationID = v
		case tagUserID:
			m.UserID = v
		case tagTo:
			m.To = v
		case tagContentType:
			m.ContentType = v
		case tagContentEncoding:
			m.ContentEncoding = v
		case tagOutputName:
			m.OutputName = v
		case tagInterfaceID:
			m.InterfaceID = v
		case tagComponentName:
			m.ComponentName = v
		case tagMessageSchema:
			m.MessageSchema = v
		case tagAuthMethod:
			m.AuthMethod = v
		case tagAuthGenerationID:
			m.AuthGenerationID = v
		case tagProtocol:
			m.Protocol = v
		case tagProperty:
			name, value, _ := splitProperty(v)
			m.Properties = append(m.Properties, Property{Name: name, Value: value})
		case tagCreationTime, tagExpiry, tagEnqueuedTime:
			t, ok := decodeTime(v)
			if !ok {
				return ErrCorrupt
			}
			switch tag {
			case tagCreationTime:
				m.CreationTime = t
			case tagExpiry:
				m.Expiry = t
			default:
				m.EnqueuedTime = t
			}
		}
	}
	return nil
}

// field reads the field at s[i:]: its tag, its value and where the next field starts.
func field(s string, i int) (tag byte, v string, next int, ok bool) {
	if i >= len(s) {
		return 0, "", 0, false
	}
	tag = s[i]
	l, n := uvarintString(s, i+1)
	if n <= 0 {
		return 0, "", 0, false
	}
	start := i + 1 + n
	if l > uint64(len(s)-start) {
		return 0, "", 0, false
	}
	end := start + int(l)
	return tag, s[start:end], end, true
}

func splitProperty(v string) (name, value string, ok bool) {
	l, n := uvarintString(v, 0)
	if n <= 0 || l > uint64(len(v)-n) {
		return "", "", false
	}
	return v[n : n+int(l)], v[n+int(l):], true
}

// uvarintString is binary.Uvarint over s[i:], without converting s to bytes.
func uvarintString(s string, i int) (uint64, int) {
	var x uint64
	var shift uint
	for j := 0; j < binary.MaxVarintLen64; j++ {
		if i+j >= len(s) {
			return 0, 0
		}
		c := s[i+j]
		if c < 0x80 {
			if j == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -(j + 1) // overflow
			}
			return x | uint64(c)<<shift, j + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, -binary.MaxVarintLen64
}

func decodeTime(v string) (time.Time, bool) {
	if len(v) != timeLen {
		return time.Time{}, false
	}
	var sec uint64
	for i := 0; i < 8; i++ {
		sec = sec<<8 | uint64(v[i])
	}
	var nsec uint32
	for i := 8; i < 12; i++ {
		nsec = nsec<<8 | uint32(v[i])
	}
	if nsec >= 1e9 {
		return time.Time{}, false
	}
	return time.Unix(int64(sec), int64(nsec)).UTC(), true
}
