package c2d_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/roost-iot/roost/internal/c2d"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/registry"
)

func wantCode(t *testing.T, err error, code errcode.Code) {
	t.Helper()
	if !errcode.Is(err, code) {
		t.Fatalf("got %v, want %d %s", err, code, code.Name())
	}
}

func TestC2DSendValidation(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{})
	n.device(t, "dev-1")
	off := n.device(t, "dev-off")
	off.Status = registry.StatusDisabled
	if _, err := n.reg.UpdateDevice(context.Background(), off, "*"); err != nil {
		t.Fatal(err)
	}
	now := n.clock.Now()
	tests := []struct {
		name string
		dev  string
		m    c2d.Message
		code errcode.Code
	}{
		{"unknown device", "ghost", c2d.Message{Body: []byte("x")}, errcode.DeviceNotFound},
		{"disabled device", "dev-off", c2d.Message{Body: []byte("x")}, errcode.DeviceNotFound},
		{"bad device id", "a/b", c2d.Message{}, errcode.ArgumentInvalid},
		{"body over 64 KB", "dev-1", c2d.Message{Body: make([]byte, 64*1024+1)}, errcode.MessageTooLarge},
		{"properties push it over", "dev-1", c2d.Message{Body: make([]byte, 64*1024-4), Properties: []c2d.Property{{Name: "abc", Value: "de"}}}, errcode.MessageTooLarge},
		{"expiry in the past", "dev-1", c2d.Message{Expiry: now.Add(-time.Second)}, errcode.InvalidMessageExpiryTime},
		{"expiry now", "dev-1", c2d.Message{Expiry: now}, errcode.InvalidMessageExpiryTime},
		{"expiry beyond two days", "dev-1", c2d.Message{Expiry: now.Add(48*time.Hour + time.Minute)}, errcode.InvalidMessageExpiryTime},
		{"bad ack", "dev-1", c2d.Message{Ack: "sometimes"}, errcode.ArgumentInvalid},
		{"property name with a space", "dev-1", c2d.Message{Properties: []c2d.Property{{Name: "a b", Value: "1"}}}, errcode.ArgumentInvalid},
		{"system key as a property name", "dev-1", c2d.Message{Properties: []c2d.Property{{Name: "$.mid", Value: "1"}}}, errcode.ArgumentInvalid},
		{"iothub- property name", "dev-1", c2d.Message{Properties: []c2d.Property{{Name: "IoTHub-Ack", Value: "full"}}}, errcode.ArgumentInvalid},
		{"empty property name", "dev-1", c2d.Message{Properties: []c2d.Property{{Name: "", Value: "1"}}}, errcode.ArgumentInvalid},
		{"control character in a value", "dev-1", c2d.Message{Properties: []c2d.Property{{Name: "a", Value: "x\ny"}}}, errcode.ArgumentInvalid},
		{"message id too long", "dev-1", c2d.Message{MessageID: strings.Repeat("m", 129)}, errcode.ArgumentInvalid},
		{"message id with a slash", "dev-1", c2d.Message{MessageID: "a/b"}, errcode.ArgumentInvalid},
	}
	for _, tt := range tests {
		_, err := n.svc.Send(context.Background(), tt.dev, tt.m)
		if !errcode.Is(err, tt.code) {
			t.Errorf("%s: got %v, want %d", tt.name, err, tt.code)
		}
	}
	if d := n.depth(t, "dev-1"); d != 0 {
		t.Fatalf("refused messages changed the queue: depth %d", d)
	}
	// The limits themselves are fine.
	ok := []c2d.Message{
		{Body: make([]byte, 64*1024)},
		{Expiry: now.Add(3 * time.Second)},
		{Expiry: now.Add(48 * time.Hour)},
		{Ack: "FULL", MessageID: "id-:.+%_#*?!(),=@;$'", Properties: []c2d.Property{{Name: "k!#$%&'*+-.^_`|~", Value: "välue ok"}}},
		{Properties: []c2d.Property{{Name: "worst", Value: strings.Repeat(`"<\`, 21840)}}}, // escapes double the envelope
	}
	for i, m := range ok {
		out := n.send(t, "dev-1", m)
		if out.MessageID == "" || out.SequenceNumber == 0 || out.EnqueuedTime.IsZero() || out.Expiry.IsZero() || out.To != "/devices/dev-1/messages/deviceBound" {
			t.Fatalf("message %d as sent: %+v", i, out)
		}
	}
	if d := n.depth(t, "dev-1"); d != len(ok) {
		t.Fatalf("depth %d, want %d", d, len(ok))
	}
}

func TestC2DQueueHoldsFiftyUnderAFlood(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{})
	n.device(t, "busy")
	n.device(t, "quiet")
	var accepted, refused, other atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				_, err := n.svc.Send(context.Background(), "busy", c2d.Message{Body: []byte("x")})
				switch {
				case err == nil:
					accepted.Add(1)
				case errcode.Is(err, errcode.DeviceMaximumQueueDepthExceeded):
					refused.Add(1)
				default:
					other.Add(1)
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != 50 || refused.Load() != 110 || other.Load() != 0 {
		t.Fatalf("accepted %d, refused %d, other %d; want 50, 110, 0", accepted.Load(), refused.Load(), other.Load())
	}
	if d := n.depth(t, "busy"); d != 50 {
		t.Fatalf("depth %d", d)
	}
	// Another device's queue is untouched by the flood.
	n.send(t, "quiet", c2d.Message{Body: []byte("y")})
	if d := n.depth(t, "quiet"); d != 1 {
		t.Fatalf("quiet depth %d", d)
	}
	// Completing one makes room for exactly one more.
	del, err := n.svc.Receive(context.Background(), "busy")
	if err != nil || del == nil {
		t.Fatalf("receive: %v %v", del, err)
	}
	if err := n.svc.Complete(context.Background(), "busy", del.LockToken); err != nil {
		t.Fatal(err)
	}
	n.send(t, "busy", c2d.Message{})
	_, err = n.svc.Send(context.Background(), "busy", c2d.Message{})
	wantCode(t, err, errcode.DeviceMaximumQueueDepthExceeded)
}

func TestC2DReceiveCompleteRejectAbandon(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{})
	ctx := context.Background()
	n.device(t, "poller")
	n.device(t, "other")
	props := []c2d.Property{{Name: "Color", Value: "red"}, {Name: "n", Value: "1"}}
	a := n.send(t, "poller", c2d.Message{MessageID: "a", CorrelationID: "c-a", UserID: "u", ContentType: "application/json",
		ContentEncoding: "utf-8", Ack: c2d.AckFull, Properties: props, Body: []byte(`{"on":true}`)})
	b := n.send(t, "poller", c2d.Message{MessageID: "b", Ack: c2d.AckNegative})
	c := n.send(t, "poller", c2d.Message{MessageID: "c", Ack: c2d.AckPositive})

	d1, err := n.svc.Receive(ctx, "poller")
	if err != nil || d1 == nil {
		t.Fatalf("receive: %v %v", d1, err)
	}
	if d1.MessageID != "a" || d1.CorrelationID != "c-a" || d1.UserID != "u" || d1.ContentType != "application/json" || d1.ContentEncoding != "utf-8" ||
		d1.Ack != c2d.AckFull || !bytes.Equal(d1.Body, a.Body) || d1.DeliveryCount != 1 || d1.SequenceNumber != a.SequenceNumber ||
		len(d1.Properties) != 2 || d1.Properties[0] != props[0] || d1.Properties[1] != props[1] || d1.ExpirySet {
		t.Fatalf("first delivery: %+v", d1)
	}
	// The first is locked, so the next receive gets the second.
	d2, _ := n.svc.Receive(ctx, "poller")
	if d2 == nil || d2.MessageID != "b" {
		t.Fatalf("second receive: %+v", d2)
	}
	// Another device's path cannot settle it, and junk tokens are refused; nothing changes.
	wantCode(t, n.svc.Complete(ctx, "other", d1.LockToken), errcode.DeviceMessageLockLost)
	wantCode(t, n.svc.Complete(ctx, "poller", "not-a-token"), errcode.ArgumentInvalid)
	wantCode(t, n.svc.Complete(ctx, "poller", "00000000-0000-0001-0000-000000000000"), errcode.DeviceMessageLockLost)
	wantCode(t, n.svc.Reject(ctx, "poller", strings.Replace(d1.LockToken, d1.LockToken[30:], "000000", 1)), errcode.DeviceMessageLockLost)

	if err := n.svc.Complete(ctx, "poller", d1.LockToken); err != nil {
		t.Fatalf("complete: %v", err)
	}
	wantCode(t, n.svc.Complete(ctx, "poller", d1.LockToken), errcode.DeviceMessageLockLost)
	if err := n.svc.Reject(ctx, "poller", d2.LockToken); err != nil {
		t.Fatalf("reject: %v", err)
	}
	d3, _ := n.svc.Receive(ctx, "poller")
	if d3 == nil || d3.MessageID != "c" {
		t.Fatalf("third receive: %+v", d3)
	}
	if err := n.svc.Abandon(ctx, "poller", d3.LockToken); err != nil {
		t.Fatalf("abandon: %v", err)
	}
	wantCode(t, n.svc.Abandon(ctx, "poller", d3.LockToken), errcode.DeviceMessageLockLost)
	again, _ := n.svc.Receive(ctx, "poller")
	if again == nil || again.MessageID != "c" || again.DeliveryCount != 2 || again.LockToken == d3.LockToken {
		t.Fatalf("after abandon: %+v", again)
	}
	if err := n.svc.Complete(ctx, "poller", again.LockToken); err != nil {
		t.Fatal(err)
	}
	if d, _ := n.svc.Receive(ctx, "poller"); d != nil {
		t.Fatalf("queue should be empty, got %+v", d)
	}
	if d := n.depth(t, "poller"); d != 0 {
		t.Fatalf("depth %d", d)
	}
	fb := n.waitFeedback(t, 3)
	want := map[string]string{"a": c2d.StatusSuccess, "b": c2d.StatusRejected, "c": c2d.StatusSuccess}
	for _, r := range fb {
		if want[r.OriginalMessageID] != r.StatusCode || r.Description != r.StatusCode || r.DeviceID != "poller" || r.DeviceGenerationID == "" || r.EnqueuedTimeUTC == "" {
			t.Fatalf("feedback %+v", r)
		}
		delete(want, r.OriginalMessageID)
	}
	if len(want) != 0 {
		t.Fatalf("missing feedback for %v", want)
	}
	if got := value(n.m.C2D.Completed); got != 2 {
		t.Fatalf("completed metric %v", got)
	}
	if value(n.m.C2D.Rejected) != 1 || value(n.m.C2D.Abandoned) != 1 {
		t.Fatal("reject/abandon metrics")
	}
	_ = b
	_ = c
}

func TestC2DLockRunsOutAfterAMinute(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{})
	ctx := context.Background()
	n.device(t, "slow")
	n.send(t, "slow", c2d.Message{MessageID: "m"})
	d, _ := n.svc.Receive(ctx, "slow")
	n.clock.Advance(59 * time.Second)
	if again, _ := n.svc.Receive(ctx, "slow"); again != nil {
		t.Fatal("still locked at 59 s, but delivered again")
	}
	n.clock.Advance(2 * time.Second)
	wantCode(t, n.svc.Complete(ctx, "slow", d.LockToken), errcode.DeviceMessageLockLost)
	again, _ := n.svc.Receive(ctx, "slow")
	if again == nil || again.DeliveryCount != 2 || again.MessageID != "m" {
		t.Fatalf("after the lock ran out: %+v", again)
	}
	// The old token stays dead even though the message is locked again.
	wantCode(t, n.svc.Abandon(ctx, "slow", d.LockToken), errcode.DeviceMessageLockLost)
	if err := n.svc.Complete(ctx, "slow", again.LockToken); err != nil {
		t.Fatal(err)
	}
}

func TestC2DMaxDeliveryCountDeadLetters(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{MaxDeliveryCount: 2})
	ctx := context.Background()
	n.device(t, "flaky")
	n.send(t, "flaky", c2d.Message{MessageID: "by-abandon", Ack: c2d.AckNegative})
	n.send(t, "flaky", c2d.Message{MessageID: "by-timeout", Ack: c2d.AckFull})
	d, _ := n.svc.Receive(ctx, "flaky")
	if err := n.svc.Abandon(ctx, "flaky", d.LockToken); err != nil {
		t.Fatal(err)
	}
	d, _ = n.svc.Receive(ctx, "flaky")
	if d.MessageID != "by-abandon" || d.DeliveryCount != 2 {
		t.Fatalf("%+v", d)
	}
	// The second abandon uses up the deliveries: dead-lettered, not queued again.
	if err := n.svc.Abandon(ctx, "flaky", d.LockToken); err != nil {
		t.Fatal(err)
	}
	// Two deliveries of the other one whose locks run out, then it is dead-lettered on the next receive.
	for i := 1; i <= 2; i++ {
		d, _ = n.svc.Receive(ctx, "flaky")
		if d == nil || d.MessageID != "by-timeout" || d.DeliveryCount != i {
			t.Fatalf("delivery %d: %+v", i, d)
		}
		n.clock.Advance(61 * time.Second)
	}
	if d, _ = n.svc.Receive(ctx, "flaky"); d != nil {
		t.Fatalf("delivered beyond the max count: %+v", d)
	}
	if n.depth(t, "flaky") != 0 {
		t.Fatal("dead-lettered messages stay in the queue")
	}
	fb := n.waitFeedback(t, 2)
	for _, r := range fb {
		if r.StatusCode != c2d.StatusDeliveryCountExceeded {
			t.Fatalf("feedback %+v", r)
		}
	}
	n.waitRecord(t, func(w diag.Wire, p map[string]any) bool {
		return w.OperationName == "deliveryCountExceeded" && w.Level == "Error" && w.ResultType == "DeliveryCountExceeded" &&
			p["deviceId"] == "flaky" && p["messageId"] == "by-timeout" && p["deliveryCount"] == "2" && p["deliveryAcknowledgement"] == "Full"
	})
	if got := value(n.m.C2D.DeadLettered.WithLabelValues(c2d.StatusDeliveryCountExceeded)); got != 2 {
		t.Fatalf("dead-letter metric %v", got)
	}
}

func TestC2DExpiry(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{DefaultTTL: time.Minute})
	ctx := context.Background()
	n.device(t, "offline")
	n.send(t, "offline", c2d.Message{MessageID: "default-ttl", Ack: c2d.AckNegative})
	n.send(t, "offline", c2d.Message{MessageID: "own-expiry", Ack: c2d.AckFull, Expiry: n.clock.Now().Add(10 * time.Minute)})
	n.send(t, "offline", c2d.Message{MessageID: "no-feedback", Expiry: n.clock.Now().Add(30 * time.Second)})
	if err := n.svc.Sweep(ctx, "offline"); err != nil {
		t.Fatal(err)
	}
	if n.depth(t, "offline") != 3 {
		t.Fatal("a sweep before any expiry removed messages")
	}
	n.clock.Advance(61 * time.Second)
	if err := n.svc.Sweep(ctx, "offline"); err != nil {
		t.Fatal(err)
	}
	if d := n.depth(t, "offline"); d != 1 {
		t.Fatalf("depth after the first expiries: %d", d)
	}
	// A locked message expires too; its holder loses the lock.
	d, _ := n.svc.Receive(ctx, "offline")
	n.clock.Advance(10 * time.Minute)
	if err := n.svc.Sweep(ctx, "offline"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, n.svc.Complete(ctx, "offline", d.LockToken), errcode.DeviceMessageLockLost)
	fb := n.waitFeedback(t, 2)
	for _, r := range fb {
		if r.StatusCode != c2d.StatusExpired || r.OriginalMessageID == "no-feedback" {
			t.Fatalf("feedback %+v", r)
		}
	}
	n.waitRecord(t, func(w diag.Wire, p map[string]any) bool {
		return w.OperationName == "messageExpired" && w.ResultDescription == "MessageExpired" && p["messageId"] == "default-ttl" &&
			p["ttl"] == float64(60000) && p["statusCode"] == "410"
	})
	if got := value(n.m.C2D.Expired); got != 3 {
		t.Fatalf("expired metric %v", got)
	}
}

// TestC2DExpiryTimerFires uses the real clock and the engine's timers: a message that expires
// a few seconds ahead is expired by the timer, without anyone reading the queue.
func TestC2DExpiryTimerFires(t *testing.T) {
	t.Parallel()
	n := startNode(t, newNode(t, c2d.Config{}).eng, nil, c2d.Config{})
	n.device(t, "sleeper")
	start := time.Now()
	n.send(t, "sleeper", c2d.Message{MessageID: "soon", Ack: c2d.AckNegative, Expiry: start.Add(2 * time.Second)})
	n.send(t, "sleeper", c2d.Message{MessageID: "later", Ack: c2d.AckNegative, Expiry: start.Add(3 * time.Second)})
	n.send(t, "sleeper", c2d.Message{MessageID: "much-later"})
	fb := n.waitFeedback(t, 2)
	if el := time.Since(start); el < 2*time.Second {
		t.Fatalf("expired after %s, before its time", el)
	}
	if fb[0].OriginalMessageID != "soon" || fb[1].OriginalMessageID != "later" || fb[0].StatusCode != c2d.StatusExpired {
		t.Fatalf("feedback %+v", fb)
	}
	if d := n.depth(t, "sleeper"); d != 1 {
		t.Fatalf("depth %d, want 1", d)
	}
}

func TestC2DPurge(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{})
	ctx := context.Background()
	n.device(t, "full")
	for i := 0; i < 5; i++ {
		ack := c2d.AckNone
		if i%2 == 0 {
			ack = c2d.AckNegative
		}
		n.send(t, "full", c2d.Message{MessageID: fmt.Sprint(i), Ack: ack})
	}
	d, _ := n.svc.Receive(ctx, "full")
	got, err := n.svc.Purge(ctx, "full")
	if err != nil || got != 5 {
		t.Fatalf("purge: %d %v", got, err)
	}
	wantCode(t, n.svc.Complete(ctx, "full", d.LockToken), errcode.DeviceMessageLockLost)
	if n.depth(t, "full") != 0 {
		t.Fatal("purge left messages")
	}
	if got, _ := n.svc.Purge(ctx, "full"); got != 0 {
		t.Fatalf("second purge %d", got)
	}
	_, err = n.svc.Purge(ctx, "nobody")
	wantCode(t, err, errcode.DeviceNotFound)
	fb := n.waitFeedback(t, 3)
	for _, r := range fb {
		if r.StatusCode != c2d.StatusPurged {
			t.Fatalf("%+v", r)
		}
	}
}

func TestC2DFeedbackLock(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{FeedbackLock: 5 * time.Second})
	ctx := context.Background()
	n.device(t, "fb")
	for i := 0; i < 70; i++ {
		n.send(t, "fb", c2d.Message{MessageID: fmt.Sprint(i), Ack: c2d.AckPositive})
		if i == 49 {
			for j := 0; j < 50; j++ {
				d, _ := n.svc.Receive(ctx, "fb")
				_ = n.svc.Complete(ctx, "fb", d.LockToken)
			}
		}
	}
	for j := 0; j < 20; j++ {
		d, _ := n.svc.Receive(ctx, "fb")
		_ = n.svc.Complete(ctx, "fb", d.LockToken)
	}
	b1, err := n.svc.ReceiveFeedback(ctx)
	if err != nil || b1 == nil || len(b1.Records) != 64 {
		t.Fatalf("first batch: %v %v", b1, err)
	}
	b2, _ := n.svc.ReceiveFeedback(ctx)
	if b2 == nil || len(b2.Records) != 6 {
		t.Fatalf("second batch: %+v", b2)
	}
	if b3, _ := n.svc.ReceiveFeedback(ctx); b3 != nil {
		t.Fatalf("a locked batch was handed out again: %d records", len(b3.Records))
	}
	// Abandon gives the records back; completing removes them; a settled token is dead.
	if err := n.svc.AbandonFeedback(ctx, b2.LockToken); err != nil {
		t.Fatal(err)
	}
	wantCode(t, n.svc.CompleteFeedback(ctx, b2.LockToken), errcode.DeviceMessageLockLost)
	if err := n.svc.CompleteFeedback(ctx, b1.LockToken); err != nil {
		t.Fatal(err)
	}
	var b4 *c2d.FeedbackBatch
	deadline := time.Now().Add(5 * time.Second)
	for b4 == nil && time.Now().Before(deadline) {
		b4, _ = n.svc.ReceiveFeedback(ctx)
		time.Sleep(20 * time.Millisecond)
	}
	if b4 == nil || len(b4.Records) != 6 {
		t.Fatalf("abandoned batch did not come back: %+v", b4)
	}
	// A lock that ran out cannot settle.
	n.clock.Advance(6 * time.Second)
	wantCode(t, n.svc.CompleteFeedback(ctx, b4.LockToken), errcode.DeviceMessageLockLost)
	wantCode(t, n.svc.CompleteFeedback(ctx, "junk"), errcode.ArgumentInvalid)
	wantCode(t, n.svc.AbandonFeedback(ctx, "00000000-0000-0000-0000-000000000000"), errcode.DeviceMessageLockLost)
}

func TestC2DDeletedDeviceDropsQueueAndFeedback(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{})
	ctx := context.Background()
	n.device(t, "gone")
	n.send(t, "gone", c2d.Message{Ack: c2d.AckPositive})
	n.send(t, "gone", c2d.Message{Ack: c2d.AckPositive})
	d, _ := n.svc.Receive(ctx, "gone")
	_ = n.svc.Complete(ctx, "gone", d.LockToken)
	n.svc.DropDevice(ctx, "gone")
	if n.depth(t, "gone") != 0 {
		t.Fatal("queue kept")
	}
	if fb := n.feedback(t); len(fb) != 0 {
		t.Fatalf("feedback kept: %+v", fb)
	}
}

func TestC2DConfigValidate(t *testing.T) {
	t.Parallel()
	bad := []c2d.Config{
		{DefaultTTL: 59 * time.Second}, {DefaultTTL: 49 * time.Hour}, {MaxDeliveryCount: 101}, {MaxDeliveryCount: -1},
		{FeedbackTTL: time.Second}, {FeedbackLock: 4 * time.Second}, {FeedbackLock: 301 * time.Second}, {FeedbackMaxDeliveryCount: 101},
	}
	for _, c := range bad {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (c2d.Config{DefaultTTL: time.Minute, MaxDeliveryCount: 100, FeedbackLock: 300 * time.Second}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// TestC2DSettledQueuesLeaveNothingBehind sends to many devices and settles everything: the
// engine then holds no message and no delivery state for any of them (their expiry timers go
// when they fire), and no node keeps anything for devices that are not connected.
func TestC2DSettledQueuesLeaveNothingBehind(t *testing.T) {
	t.Parallel()
	n := newNode(t, c2d.Config{})
	ctx := context.Background()
	const devices = 100
	for i := 0; i < devices; i++ {
		id := fmt.Sprintf("idle-%03d", i)
		n.device(t, id)
		n.send(t, id, c2d.Message{Body: []byte("x")})
		n.send(t, id, c2d.Message{Body: []byte("y")})
		for j := 0; j < 2; j++ {
			d, err := n.svc.Receive(ctx, id)
			if err != nil || d == nil {
				t.Fatalf("receive %s: %v %v", id, d, err)
			}
			if j == 0 {
				err = n.svc.Complete(ctx, id, d.LockToken)
			} else {
				err = n.svc.Reject(ctx, id, d.LockToken)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	state, err := n.eng.KV(ctx, engine.BucketConfig{Name: "c2d-state"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := 0
		if err := state.Scan(ctx, []string{">"}, func(engine.Entry) bool { left++; return true }); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d delivery states left behind", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < devices; i++ {
		if d := n.depth(t, fmt.Sprintf("idle-%03d", i)); d != 0 {
			t.Fatalf("depth %d", d)
		}
	}
}
