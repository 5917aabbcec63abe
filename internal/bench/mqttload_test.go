package bench

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAppendConnectPacket(t *testing.T) {
	got := appendConnectPacket(nil, Identity{ClientID: "d1", Username: "h/d1", Password: "pw"}, 60*time.Second)
	want := []byte{
		0x10, 24, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 60, // MQTT 3.1.1, user+password+clean session, keep-alive 60
		0, 2, 'd', '1',
		0, 4, 'h', '/', 'd', '1',
		0, 2, 'p', 'w',
	}
	if !bytes.Equal(got, want) {
		t.Errorf("CONNECT = % x\nwant      % x", got, want)
	}
}

func TestPublishTemplate(t *testing.T) {
	tmpl := newPublishTemplate("t/x", []byte("hello"))
	var buf bytes.Buffer
	c := &mqttConn{bw: bufio.NewWriter(&buf)}
	if err := c.publish(&tmpl, 0x1234); err != nil {
		t.Fatal(err)
	}
	if err := c.bw.Flush(); err != nil {
		t.Fatal(err)
	}
	want := []byte{0x32, 12, 0, 3, 't', '/', 'x', 0x12, 0x34, 'h', 'e', 'l', 'l', 'o'}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("PUBLISH = % x\nwant      % x", buf.Bytes(), want)
	}
}

// fakeBroker is a plain-TCP MQTT server just good enough for the generator: it accepts every
// CONNECT, acknowledges every QoS 1 PUBLISH (out of order when shuffle is set) and answers
// PINGREQ.
type fakeBroker struct {
	ln        net.Listener
	published atomic.Int64
	shuffle   bool
	wg        sync.WaitGroup
}

func startFakeBroker(t *testing.T, shuffle bool) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{ln: ln, shuffle: shuffle}
	b.wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			b.wg.Go(func() { b.serve(nc) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		b.wg.Wait()
	})
	return b
}

func (b *fakeBroker) serve(nc net.Conn) {
	defer nc.Close()
	c := &mqttConn{nc: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc)}
	var held []byte // a PUBACK held back to send after the next one
	for {
		typ, body, err := c.readPacket(nil)
		if err != nil {
			return
		}
		var out []byte
		switch typ {
		case pktConnect:
			out = []byte{pktConnack << 4, 2, 0, 0}
		case pktPublish:
			b.published.Add(1)
			topicLen := int(body[0])<<8 | int(body[1])
			id := body[2+topicLen : 4+topicLen]
			ack := []byte{pktPuback << 4, 2, id[0], id[1]}
			switch {
			case b.shuffle && held == nil:
				held = ack
			case held != nil:
				out = append(ack, held...)
				held = nil
			default:
				out = ack
			}
		case pktPingreq:
			out = []byte{pktPingresp << 4, 0}
		case pktDisconnect:
			return
		}
		if _, err := nc.Write(out); err != nil {
			return
		}
	}
}

func TestTelemetryThroughput(t *testing.T) {
	for _, shuffle := range []bool{false, true} {
		name := "in order"
		if shuffle {
			name = "out of order"
		}
		t.Run(name, func(t *testing.T) {
			b := startFakeBroker(t, shuffle)
			ids := make([]Identity, 4)
			for i := range ids {
				ids[i] = Identity{ClientID: "d", Topic: "devices/d/messages/events/"}
			}
			res, err := Telemetry(context.Background(), TelemetryConfig{
				Target: "fake", Addr: b.ln.Addr().String(), Identities: ids,
				Duration: 300 * time.Millisecond, Inflight: 8, Payload: 32, Errors: io.Discard,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Connected != 4 || res.Errors != 0 {
				t.Fatalf("connected %d, errors %d; want 4 and 0", res.Connected, res.Errors)
			}
			if res.Acked == 0 || res.MsgsPerSec <= 0 {
				t.Fatalf("acked %d at %.0f msgs/s; want some", res.Acked, res.MsgsPerSec)
			}
			// With shuffled acknowledgements one PUBACK per connection may be held back forever.
			if maxUnacked := int64(0); shuffle {
				maxUnacked = 4
				if res.Unacked > maxUnacked {
					t.Errorf("unacked %d, want at most %d", res.Unacked, maxUnacked)
				}
			} else if res.Unacked != 0 {
				t.Errorf("unacked %d, want 0", res.Unacked)
			}
			if got := b.published.Load(); got != res.Published {
				t.Errorf("broker saw %d PUBLISHes, generator counted %d", got, res.Published)
			}
			if res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 {
				t.Errorf("latency %+v", res.Latency)
			}
		})
	}
}

func TestTelemetryPaced(t *testing.T) {
	b := startFakeBroker(t, false)
	ids := make([]Identity, 5)
	for i := range ids {
		ids[i] = Identity{ClientID: "d", Topic: "t"}
	}
	res, err := Telemetry(context.Background(), TelemetryConfig{
		Addr: b.ln.Addr().String(), Identities: ids, Duration: time.Second, Rate: 500, Errors: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	// 500 msgs/s for one second; allow for a slow machine and the edges of the window.
	if res.Published < 400 || res.Published > 510 {
		t.Errorf("published %d at a rate of 500/s for 1 s; want about 500", res.Published)
	}
	if res.Errors != 0 || res.Unacked != 0 {
		t.Errorf("errors %d, unacked %d; want none", res.Errors, res.Unacked)
	}
}

func TestTelemetryIdle(t *testing.T) {
	b := startFakeBroker(t, false)
	ids := make([]Identity, 20)
	for i := range ids {
		ids[i] = Identity{ClientID: "d"}
	}
	var rss atomic.Int64
	rss.Store(1 << 20)
	res, err := Telemetry(context.Background(), TelemetryConfig{
		Mode: ModeIdle, Addr: b.ln.Addr().String(), Identities: ids,
		Duration: 250 * time.Millisecond, KeepAlive: 200 * time.Millisecond, // one ping round while idle
		ServerRSS: func(context.Context) (int64, error) { return rss.Add(20 << 10), nil },
		Errors:    io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 20 || res.Alive != 20 || res.Errors != 0 {
		t.Fatalf("connected %d, alive %d, errors %d; want 20, 20, 0", res.Connected, res.Alive, res.Errors)
	}
	if res.RSSPerConnKB != 1 { // 20 KiB more over 20 connections
		t.Errorf("RSS per connection %v KiB, want 1", res.RSSPerConnKB)
	}
	if res.ConnectsPerSec <= 0 {
		t.Errorf("connect rate %v, want > 0", res.ConnectsPerSec)
	}
}

func TestTelemetryRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				c := &mqttConn{nc: nc, br: bufio.NewReader(nc)}
				if _, _, err := c.readPacket(nil); err == nil {
					_, _ = nc.Write([]byte{pktConnack << 4, 2, 0, 5}) // not authorized
				}
			}()
		}
	}()
	var errs bytes.Buffer
	res, err := Telemetry(context.Background(), TelemetryConfig{
		Addr: ln.Addr().String(), Identities: []Identity{{ClientID: "d"}}, Errors: &errs,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 0 || res.Errors != 1 {
		t.Errorf("connected %d, errors %d; want 0 and 1", res.Connected, res.Errors)
	}
	if !bytes.Contains(errs.Bytes(), []byte("not authorized")) {
		t.Errorf("error output %q does not say why", errs.String())
	}
}
