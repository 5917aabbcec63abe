package throttle

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// A device group's total (DeviceGroup.Sends, DeviceGroup.Bytes) is one budget for all the
// group's devices, wherever they are connected. The group's devices are spread over the nodes,
// so the budget is split between them as the hub's rates are (cluster.go): each node shapes its
// devices' traffic locally at its share of the group's rate, publishes every interval how much
// its devices of each group asked for (key "group.<node>" of the throttle bucket), and takes
// 10 % of an even split plus 90 % of its part of the demand. No engine round trip per message,
// and the group's admitted total stays at its cap however its devices are spread.

// groupBudget is one group's total on this node.
type groupBudget struct {
	cond         string
	limit        DeviceLimit // the group's hub-wide total
	sends, bytes *limiter    // at this node's share of the total; nil: no total of that kind
}

func newGroupBudget(g DeviceGroup, burst, backlog time.Duration) *groupBudget {
	if g.Total().zero() {
		return nil
	}
	b := &groupBudget{cond: g.Condition, limit: g.Total()}
	if g.Sends > 0 {
		b.sends = newLimiter(g.Sends, burst, backlog)
	}
	if g.Bytes > 0 {
		b.bytes = newLimiter(g.Bytes, burst, backlog)
	}
	return b
}

func (g *groupBudget) refuse(what string, rate float64) error {
	return errcode.New(errcode.ThrottlingException,
		"the device group '%s' stayed over its total limit of %s %s/s for too long and its backlog is full: its devices must slow down",
		g.cond, strconv.FormatFloat(rate, 'f', -1, 64), what)
}

// sharedGroups is the engine side of the group budgets.
type sharedGroups struct {
	seat member // in the group totals, once joined (cluster.go)

	mu     sync.Mutex
	shares map[string]float64 // demand key -> this node's share
}

type groupNodeState struct {
	At     int64              `json:"at"` // unix nanoseconds
	Demand map[string]float64 `json:"demand"`
}

func (s groupNodeState) stamp() int64 { return s.At }

// demandKey names one kind of one group's total in the published demand. The condition, not
// the group's position, names it, so nodes agree on it even if their lists are ordered apart.
func demandKey(kind, cond string) string { return kind + "|" + cond }

// hasTotals reports whether some group has a total, the only thing Join shares.
func (d *DeviceLimits) hasTotals() bool {
	for _, g := range d.groups {
		if g != nil {
			return true
		}
	}
	return false
}

// Join splits the group totals between the nodes of the hub through the engine, rebalancing
// every interval until ctx ends or Close is called. Without group totals it does nothing.
func (d *DeviceLimits) Join(ctx context.Context, eng *engine.Engine, cfg JoinConfig) error {
	if d == nil || !d.hasTotals() {
		return nil
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	b, err := openBucket(ctx, eng)
	if err != nil {
		return err
	}
	d.share.seat.join(ctx, b, "group.", cfg, d.Rebalance)
	return nil
}

// Close stops rebalancing and withdraws the node, so the others take its share.
func (d *DeviceLimits) Close() {
	if d == nil {
		return
	}
	d.share.seat.leave()
}

// eachTotal calls f for every limiter of a group total with its demand key and hub-wide rate.
func (d *DeviceLimits) eachTotal(f func(key string, l *limiter, rate float64)) {
	for _, g := range d.groups {
		if g == nil {
			continue
		}
		if g.sends != nil {
			f(demandKey("sends", g.cond), g.sends, g.limit.Sends)
		}
		if g.bytes != nil {
			f(demandKey("bytes", g.cond), g.bytes, g.limit.Bytes)
		}
	}
}

// Rebalance publishes this node's demand on the group totals since the last call and sets its
// shares from every live node's. Join calls it every interval; tests call it directly.
func (d *DeviceLimits) Rebalance(ctx context.Context) {
	s := &d.share
	now := d.cfg.Now()
	me := groupNodeState{At: now.UnixNano(), Demand: map[string]float64{}}
	d.eachTotal(func(key string, l *limiter, _ float64) { me.Demand[key] += l.takeDemand() })
	nodes, err := exchange(ctx, &s.seat, now, me)
	if err != nil {
		return
	}
	shares := map[string]float64{}
	d.eachTotal(func(key string, l *limiter, rate float64) {
		var sum float64
		for _, ns := range nodes {
			sum += ns.Demand[key]
		}
		share := nodeShare(me.Demand[key], sum, float64(len(nodes)))
		shares[key] = share
		l.setRate(rate * share)
	})
	s.mu.Lock()
	s.shares = shares
	s.mu.Unlock()
}

// GroupShare returns this node's current share of a group's total of sends ("sends") or bytes
// ("bytes"); 1 on a lone node or before Join.
func (d *DeviceLimits) GroupShare(kind, condition string) float64 {
	if d == nil {
		return 1
	}
	d.share.mu.Lock()
	defer d.share.mu.Unlock()
	if sh, ok := d.share.shares[demandKey(kind, condition)]; ok {
		return sh
	}
	return 1
}
