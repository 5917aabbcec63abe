package c2d_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/c2d"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine/enginetest"
)

func TestC2DSessionDeliversInOrderAndCompletes(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{Window: 4})
	n.device(t, "car")
	// Messages queued while the device was away wait for it.
	for i := 0; i < 3; i++ {
		n.send(t, "car", c2d.Message{MessageID: fmt.Sprint("early-", i), Ack: c2d.AckPositive})
	}
	col := newCollector()
	ss := n.open(t, c2d.SessionConfig{DeviceID: "car", ConnID: "c1", Protocol: "Mqtt", Deliver: col.deliver})
	defer ss.Close()
	for i := 3; i < 10; i++ {
		n.send(t, "car", c2d.Message{MessageID: fmt.Sprint("late-", i), Ack: c2d.AckPositive})
	}
	var order []string
	for i := 0; i < 10; i++ {
		d := col.next(t)
		if d.DeliveryCount != 1 || d.LockToken == "" {
			t.Fatalf("%+v", d)
		}
		order = append(order, d.MessageID)
		ss.Complete(d.SequenceNumber)
	}
	want := []string{"early-0", "early-1", "early-2", "late-3", "late-4", "late-5", "late-6", "late-7", "late-8", "late-9"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	fb := n.waitFeedback(t, 10)
	for _, r := range fb {
		if r.StatusCode != c2d.StatusSuccess {
			t.Fatalf("%+v", r)
		}
	}
	col.none(t, 200*time.Millisecond)
	if d := n.depth(t, "car"); d != 0 {
		t.Fatalf("depth %d", d)
	}
	// A late or unknown acknowledgement changes nothing and is logged as a lost lock.
	ss.Complete(99999)
	n.waitRecord(t, func(w diag.Wire, p map[string]any) bool {
		return w.OperationName == "complete" && w.ResultType == "412002" && p["deviceId"] == "car" && p["protocol"] == "Mqtt"
	})
}

func TestC2DSessionWindowAndBackPressure(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{Window: 2})
	n.device(t, "tiny")
	col := newCollector()
	col.full = true // the connection has no room at first
	ss := n.open(t, c2d.SessionConfig{DeviceID: "tiny", ConnID: "c1", Protocol: "Mqtt", Deliver: col.deliver})
	defer ss.Close()
	for i := 0; i < 5; i++ {
		n.send(t, "tiny", c2d.Message{MessageID: fmt.Sprint(i)})
	}
	time.Sleep(100 * time.Millisecond)
	col.mu.Lock()
	col.full = false
	col.mu.Unlock()
	n.clock.Advance(50 * time.Millisecond) // the retry timer
	a, b := col.next(t), col.next(t)
	col.none(t, 200*time.Millisecond) // window of 2
	ss.Complete(a.SequenceNumber)
	c := col.next(t)
	if a.MessageID != "0" || b.MessageID != "1" || c.MessageID != "2" {
		t.Fatalf("got %s %s %s", a.MessageID, b.MessageID, c.MessageID)
	}
}

func TestC2DSessionRedeliversWhenTheLockRunsOut(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{MaxDeliveryCount: 3})
	n.device(t, "deaf")
	col := newCollector()
	ss := n.open(t, c2d.SessionConfig{DeviceID: "deaf", ConnID: "c1", Protocol: "Mqtt", Deliver: col.deliver})
	defer ss.Close()
	sent := n.send(t, "deaf", c2d.Message{MessageID: "m", Ack: c2d.AckFull})
	first := col.next(t)
	n.clock.Advance(59 * time.Second)
	col.none(t, 100*time.Millisecond)
	for want := 2; want <= 3; want++ {
		n.clock.Advance(2 * time.Second)
		d := col.next(t)
		if d.SequenceNumber != sent.SequenceNumber || d.DeliveryCount != want || d.LockToken == first.LockToken {
			t.Fatalf("redelivery %d: %+v", want, d)
		}
		n.clock.Advance(58 * time.Second)
	}
	// The third lock runs out: the delivery count is used up.
	n.clock.Advance(2 * time.Second)
	fb := n.waitFeedback(t, 1)
	if fb[0].StatusCode != c2d.StatusDeliveryCountExceeded {
		t.Fatalf("%+v", fb)
	}
	col.none(t, 100*time.Millisecond)
	if n.depth(t, "deaf") != 0 {
		t.Fatal("dead-lettered message still queued")
	}
}

func TestC2DSessionCloseReturnsLocksAndKeepsAcks(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{})
	ctx := context.Background()
	n.device(t, "bye")
	n.send(t, "bye", c2d.Message{MessageID: "acked"})
	n.send(t, "bye", c2d.Message{MessageID: "unacked"})
	col := newCollector()
	ss := n.open(t, c2d.SessionConfig{DeviceID: "bye", ConnID: "c1", Protocol: "Mqtt", Deliver: col.deliver})
	a, _ := col.next(t), col.next(t)
	ss.Complete(a.SequenceNumber)
	ss.Close() // right after the acknowledgement, as a device that disconnects does
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, err := n.svc.Receive(ctx, "bye")
		if err != nil {
			t.Fatal(err)
		}
		if d != nil {
			if d.MessageID != "unacked" || d.DeliveryCount != 2 {
				t.Fatalf("%+v", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the unacknowledged message stayed locked after the session closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n.depth(t, "bye") != 1 {
		t.Fatal("the acknowledged message was not completed")
	}
}

// TestC2DAcrossNodes runs two nodes on one external NATS server: a message sent through one
// reaches the device's session on the other; when that node dies mid-delivery, the device's next
// connection (on the first node) gets the message again at once, not after the lock.
func TestC2DAcrossNodes(t *testing.T) {
	t.Parallel()
	ext := enginetest.StartExternal(t)
	clock := newFakeClock()
	a := startNode(t, ext.Connect(t), clock, c2d.Config{})
	bEng := ext.Connect(t)
	b := startNode(t, bEng, clock, c2d.Config{})
	a.device(t, "roamer")

	colB := newCollector()
	ssB := b.open(t, c2d.SessionConfig{DeviceID: "roamer", ConnID: "on-b", Protocol: "Mqtt", Deliver: colB.deliver})
	time.Sleep(100 * time.Millisecond) // let the subscription reach the server
	sent := a.send(t, "roamer", c2d.Message{MessageID: "x", Ack: c2d.AckPositive})
	got := colB.next(t)
	if got.SequenceNumber != sent.SequenceNumber || got.DeliveryCount != 1 {
		t.Fatalf("%+v", got)
	}
	// Node b dies before the device acknowledges: its connection to the engine goes, nothing is
	// released.
	_ = bEng.Close()
	_ = ssB

	colA := newCollector()
	ssA := a.open(t, c2d.SessionConfig{DeviceID: "roamer", ConnID: "on-a", Protocol: "Mqtt", Deliver: colA.deliver})
	defer ssA.Close()
	again := colA.next(t)
	if again.SequenceNumber != sent.SequenceNumber || again.DeliveryCount != 2 {
		t.Fatalf("after the takeover: %+v", again)
	}
	ssA.Complete(again.SequenceNumber)
	fb := a.waitFeedback(t, 1)
	if fb[0].StatusCode != c2d.StatusSuccess || fb[0].OriginalMessageID != "x" {
		t.Fatalf("%+v", fb)
	}
	colA.none(t, 200*time.Millisecond)
}

// TestC2DNothingLostOrDuplicated floods one device from several senders while its session
// completes everything: each message arrives exactly once, none is left behind.
func TestC2DNothingLostOrDuplicated(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{})
	n.device(t, "sink")
	seen := map[uint64]int{}
	var mu sync.Mutex
	acks := make(chan uint64, 10000)
	ss := n.open(t, c2d.SessionConfig{DeviceID: "sink", ConnID: "c", Protocol: "Mqtt", Deliver: func(d *c2d.Delivery) bool {
		mu.Lock()
		seen[d.SequenceNumber]++
		mu.Unlock()
		acks <- d.SequenceNumber
		return true
	}})
	go func() {
		for seq := range acks {
			ss.Complete(seq)
		}
	}()
	defer close(acks)
	const senders, each = 4, 100
	var wg sync.WaitGroup
	var sent sync.Map
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				for {
					m, err := n.svc.Send(context.Background(), "sink", c2d.Message{})
					if err == nil {
						sent.Store(m.SequenceNumber, true)
						break
					}
					time.Sleep(5 * time.Millisecond) // queue full: the device is catching up
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n2 := len(seen)
		mu.Unlock()
		if n2 == senders*each {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered %d of %d", n2, senders*each)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for seq, c := range seen {
		if c != 1 {
			t.Fatalf("message %d delivered %d times", seq, c)
		}
		if _, ok := sent.Load(seq); !ok {
			t.Fatalf("delivered %d, which nobody sent", seq)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if d := n.depth(t, "sink"); d != 0 {
		t.Fatalf("depth %d after all were completed", d)
	}
}

// TestC2DSessionNoticesALostAnnouncement: the engine's announcements are core messages and may
// be dropped; the next one names the message before it, so the session sees the gap and reads
// its queue again instead of waiting for the resync.
func TestC2DSessionNoticesALostAnnouncement(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{})
	n.device(t, "lossy")
	col := newCollector()
	ss := n.svc.OpenSession(c2d.SessionConfig{DeviceID: "lossy", ConnID: "c1", Protocol: "Mqtt", Deliver: col.deliver})
	defer ss.Close()
	time.Sleep(100 * time.Millisecond) // the first scan finds the queue empty
	a := n.send(t, "lossy", c2d.Message{MessageID: "a"})
	b := n.send(t, "lossy", c2d.Message{MessageID: "b"})
	ss.Notify(b.SequenceNumber, a.SequenceNumber) // a's announcement never came
	if got := col.next(t); got.MessageID != "a" {
		t.Fatalf("got %s first", got.MessageID)
	}
	if got := col.next(t); got.MessageID != "b" {
		t.Fatalf("got %s second", got.MessageID)
	}
}
