package mqtt_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/mqtt"
)

// TestMQTTQuietConnectionsKeepWorking covers connections that went quiet long enough to be
// handed to a waiting goroutine (idle.go): they still answer, take telemetry, and end on the
// keep-alive window as before.
func TestMQTTQuietConnectionsKeepWorking(t *testing.T) {
	t.Parallel()
	h := startHub(t, enginetest.Start(t), mqtt.Config{})
	d := h.device(t, "dozer")
	c := h.raw(t)
	// Keep-alive 4 s: a 6 s window, longer than the 2 s after which a read loop hands over.
	if _, err := c.Write(connectPacket("dozer", hubHost+"/dozer/?api-version=2021-04-12", deviceToken(t, d, time.Hour), 4, 4)); err != nil {
		t.Fatal(err)
	}
	read := func(n int) []byte {
		t.Helper()
		b := make([]byte, n)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	if got := read(4); !bytes.Equal(got, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK %x", got)
	}
	for round := 0; round < 2; round++ {
		time.Sleep(2500 * time.Millisecond) // quiet: the connection now waits on a fresh goroutine
		// A QoS 1 PUBLISH written in two pieces, with a pause inside the packet, then a PINGREQ.
		topic := "devices/dozer/messages/events/a=" + string(rune('1'+round))
		body := append([]byte{byte(len(topic) >> 8), byte(len(topic))}, topic...)
		body = append(body, 0, byte(7+round))
		body = append(body, "payload"...)
		pkt := append(remainingLength([]byte{0x32}, len(body)), body...)
		if _, err := c.Write(pkt[:3]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if _, err := c.Write(append(pkt[3:], 0xC0, 0)); err != nil {
			t.Fatal(err)
		}
		if got := read(6); !bytes.Equal(got, []byte{0x40, 2, 0, byte(7 + round), 0xD0, 0}) {
			t.Fatalf("round %d: want PUBACK then PINGRESP, got %x", round, got)
		}
	}
	msgs := readAll(t, h, "dozer", 2)
	if string(msgs[0].Body) != "payload" || string(msgs[1].Body) != "payload" {
		t.Fatalf("stored bodies %q %q", msgs[0].Body, msgs[1].Body)
	}
	// Now silent past the keep-alive window, parked: the hub ends it with 404104 as always.
	start := time.Now()
	_ = expectClosed(t, c, 15*time.Second)
	if el := time.Since(start); el < 5*time.Second || el > 9*time.Second {
		t.Fatalf("closed %s after the last packet; want about 6 s for keep-alive 4 s", el)
	}
	h.waitRecord(t, diag.Connections, errorRecord("deviceDisconnect", "dozer", "404104"))
	waitState(t, h, "dozer", "Disconnected")
}
