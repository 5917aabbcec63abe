package throttle

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/roost-iot/roost/internal/errcode"
)

// Config chooses the tier a [Throttler] enforces. The zero value is [Unlimited].
type Config struct {
	// SKU is F1, B1, B2, B3, S1, S2, S3 or unlimited. Empty means unlimited.
	SKU string
	// Units is the number of units of the tier. Zero means 1.
	Units int
	// Burst is how long a class may run over its rate before operations start to queue: an idle
	// class admits Burst times its rate at once. Zero means 60 s (the guide's "first minute or
	// two" of over-limit traffic served at once).
	Burst time.Duration
	// Backlog is how long an operation may wait in the queue once the burst is spent; an
	// operation that would wait longer is refused with 429001. Zero means 10 s.
	Backlog time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Sleep waits d or until ctx ends. Nil means a timer. Tests inject a fake clock's.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives share changes and quota leases. Nil discards them.
	Logger *slog.Logger
}

// Throttler enforces a tier's operation rates and features. A nil *Throttler is the unlimited
// hub: every method returns at once with no error, so call sites cost one branch.
type Throttler struct {
	sku   string
	units int
	tier  tier
	lims  [numClasses]*limiter
	rates [numClasses]float64 // hub-wide rates
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
	log   *slog.Logger
	quota *Quota

	shares [numClasses]atomic.Uint64 // float64 bits: this node's share of each rate
	seat   member                    // in the hub's rates, once joined (cluster.go)
}

// New returns the throttler for cfg, or nil for the unlimited hub.
func New(cfg Config) (*Throttler, error) {
	if cfg.SKU == "" || strings.EqualFold(cfg.SKU, Unlimited) {
		return nil, nil
	}
	if cfg.Units == 0 {
		cfg.Units = 1
	}
	if err := ValidateSKU(cfg.SKU, cfg.Units); err != nil {
		return nil, err
	}
	if cfg.Burst == 0 {
		cfg.Burst = 60 * time.Second
	}
	if cfg.Backlog == 0 {
		cfg.Backlog = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	t, _ := lookup(cfg.SKU)
	th := &Throttler{sku: strings.ToUpper(cfg.SKU), units: cfg.Units, tier: t, now: cfg.Now, sleep: cfg.Sleep,
		log: cfg.Logger.With("component", "throttle")}
	for c := range numClasses {
		th.rates[c] = Rate(cfg.SKU, cfg.Units, c)
		th.lims[c] = newLimiter(th.rates[c], cfg.Burst, cfg.Backlog)
		th.shares[c].Store(math.Float64bits(1))
	}
	return th, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SKU returns the tier's name, or "unlimited".
func (t *Throttler) SKU() string {
	if t == nil {
		return Unlimited
	}
	return t.sku
}

// Rate returns the class's hub-wide rate per second; zero on the unlimited hub.
func (t *Throttler) Rate(c Class) float64 {
	if t == nil {
		return 0
	}
	return t.rates[c]
}

// Feature refuses, on a basic tier, an operation of a class only standard tiers have (C2D,
// twins, direct methods, jobs) with 404013 FeatureNotSupported.
func (t *Throttler) Feature(c Class) error {
	if t == nil || !t.tier.basic || !c.standardOnly() {
		return nil
	}
	return errcode.New(errcode.FeatureNotSupported, "%s is not available on the %s tier (use a standard tier: S1, S2, S3)", featureName(c), t.sku)
}

func featureName(c Class) string {
	switch c {
	case C2DSend, C2DReceive:
		return "cloud-to-device messaging"
	case Methods:
		return "direct methods"
	case TwinRead, TwinUpdate:
		return "device twins"
	case Jobs:
		return "jobs"
	}
	return c.String()
}

// Reserve admits n units of class c (n is 1 except for [Methods], counted in 4 KB meters, and
// bulk [Registry] calls, one unit per device). n units cost what n operations one after the
// other would: the call waits as long as the last of them would, and is refused when the last
// would be (then nothing is reserved).
// It returns how long the operation must wait in the backlog (zero during the burst), or
// 429001 ThrottlingException when the backlog is full. It never blocks.
func (t *Throttler) Reserve(c Class, n int) (time.Duration, error) {
	if t == nil {
		return 0, nil
	}
	if err := t.Feature(c); err != nil {
		return 0, err
	}
	wait, ok := t.lims[c].reserve(t.now().UnixNano(), n)
	if !ok {
		return 0, errcode.New(errcode.ThrottlingException,
			"the hub's %s rate (%s) was exceeded for too long and its backlog is full: retry later or scale up", c, rateText(t.rates[c], c))
	}
	return wait, nil
}

// Wait is [Throttler.Reserve] followed by the wait it asks for: operations over the rate are
// slowed down, not dropped, until the backlog is full.
func (t *Throttler) Wait(ctx context.Context, c Class, n int) error {
	if t == nil {
		return nil
	}
	d, err := t.Reserve(c, n)
	if err != nil || d <= 0 {
		return err
	}
	if err := t.sleep(ctx, d); err != nil {
		return errcode.Wrap(errcode.ThrottlingException, err, "the operation ended while it waited in the %s backlog", c)
	}
	return nil
}

func rateText(r float64, c Class) string {
	unit := "operations/s"
	if c == Methods {
		unit = "4 KB meters/s"
	}
	return strconv.FormatFloat(r, 'f', -1, 64) + " " + unit
}

// Message is the check for an operation that counts against the daily quota (device-to-cloud
// and cloud-to-device messages, direct methods, twin operations): [Throttler.Wait] for n units
// of the class, then the quota for size bytes. It returns 429001 or 403002.
func (t *Throttler) Message(ctx context.Context, c Class, n, size int) error {
	if t == nil {
		return nil
	}
	if err := t.Wait(ctx, c, n); err != nil {
		return err
	}
	return t.UseQuota(ctx, size)
}

// UseQuota charges a message of size bytes to the daily quota; 403002 once it is used up.
// Before [Throttler.Join] there is no quota.
func (t *Throttler) UseQuota(ctx context.Context, size int) error {
	if t == nil || t.quota == nil {
		return nil
	}
	return t.quota.Use(ctx, size)
}

// QuotaUsed returns the messages used today and the daily quota; zeros without a quota.
func (t *Throttler) QuotaUsed() (used, limit int64) {
	if t == nil || t.quota == nil {
		return 0, 0
	}
	return t.quota.Used(), t.quota.Limit()
}
