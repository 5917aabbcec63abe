package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// PurgeDeletes drops the markers that deleted keys of b leave behind once they are older than
// olderThan, so a bucket whose keys come and go (staging areas, work lists) does not grow with
// every key it ever held. A key written again after its marker keeps its new value: only the
// marker and what came before it are dropped. It reads every key of the bucket: run it now and
// then, not per write.
func (e *Engine) PurgeDeletes(ctx context.Context, b *Bucket, olderThan time.Duration) (int, error) {
	name := b.kv.Bucket()
	st, err := e.js.Stream(ctx, "KV_"+name)
	if err != nil {
		return 0, mapErr(err)
	}
	w, err := b.kv.WatchAll(ctx)
	if err != nil {
		return 0, mapErr(err)
	}
	type marker struct {
		key string
		rev uint64
	}
	var markers []marker
	limit := time.Now().Add(-olderThan)
	for ent := range w.Updates() {
		if ent == nil {
			break
		}
		if op := ent.Operation(); (op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge) && ent.Created().Before(limit) {
			markers = append(markers, marker{key: ent.Key(), rev: ent.Revision()})
		}
	}
	_ = w.Stop()
	for i, m := range markers {
		if err := st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+name+"."+m.key), jetstream.WithPurgeSequence(m.rev+1)); err != nil {
			return i, fmt.Errorf("engine: purge marker of %s: %w", m.key, mapErr(err))
		}
	}
	return len(markers), nil
}
