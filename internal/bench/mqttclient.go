package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// This file is the load generator's MQTT 3.1.1 client: just enough of the protocol to connect,
// publish QoS 1 with a window of unacknowledged messages, match PUBACKs and ping. It is written
// for the generator's own cost, not for generality: a PUBLISH is encoded once per connection
// and only its packet id is patched for each message, and nothing on the publish path
// allocates, so that on a small machine the hub, not the generator, gets the CPU.

// Packet types the client sends or expects (MQTT 3.1.1 section 2.2.1).
const (
	pktConnect    = 1
	pktConnack    = 2
	pktPublish    = 3
	pktPuback     = 4
	pktPingreq    = 12
	pktPingresp   = 13
	pktDisconnect = 14
)

// errProtocol means the server sent something this client does not expect.
var errProtocol = errors.New("mqtt protocol error")

// Identity is what one connection presents: its client id, user name and password, and the
// topic it publishes telemetry to.
type Identity struct {
	ClientID string
	Username string
	Password string
	Topic    string
}

// mqttConn is one client connection. Writes go through bw and reads through br; a connection
// has at most one writer and one reader goroutine at a time.
type mqttConn struct {
	nc net.Conn
	bw *bufio.Writer
	br *bufio.Reader
}

// dialMQTT opens a TCP connection to addr, completes the TLS handshake (when tlsCfg is not nil),
// sends CONNECT and waits for a CONNACK that accepts the connection. readBuf and writeBuf size
// the connection's buffers: small ones keep thousands of idle connections cheap.
func dialMQTT(ctx context.Context, addr string, tlsCfg *tls.Config, id Identity, keepAlive time.Duration, readBuf, writeBuf int) (*mqttConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		tc := tls.Client(nc, tlsCfg)
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		nc = tc
	}
	c := &mqttConn{nc: nc, bw: bufio.NewWriterSize(nc, writeBuf), br: bufio.NewReaderSize(nc, readBuf)}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.bw.Write(appendConnectPacket(nil, id, keepAlive))
	if err := c.bw.Flush(); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("send CONNECT: %w", err)
	}
	typ, body, err := c.readPacket(nil)
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("read CONNACK: %w", err)
	}
	if typ != pktConnack || len(body) != 2 {
		_ = nc.Close()
		return nil, fmt.Errorf("%w: packet type %d instead of CONNACK", errProtocol, typ)
	}
	if body[1] != 0 {
		_ = nc.Close()
		return nil, fmt.Errorf("connection refused: CONNACK return code %d (%s)", body[1], connackText(body[1]))
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// connackText names a CONNACK return code (section 3.2.2.3).
func connackText(code byte) string {
	switch code {
	case 1:
		return "unacceptable protocol version"
	case 2:
		return "identifier rejected"
	case 3:
		return "server unavailable"
	case 4:
		return "bad user name or password"
	case 5:
		return "not authorized"
	}
	return "unknown"
}

// appendConnectPacket appends a CONNECT with a clean session and, when set, user name and
// password (section 3.1).
func appendConnectPacket(dst []byte, id Identity, keepAlive time.Duration) []byte {
	flags := byte(0x02) // clean session
	n := 10 + 2 + len(id.ClientID)
	if id.Username != "" {
		flags |= 0x80
		n += 2 + len(id.Username)
	}
	if id.Password != "" {
		flags |= 0x40
		n += 2 + len(id.Password)
	}
	ka := min(keepAlive/time.Second, 65535)
	dst = append(dst, pktConnect<<4)
	dst = appendRemainingLength(dst, n)
	dst = append(dst, 0, 4, 'M', 'Q', 'T', 'T', 4, flags, byte(ka>>8), byte(ka))
	dst = appendString(dst, id.ClientID)
	if id.Username != "" {
		dst = appendString(dst, id.Username)
	}
	if id.Password != "" {
		dst = appendString(dst, id.Password)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)>>8), byte(len(s)))
	return append(dst, s...)
}

func appendRemainingLength(dst []byte, n int) []byte {
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			return dst
		}
	}
}

// publishTemplate is a QoS 1 PUBLISH encoded once; idAt is the offset of its packet id, which
// each send overwrites.
type publishTemplate struct {
	pkt  []byte
	idAt int
}

func newPublishTemplate(topic string, payload []byte) publishTemplate {
	var t publishTemplate
	t.pkt = append(t.pkt, pktPublish<<4|1<<1) // QoS 1, no DUP, no RETAIN
	t.pkt = appendRemainingLength(t.pkt, 2+len(topic)+2+len(payload))
	t.pkt = appendString(t.pkt, topic)
	t.idAt = len(t.pkt)
	t.pkt = append(t.pkt, 0, 0)
	t.pkt = append(t.pkt, payload...)
	return t
}

// publish buffers one QoS 1 PUBLISH with packet id id; Flush sends it.
func (c *mqttConn) publish(t *publishTemplate, id uint16) error {
	binary.BigEndian.PutUint16(t.pkt[t.idAt:], id)
	_, err := c.bw.Write(t.pkt)
	return err
}

func (c *mqttConn) ping() error {
	_, err := c.bw.Write([]byte{pktPingreq << 4, 0})
	if err == nil {
		err = c.bw.Flush()
	}
	return err
}

// close sends DISCONNECT (best effort) and closes the socket.
func (c *mqttConn) close() {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.bw.Write([]byte{pktDisconnect << 4, 0})
	_ = c.bw.Flush()
	_ = c.nc.Close()
}

// readPacket reads one packet and returns its type and body, the body in buf when it fits.
// PUBACK, PINGRESP and CONNACK bodies are two bytes or none; a server that sends anything
// longer than 1 MiB is refused.
func (c *mqttConn) readPacket(buf []byte) (byte, []byte, error) {
	b0, err := c.br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return 0, nil, fmt.Errorf("%w: remaining length longer than 4 bytes", errProtocol)
		}
		b, err := c.br.ReadByte()
		if err != nil {
			return 0, nil, noEOF(err)
		}
		n += int(b&0x7F) * mult
		if b&0x80 == 0 {
			break
		}
		mult *= 128
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("%w: a %d-byte packet", errProtocol, n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(c.br, buf); err != nil {
		return 0, nil, noEOF(err)
	}
	return b0 >> 4, buf, nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
