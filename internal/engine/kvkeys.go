package engine

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// MayHaveKeys reports whether anything was ever stored under a key matching filter (KV
// wildcards) and is still in the bucket's stream, deleted keys' markers included. False means a
// Scan with that filter finds nothing; it costs one request to the engine, where a Scan sets
// up and tears down a consumer. True says nothing more: Scan to see what is live.
func (b *Bucket) MayHaveKeys(ctx context.Context, filter string) (bool, error) {
	st, err := b.js.Stream(ctx, "KV_"+b.kv.Bucket())
	if err != nil {
		return false, mapErr(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("$KV."+b.kv.Bucket()+"."+filter))
	if err != nil {
		return false, mapErr(err)
	}
	return len(info.State.Subjects) > 0, nil
}
