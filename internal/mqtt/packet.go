package mqtt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Packet types of MQTT 3.1.1 (section 2.2.1).
const (
	typeConnect     = 1
	typeConnack     = 2
	typePublish     = 3
	typePuback      = 4
	typePubrec      = 5
	typePubrel      = 6
	typePubcomp     = 7
	typeSubscribe   = 8
	typeSuback      = 9
	typeUnsubscribe = 10
	typeUnsuback    = 11
	typePingreq     = 12
	typePingresp    = 13
	typeDisconnect  = 14
)

// CONNACK return codes (section 3.2.2.3).
const (
	connAccepted             = 0
	connRefusedProtocol      = 1
	connRefusedIdentifier    = 2
	connRefusedUnavailable   = 3
	connRefusedBadCredential = 4
	connRefusedNotAuthorized = 5
)

// errMalformed means the bytes are not a valid MQTT 3.1.1 packet.
var errMalformed = errors.New("malformed packet")

// errTooLarge means a packet's remaining length is over the limit.
var errTooLarge = errors.New("packet too large")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
}

// smallReader buffers a connection's input in a few dozen bytes: TLS already buffers whole
// records, and an idle connection should cost as little memory as possible.
type smallReader struct {
	rd   io.Reader
	buf  [64]byte
	r, w int
}

func (s *smallReader) ReadByte() (byte, error) {
	if s.r == s.w {
		n, err := s.rd.Read(s.buf[:])
		if n == 0 {
			if err == nil {
				err = io.ErrNoProgress
			}
			return 0, err
		}
		s.r, s.w = 0, n
	}
	b := s.buf[s.r]
	s.r++
	return b, nil
}

func (s *smallReader) Read(p []byte) (int, error) {
	if s.r < s.w {
		n := copy(p, s.buf[s.r:s.w])
		s.r += n
		return n, nil
	}
	return s.rd.Read(p)
}

// header is a packet's fixed header.
type header struct {
	typ    byte
	flags  byte
	length int // remaining length
}

// readHeader reads a fixed header. Remaining lengths over max fail with errTooLarge before any
// body is read, so a hostile length never makes the server allocate.
func readHeader(r io.ByteReader, max int) (header, error) {
	b, err := r.ReadByte()
	if err != nil {
		return header{}, err
	}
	h := header{typ: b >> 4, flags: b & 0x0F}
	mult := 1
	for i := 0; ; i++ {
		if i == 4 {
			return header{}, malformed("remaining length longer than 4 bytes") // [MQTT-2.2.3]
		}
		c, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return header{}, io.ErrUnexpectedEOF
			}
			return header{}, err
		}
		h.length += int(c&0x7F) * mult
		if c&0x80 == 0 {
			break
		}
		mult *= 128
	}
	if h.length > max {
		return header{}, fmt.Errorf("%w: %d bytes", errTooLarge, h.length)
	}
	// Fixed flag values for every type but PUBLISH [MQTT-2.2.2-1].
	switch h.typ {
	case typePublish:
		if (h.flags>>1)&3 == 3 {
			return header{}, malformed("PUBLISH with QoS 3") // [MQTT-3.3.1-4]
		}
	case typePubrel, typeSubscribe, typeUnsubscribe:
		if h.flags != 2 {
			return header{}, malformed("packet type %d with flags %x", h.typ, h.flags)
		}
	case 0, 15:
		return header{}, malformed("reserved packet type %d", h.typ)
	default:
		if h.flags != 0 {
			return header{}, malformed("packet type %d with flags %x", h.typ, h.flags)
		}
	}
	return h, nil
}

// reader decodes the fields of one packet body.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) u8() byte {
	if r.err != nil || r.off >= len(r.b) {
		r.fail()
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *reader) u16() uint16 {
	if r.err != nil || r.off+2 > len(r.b) {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v
}

func (r *reader) bytes() []byte {
	n := int(r.u16())
	if r.err != nil || r.off+n > len(r.b) {
		r.fail()
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

// str reads a UTF-8 string; MQTT forbids invalid UTF-8 and U+0000 [MQTT-1.5.3-1] [MQTT-1.5.3-2].
func (r *reader) str() string {
	b := r.bytes()
	if r.err != nil {
		return ""
	}
	if !utf8.Valid(b) {
		r.err = malformed("string is not valid UTF-8")
		return ""
	}
	for _, c := range b {
		if c == 0 {
			r.err = malformed("string holds U+0000")
			return ""
		}
	}
	return string(b)
}

func (r *reader) rest() []byte {
	if r.err != nil {
		return nil
	}
	v := r.b[r.off:]
	r.off = len(r.b)
	return v
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = malformed("packet ends early")
	}
}

// connect is a decoded CONNECT packet.
type connect struct {
	protocolName  string
	protocolLevel byte
	cleanSession  bool
	keepAlive     uint16 // seconds
	clientID      string
	willFlag      bool
	willQoS       byte
	willRetain    bool
	willTopic     string
	willPayload   []byte
	username      string
	hasUsername   bool
	password      []byte
	hasPassword   bool
}

// decodeConnect decodes a CONNECT body (section 3.1). A wrong protocol name or level is not an
// error here: the caller answers it with CONNACK 1.
func decodeConnect(b []byte) (connect, error) {
	r := reader{b: b}
	var c connect
	c.protocolName = string(r.bytes())
	c.protocolLevel = r.u8()
	flags := r.u8()
	c.keepAlive = r.u16()
	if r.err != nil {
		return c, r.err
	}
	if c.protocolName != "MQTT" || c.protocolLevel != 4 {
		return c, nil
	}
	if flags&1 != 0 {
		return c, malformed("CONNECT reserved flag set") // [MQTT-3.1.2-3]
	}
	c.cleanSession = flags&0x02 != 0
	c.willFlag = flags&0x04 != 0
	c.willQoS = (flags >> 3) & 3
	c.willRetain = flags&0x20 != 0
	c.hasPassword = flags&0x40 != 0
	c.hasUsername = flags&0x80 != 0
	if !c.willFlag && (c.willQoS != 0 || c.willRetain) {
		return c, malformed("will QoS or retain without a will") // [MQTT-3.1.2-13] [MQTT-3.1.2-15]
	}
	if c.willQoS == 3 {
		return c, malformed("will QoS 3") // [MQTT-3.1.2-14]
	}
	if c.hasPassword && !c.hasUsername {
		return c, malformed("password without user name") // [MQTT-3.1.2-22]
	}
	c.clientID = r.str()
	if c.willFlag {
		c.willTopic = r.str()
		c.willPayload = r.bytes()
	}
	if c.hasUsername {
		c.username = r.str()
	}
	if c.hasPassword {
		c.password = r.bytes()
	}
	if r.err != nil {
		return c, r.err
	}
	if r.off != len(r.b) {
		return c, malformed("CONNECT has %d trailing bytes", len(r.b)-r.off)
	}
	return c, nil
}

// publish is a decoded PUBLISH packet.
type publish struct {
	topic    string
	packetID uint16
	qos      byte
	retain   bool
	dup      bool
	payload  []byte
}

func decodePublish(h header, b []byte) (publish, error) {
	r := reader{b: b}
	p := publish{qos: (h.flags >> 1) & 3, retain: h.flags&1 != 0, dup: h.flags&8 != 0}
	p.topic = r.str()
	if p.qos > 0 {
		p.packetID = r.u16()
		if r.err == nil && p.packetID == 0 {
			return p, malformed("PUBLISH with packet id 0") // [MQTT-2.3.1-1]
		}
	} else if p.dup {
		return p, malformed("DUP set on a QoS 0 PUBLISH") // [MQTT-3.3.1-2]
	}
	p.payload = r.rest()
	if r.err != nil {
		return p, r.err
	}
	if p.topic == "" {
		return p, malformed("PUBLISH with an empty topic") // [MQTT-4.7.3-1]
	}
	for i := 0; i < len(p.topic); i++ {
		if p.topic[i] == '+' || p.topic[i] == '#' {
			return p, malformed("PUBLISH topic holds a wildcard") // [MQTT-3.3.2-2]
		}
	}
	return p, nil
}

// subscription is one topic filter of a SUBSCRIBE.
type subscription struct {
	filter string
	qos    byte
}

func decodeSubscribe(b []byte) (uint16, []subscription, error) {
	r := reader{b: b}
	id := r.u16()
	if r.err == nil && id == 0 {
		return 0, nil, malformed("SUBSCRIBE with packet id 0")
	}
	var subs []subscription
	for r.err == nil && r.off < len(r.b) {
		f := r.str()
		q := r.u8()
		if r.err != nil {
			break
		}
		if q&0xFC != 0 {
			return 0, nil, malformed("SUBSCRIBE options reserved bits set") // [MQTT-3.8.3-4]
		}
		if f == "" {
			return 0, nil, malformed("empty topic filter") // [MQTT-4.7.3-1]
		}
		subs = append(subs, subscription{filter: f, qos: q})
	}
	if r.err != nil {
		return 0, nil, r.err
	}
	if len(subs) == 0 {
		return 0, nil, malformed("SUBSCRIBE without filters") // [MQTT-3.8.3-3]
	}
	return id, subs, nil
}

func decodeUnsubscribe(b []byte) (uint16, []string, error) {
	r := reader{b: b}
	id := r.u16()
	var filters []string
	for r.err == nil && r.off < len(r.b) {
		filters = append(filters, r.str())
	}
	if r.err != nil {
		return 0, nil, r.err
	}
	if len(filters) == 0 {
		return 0, nil, malformed("UNSUBSCRIBE without filters") // [MQTT-3.10.3-2]
	}
	return id, filters, nil
}

// decodeAck decodes the packet id of a PUBACK (and the other two-byte acks).
func decodeAck(b []byte) (uint16, error) {
	if len(b) != 2 {
		return 0, malformed("ack of %d bytes", len(b))
	}
	return binary.BigEndian.Uint16(b), nil
}

// appendLength appends a remaining length.
func appendLength(dst []byte, n int) []byte {
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		dst = append(dst, c)
		if n == 0 {
			return dst
		}
	}
}

func appendConnack(dst []byte, sessionPresent bool, code byte) []byte {
	sp := byte(0)
	if sessionPresent {
		sp = 1
	}
	return append(dst, typeConnack<<4, 2, sp, code)
}

func appendAck(dst []byte, typ byte, id uint16) []byte {
	return append(dst, typ<<4, 2, byte(id>>8), byte(id))
}

func appendSuback(dst []byte, id uint16, codes []byte) []byte {
	dst = append(dst, typeSuback<<4)
	dst = appendLength(dst, 2+len(codes))
	dst = append(dst, byte(id>>8), byte(id))
	return append(dst, codes...)
}

func appendPublish(dst []byte, topic string, qos byte, id uint16, payload []byte) []byte {
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	dst = append(dst, typePublish<<4|qos<<1)
	dst = appendLength(dst, n)
	dst = append(dst, byte(len(topic)>>8), byte(len(topic)))
	dst = append(dst, topic...)
	if qos > 0 {
		dst = append(dst, byte(id>>8), byte(id))
	}
	return append(dst, payload...)
}
