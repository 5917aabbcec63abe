package engine

import (
	"context"
	"errors"
	"sync"
	"time"
)

// LeaseConfig describes a [Lease].
type LeaseConfig struct {
	// Name identifies the job the lease guards (letters, digits, '-' and '_').
	Name string
	// Holder names this node.
	Holder string
	// TTL is how long the lease lasts without renewal: when its holder dies, another node takes
	// over after at most this long. Zero means 15 s.
	TTL time.Duration
}

// Lease elects one node among those sharing the engine to run a cluster-wide job (alert
// evaluation, webhook delivery, log export). Each candidate runs [Lease.Run]; the holder
// renews its lease every TTL/3, and a node that cannot renew stops its job at once, so two
// nodes never run it together for longer than the time a renewal takes.
type Lease struct {
	cfg    LeaseConfig
	bucket *Bucket
}

// NewLease opens the leases bucket.
func (e *Engine) NewLease(ctx context.Context, cfg LeaseConfig) (*Lease, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = 15 * time.Second
	}
	b, err := e.KV(ctx, BucketConfig{Name: "leases-" + cfg.Name, Description: "holder of the " + cfg.Name + " lease", TTL: cfg.TTL})
	if err != nil {
		return nil, err
	}
	return &Lease{cfg: cfg, bucket: b}, nil
}

// Holder returns the node holding the lease now, or "" if none does.
func (l *Lease) Holder(ctx context.Context) (string, error) {
	ent, err := l.bucket.Get(ctx, "holder")
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(ent.Value), nil
}

// Run competes for the lease until ctx ends; while this node holds it, job runs with a context
// that ends when the lease is lost or ctx ends. Run returns when ctx ends and job has returned.
func (l *Lease) Run(ctx context.Context, job func(ctx context.Context)) {
	every := l.cfg.TTL / 3
	for ctx.Err() == nil {
		rev, err := l.bucket.Create(ctx, "holder", []byte(l.cfg.Holder))
		if err != nil {
			// Someone holds it (or the engine is unreachable): try again later. A holder that
			// restarts finds its own name and takes the lease back at once.
			if ent, gerr := l.bucket.Get(ctx, "holder"); gerr == nil && string(ent.Value) == l.cfg.Holder {
				rev, err = l.bucket.Update(ctx, "holder", []byte(l.cfg.Holder), ent.Revision)
			}
			if err != nil {
				sleep(ctx, every)
				continue
			}
		}
		l.hold(ctx, rev, job)
	}
}

func (l *Lease) hold(ctx context.Context, rev uint64, job func(ctx context.Context)) {
	jctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		job(jctx)
	}()
	defer func() {
		cancel()
		wg.Wait()
		if ctx.Err() != nil {
			// Let another node take over at once rather than after the TTL.
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = l.bucket.Delete(dctx, "holder", rev)
			dcancel()
		}
	}()
	every := l.cfg.TTL / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rctx, rcancel := context.WithTimeout(ctx, every)
			nrev, err := l.bucket.Update(rctx, "holder", []byte(l.cfg.Holder), rev)
			rcancel()
			if err != nil {
				return // lost it, or cannot prove we still hold it: stop the job
			}
			rev = nrev
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
