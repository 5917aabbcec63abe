package throttle

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
)

// fakeClock is the injected clock: Now reads it and Sleep advances it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func newThrottler(t *testing.T, sku string, units int, clk *fakeClock) *Throttler {
	t.Helper()
	th, err := New(Config{SKU: sku, Units: units, Burst: 10 * time.Second, Backlog: 5 * time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return th
}

func code(err error) errcode.Code {
	if err == nil {
		return 0
	}
	return errcode.As(err).Code
}

func TestUnlimitedIsNil(t *testing.T) {
	t.Parallel()
	for _, sku := range []string{"", "unlimited", "UNLIMITED"} {
		th, err := New(Config{SKU: sku})
		if err != nil || th != nil {
			t.Fatalf("New(%q) = %v, %v; want nil, nil", sku, th, err)
		}
		if d, err := th.Reserve(D2C, 1); d != 0 || err != nil {
			t.Fatalf("nil Reserve = %v, %v", d, err)
		}
		if err := th.Message(context.Background(), D2C, 1, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
}

func TestValidateSKU(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sku   string
		units int
		ok    bool
	}{{"S1", 1, true}, {"s2", 200, true}, {"S3", 10, true}, {"S3", 11, false}, {"F1", 2, false}, {"S1", 0, false}, {"X9", 1, false}, {"unlimited", 0, true}} {
		if err := ValidateSKU(tc.sku, tc.units); (err == nil) != tc.ok {
			t.Errorf("ValidateSKU(%s, %d) = %v", tc.sku, tc.units, err)
		}
	}
}

func TestRates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sku   string
		units int
		c     Class
		want  float64
	}{
		{"S1", 1, D2C, 100}, {"S1", 10, D2C, 120}, {"S2", 1, D2C, 120}, {"S3", 2, D2C, 12000},
		{"S1", 1, Connect, 100}, {"B2", 3, Connect, 360},
		{"S1", 1, Registry, 100.0 / 60}, {"S3", 1, Registry, 5000.0 / 60},
		{"S1", 1, Query, 20.0 / 60}, {"S3", 1, Query, 1000.0 / 60},
		{"S1", 1, C2DSend, 100.0 / 60}, {"S1", 1, C2DReceive, 1000.0 / 60},
		{"S1", 1, Methods, 40}, {"S2", 1, Methods, 120}, {"S3", 1, Methods, 6000},
		{"S1", 5, TwinRead, 100}, {"S2", 20, TwinRead, 200}, {"S3", 1, TwinRead, 500},
		{"S1", 1, TwinUpdate, 50}, {"S2", 20, TwinUpdate, 100}, {"S3", 2, TwinUpdate, 500},
		{"S1", 1, FileUpload, 100.0 / 60}, {"S1", 1, Jobs, 100.0 / 60}, {"F1", 1, D2C, 100},
	} {
		if got := Rate(tc.sku, tc.units, tc.c); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Rate(%s, %d, %s) = %v, want %v", tc.sku, tc.units, tc.c, got, tc.want)
		}
	}
	if q, m := DailyQuota("F1", 1); q != 8000 || m != 512 {
		t.Errorf("F1 quota %d/%d", q, m)
	}
	if q, m := DailyQuota("S2", 3); q != 18_000_000 || m != 4096 {
		t.Errorf("S2x3 quota %d/%d", q, m)
	}
}

// TestShaping walks every class through IoT Hub's traffic shaping: a burst is accepted at once,
// then operations queue and leave at the rate (the wait grows), then 429001 once the backlog
// is full, then recovery once the traffic falls back under the rate.
func TestShaping(t *testing.T) {
	t.Parallel()
	for c := range numClasses {
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			clk := &fakeClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
			th := newThrottler(t, "S1", 1, clk)
			rate := th.Rate(c)
			burst := int(math.Floor(rate * 10)) // Burst: 10 s of the rate
			for i := range burst {
				d, err := th.Reserve(c, 1)
				if err != nil || d != 0 {
					t.Fatalf("burst op %d: wait %v, err %v", i, d, err)
				}
			}
			// Over the burst: queued, each later one waits one interval longer.
			var last time.Duration
			queued := 0
			for {
				d, err := th.Reserve(c, 1)
				if code(err) == errcode.ThrottlingException {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if d <= last || d > 5*time.Second {
					t.Fatalf("queued op %d waits %v after %v", queued, d, last)
				}
				last = d
				queued++
				if queued > 1e6 {
					t.Fatal("backlog never fills")
				}
			}
			if want := int(rate * 5); queued < want-1 || queued > want+1 {
				t.Fatalf("backlog held %d operations; want about %d (5 s of %v/s)", queued, want, rate)
			}
			// Clients that retry at once keep getting 429001 and change nothing.
			for range 100 {
				if _, err := th.Reserve(c, 1); code(err) != errcode.ThrottlingException {
					t.Fatalf("retry: %v", err)
				}
			}
			// Recovery: after the backlog drains, operations at the rate pass at once again.
			clk.Advance(5 * time.Second)
			step := time.Duration(float64(time.Second) / rate)
			for i := range 3 {
				clk.Advance(step)
				if d, err := th.Reserve(c, 1); err != nil || d > 5*time.Second {
					t.Fatalf("recovery op %d: %v %v", i, d, err)
				}
			}
			clk.Advance(15 * time.Second)
			if d, err := th.Reserve(c, 1); err != nil || d != 0 {
				t.Fatalf("after idle: %v %v", d, err)
			}
		})
	}
}

// TestAdmittedRate floods a class for a long time and checks that what is admitted, counting
// the queued operations at the time they leave, is the rate.
func TestAdmittedRate(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	th := newThrottler(t, "S1", 1, clk)
	start := clk.Now()
	var admitted int
	const seconds = 600
	for range seconds * 1000 { // 1000/s offered against 100/s
		clk.Advance(time.Millisecond)
		if d, err := th.Reserve(D2C, 1); err == nil && clk.Now().Add(d).Sub(start) <= seconds*time.Second {
			admitted++
		}
	}
	want := 100.0*seconds + 100*10 // rate plus the burst
	if got := float64(admitted); math.Abs(got-want)/want > 0.01 {
		t.Fatalf("admitted %v in %d s, want %v", got, seconds, want)
	}
}

func TestMethodsMeter(t *testing.T) {
	t.Parallel()
	if Meters(1, 4096) != 1 || Meters(4096, 4096) != 1 || Meters(4097, 4096) != 2 || Meters(128<<10, 4096) != 32 || Meters(600, 512) != 2 {
		t.Fatal("meters")
	}
	clk := &fakeClock{t: time.Unix(0, 0)}
	th := newThrottler(t, "S1", 1, clk)
	// 40 meters/s, burst 10 s: 400 meters; 12 calls of 32 meters fit at once, the 13th queues.
	for i := range 12 {
		if d, err := th.Reserve(Methods, 32); d != 0 || err != nil {
			t.Fatalf("call %d: %v %v", i, d, err)
		}
	}
	if d, err := th.Reserve(Methods, 32); err != nil || d == 0 {
		t.Fatalf("13th call: %v %v", d, err)
	}
}

func TestBasicTierRefusesStandardFeatures(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(0, 0)}
	b := newThrottler(t, "B1", 1, clk)
	s := newThrottler(t, "S1", 1, clk)
	for c := range numClasses {
		_, err := b.Reserve(c, 1)
		if c.standardOnly() != (code(err) == errcode.FeatureNotSupported) {
			t.Errorf("B1 %s: %v", c, err)
		}
		if _, err := s.Reserve(c, 1); err != nil {
			t.Errorf("S1 %s: %v", c, err)
		}
	}
}

func TestWaitSleepsTheShapingDelay(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(0, 0)}
	var slept time.Duration
	th, err := New(Config{SKU: "S1", Burst: time.Second, Backlog: time.Second, Now: clk.Now,
		Sleep: func(_ context.Context, d time.Duration) error { slept += d; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 + 50 {
		if err := th.Wait(context.Background(), D2C, 1); err != nil {
			t.Fatal(err)
		}
	}
	// 100 in the burst, then 50 queued at 10 ms apart: 10 ms + 20 ms + ... + 500 ms.
	if want := time.Duration(50*51/2) * 10 * time.Millisecond; slept != want {
		t.Fatalf("slept %v, want %v", slept, want)
	}
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	th2, _ := New(Config{SKU: "S1", Burst: time.Nanosecond, Backlog: time.Second, Now: clk.Now})
	_ = th2.Wait(cctx, D2C, 1)
	if err := th2.Wait(cctx, D2C, 1); code(err) != errcode.ThrottlingException {
		t.Fatalf("cancelled wait: %v", err)
	}
}

func TestDailyQuotaRollover(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx := context.Background()
	clk := &fakeClock{t: time.Date(2026, 11, 26, 23, 0, 0, 0, time.UTC)}
	th := newThrottler(t, "F1", 1, clk)
	if err := th.Join(ctx, eng, JoinConfig{Node: "n1", Interval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	defer th.Close()
	// F1: 8,000 messages of 0.5 KB. A 4 KB message counts as 8.
	for i := range 1000 {
		if err := th.UseQuota(ctx, 4096); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if used, limit := th.QuotaUsed(); used != 8000 || limit != 8000 {
		t.Fatalf("used %d of %d", used, limit)
	}
	if err := th.UseQuota(ctx, 1); code(err) != errcode.IotHubQuotaExceeded {
		t.Fatalf("over quota: %v", err)
	}
	clk.Advance(59*time.Minute + 59*time.Second)
	if err := th.UseQuota(ctx, 1); code(err) != errcode.IotHubQuotaExceeded {
		t.Fatalf("23:59:59: %v", err)
	}
	clk.Advance(time.Second) // 00:00 UTC
	if err := th.UseQuota(ctx, 1); err != nil {
		t.Fatalf("after midnight: %v", err)
	}
	if used, _ := th.QuotaUsed(); used != 1 {
		t.Fatalf("used %d after midnight", used)
	}
}

// TestQuotaIsSharedByNodes spends one quota from two nodes, each with its own connection to
// one engine.
func TestQuotaIsSharedByNodes(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx := context.Background()
	clk := &fakeClock{t: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
	var ths []*Throttler
	for i, node := range []string{"a", "b"} {
		th := newThrottler(t, "F1", 1, clk)
		if err := th.Join(ctx, eng, JoinConfig{Node: node, Interval: time.Hour}); err != nil {
			t.Fatal(i, err)
		}
		defer th.Close()
		ths = append(ths, th)
	}
	var ok int
	for i := range 10000 {
		if err := ths[i%2].UseQuota(ctx, 1); err == nil {
			ok++
		} else if code(err) != errcode.IotHubQuotaExceeded {
			t.Fatal(err)
		}
	}
	// Both nodes stop within one lease (40 messages) of the quota.
	if ok > 8000 || ok < 8000-2*40 {
		t.Fatalf("admitted %d of a quota of 8000", ok)
	}
}

// TestClusterShares runs one, two and three nodes on one nats-server and checks that the
// hub-wide admitted rate stays within 3 % of the rate however unevenly the load is spread.
func TestClusterShares(t *testing.T) {
	t.Parallel()
	x := enginetest.StartExternal(t)
	for _, nodes := range []int{1, 2, 3} {
		// One after the other on one server: each run's nodes withdraw (Close) when it ends.
		t.Run(string(rune('0'+nodes)), func(t *testing.T) {
			ctx := context.Background()
			clk := &fakeClock{t: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
			var ths []*Throttler
			for i := range nodes {
				th, err := New(Config{SKU: "S1", Burst: time.Second, Backlog: time.Second, Now: clk.Now})
				if err != nil {
					t.Fatal(err)
				}
				if err := th.Join(ctx, x.Connect(t), JoinConfig{Node: string(rune('a' + i)), Interval: time.Hour}); err != nil {
					t.Fatal(err)
				}
				defer th.Close()
				ths = append(ths, th)
			}
			// Uneven load against a hub rate of 100/s: node i is offered 1000/(i+1) sends/s.
			var admitted int
			const warmup, seconds = 20, 120
			for ms := range seconds * 1000 {
				clk.Advance(time.Millisecond)
				for i, th := range ths {
					if ms%(i+1) != 0 {
						continue
					}
					d, err := th.Reserve(D2C, 1)
					if err == nil && ms >= warmup*1000 && clk.Now().Add(d).Before(time.Date(2026, 11, 26, 10, 0, seconds, 0, time.UTC)) {
						admitted++
					}
				}
				if ms%1000 == 999 {
					for _, th := range ths {
						th.Rebalance(ctx)
					}
				}
			}
			got := float64(admitted) / (seconds - warmup)
			t.Logf("%d nodes: admitted %.2f/s of 100/s", nodes, got)
			if math.Abs(got-100)/100 > 0.03 {
				t.Errorf("%d nodes admitted %.1f/s, want 100/s within 3%%", nodes, got)
			}
			var sum float64
			for _, th := range ths {
				sum += th.Share(D2C)
			}
			if math.Abs(sum-1) > 0.01 {
				t.Errorf("%d nodes: shares sum to %v", nodes, sum)
			}
		})
	}
}

func TestCloseWithdrawsTheNode(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx := context.Background()
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	a, b := newThrottler(t, "S1", 1, clk), newThrottler(t, "S1", 1, clk)
	for i, th := range []*Throttler{a, b} {
		if err := th.Join(ctx, eng, JoinConfig{Node: string(rune('a' + i)), Interval: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	a.Rebalance(ctx)
	if s := a.Share(D2C); math.Abs(s-0.5) > 1e-9 {
		t.Fatalf("share with two idle nodes: %v", s)
	}
	b.Close()
	a.Rebalance(ctx)
	if s := a.Share(D2C); s != 1 {
		t.Fatalf("share alone: %v", s)
	}
	a.Close()
	if err := a.UseQuota(ctx, 1); err != nil && !errors.Is(err, context.Canceled) {
		t.Log(err)
	}
}

func BenchmarkReserve(b *testing.B) {
	th, _ := New(Config{SKU: "S3", Units: 10})
	b.ReportAllocs()
	for b.Loop() {
		_, _ = th.Reserve(D2C, 1)
	}
}

func BenchmarkReserveUnlimited(b *testing.B) {
	var th *Throttler
	b.ReportAllocs()
	for b.Loop() {
		_, _ = th.Reserve(D2C, 1)
	}
}

func TestDeviceLimitsAndGroups(t *testing.T) {
	t.Parallel()
	groups, err := ParseDeviceGroups(`[{"condition":"tags.fleet = 'noisy'","deviceSends":1},{"condition":"tags.fleet = 'big'","deviceBytes":1000}]`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseDeviceGroups(`[{"condition":"tags.fleet = "}]`); err == nil {
		t.Fatal("a bad condition was accepted")
	}
	if _, err := ParseDeviceGroups(`[{"condition":"tags.a = 1","deviceBytes":-1}]`); err == nil {
		t.Fatal("a negative cap was accepted")
	}
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	dl, err := NewDeviceLimits(DeviceLimitsConfig{Default: DeviceLimit{Sends: 10}, Groups: groups, Burst: time.Second, Backlog: time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	noisy := dl.For(map[string]any{"tags": map[string]any{"fleet": "noisy"}})
	big := dl.For(map[string]any{"tags": map[string]any{"fleet": "big"}})
	other := dl.For(nil)
	if noisy.Limit() != (DeviceLimit{Sends: 1}) || big.Limit() != (DeviceLimit{Bytes: 1000}) || other.Limit() != (DeviceLimit{Sends: 10}) {
		t.Fatalf("limits %v %v %v", noisy.Limit(), big.Limit(), other.Limit())
	}
	if noisy.Group() != "" {
		t.Fatalf("a group without a total has a budget: %q", noisy.Group())
	}
	// noisy: 1/s, 1 s burst and 1 s backlog: one at once, one queued, then 429001.
	if d, err := noisy.Reserve(10); d != 0 || err != nil {
		t.Fatal(d, err)
	}
	if d, err := noisy.Reserve(10); d != time.Second || err != nil {
		t.Fatal(d, err)
	}
	if _, err := noisy.Reserve(10); code(err) != errcode.ThrottlingException {
		t.Fatal(err)
	}
	// Another device is not affected.
	for range 10 {
		if d, err := other.Reserve(10); d != 0 || err != nil {
			t.Fatal(d, err)
		}
	}
	// big: 1000 bytes/s; a 2000-byte message waits a second.
	if d, err := big.Reserve(2000); d != time.Second || err != nil {
		t.Fatal(d, err)
	}
	if none, _ := NewDeviceLimits(DeviceLimitsConfig{}); none != nil || none.For(nil) != nil {
		t.Fatal("no caps configured, but a limiter")
	}
	var nl *DeviceLimiter
	if err := nl.Wait(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
}

// TestDeviceGroupTotal: a group's "sends" and "bytes" cap all its devices together. 100 devices
// of a group capped at 10 messages/s (1 s burst, 1 s backlog) get 10 messages through at once
// and 10 queued between them, then 429001, however the messages are spread over the devices;
// a device outside the group is not affected, and each device's own cap still applies.
func TestDeviceGroupTotal(t *testing.T) {
	t.Parallel()
	// The JSON of before keeps parsing: "sends" and "bytes" are now the group's total.
	groups, err := ParseDeviceGroups(`[{"condition":"tags.fleet = 'noisy'","sends":10,"deviceSends":2},{"condition":"tags.fleet = 'cams'","bytes":1000}]`)
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	dl, err := NewDeviceLimits(DeviceLimitsConfig{Default: DeviceLimit{Sends: 100}, Groups: groups, Burst: time.Second, Backlog: time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	fleet := func(name string) map[string]any { return map[string]any{"tags": map[string]any{"fleet": name}} }
	var devs []*DeviceLimiter
	for range 100 {
		devs = append(devs, dl.For(fleet("noisy")))
	}
	if devs[0].Group() != "tags.fleet = 'noisy'" || devs[0].Limit() != (DeviceLimit{Sends: 2}) {
		t.Fatalf("group %q, per-device %v", devs[0].Group(), devs[0].Limit())
	}
	var now, queued, refused int
	for i, d := range devs {
		w, err := d.Reserve(10)
		switch {
		case err == nil && w == 0:
			now++
		case err == nil:
			queued++
		case code(err) == errcode.ThrottlingException:
			refused++
			if !strings.Contains(err.Error(), "device group") {
				t.Fatalf("device %d: %v", i, err)
			}
		default:
			t.Fatal(err)
		}
	}
	if now != 10 || queued != 10 || refused != 80 {
		t.Fatalf("100 devices of a group capped at 10/s: %d at once, %d queued, %d refused; want 10, 10, 80", now, queued, refused)
	}
	outside := dl.For(nil)
	for range 50 {
		if w, err := outside.Reserve(10); w != 0 || err != nil {
			t.Fatalf("a device outside the group: %v %v", w, err)
		}
	}
	// The group refused device 99's message: its own cap was not charged for it. After the
	// group drains, the device's own cap (2/s: 2 at once, 2 queued) applies below the group's.
	clk.Advance(10 * time.Second)
	d := devs[99]
	for i := range 4 {
		if _, err := d.Reserve(10); err != nil {
			t.Fatalf("message %d of a device under both caps: %v", i, err)
		}
	}
	if _, err := d.Reserve(10); code(err) != errcode.ThrottlingException || strings.Contains(err.Error(), "device group") {
		t.Fatalf("over the device's own cap: %v", err)
	}
	// Bytes: the cams group shares 1000 bytes/s; two 1000-byte messages from two cameras pass
	// (the second waits a second), a third from a third camera is refused.
	cams := []*DeviceLimiter{dl.For(fleet("cams")), dl.For(fleet("cams")), dl.For(fleet("cams"))}
	if w, err := cams[0].Reserve(1000); w != 0 || err != nil {
		t.Fatal(w, err)
	}
	if w, err := cams[1].Reserve(1000); w != time.Second || err != nil {
		t.Fatal(w, err)
	}
	if _, err := cams[2].Reserve(1000); code(err) != errcode.ThrottlingException {
		t.Fatal(err)
	}
	// Default per-device cap does not apply in a group that sets none of its own.
	if cams[0].Limit() != (DeviceLimit{}) {
		t.Fatalf("cams per-device cap %v", cams[0].Limit())
	}
}

// TestDeviceGroupTotalAcrossNodes runs a group's devices on two nodes of one nats-server: each
// node has its own DeviceLimits, and their devices share the group's total of 100 messages/s.
// The load is uneven (node a's devices offer 1000/s, node b's 250/s), and the total admitted
// rate across both nodes stays within 3 % of the cap.
func TestDeviceGroupTotalAcrossNodes(t *testing.T) {
	t.Parallel()
	x := enginetest.StartExternal(t)
	ctx := context.Background()
	clk := &fakeClock{t: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
	groups := `[{"condition":"tags.fleet = 'noisy'","sends":100}]`
	doc := map[string]any{"tags": map[string]any{"fleet": "noisy"}}
	var nodes []*DeviceLimits
	var devs [][]*DeviceLimiter
	for i := range 2 {
		gs, err := ParseDeviceGroups(groups)
		if err != nil {
			t.Fatal(err)
		}
		dl, err := NewDeviceLimits(DeviceLimitsConfig{Groups: gs, Burst: time.Second, Backlog: time.Second, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := dl.Join(ctx, x.Connect(t), JoinConfig{Node: string(rune('a' + i)), Interval: time.Hour}); err != nil {
			t.Fatal(err)
		}
		defer dl.Close()
		nodes = append(nodes, dl)
		var ds []*DeviceLimiter
		for range 50 {
			ds = append(ds, dl.For(doc))
		}
		devs = append(devs, ds)
	}
	const warmup, seconds = 20, 120
	end := clk.Now().Add(seconds * time.Second)
	var admitted int
	for ms := range seconds * 1000 {
		clk.Advance(time.Millisecond)
		for n := range nodes {
			if n == 1 && ms%4 != 0 {
				continue
			}
			d, err := devs[n][ms%50].Reserve(100)
			if err == nil && ms >= warmup*1000 && clk.Now().Add(d).Before(end) {
				admitted++
			}
		}
		if ms%1000 == 999 {
			for _, dl := range nodes {
				dl.Rebalance(ctx)
			}
		}
	}
	got := float64(admitted) / (seconds - warmup)
	t.Logf("two nodes: the group admitted %.2f/s of 100/s", got)
	if math.Abs(got-100)/100 > 0.03 {
		t.Errorf("the group admitted %.1f/s across two nodes, want 100/s within 3%%", got)
	}
	sa, sb := nodes[0].GroupShare("sends", "tags.fleet = 'noisy'"), nodes[1].GroupShare("sends", "tags.fleet = 'noisy'")
	if math.Abs(sa+sb-1) > 0.01 || sa <= sb {
		t.Errorf("shares %v and %v", sa, sb)
	}
	// A node that leaves gives its share back.
	nodes[1].Close()
	nodes[0].Rebalance(ctx)
	if s := nodes[0].GroupShare("sends", "tags.fleet = 'noisy'"); s != 1 {
		t.Errorf("share alone: %v", s)
	}
}

func TestDeviceLimitsCacheIsBounded(t *testing.T) {
	t.Parallel()
	dl, err := NewDeviceLimits(DeviceLimitsConfig{Default: DeviceLimit{Sends: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := dl.Cached(ctx, "a", "")
	if dl.Cached(ctx, "a", "") != a || dl.Cached(ctx, "a", "m") == a {
		t.Fatal("a device does not keep its limiter between requests")
	}
	for i := range maxCached + 100 {
		dl.Cached(ctx, strconv.Itoa(i), "")
	}
	if n := len(dl.cache); n > maxCached {
		t.Fatalf("%d limiters kept", n)
	}
}

// TestBulkCostsOneOperationPerDevice: a bulk registry call of 100 devices (Reserve with n =
// 100) is shaped and refused as the last of 100 single creates would be. S1 runs the registry
// at 100/min; with a 30 s burst and a 30 s backlog an idle class admits 50 at once and queues
// 50 more.
func TestBulkCostsOneOperationPerDevice(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	mk := func() *Throttler {
		th, err := New(Config{SKU: "S1", Burst: 30 * time.Second, Backlog: 30 * time.Second, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return th
	}
	bulk, singles := mk(), mk()
	// lastOf100 makes 100 single reservations and returns the last one's outcome.
	lastOf100 := func() (d time.Duration, err error) {
		for range 100 {
			d, err = singles.Reserve(Registry, 1)
		}
		return d, err
	}
	check := func(step string) {
		t.Helper()
		dw, errw := lastOf100()
		db, errb := bulk.Reserve(Registry, 100)
		if db != dw || code(errb) != code(errw) {
			t.Fatalf("%s: bulk of 100 waits %v (%v); the 100th single create waits %v (%v)", step, db, errb, dw, errw)
		}
	}
	check("idle") // 50 at once, 50 queued: the last waits the whole 30 s backlog
	if d, err := bulk.Reserve(Registry, 1); code(err) != errcode.ThrottlingException {
		t.Fatalf("one more after a full bulk: %v %v", d, err)
	}
	_, _ = singles.Reserve(Registry, 1)
	check("backlog full") // 429001, and nothing is reserved
	clk.Advance(24 * time.Second)
	check("partly drained") // 40 of 100 fit: the bulk is refused as the 100th single is
	// A refused bulk reserved nothing: what is left is still there for smaller calls.
	for i := range 40 {
		if _, err := bulk.Reserve(Registry, 1); err != nil {
			t.Fatalf("single %d after the refused bulk: %v", i, err)
		}
	}
	clk.Advance(time.Hour)
	check("idle again")
	// The rate holds over a long flood of bulk calls: 100/min plus the burst.
	clk.Advance(time.Hour)
	fresh := mk()
	var admitted int
	for range 600 { // a 100-device bulk every second for 10 minutes, 60 times the rate
		clk.Advance(time.Second)
		if _, err := fresh.Reserve(Registry, 100); err == nil {
			admitted += 100
		}
	}
	if admitted < 1000 || admitted > 1100 {
		t.Fatalf("admitted %d devices in 10 minutes at 100/min", admitted)
	}
}

// TestOversizeOperationOnIdleClass: a reservation worth more than the burst and the backlog
// together passes when the class is idle, waits the backlog, and the operations after it pay.
func TestOversizeOperationOnIdleClass(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	th, err := New(Config{SKU: "S1", Burst: time.Second, Backlog: time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := th.Reserve(Registry, 100); err != nil || d != time.Second {
		t.Fatalf("oversize bulk on an idle class: %v %v", d, err)
	}
	if _, err := th.Reserve(Registry, 100); code(err) != errcode.ThrottlingException {
		t.Fatalf("second oversize bulk: %v", err)
	}
	clk.Advance(58 * time.Second) // 100 operations at 100/min take 60 s: still 2 s in debt
	if _, err := th.Reserve(Registry, 1); code(err) != errcode.ThrottlingException {
		t.Fatalf("single op while the bulk is paid off: %v", err)
	}
	clk.Advance(2 * time.Second)
	if d, err := th.Reserve(Registry, 1); err != nil || d != 0 {
		t.Fatalf("after the bulk is paid off: %v %v", d, err)
	}
}
