package throttle

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// Quota is the hub's daily message quota. The count of the current UTC day lives in the engine
// (key "quota.<yyyymmdd>" of the throttle bucket), so every node draws on the same quota; a node
// takes it in leases of a block of messages with a compare-and-set, and spends a lease locally,
// so a message costs the engine nothing most of the time. The hub can overshoot the quota by at
// most one block per node (a lease is 0.5 % of the quota), and a lease left unspent on one node
// is not spent by another: the quota may run out up to that much early.
type Quota struct {
	b     *engine.Bucket
	limit int64
	meter int
	block int64
	now   func() time.Time

	mu        sync.Mutex
	day       string
	lease     int64 // messages leased by this node and not yet used
	hubUsed   int64 // the day's count in the engine when this node last leased
	exhausted bool
}

func newQuota(b *engine.Bucket, limit int64, meter int, now func() time.Time) *Quota {
	return &Quota{b: b, limit: limit, meter: meter, block: max(1, limit/200), now: now}
}

// Use charges a message of size bytes (in meters of 512 B on F1, 4 KB otherwise) to the day's
// quota, or returns 403002 IotHubQuotaExceeded once the day's quota is used up.
func (q *Quota) Use(ctx context.Context, size int) error {
	n := int64(Meters(size, q.meter))
	q.mu.Lock()
	defer q.mu.Unlock()
	day := q.now().UTC().Format("20060102")
	if day != q.day {
		q.day, q.lease, q.hubUsed, q.exhausted = day, 0, 0, false
	}
	if q.lease >= n {
		q.lease -= n
		return nil
	}
	if q.exhausted {
		return q.errExhausted()
	}
	if err := q.take(ctx, max(q.block, n-q.lease)); err != nil {
		return err
	}
	if q.lease < n {
		q.exhausted = true
		return q.errExhausted()
	}
	q.lease -= n
	return nil
}

func (q *Quota) errExhausted() error {
	return errcode.New(errcode.IotHubQuotaExceeded,
		"the hub's daily quota of %d messages is used up until 00:00 UTC", q.limit)
}

// take leases up to want messages from the day's count in the engine. Called with q.mu held.
func (q *Quota) take(ctx context.Context, want int64) error {
	key := "quota." + q.day
	for range 20 {
		var cur int64
		var rev uint64
		ent, err := q.b.Get(ctx, key)
		switch {
		case err == nil:
			cur, _ = strconv.ParseInt(string(ent.Value), 10, 64)
			rev = ent.Revision
		case !errors.Is(err, engine.ErrNotFound):
			return errcode.Wrap(errcode.ServerError, err, "could not read the daily quota")
		}
		got := min(want, q.limit-cur)
		if got <= 0 {
			q.hubUsed = cur
			return nil
		}
		val := []byte(strconv.FormatInt(cur+got, 10))
		if rev == 0 {
			_, err = q.b.Create(ctx, key, val)
		} else {
			_, err = q.b.Update(ctx, key, val, rev)
		}
		if err == nil {
			q.lease += got
			q.hubUsed = cur + got
			return nil
		}
		if !errors.Is(err, engine.ErrExists) && !errors.Is(err, engine.ErrRevisionMismatch) {
			return errcode.Wrap(errcode.ServerError, err, "could not update the daily quota")
		}
	}
	return errcode.New(errcode.ServerError, "the daily quota is too contended, retry")
}

// Used returns the messages used today as this node knows it: the engine's count at its last
// lease, less what it holds unspent.
func (q *Quota) Used() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.day != q.now().UTC().Format("20060102") {
		return 0
	}
	return q.hubUsed - q.lease
}

// Limit returns the daily quota in messages.
func (q *Quota) Limit() int64 { return q.limit }
