package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketConfig describes a key-value bucket.
type BucketConfig struct {
	// Name is the bucket's name: letters, digits, '-' and '_'.
	Name string
	// Description is shown by NATS tooling.
	Description string
	// TTL expires keys this long after their last write. Zero keeps them forever.
	TTL time.Duration
	// Memory keeps the bucket in memory instead of on disk.
	Memory bool
}

// Bucket is a key-value bucket whose revisions serve as etags.
type Bucket struct {
	kv jetstream.KeyValue
	js jetstream.JetStream // for the bucket's stream (MayHaveKeys)
}

// Entry is one stored value and the revision that wrote it.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
	Created  time.Time
}

// KV opens the bucket, creating it on first use. Opening an existing bucket keeps its data.
func (e *Engine) KV(ctx context.Context, cfg BucketConfig) (*Bucket, error) {
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	kv, err := e.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Name,
		Description: cfg.Description,
		History:     1,
		TTL:         cfg.TTL,
		Storage:     storage,
		Replicas:    e.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("engine: bucket %s: %w", cfg.Name, err)
	}
	return &Bucket{kv: kv, js: e.js}, nil
}

// Get returns the current value of key, or [ErrNotFound].
func (b *Bucket) Get(ctx context.Context, key string) (Entry, error) {
	ent, err := b.kv.Get(ctx, key)
	if err != nil {
		return Entry{}, mapErr(err)
	}
	return Entry{Key: ent.Key(), Value: ent.Value(), Revision: ent.Revision(), Created: ent.Created()}, nil
}

// Create stores key only if it has no current value; otherwise it returns [ErrExists].
func (b *Bucket) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := b.kv.Create(ctx, key, value)
	if err != nil {
		if isWrongLastSequence(err) {
			return 0, fmt.Errorf("%w: %s", ErrExists, key)
		}
		return 0, mapErr(err)
	}
	return rev, nil
}

// Update stores key only if its current revision is rev; otherwise it returns
// [ErrRevisionMismatch]. Updating a key that does not exist also fails with it.
func (b *Bucket) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	nrev, err := b.kv.Update(ctx, key, value, rev)
	if err != nil {
		if isWrongLastSequence(err) {
			return 0, fmt.Errorf("%w: %s", ErrRevisionMismatch, key)
		}
		return 0, mapErr(err)
	}
	return nrev, nil
}

// Put stores key unconditionally.
func (b *Bucket) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := b.kv.Put(ctx, key, value)
	return rev, mapErr(err)
}

// Delete removes key. With rev > 0 it removes it only if rev is still current, else it returns
// [ErrRevisionMismatch].
func (b *Bucket) Delete(ctx context.Context, key string, rev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if rev > 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	err := b.kv.Delete(ctx, key, opts...)
	if err != nil && isWrongLastSequence(err) {
		return fmt.Errorf("%w: %s", ErrRevisionMismatch, key)
	}
	return mapErr(err)
}

// errStop ends a Scan early without an error.
var errStop = errors.New("stop")

// Scan calls fn with the current value of every key matching one of the filters (NATS subject
// wildcards: "d.*", "m.dev1.*"), until fn returns false. Values come in the order they were
// last written.
func (b *Bucket) Scan(ctx context.Context, filters []string, fn func(Entry) bool) error {
	w, err := b.kv.WatchFiltered(ctx, filters, jetstream.IgnoreDeletes())
	if err != nil {
		return mapErr(err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ent, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if ent == nil { // all current values delivered
				return nil
			}
			if !fn(Entry{Key: ent.Key(), Value: ent.Value(), Revision: ent.Revision(), Created: ent.Created()}) {
				return nil
			}
		}
	}
}

// GetJSON decodes the current value of key into v. It reports false, with no error, when the
// key has no value.
func (b *Bucket) GetJSON(ctx context.Context, key string, v any) (bool, error) {
	ent, err := b.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(ent.Value, v)
}
