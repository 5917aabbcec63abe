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
// can cap what one device sends (messages and bytes per second), and what a group of devices
// chosen by a twin condition sends all together, so that one runaway device, or a fleet of
// them, cannot use up the hub's rate and starve everyone else. They shape like the hub's
// throttles (burst, then a backlog the device's messages wait in, then 429001) and work with
// any --sku, unlimited included. A message must fit both its device's cap and its group's.
//
// A device holds one MQTT connection in the whole cluster, so its own limiter lives with the
// connection, on the node that holds it: no engine round trip, and the limit is the device's
// wherever it connects. A group's devices are spread over the nodes, so a group's total is
// split between the nodes as the hub's rates are (cluster.go; group.go).

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
	// Sends and Bytes cap the group as a whole: what all its devices send together, on every
	// node, per second. Zero means no total.
	Sends float64 `json:"sends,omitempty"`
	Bytes float64 `json:"bytes,omitempty"`
	// DeviceSends and DeviceBytes cap each device of the group on its own, in place of the
	// default per-device cap. Zero means no cap of that kind for the group's devices.
	DeviceSends float64 `json:"deviceSends,omitempty"`
	DeviceBytes float64 `json:"deviceBytes,omitempty"`
	cond        *query.Condition
}

// Total returns the group's caps on all its devices together.
func (g DeviceGroup) Total() DeviceLimit { return DeviceLimit{Sends: g.Sends, Bytes: g.Bytes} }

// PerDevice returns the group's cap on each of its devices.
func (g DeviceGroup) PerDevice() DeviceLimit {
	return DeviceLimit{Sends: g.DeviceSends, Bytes: g.DeviceBytes}
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

// ParseDeviceGroups reads groups from JSON:
// [{"condition":"tags.fleet = 'x'","sends":50,"bytes":65536,"deviceSends":5}]: sends and bytes
// for the group's total, deviceSends and deviceBytes for each of its devices.
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
		if gs[i].Sends < 0 || gs[i].Bytes < 0 || gs[i].DeviceSends < 0 || gs[i].DeviceBytes < 0 {
			return nil, fmt.Errorf("device group %d: negative limit", i+1)
		}
	}
	return gs, nil
}

// DeviceLimits hands out per-device limiters. A nil *DeviceLimits limits nothing.
type DeviceLimits struct {
	cfg    DeviceLimitsConfig
	groups []*groupBudget // by group index; nil for a group without a total
	share  sharedGroups   // how the group totals are split between the nodes (group.go)

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
	d := &DeviceLimits{cfg: cfg, groups: make([]*groupBudget, len(cfg.Groups))}
	for i, g := range cfg.Groups {
		d.groups[i] = newGroupBudget(g, cfg.Burst, cfg.Backlog)
	}
	return d, nil
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
	var group *groupBudget
	for i, g := range d.cfg.Groups {
		if doc != nil && g.cond.Match(doc) {
			l, group = g.PerDevice(), d.groups[i]
			break
		}
	}
	if l.zero() && group == nil {
		return nil
	}
	dl := &DeviceLimiter{limit: l, group: group, now: d.cfg.Now, sleep: d.cfg.Sleep}
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
	group        *groupBudget // the total of the device's group; nil: none
	now          func() time.Time
	sleep        func(ctx context.Context, d time.Duration) error
}

// Limit returns the device's own caps (not its group's total).
func (dl *DeviceLimiter) Limit() DeviceLimit {
	if dl == nil {
		return DeviceLimit{}
	}
	return dl.limit
}

// Group returns the condition of the device's group when the group has a total, or "".
func (dl *DeviceLimiter) Group() string {
	if dl == nil || dl.group == nil {
		return ""
	}
	return dl.group.cond
}

// Reserve admits one message of size bytes and returns how long it must wait, or 429001 when
// the device's backlog, or its group's, is full. A refused message reserves nothing.
func (dl *DeviceLimiter) Reserve(size int) (time.Duration, error) {
	if dl == nil {
		return 0, nil
	}
	now := dl.now().UnixNano()
	var (
		wait  time.Duration
		taken [4]struct {
			l *limiter
			n int
		}
		nTaken int
	)
	try := func(l *limiter, n int) bool {
		if l == nil || n <= 0 {
			return true
		}
		w, ok := l.reserve(now, n)
		if !ok {
			for _, t := range taken[:nTaken] {
				t.l.release(t.n)
			}
			return false
		}
		taken[nTaken].l, taken[nTaken].n = l, n
		nTaken++
		wait = max(wait, w)
		return true
	}
	if !try(dl.sends, 1) {
		return 0, dl.refuse("messages", dl.limit.Sends)
	}
	if !try(dl.bytes, size) {
		return 0, dl.refuse("bytes", dl.limit.Bytes)
	}
	if g := dl.group; g != nil {
		if !try(g.sends, 1) {
			return 0, g.refuse("messages", g.limit.Sends)
		}
		if !try(g.bytes, size) {
			return 0, g.refuse("bytes", g.limit.Bytes)
		}
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
