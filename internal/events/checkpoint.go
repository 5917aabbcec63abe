package events

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/roost-iot/roost/internal/engine"
)

// saveEvery is the least time between two saves of one producer's or subscription's position.
//
// Positions are saved lazily rather than once per record because a save is a synchronous
// engine write: at one per record, a burst of device connects cost two engine round trips each
// (the event and the position). Losing up to saveEvery of progress in a crash or failover is
// safe: the records after the saved position are read again and give the same events with the
// same ids (eventID derives an id from the source position), and the engine drops a message
// whose id it stored within its duplicate window (2 minutes), so a replay soon after stores
// nothing new; a replay later than that only redelivers, and Event Grid delivery is at least
// once anyway, so receivers already handle an event twice.
const saveEvery = 500 * time.Millisecond

// exitSave bounds the save of a position when its reader stops (its ctx is over by then).
const exitSave = 2 * time.Second

// position is a reader's progress through a source and the pacing of its saves. It is owned by
// one goroutine.
type position struct {
	m     *Manager
	key   string
	pos   uint64    // last record handled
	saved uint64    // last position written
	last  time.Time // when a save was last tried
}

func (m *Manager) position(key string, saved uint64) *position {
	return &position{m: m, key: key, pos: saved, saved: saved, last: time.Now()}
}

// advance records that every record up to pos is handled.
func (p *position) advance(pos uint64) {
	if pos > p.pos {
		p.pos = pos
	}
}

// pending reports whether there is progress not yet saved.
func (p *position) pending() bool { return p.pos > p.saved }

// due reports whether progress is pending and the last save is saveEvery ago.
func (p *position) due() bool { return p.pending() && time.Since(p.last) >= saveEvery }

// deadline is when pending progress is to be saved even if no record follows.
func (p *position) deadline() time.Time { return p.last.Add(saveEvery) }

// save writes pending progress.
func (p *position) save(ctx context.Context) {
	if !p.pending() {
		return
	}
	p.last = time.Now()
	if p.m.save(ctx, p.key, p.pos) == nil {
		p.saved = p.pos
	}
}

// close writes pending progress when the reader stops, with a context of its own.
func (p *position) close(ctx context.Context) {
	if !p.pending() {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), exitSave)
	defer cancel()
	p.save(sctx)
}

// next reads f's next message. While progress is pending it waits only until the progress is due
// and then saves it, so a position is saved promptly when its source goes quiet. window holds the
// context bounding that wait across calls, so a busy source costs one timer per saveEvery rather
// than one per record.
func (p *position) next(ctx context.Context, f *engine.Follower, w *window) (engine.Msg, error) {
	for {
		if !p.pending() {
			w.end()
			return f.Next(ctx)
		}
		if w.ctx == nil {
			w.ctx, w.cancel = context.WithDeadline(ctx, p.deadline())
		}
		msg, err := f.Next(w.ctx)
		if err == nil || ctx.Err() != nil || w.ctx.Err() == nil {
			return msg, err
		}
		// Quiet until the deadline: save, then wait without one.
		w.end()
		p.save(ctx)
	}
}

// saveLoop saves the position another goroutine reaches (seen, announced on wake) until ctx
// ends, at most every saveEvery and within saveEvery of an announcement; then once more.
func (m *Manager) saveLoop(ctx context.Context, p *position, seen *atomic.Uint64, wake <-chan struct{}) {
	defer p.close(ctx)
	for {
		select {
		case <-ctx.Done():
			p.advance(seen.Load())
			return
		case <-wake:
		}
		sleep(ctx, time.Until(p.deadline()))
		p.advance(seen.Load())
		if ctx.Err() != nil {
			return
		}
		p.save(ctx)
	}
}

// window is the bounded wait of [position.next].
type window struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func (w *window) end() {
	if w.cancel != nil {
		w.cancel()
	}
	w.ctx, w.cancel = nil, nil
}

// watchSubscriptions keeps m.anySubs current: it follows the subscriptions bucket from its
// oldest revision, tracking the live keys. Until it has caught up with the bucket as it was when
// it started, it only ever raises the flag (an old delete marker replayed before a later put
// must not lower it for a moment); from then on the flag is exactly "a key is live".
//
// It learns of a new subscription within milliseconds of its write: far sooner than a device
// can finish a TLS connect, and IoT Hub's own Event Grid subscriptions take a while to start
// delivering, so no event a new subscription could expect is lost while producers skip.
func (m *Manager) watchSubscriptions(ctx context.Context) error {
	st, err := m.eng.OpenStream(ctx, "KV_"+subsBucket)
	if err != nil {
		return err
	}
	state, err := st.State(ctx)
	if err != nil {
		return err
	}
	upTo := state.LastSeq
	live := map[string]bool{}
	caughtUp := upTo == 0
	if caughtUp {
		m.anySubs.Store(false)
	}
	return m.eng.FollowBucket(ctx, subsBucket, "", 0, func(c engine.Change) bool {
		if c.Deleted {
			delete(live, c.Key)
		} else {
			live[c.Key] = true
		}
		if c.Revision >= upTo {
			caughtUp = true
		}
		if caughtUp || len(live) > 0 {
			m.anySubs.Store(len(live) > 0)
		}
		return true
	})
}

// wantEvents reports whether an event produced now could reach a subscription. Subscriptions
// start at the end of the events stream when they are created (see [Manager.Put]), so events
// produced while there is none would never be delivered.
func (m *Manager) wantEvents() bool { return m.anySubs.Load() }
