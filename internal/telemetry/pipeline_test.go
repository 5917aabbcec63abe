package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/telemetry"
)

func openPipeline(t testing.TB, eng *engine.Engine, cfg telemetry.Config) *telemetry.Pipeline {
	t.Helper()
	p, err := telemetry.Open(context.Background(), eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newReader(t *testing.T, p *telemetry.Pipeline, opts telemetry.ReadOptions) *telemetry.Reader {
	t.Helper()
	r, err := p.NewReader(testCtx(t), opts)
	if err != nil {
		t.Fatalf("new reader %+v: %v", opts, err)
	}
	t.Cleanup(r.Close)
	return r
}

// readN reads exactly n messages, failing the test if they do not come within 10 s.
func readN(t *testing.T, r *telemetry.Reader, n int) []*telemetry.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := make([]*telemetry.Message, 0, n)
	for len(out) < n {
		m, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("read %d of %d: %v", len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

// expectNone checks that nothing more arrives for a short while.
func expectNone(t *testing.T, r *telemetry.Reader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if m, err := r.Next(ctx); err == nil {
		t.Fatalf("unexpected message %s/%d from %s", m.Body, m.SequenceNumber, m.DeviceID)
	}
}

func send(t *testing.T, p *telemetry.Pipeline, m *telemetry.Message) telemetry.Receipt {
	t.Helper()
	rc, err := p.Send(testCtx(t), m)
	if err != nil {
		t.Fatalf("send %s: %v", m.Body, err)
	}
	return rc
}

func TestTelemetryRoundTripKeepsEveryProperty(t *testing.T) {
	t.Parallel()
	p := openPipeline(t, enginetest.Start(t), telemetry.Config{})
	now := time.Now().UTC()
	in := &telemetry.Message{
		DeviceID: "dev.1$*>", ModuleID: "mod 1",
		Body:      []byte(`{"temperature":21.5}`),
		MessageID: "mid-1", CorrelationID: "cid-1", UserID: "uid-1", To: "/devices/dev.1/messages/events",
		ContentType: "application/json", ContentEncoding: "utf-8",
		OutputName: "out1", InterfaceID: "urn:x:1", ComponentName: "thermostat1", MessageSchema: "s1",
		CreationTime: now.Add(-time.Minute).Truncate(time.Millisecond), Expiry: now.Add(time.Hour).Truncate(time.Second),
		Properties:       []telemetry.Property{{Name: "b", Value: "2"}, {Name: "a", Value: "1"}, {Name: "b", Value: "3"}},
		AuthMethod:       `{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}`,
		AuthGenerationID: "638000000000000001", Protocol: "Mqtt",
	}
	want := *in
	rc := send(t, p, in)
	if in.EnqueuedTime.IsZero() || in.EnqueuedTime.Before(now) {
		t.Fatalf("EnqueuedTime not stamped: %v", in.EnqueuedTime)
	}
	if rc.Partition != telemetry.PartitionOf(in.DeviceID, 4) || rc.SequenceNumber != 1 {
		t.Fatalf("receipt %+v", rc)
	}
	want.EnqueuedTime, want.Partition, want.SequenceNumber = in.EnqueuedTime, rc.Partition, rc.SequenceNumber

	got := readN(t, newReader(t, p, telemetry.ReadOptions{}), 1)[0]
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Fatalf("read back (-want +got):\n%s", diff)
	}
}

func TestTelemetryPartitionsSpreadDevicesAndKeepOrder(t *testing.T) {
	t.Parallel()
	p := openPipeline(t, enginetest.Start(t), telemetry.Config{Partitions: 8})
	ctx := testCtx(t)
	const devices, each = 64, 5
	var pending []*telemetry.Pending
	for i := 0; i < each; i++ {
		for d := 0; d < devices; d++ {
			pd, err := p.SendAsync(&telemetry.Message{DeviceID: fmt.Sprintf("device-%02d", d), Body: []byte(fmt.Sprint(i))})
			if err != nil {
				t.Fatal(err)
			}
			pending = append(pending, pd)
		}
	}
	used := map[int]bool{}
	for _, pd := range pending {
		rc, err := pd.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		used[rc.Partition] = true
	}
	if len(used) != 8 {
		t.Fatalf("64 devices landed in %d of 8 partitions", len(used))
	}
	msgs := readN(t, newReader(t, p, telemetry.ReadOptions{}), devices*each)
	next := map[string]int{}
	lastSeq := map[int]uint64{}
	for _, m := range msgs {
		if m.Partition != telemetry.PartitionOf(m.DeviceID, 8) {
			t.Fatalf("%s in partition %d", m.DeviceID, m.Partition)
		}
		if string(m.Body) != fmt.Sprint(next[m.DeviceID]) {
			t.Fatalf("%s: message %s out of order, want %d", m.DeviceID, m.Body, next[m.DeviceID])
		}
		next[m.DeviceID]++
		if m.SequenceNumber != lastSeq[m.Partition]+1 {
			t.Fatalf("partition %d: sequence %d after %d, want contiguous", m.Partition, m.SequenceNumber, lastSeq[m.Partition])
		}
		lastSeq[m.Partition] = m.SequenceNumber
	}
}

func TestTelemetryReadStartPositions(t *testing.T) {
	t.Parallel()
	p := openPipeline(t, enginetest.Start(t), telemetry.Config{Partitions: 2})
	ctx := testCtx(t)
	devs := []string{"alpha", "bravo", "charlie", "delta"}
	for _, d := range devs {
		send(t, p, &telemetry.Message{DeviceID: d, Body: []byte("early")})
	}
	time.Sleep(20 * time.Millisecond)
	mid := time.Now()
	time.Sleep(20 * time.Millisecond)
	for _, d := range devs {
		send(t, p, &telemetry.Message{DeviceID: d, Body: []byte("late")})
	}
	fromEnd := newReader(t, p, telemetry.ReadOptions{From: telemetry.FromEnd})

	bodies := func(ms []*telemetry.Message) map[string]int {
		out := map[string]int{}
		for _, m := range ms {
			out[string(m.Body)]++
		}
		return out
	}
	t.Run("start", func(t *testing.T) {
		got := bodies(readN(t, newReader(t, p, telemetry.ReadOptions{From: telemetry.FromStart}), 8))
		if got["early"] != 4 || got["late"] != 4 {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("time", func(t *testing.T) {
		r := newReader(t, p, telemetry.ReadOptions{From: telemetry.FromTime, Time: mid})
		if got := bodies(readN(t, r, 4)); got["late"] != 4 {
			t.Fatalf("got %v", got)
		}
		expectNone(t, r)
	})
	t.Run("device filter", func(t *testing.T) {
		r := newReader(t, p, telemetry.ReadOptions{DeviceID: "charlie"})
		ms := readN(t, r, 2)
		if ms[0].DeviceID != "charlie" || ms[1].DeviceID != "charlie" || string(ms[0].Body) != "early" {
			t.Fatalf("got %s %s, %s %s", ms[0].DeviceID, ms[0].Body, ms[1].DeviceID, ms[1].Body)
		}
		if parts := r.Partitions(); len(parts) != 1 || parts[0] != telemetry.PartitionOf("charlie", 2) {
			t.Fatalf("a device reader reads partitions %v", parts)
		}
		expectNone(t, r)
	})
	t.Run("partition", func(t *testing.T) {
		r := newReader(t, p, telemetry.ReadOptions{Partitions: []int{1}})
		for _, m := range readN(t, r, 4) {
			if m.Partition != 1 {
				t.Fatalf("partition 1 reader got a message of partition %d", m.Partition)
			}
		}
		if _, err := p.NewReader(ctx, telemetry.ReadOptions{Partitions: []int{2}}); !errcode.Is(err, errcode.ArgumentInvalid) {
			t.Fatalf("partition 2 of 2: %v", err)
		}
	})
	t.Run("end", func(t *testing.T) {
		expectNone(t, fromEnd)
		send(t, p, &telemetry.Message{DeviceID: "echo", Body: []byte("new")})
		if m := readN(t, fromEnd, 1)[0]; string(m.Body) != "new" {
			t.Fatalf("from end read %s", m.Body)
		}
	})
}

func TestTelemetryModuleFilter(t *testing.T) {
	t.Parallel()
	p := openPipeline(t, enginetest.Start(t), telemetry.Config{})
	for _, m := range []*telemetry.Message{
		{DeviceID: "gw", Body: []byte("device")},
		{DeviceID: "gw", ModuleID: "m1", Body: []byte("m1")},
		{DeviceID: "gw", ModuleID: "m2", Body: []byte("m2")},
		{DeviceID: "other", ModuleID: "m1", Body: []byte("other-m1")},
	} {
		send(t, p, m)
	}
	tests := []struct {
		opts telemetry.ReadOptions
		want []string
	}{
		{telemetry.ReadOptions{DeviceID: "gw"}, []string{"device", "m1", "m2"}},
		{telemetry.ReadOptions{DeviceID: "gw", ModuleID: "m1"}, []string{"m1"}},
		{telemetry.ReadOptions{ModuleID: "m1"}, []string{"m1", "other-m1"}},
	}
	for _, tt := range tests {
		r := newReader(t, p, tt.opts)
		var got []string
		for _, m := range readN(t, r, len(tt.want)) {
			got = append(got, string(m.Body))
		}
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%+v: got %v, want %v", tt.opts, got, tt.want)
		}
		expectNone(t, r)
	}
}

func TestTelemetryCheckpointsResumeAConsumerGroup(t *testing.T) {
	t.Parallel()
	p := openPipeline(t, enginetest.Start(t), telemetry.Config{Partitions: 2})
	ctx := testCtx(t)
	if _, err := p.CreateConsumerGroup(ctx, "analytics"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		send(t, p, &telemetry.Message{DeviceID: fmt.Sprintf("d%d", i%3), Body: []byte(fmt.Sprint(i))})
	}
	r := newReader(t, p, telemetry.ReadOptions{ConsumerGroup: "analytics", From: telemetry.FromCheckpoint})
	first := readN(t, r, 4)
	for _, m := range first {
		if err := r.Checkpoint(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	if _, err := r.Next(ctx); !errors.Is(err, telemetry.ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	seen := map[string]bool{}
	for _, m := range first {
		seen[string(m.Body)] = true
	}
	r2 := newReader(t, p, telemetry.ReadOptions{ConsumerGroup: "ANALYTICS", From: telemetry.FromCheckpoint})
	rest := readN(t, r2, 2)
	for _, m := range rest {
		if seen[string(m.Body)] {
			t.Fatalf("message %s read again after its checkpoint", m.Body)
		}
		seen[string(m.Body)] = true
	}
	expectNone(t, r2)
	if len(seen) != 6 {
		t.Fatalf("read %d distinct messages, want 6", len(seen))
	}
	// Another group has its own position.
	other := newReader(t, p, telemetry.ReadOptions{From: telemetry.FromCheckpoint})
	readN(t, other, 6)
	cps, err := p.Checkpoints(ctx, "analytics")
	if err != nil || len(cps) == 0 {
		t.Fatalf("checkpoints %v, %v", cps, err)
	}
}

func TestTelemetryConsumerGroups(t *testing.T) {
	t.Parallel()
	p := openPipeline(t, enginetest.Start(t), telemetry.Config{})
	ctx := testCtx(t)
	names := func() []string {
		gs, err := p.ConsumerGroups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, g := range gs {
			out = append(out, g.Name)
		}
		return out
	}
	if got := names(); !slices.Equal(got, []string{"$Default"}) {
		t.Fatalf("new hub groups %v", got)
	}
	for _, n := range []string{"zeta", "Alpha.1"} {
		if _, err := p.CreateConsumerGroup(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if got := names(); !slices.Equal(got, []string{"$Default", "Alpha.1", "zeta"}) {
		t.Fatalf("groups %v", got)
	}
	tests := []struct {
		name string
		err  error
		code errcode.Code
	}{
		{"dup", func() error { _, err := p.CreateConsumerGroup(ctx, "ZETA"); return err }(), errcode.GenericConflict},
		{"bad name", func() error { _, err := p.CreateConsumerGroup(ctx, "-x"); return err }(), errcode.ArgumentInvalid},
		{"too long", func() error { _, err := p.CreateConsumerGroup(ctx, strings.Repeat("x", 51)); return err }(), errcode.ArgumentInvalid},
		{"delete default", p.DeleteConsumerGroup(ctx, "$default"), errcode.InvalidOperation},
		{"delete missing", p.DeleteConsumerGroup(ctx, "nope"), errcode.GenericNotFound},
		{"read missing", func() error { _, err := p.NewReader(ctx, telemetry.ReadOptions{ConsumerGroup: "nope"}); return err }(), errcode.GenericNotFound},
	}
	for _, tt := range tests {
		if !errcode.Is(tt.err, tt.code) {
			t.Errorf("%s: got %v, want %d", tt.name, tt.err, tt.code)
		}
	}
	if err := p.SetCheckpoint(ctx, "zeta", 0, 9); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteConsumerGroup(ctx, "Zeta"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateConsumerGroup(ctx, "zeta"); err != nil {
		t.Fatal(err)
	}
	if cps, err := p.Checkpoints(ctx, "zeta"); err != nil || len(cps) != 0 {
		t.Fatalf("a re-created group inherited checkpoints %v (%v)", cps, err)
	}
}

// TestTelemetryNothingAcknowledgedIsMissing is the pipeline's promise: every message whose
// Pending completed without error is seen by a reader that starts at the beginning.
func TestTelemetryNothingAcknowledgedIsMissing(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, eng *engine.Engine) {
		nothingAcknowledgedIsMissing(t, openPipeline(t, eng, telemetry.Config{MaxInFlight: 64}))
	})
}

func nothingAcknowledgedIsMissing(t *testing.T, p *telemetry.Pipeline) {
	t.Helper()
	ctx := testCtx(t)
	live := newReader(t, p, telemetry.ReadOptions{From: telemetry.FromEnd})
	const senders, each = 20, 100
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		wg    sync.WaitGroup
	)
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			window := make(chan struct {
				body string
				pd   *telemetry.Pending
			}, 16)
			done := make(chan struct{})
			go func() { // the "PUBACK" side: acknowledges in order
				defer close(done)
				for w := range window {
					if _, err := w.pd.Wait(ctx); err != nil {
						t.Errorf("wait %s: %v", w.body, err)
						continue
					}
					mu.Lock()
					acked[w.body] = true
					mu.Unlock()
				}
			}()
			for i := 0; i < each; i++ {
				body := fmt.Sprintf("s%d-%d", s, i)
				pd, err := p.SendAsync(&telemetry.Message{DeviceID: fmt.Sprintf("dev-%d", s), Body: []byte(body)})
				if err != nil {
					t.Errorf("send %s: %v", body, err)
					continue
				}
				window <- struct {
					body string
					pd   *telemetry.Pending
				}{body, pd}
			}
			close(window)
			<-done
		}()
	}
	wg.Wait()
	if len(acked) != senders*each {
		t.Fatalf("%d of %d acknowledged", len(acked), senders*each)
	}
	for name, r := range map[string]*telemetry.Reader{
		"started before": live,
		"started after":  newReader(t, p, telemetry.ReadOptions{From: telemetry.FromStart}),
	} {
		seen := map[string]bool{}
		for _, m := range readN(t, r, senders*each) {
			seen[string(m.Body)] = true
		}
		for body := range acked {
			if !seen[body] {
				t.Fatalf("%s: acknowledged message %s is missing", name, body)
			}
		}
		expectNone(t, r)
	}
}

func TestTelemetryRefusesOversizeMessages(t *testing.T) {
	t.Parallel()
	p := openPipeline(t, enginetest.Start(t), telemetry.Config{})
	ctx := testCtx(t)
	exact := &telemetry.Message{DeviceID: "big", Body: make([]byte, telemetry.MaxMessageSize-4),
		Properties: []telemetry.Property{{Name: "ab", Value: "cd"}}}
	if _, err := p.Send(ctx, exact); err != nil {
		t.Fatalf("a message of exactly 256 KB: %v", err)
	}
	over := &telemetry.Message{DeviceID: "big", Body: make([]byte, telemetry.MaxMessageSize-4),
		Properties: []telemetry.Property{{Name: "ab", Value: "cde"}}}
	_, err := p.SendAsync(over)
	var e *errcode.Error
	if !errors.As(err, &e) || e.Code != errcode.MessageTooLarge || e.Code.HTTPStatus() != 413 {
		t.Fatalf("256 KB + 1: got %v, want 413001", err)
	}
	r := newReader(t, p, telemetry.ReadOptions{})
	readN(t, r, 1)
	expectNone(t, r)
}

func TestTelemetryPartitionCountIsFixed(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	eng := enginetest.Start(t)
	p := openPipeline(t, eng, telemetry.Config{Partitions: 3, Retention: time.Hour})
	send(t, p, &telemetry.Message{DeviceID: "d", Body: []byte("kept")})
	p.Close()
	_, err := telemetry.Open(ctx, eng, telemetry.Config{Partitions: 4})
	if !errors.Is(err, telemetry.ErrPartitionsChanged) || !strings.Contains(err.Error(), "--partitions 3") {
		t.Fatalf("reopen with 4 partitions: %v", err)
	}
	// The same count with another retention opens, and the data is still there.
	p2 := openPipeline(t, eng, telemetry.Config{Partitions: 3, Retention: 2 * time.Hour})
	if m := readN(t, newReader(t, p2, telemetry.ReadOptions{}), 1)[0]; string(m.Body) != "kept" {
		t.Fatalf("after reopen: %s", m.Body)
	}
	if _, err := p2.SendAsync(&telemetry.Message{Body: []byte("x")}); !errcode.Is(err, errcode.ArgumentInvalid) {
		t.Fatalf("no device id: %v", err)
	}
	p2.Close()
	if _, err := p2.SendAsync(&telemetry.Message{DeviceID: "d"}); err == nil {
		t.Fatal("send after Close succeeded")
	}
}

func TestTelemetryEventJSONRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 600000000, time.UTC)
	tests := map[string]*telemetry.Message{
		"full": {
			DeviceID: "d\"1", ModuleID: "m\\1", Body: []byte("héllo\n\"world\"\u2028"),
			MessageID: "mid", CorrelationID: "cid", UserID: "uid", To: "/to", ContentType: "text/plain",
			ContentEncoding: "utf-8", OutputName: "o", InterfaceID: "i", ComponentName: "c", MessageSchema: "s",
			CreationTime: now.Add(-time.Hour), Expiry: now.Add(time.Hour),
			Properties: []telemetry.Property{{Name: "z", Value: "1"}, {Name: "a", Value: "\x01<>&"}},
			AuthMethod: `{"scope":"device"}`, AuthGenerationID: "g", EnqueuedTime: now, Partition: 3, SequenceNumber: 42,
		},
		"binary": {DeviceID: "d", Body: []byte{0xff, 0, 1}, EnqueuedTime: now, SequenceNumber: 1},
		"empty":  {DeviceID: "d", EnqueuedTime: now, SequenceNumber: 1},
	}
	for name, m := range tests {
		b := telemetry.AppendEventJSON(nil, m)
		got, err := telemetry.ParseEventJSON(b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, b)
		}
		if diff := cmp.Diff(m, got, cmpopts.IgnoreFields(telemetry.Message{}, "Protocol")); diff != "" {
			t.Fatalf("%s: (-want +got):\n%s\n%s", name, diff, b)
		}
		if strings.ContainsAny(string(b), "\n") {
			t.Fatalf("%s: event spans lines: %s", name, b)
		}
	}
}
