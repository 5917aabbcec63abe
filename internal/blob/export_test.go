package blob

import (
	"bytes"
	"context"

	"github.com/roost-iot/roost/internal/engine"
)

// StagingKeys lists the keys of the staging bucket: uncommitted blocks (s.), limits (g.) and
// deletion entries (t.).
func (l *Local) StagingKeys(ctx context.Context) []string {
	var out []string
	_ = l.staging.Scan(ctx, []string{">"}, func(e engine.Entry) bool { out = append(out, e.Key); return true })
	return out
}

// Chunks is how many content chunks the engine holds.
func (l *Local) Chunks(ctx context.Context) uint64 {
	n, _, _ := l.objs.Usage(ctx)
	return n
}

// WriteAbandoned stores content as a writer that died before its owner kept it would leave it.
func (l *Local) WriteAbandoned(ctx context.Context, name string, data []byte) error {
	_, err := l.writeObject(ctx, name, bytes.NewReader(data), int64(len(data)), nil)
	return err
}

// NameHashForTest is the digest the store files a blob under.
func NameHashForTest(container, name string) string { return nameHash(container, name) }
