package c2d

import (
	"context"
	"errors"
	"time"

	"github.com/roost-iot/roost/internal/engine"
)

// Expiry: every device with messages waiting has one timer in the engine, set to the earliest
// expiry among its messages (Send moves it earlier when needed). When it fires, one node sweeps
// the device's queue: it expires what is due and sets the timer to the next expiry. A message
// settled before its expiry leaves nothing behind; the sweep simply finds it gone.

// sweepWorkers is how many devices a node sweeps at once.
const sweepWorkers = 4

func (s *Service) startExpiry(feed *engine.Feed) {
	work := make(chan engine.Fired)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(work)
		defer feed.Stop()
		for {
			f, err := feed.Next(s.ctx)
			if err != nil {
				if s.ctx.Err() != nil || errors.Is(err, engine.ErrClosed) {
					return
				}
				s.log.Warn("reading expiry timers", "err", err)
				select {
				case <-s.ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
			select {
			case work <- f:
			case <-s.ctx.Done():
				return
			}
		}
	}()
	for i := 0; i < sweepWorkers; i++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for f := range work {
				ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
				if err := s.Sweep(ctx, f.Key); err != nil {
					s.log.Warn("expiry sweep failed; retrying", "device", f.Key, "err", err)
					f.Retry(5 * time.Second)
				} else {
					_ = f.Done(ctx)
				}
				cancel()
			}
		}()
	}
}

// Sweep expires deviceID's messages whose time has come (MessageExpired: record, metric, Expired
// feedback) and sets the device's timer to the next expiry, if any message is left.
func (s *Service) Sweep(ctx context.Context, deviceID string) error {
	now := s.clock.Now()
	var (
		from uint64
		next time.Time
	)
	for {
		qm, err := s.queue.Next(ctx, deviceID, from)
		if errors.Is(err, engine.ErrNotFound) {
			break
		}
		if err != nil {
			return err
		}
		from = qm.Seq + 1
		m, err := decode(deviceID, qm.Seq, qm.Data)
		if err != nil {
			continue
		}
		if !m.Expiry.After(now) {
			s.expire(ctx, m)
			continue
		}
		if next.IsZero() || m.Expiry.Before(next) {
			next = m.Expiry
		}
	}
	if next.IsZero() {
		return nil
	}
	return s.arm(ctx, deviceID, next, now)
}
