package throttle

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/query"
)

// Per-device limits go beyond IoT Hub, whose throttles are only for the whole hub: an operator
// can cap what one device sends (messages and bytes per second), with other caps for groups of
// devices chosen by a twin condition, so that one runaway device cannot use up the hub's rate
// and starve the fleet. They shape like the hub's throttles (burst, then a backlog the device's
// messages wait in, then 429001) and work with any --sku, unlimited included.
//
// A device holds one MQTT connection in the whole cluster, so its limiter lives with the
// connection, on the node that holds it: no engine round trip, and the limit is the device's
// wherever it connects.

// DeviceLimit caps one device's device-to-cloud traffic. Zero fields mean no cap.
type DeviceLimit struct {
	// Sends is messages per second.
	Sends float64 `json:"sends,omitempty"`
	// Bytes is payload bytes per second.
	Bytes float64 `json:"bytes,omitempty"`
}

func (l DeviceLimit) zero() bool { return l.Sends <= 0 && l.Bytes <= 0 }

// DeviceGroup is a limit for the devices whose twin matches Condition (the query language's
// WHERE clause without WHERE, e.g. "tags.fleet = 'sensors'").
type DeviceGroup struct {
	Condition string `json:"condition"`
	DeviceLimit
	cond *query.Condition
}

// DeviceLimitsConfig configures [DeviceLimits].
type DeviceLimitsConfig struct {
	// Default applies to devices no group matches. Zero means no cap.
	Default DeviceLimit
	// Groups are tried in order; the first whose condition matches the device's twin applies.
	Groups []DeviceGroup
	// Burst and Backlog shape as in [Config]. Zero means 10 s and 5 s.
	Burst, Backlog time.Duration
	// Twin returns an identity's twin as GET /twins shows it, decoded, for the groups'
	// conditions. Nil, or an error, means no group matches and Default applies.
	Twin func(ctx context.Context, deviceID, moduleID string) (map[string]any, error)
	// Now and Sleep are the clock, as in [Config].
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// ParseDeviceGroups reads groups from JSON: [{"condition":"tags.fleet = 'x'","sends":5,"bytes":4096}].
func ParseDeviceGroups(text string) ([]DeviceGroup, error) {
	if text == "" {
		return nil, nil
	}
	var gs []DeviceGroup
	if err := json.Unmarshal([]byte(text), &gs); err != nil {
		return nil, fmt.Errorf("device groups: %w", err)
	}
	for i := range gs {
		c, err := query.ParseCondition(gs[i].Condition)
		if err != nil {
			return nil, fmt.Errorf("device group %d: %w", i+1, err)
		}
		gs[i].cond = c
		if gs[i].Sends < 0 || gs[i].Bytes < 0 {
			return nil, fmt.Errorf("device group %d: negative limit", i+1)
		}
	}
	return gs, nil
}

// DeviceLimits hands out per-device limiters. A nil *DeviceLimits limits nothing.
type DeviceLimits struct {
	cfg DeviceLimitsConfig

	mu    sync.Mutex
	cache map[string]*DeviceLimiter // Cached's limiters, at most maxCached
}

// maxCached bounds the limiters [DeviceLimits.Cached] keeps (about 200 bytes each).
const maxCached = 65536

// NewDeviceLimits returns the per-device limits, or nil when nothing is capped.
func NewDeviceLimits(cfg DeviceLimitsConfig) (*DeviceLimits, error) {
	if cfg.Default.zero() && len(cfg.Groups) == 0 {
		return nil, nil
	}
	for i := range cfg.Groups {
		if cfg.Groups[i].cond == nil {
			c, err := query.ParseCondition(cfg.Groups[i].Condition)
			if err != nil {
				return nil, fmt.Errorf("device group %d: %w", i+1, err)
			}
			cfg.Groups[i].cond = c
		}
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 10 * time.Second
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	return &DeviceLimits{cfg: cfg}, nil
}

// Cached returns the limiter of a device sending over a connectionless protocol (HTTPS),
// kept on this node between requests. The node keeps at most 65,536; past that it forgets one
// at random, whose device starts again with a full burst. A device whose requests reach
// several nodes is capped on each.
func (d *DeviceLimits) Cached(ctx context.Context, deviceID, moduleID string) *DeviceLimiter {
	if d == nil {
		return nil
	}
	key := deviceID + "/" + moduleID
	d.mu.Lock()
	dl, ok := d.cache[key]
	d.mu.Unlock()
	if ok {
		return dl
	}
	dl = d.Lookup(ctx, deviceID, moduleID)
	d.mu.Lock()
	defer d.mu.Unlock()
	if have, ok := d.cache[key]; ok {
		return have
	}
	if d.cache == nil {
		d.cache = map[string]*DeviceLimiter{}
	}
	if len(d.cache) >= maxCached {
		for k := range d.cache {
			delete(d.cache, k)
			break
		}
	}
	d.cache[key] = dl
	return dl
}

// Lookup returns the limiter of a device that just connected, reading its twin when groups
// are configured; nil when the device is not capped.
func (d *DeviceLimits) Lookup(ctx context.Context, deviceID, moduleID string) *DeviceLimiter {
	if d == nil {
		return nil
	}
	var doc map[string]any
	if len(d.cfg.Groups) > 0 && d.cfg.Twin != nil {
		doc, _ = d.cfg.Twin(ctx, deviceID, moduleID)
	}
	return d.For(doc)
}

// For returns the limiter of a device whose twin is doc (nil when no group is configured), or
// nil when the device is not capped.
func (d *DeviceLimits) For(doc map[string]any) *DeviceLimiter {
	if d == nil {
		return nil
	}
	l := d.cfg.Default
	for _, g := range d.cfg.Groups {
		if doc != nil && g.cond.Match(doc) {
			l = g.DeviceLimit
			break
		}
	}
	if l.zero() {
		return nil
	}
	dl := &DeviceLimiter{limit: l, now: d.cfg.Now, sleep: d.cfg.Sleep}
	if l.Sends > 0 {
		dl.sends = newLimiter(l.Sends, d.cfg.Burst, d.cfg.Backlog)
	}
	if l.Bytes > 0 {
		dl.bytes = newLimiter(l.Bytes, d.cfg.Burst, d.cfg.Backlog)
	}
	return dl
}

// DeviceLimiter shapes one device's sends. A nil *DeviceLimiter limits nothing.
type DeviceLimiter struct {
	limit        DeviceLimit
	sends, bytes *limiter
	now          func() time.Time
	sleep        func(ctx context.Context, d time.Duration) error
}

// Limit returns the device's caps.
func (dl *DeviceLimiter) Limit() DeviceLimit {
	if dl == nil {
		return DeviceLimit{}
	}
	return dl.limit
}

// Reserve admits one message of size bytes and returns how long it must wait, or 429001 when
// the device's backlog is full.
func (dl *DeviceLimiter) Reserve(size int) (time.Duration, error) {
	if dl == nil {
		return 0, nil
	}
	now := dl.now().UnixNano()
	var wait time.Duration
	if dl.sends != nil {
		w, ok := dl.sends.reserve(now, 1)
		if !ok {
			return 0, dl.refuse("messages", dl.limit.Sends)
		}
		wait = w
	}
	if dl.bytes != nil && size > 0 {
		w, ok := dl.bytes.reserve(now, size)
		if !ok {
			return 0, dl.refuse("bytes", dl.limit.Bytes)
		}
		wait = max(wait, w)
	}
	return wait, nil
}

func (dl *DeviceLimiter) refuse(what string, rate float64) error {
	return errcode.New(errcode.ThrottlingException,
		"this device stayed over its limit of %s %s/s for too long and its backlog is full, slow down",
		strconv.FormatFloat(rate, 'f', -1, 64), what)
}

// Wait is Reserve followed by the wait it asks for.
func (dl *DeviceLimiter) Wait(ctx context.Context, size int) error {
	if dl == nil {
		return nil
	}
	d, err := dl.Reserve(size)
	if err != nil || d <= 0 {
		return err
	}
	if err := dl.sleep(ctx, d); err != nil {
		return errcode.Wrap(errcode.ThrottlingException, err, "the message ended while it waited in the device's backlog")
	}
	return nil
}
