package throttle

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"time"

	"github.com/roost-iot/roost/internal/engine"
)

// The hub's rates are for the hub, not for each node. Each node shapes its traffic locally (no
// engine round trip per operation) at its share of each class's rate, and the shares are
// rebalanced from what the nodes publish in the engine: every Interval a node writes its
// demand per class (operations asked for, admitted or not) under "node.<id>" and reads everyone
// else's. A node's share of a class is 10 % of an equal split plus 90 % of its part of the
// hub's demand, so the shares always sum to one, idle nodes keep a small share to start from,
// and the node that holds the busy devices gets most of the rate.

const bucketName = "throttle"

// JoinConfig tunes [Throttler.Join].
type JoinConfig struct {
	// Node is this node's id, unique in the cluster.
	Node string
	// Interval is how often the node publishes its demand and rebalances. Zero means 1 s.
	Interval time.Duration
}

type nodeState struct {
	At     int64               `json:"at"` // unix nanoseconds
	Demand [numClasses]float64 `json:"demand"`
}

func (s nodeState) stamp() int64 { return s.At }

// member is a node's seat in one kind of shared budget (the hub's rates under "node.<id>", the
// device group totals under "group.<id>"): its key in the throttle bucket and the loop that
// rebalances every interval until leave.
type member struct {
	bucket   *engine.Bucket
	prefix   string
	nodeKey  string
	interval time.Duration
	stop     context.CancelFunc
	done     chan struct{}
}

// join takes the seat and runs rebalance now and then every interval until ctx ends or leave.
func (m *member) join(ctx context.Context, b *engine.Bucket, prefix string, cfg JoinConfig, rebalance func(context.Context)) {
	m.bucket, m.prefix, m.interval = b, prefix, cfg.Interval
	m.nodeKey = prefix + hex.EncodeToString([]byte(cfg.Node))
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.stop = cancel
	m.done = make(chan struct{})
	rebalance(rctx)
	go func() {
		defer close(m.done)
		tick := time.NewTicker(m.interval)
		defer tick.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
				rebalance(rctx)
			}
		}
	}()
}

// leave stops rebalancing and withdraws the node's state, so the others take its share.
func (m *member) leave() {
	if m.stop == nil {
		return
	}
	m.stop()
	<-m.done
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = m.bucket.Delete(ctx, m.nodeKey, 0)
}

// exchange publishes this node's state and returns the state of every live node (one that
// published within three intervals), this one's included; an error when either step failed or
// no node is known.
func exchange[S interface{ stamp() int64 }](ctx context.Context, m *member, now time.Time, me S) ([]S, error) {
	val, _ := json.Marshal(me)
	if _, err := m.bucket.Put(ctx, m.nodeKey, val); err != nil {
		return nil, err
	}
	stale := now.Add(-3 * m.interval).UnixNano()
	var nodes []S
	err := m.bucket.Scan(ctx, []string{m.prefix + "*"}, func(e engine.Entry) bool {
		var ns S
		if e.Key == m.nodeKey {
			nodes = append(nodes, me)
		} else if json.Unmarshal(e.Value, &ns) == nil && ns.stamp() >= stale {
			nodes = append(nodes, ns)
		}
		return true
	})
	if err == nil && len(nodes) == 0 {
		err = errors.New("no node has published its state")
	}
	return nodes, err
}

// Join makes the throttler one node of the hub: it opens the engine state shared by all nodes
// (shares of the rates, the daily quota) and rebalances the shares until ctx ends or Close is
// called. On the unlimited hub it does nothing.
func (t *Throttler) Join(ctx context.Context, eng *engine.Engine, cfg JoinConfig) error {
	if t == nil {
		return nil
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	b, err := openBucket(ctx, eng)
	if err != nil {
		return err
	}
	if limit, meter := DailyQuota(t.sku, t.units); limit > 0 {
		t.quota = newQuota(b, limit, meter, t.now)
	}
	t.seat.join(ctx, b, "node.", cfg, t.Rebalance)
	return nil
}

// Close stops rebalancing and withdraws the node, so the others take its share.
func (t *Throttler) Close() {
	if t == nil {
		return
	}
	t.seat.leave()
}

// Rebalance publishes this node's demand since the last call and sets its shares from every
// live node's. Join calls it every interval; tests call it directly.
func (t *Throttler) Rebalance(ctx context.Context) {
	now := t.now()
	var me nodeState
	me.At = now.UnixNano()
	for c := range numClasses {
		me.Demand[c] = t.lims[c].takeDemand()
	}
	nodes, err := exchange(ctx, &t.seat, now, me)
	if err != nil {
		if ctx.Err() == nil {
			t.log.Warn("could not share this node's demand with the others", "err", err)
		}
		return
	}
	t.setShares(me, nodes)
}

// setShares sets each class's rate to this node's share of the hub's rate.
func (t *Throttler) setShares(me nodeState, nodes []nodeState) {
	n := float64(len(nodes))
	for c := range numClasses {
		var sum float64
		for _, ns := range nodes {
			sum += ns.Demand[c]
		}
		share := nodeShare(me.Demand[c], sum, n)
		t.shares[c].Store(math.Float64bits(share))
		t.lims[c].setRate(t.rates[c] * share)
	}
}

// Share returns this node's current share of the class's hub-wide rate (1 on a lone node).
func (t *Throttler) Share(c Class) float64 {
	if t == nil {
		return 1
	}
	return math.Float64frombits(t.shares[c].Load())
}

// nodeShare is a node's share of a rate from its demand (mine) and the demand of every live
// node (sum, over nodes nodes): 10 % of an even split plus 90 % of its part of the demand, or
// an even split when nobody asked for anything. The shares of all nodes sum to one.
func nodeShare(mine, sum, nodes float64) float64 {
	if sum <= 0 {
		return 1 / nodes
	}
	return 0.1/nodes + 0.9*mine/sum
}

// openBucket opens the engine bucket the throttles of every node share.
func openBucket(ctx context.Context, eng *engine.Engine) (*engine.Bucket, error) {
	return eng.KV(ctx, engine.BucketConfig{Name: bucketName, Description: "throttle shares and daily quota", TTL: 48 * time.Hour})
}
