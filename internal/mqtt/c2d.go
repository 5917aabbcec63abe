package mqtt

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/roost-iot/roost/internal/c2d"
	"github.com/roost-iot/roost/internal/engine"
)

// Cloud-to-device delivery (spec/device-protocol.md §3, §4.1, §8). Once a device subscribes to
// devices/{id}/messages/devicebound/#, the connection opens a c2d.Session: the node's C2D
// workers push the device's messages as PUBLISH packets at QoS 1 (0 if the device subscribed at
// QoS 0), each with a packet id of its own; the device's PUBACK completes the message. A message
// whose lock runs out is sent again with the same packet id and the DUP flag. MQTT has no way to
// reject or abandon.

// c2dState is a connection's cloud-to-device state: the session, and which packet id carries
// which message. The read loop starts and stops it; the C2D workers deliver through it.
type c2dState struct {
	sess  atomic.Pointer[c2d.Session]
	qos   atomic.Uint32
	count int // sessions opened on this connection, to name each one's locks apart

	mu   sync.Mutex
	ids  map[uint16]uint64 // packet id -> message sequence number
	seqs map[uint64]uint16 // the reverse
	next uint16
}

// startC2D begins delivering the device's cloud-to-device queue.
func (c *conn) startC2D() error {
	svc := c.s.cfg.C2D
	if svc == nil || c.c2.sess.Load() != nil {
		return nil
	}
	filter := "devices/" + c.id.DeviceID + "/messages/devicebound/#"
	c.c2.qos.Store(uint32(c.subs[filter]))
	c.c2.count++
	c.c2.mu.Lock()
	if c.c2.ids == nil {
		c.c2.ids, c.c2.seqs = map[uint16]uint64{}, map[uint64]uint16{}
	}
	c.c2.mu.Unlock()
	// Listen before the session reads the queue, so that no message falls in between.
	if err := c.listen(c2d.NotifyKind); err != nil {
		return err
	}
	c.c2.sess.Store(svc.OpenSession(c2d.SessionConfig{
		DeviceID: c.id.DeviceID,
		ConnID:   c.connID + "." + strconv.Itoa(c.c2.count),
		Protocol: c.protocol,
		Deliver:  c.deliverC2D,
	}))
	return nil
}

// stopC2D ends delivery when the device unsubscribes; its locked messages return to the queue.
func (c *conn) stopC2D() {
	if ss := c.c2.sess.Swap(nil); ss != nil {
		ss.Close()
	}
}

// onC2DNotify learns that a message was queued for the device. It runs on the dispatcher
// goroutine and does not block.
func (c *conn) onC2DNotify(in engine.Inbound) {
	if ss := c.c2.sess.Load(); ss != nil {
		ss.Notify(engine.AnnouncedSeq(in))
	}
}

// onPuback completes the cloud-to-device message delivered with packet id. An id the hub did
// not send (or sent to a session that has ended) is ignored.
func (c *conn) onPuback(id uint16) error {
	c.c2.mu.Lock()
	seq, ok := c.c2.ids[id]
	if ok {
		delete(c.c2.ids, id)
		delete(c.c2.seqs, seq)
	}
	c.c2.mu.Unlock()
	if ss := c.c2.sess.Load(); ok && ss != nil {
		ss.Complete(seq)
	}
	return nil
}

// closeC2D releases the connection's locks on cloud-to-device messages.
func (c *conn) closeC2D() { c.stopC2D() }

// deliverC2D hands one message to the write loop without blocking (it runs on a C2D worker); it
// returns false when the write queue is full.
func (c *conn) deliverC2D(d *c2d.Delivery) bool {
	if c.ctx.Err() != nil {
		return true // the connection is ending; the session is about to close
	}
	qos := byte(c.c2.qos.Load())
	var id uint16
	dup := false
	if qos > 0 {
		c.c2.mu.Lock()
		id, dup = c.c2.seqs[d.SequenceNumber]
		if !dup {
			id = c.c2.allocID()
			c.c2.ids[id], c.c2.seqs[d.SequenceNumber] = d.SequenceNumber, id
		}
		c.c2.mu.Unlock()
	}
	pkt := appendPublish(nil, c2dTopic(c.id.DeviceID, d), qos, id, d.Body)
	if dup {
		pkt[0] |= 0x08 // DUP: the same message again [MQTT-3.3.1-1]
	}
	if !c.tryEnqueue(outItem{data: pkt}) {
		if !dup && qos > 0 {
			c.c2.mu.Lock()
			delete(c.c2.ids, id)
			delete(c.c2.seqs, d.SequenceNumber)
			c.c2.mu.Unlock()
		}
		return false
	}
	if qos == 0 {
		// At QoS 0 the device never acknowledges: the message is done once it is sent.
		if ss := c.c2.sess.Load(); ss != nil {
			ss.Complete(d.SequenceNumber)
		}
	}
	return true
}

// allocID returns a packet id not in use by an unacknowledged message. Callers hold c2.mu.
func (s *c2dState) allocID() uint16 {
	for {
		s.next++
		if s.next == 0 {
			s.next = 1
		}
		if _, used := s.ids[s.next]; !used {
			return s.next
		}
	}
}

// c2dTopic is the topic a message is delivered on: devices/{id}/messages/devicebound/ followed
// directly by the property bag, with no '?' (the SDKs' parsers take everything after the fifth
// '/'). Application properties come first, then the system properties as %24.<name>, which is
// how the C SDK matches them; every key and value is percent-encoded, so '/', '&', '=' and '%'
// never appear raw. Every key has a value (key=).
func c2dTopic(deviceID string, d *c2d.Delivery) string {
	var b strings.Builder
	b.Grow(64 + len(deviceID) + len(d.MessageID) + len(d.To))
	b.WriteString("devices/")
	b.WriteString(deviceID)
	b.WriteString("/messages/devicebound/")
	first := true
	add := func(key, value string) {
		if !first {
			b.WriteByte('&')
		}
		first = false
		b.WriteString(key)
		b.WriteByte('=')
		escapeBag(&b, value)
	}
	for _, p := range d.Properties {
		var k strings.Builder
		escapeBag(&k, p.Name)
		add(k.String(), p.Value)
	}
	add("%24.mid", d.MessageID)
	add("%24.to", d.To)
	if d.CorrelationID != "" {
		add("%24.cid", d.CorrelationID)
	}
	if d.UserID != "" {
		add("%24.uid", d.UserID)
	}
	if d.ContentType != "" {
		add("%24.ct", d.ContentType)
	}
	if d.ContentEncoding != "" {
		add("%24.ce", d.ContentEncoding)
	}
	if d.ExpirySet {
		add("%24.exp", c2d.FormatTime(d.Expiry))
	}
	if d.Ack != c2d.AckNone && d.Ack != "" {
		add("iothub-ack", string(d.Ack))
	}
	return b.String()
}

// escapeBag percent-encodes everything but the unreserved characters of RFC 3986.
func escapeBag(b *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '.' || ch == '_' || ch == '~' {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[ch>>4])
		b.WriteByte(hex[ch&15])
	}
}
