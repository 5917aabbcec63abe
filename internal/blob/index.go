package blob

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/engine"
)

// Props are a committed blob's properties, as the index in the engine keeps them.
type Props struct {
	Container string    `json:"container"`
	Name      string    `json:"name"`
	Size      int64     `json:"size"`
	ETag      string    `json:"etag"` // unquoted, 0x... as the Blob service writes it
	Created   time.Time `json:"created"`
	Modified  time.Time `json:"modified"`

	ContentType        string            `json:"contentType,omitempty"`
	ContentEncoding    string            `json:"contentEncoding,omitempty"`
	ContentLanguage    string            `json:"contentLanguage,omitempty"`
	ContentDisposition string            `json:"contentDisposition,omitempty"`
	CacheControl       string            `json:"cacheControl,omitempty"`
	ContentMD5         []byte            `json:"contentMD5,omitempty"`
	Metadata           map[string]string `json:"metadata,omitempty"`

	// Blocks are the engine objects of the content, in order (built-in store), when there are
	// at most a few hundred of them.
	Blocks []Extent `json:"blocks,omitempty"`
	// Manifest, for a longer block list, is the object that lists Blocks instead.
	Manifest *Extent `json:"manifest,omitempty"`

	// Node and Version were set by Roost versions that kept built-in blobs in a node's data dir:
	// the node whose dir holds the content, and its directory there. That node imports the
	// content into the engine when it starts with this version and clears both.
	Node    string `json:"node,omitempty"`
	Version string `json:"version,omitempty"`
	// URI is the blob's URL as devices see it.
	URI string `json:"uri"`
}

// DeviceID is the first segment of the blob's name: uploads are stored as {deviceId}/{name}.
func (p Props) DeviceID() string {
	dev, _, _ := strings.Cut(p.Name, "/")
	return dev
}

// Index is the engine-held list of committed blobs, shared by every node: it is what makes an
// upload visible (a blob exists once its entry is written) and what `roost files list` reads.
// The bucket also holds the built-in store's account key, made once by whichever node starts
// first.
type Index struct {
	b *engine.Bucket
}

// indexBucket is the engine bucket of the index.
const indexBucket = "blobs"

// OpenIndex opens (or creates) the index bucket.
func OpenIndex(ctx context.Context, eng *engine.Engine) (*Index, error) {
	b, err := eng.KV(ctx, engine.BucketConfig{Name: indexBucket, Description: "file upload blobs: index and built-in storage key"})
	if err != nil {
		return nil, err
	}
	return &Index{b: b}, nil
}

const accountKeyKey = "account-key"

// AccountKey returns the built-in store's account key, generating and storing it on first use.
// Every node reads the same key, so a SAS issued by one node is honoured by all.
func (ix *Index) AccountKey(ctx context.Context) ([]byte, error) {
	for range 3 {
		ent, err := ix.b.Get(ctx, accountKeyKey)
		if err == nil {
			return base64.StdEncoding.DecodeString(string(ent.Value))
		}
		if !errors.Is(err, engine.ErrNotFound) {
			return nil, fmt.Errorf("blob: read account key: %w", err)
		}
		key := make([]byte, 64)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if _, err := ix.b.Create(ctx, accountKeyKey, []byte(base64.StdEncoding.EncodeToString(key))); err == nil {
			return key, nil
		} else if !errors.Is(err, engine.ErrExists) {
			return nil, fmt.Errorf("blob: store account key: %w", err)
		}
		// Another node made it first; read theirs.
	}
	return nil, errors.New("blob: could not agree on an account key")
}

// key is the index key of a blob: i.<container>.<device>.<hash of the name>. The device token
// lets one device's blobs be listed without reading the others.
func indexKey(container, name string) string {
	dev, _, _ := strings.Cut(name, "/")
	return "i." + engine.EncodeToken(container) + "." + engine.EncodeToken(dev) + "." + nameHash(container, name)
}

// nameHash is a fixed-length digest of a blob's container and name. Data on disk is filed under
// it, so no part of a client-chosen name ever becomes a path.
func nameHash(container, name string) string {
	sum := sha256.Sum256([]byte(container + "/" + name))
	return hex.EncodeToString(sum[:16])
}

// Get returns a blob's entry and its revision, or [engine.ErrNotFound].
func (ix *Index) Get(ctx context.Context, container, name string) (Props, uint64, error) {
	ent, err := ix.b.Get(ctx, indexKey(container, name))
	if err != nil {
		return Props{}, 0, err
	}
	var p Props
	if err := json.Unmarshal(ent.Value, &p); err != nil {
		return Props{}, 0, fmt.Errorf("blob: corrupt index entry for %s: %w", name, err)
	}
	return p, ent.Revision, nil
}

// Put writes a blob's entry. With rev > 0 it replaces only that revision, with rev == 0 it
// creates the entry only if there is none; otherwise it fails with
// [engine.ErrRevisionMismatch] or [engine.ErrExists].
func (ix *Index) Put(ctx context.Context, p Props, rev uint64) (uint64, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return 0, err
	}
	k := indexKey(p.Container, p.Name)
	if rev == 0 {
		return ix.b.Create(ctx, k, data)
	}
	return ix.b.Update(ctx, k, data, rev)
}

// Set writes a blob's entry unconditionally (last writer wins).
func (ix *Index) Set(ctx context.Context, p Props) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = ix.b.Put(ctx, indexKey(p.Container, p.Name), data)
	return err
}

// List calls fn for the blobs of container, only those of deviceID when it is not empty, in
// the order they were last written, until fn returns false.
func (ix *Index) List(ctx context.Context, container, deviceID string, fn func(Props) bool) error {
	filter := "i." + engine.EncodeToken(container) + ".*.*"
	if deviceID != "" {
		filter = "i." + engine.EncodeToken(container) + "." + engine.EncodeToken(deviceID) + ".*"
	}
	return ix.b.Scan(ctx, []string{filter}, func(e engine.Entry) bool {
		var p Props
		if json.Unmarshal(e.Value, &p) != nil {
			return true
		}
		return fn(p)
	})
}
