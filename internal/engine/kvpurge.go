package engine

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// PurgeDeletes drops the markers that deleted keys leave behind once they are older than
// olderThan, so a bucket whose keys come and go (staging areas, work lists) does not grow with
// every key it ever held. It reads every key of the bucket: run it now and then, not per write.
func (b *Bucket) PurgeDeletes(ctx context.Context, olderThan time.Duration) error {
	if olderThan <= 0 {
		olderThan = -1 // jetstream: purge every marker, whatever its age
	}
	return mapErr(b.kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(olderThan)))
}
