package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// ObjectsConfig describes an [Objects] store.
type ObjectsConfig struct {
	// Name is the stream's name; objects are stored under the subjects Name.<id>.<chunk>.
	Name string
	// Description is shown by NATS tooling.
	Description string
	// ChunkSize is the size in bytes of the messages an object is cut into. Zero means 256 KiB;
	// it is capped to fit the server's largest message.
	ChunkSize int
	// MaxBytes caps the store's size; a write beyond it fails and nothing is ever dropped to make
	// room. Zero means no cap but the engine's own.
	MaxBytes int64
	// Window is how many chunks one writer keeps in flight (and in memory) at once. Zero means 8.
	Window int
}

// Objects keeps large byte sequences in a stream, each cut into chunks of a fixed size stored
// under a subject of their own: Name.<id>.<n> holds the n-th chunk of object id. Chunks are read
// back by direct get, so any part of an object can be read without reading what precedes it, by
// whichever node asks. Objects are immutable: a writer writes one once, and [Objects.Delete]
// purges it. What an object is part of (a blob's blocks, its block list) is its owner's business;
// the store keeps no index of its own.
//
// Memory: a writer holds at most Window chunks, a reader its current chunk and the few it reads
// ahead, whatever the object's size.
type Objects struct {
	e      *Engine
	st     jetstream.Stream
	name   string
	prefix string
	chunk  int
	window int
	bufs   sync.Pool
}

// Objects opens the object store, creating its stream on first use.
func (e *Engine) Objects(ctx context.Context, cfg ObjectsConfig) (*Objects, error) {
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = 256 << 10
	}
	// Leave room for headers and the protocol line within the server's payload limit.
	if max := int(e.nc.MaxPayload()) - 4096; max > 0 && cfg.ChunkSize > max {
		cfg.ChunkSize = max
	}
	if cfg.Window <= 0 {
		cfg.Window = 8
	}
	maxBytes := cfg.MaxBytes
	if maxBytes <= 0 {
		maxBytes = -1
	}
	st, err := e.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Name,
		Description: cfg.Description,
		Subjects:    []string{cfg.Name + ".*.*"},
		Retention:   jetstream.LimitsPolicy,
		MaxBytes:    maxBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    e.cfg.Replicas,
		AllowDirect: true,
		// Never drop stored data to make room: a full store refuses new objects instead.
		Discard: jetstream.DiscardNew,
	})
	if err != nil {
		return nil, fmt.Errorf("engine: objects %s: %w", cfg.Name, err)
	}
	o := &Objects{e: e, st: st, name: cfg.Name, prefix: cfg.Name + ".", chunk: cfg.ChunkSize, window: cfg.Window}
	o.bufs.New = func() any { b := make([]byte, o.chunk); return &b }
	return o, nil
}

// NewObjectID returns a new unique object id: 22 letters and digits.
func NewObjectID() string { return nuid.Next() }

// ChunkSize is the chunk size new objects are written with.
func (o *Objects) ChunkSize() int { return o.chunk }

func (o *Objects) subject(id string, n int) string {
	return o.prefix + id + "." + strconv.Itoa(n)
}

// Delete purges every chunk of object id. Deleting an object that does not exist is not an
// error.
func (o *Objects) Delete(ctx context.Context, id string) error {
	if err := o.st.Purge(ctx, jetstream.WithPurgeSubject(o.prefix+id+".*")); err != nil {
		return fmt.Errorf("engine: purge object %s: %w", id, mapErr(err))
	}
	return nil
}

// ObjectWriter writes one object chunk by chunk. It is an io.Writer; [ObjectWriter.Close] stores
// the last chunk and waits until every chunk is stored. A writer that fails, or is abandoned
// with [ObjectWriter.Abort], leaves chunks the caller must delete (Abort tries to).
type ObjectWriter struct {
	o   *Objects
	ctx context.Context // bounds waits for acknowledgements; a writer lives within one request
	id  string
	buf *[]byte
	n   int // bytes in buf
	idx int // next chunk number
	// inflight are the chunks sent and not yet acknowledged, oldest first, with their buffers.
	inflight []pending
	size     int64
	err      error
}

type pending struct {
	f   jetstream.PubAckFuture
	buf *[]byte
}

// NewWriter starts writing object id. ctx bounds every wait for the engine, including Close.
func (o *Objects) NewWriter(ctx context.Context, id string) *ObjectWriter {
	return &ObjectWriter{o: o, ctx: ctx, id: id}
}

// ackTimeout bounds the wait for one chunk's acknowledgement.
const ackTimeout = 30 * time.Second

// Write copies p into chunks, sending each one as it fills.
func (w *ObjectWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	done := 0
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = w.o.bufs.Get().(*[]byte)
			w.n = 0
		}
		c := copy((*w.buf)[w.n:], p)
		w.n += c
		done += c
		p = p[c:]
		if w.n == len(*w.buf) {
			if err := w.send(); err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

// send publishes the buffered chunk, first waiting for the oldest one when the window is full.
func (w *ObjectWriter) send() error {
	for len(w.inflight) >= w.o.window {
		if err := w.waitOldest(); err != nil {
			return err
		}
	}
	buf := w.buf
	data := (*buf)[:w.n]
	f, err := w.o.e.js.PublishMsgAsync(&nats.Msg{Subject: w.o.subject(w.id, w.idx), Data: data},
		jetstream.WithExpectStream(w.o.name))
	if err != nil {
		w.err = fmt.Errorf("engine: store object %s: %w", w.id, mapErr(err))
		w.o.bufs.Put(buf)
		w.buf = nil
		return w.err
	}
	w.inflight = append(w.inflight, pending{f: f, buf: buf})
	w.size += int64(w.n)
	w.idx++
	w.buf, w.n = nil, 0
	return nil
}

func (w *ObjectWriter) waitOldest() error {
	p := w.inflight[0]
	w.inflight = w.inflight[1:]
	t := time.NewTimer(ackTimeout)
	defer t.Stop()
	var err error
	select {
	case <-p.f.Ok():
	case e := <-p.f.Err():
		err = mapErr(e)
	case <-w.ctx.Done():
		err = w.ctx.Err()
	case <-t.C:
		err = errors.New("no acknowledgement")
	}
	if err != nil {
		// The buffer may still be referenced by a retry; let the collector have it.
		w.err = fmt.Errorf("engine: store object %s: %w", w.id, err)
		return w.err
	}
	w.o.bufs.Put(p.buf)
	return nil
}

// Close stores the last, partial chunk and returns once the whole object is stored, with its
// size in bytes and the number of chunks.
func (w *ObjectWriter) Close() (int64, error) {
	if w.err == nil && w.buf != nil && w.n > 0 {
		_ = w.send()
	}
	if w.buf != nil {
		w.o.bufs.Put(w.buf)
		w.buf = nil
	}
	for w.err == nil && len(w.inflight) > 0 {
		_ = w.waitOldest()
	}
	return w.size, w.err
}

// Abort stops the writer and deletes what it stored.
func (w *ObjectWriter) Abort(ctx context.Context) error {
	if w.err == nil {
		w.err = errors.New("engine: object writer aborted")
	}
	if w.buf != nil {
		w.o.bufs.Put(w.buf)
		w.buf = nil
	}
	// Wait for the chunks in flight so the purge below does not miss a late one.
	for _, p := range w.inflight {
		select {
		case <-p.f.Ok():
		case <-p.f.Err():
		case <-ctx.Done():
		case <-time.After(ackTimeout):
		}
	}
	w.inflight = nil
	return w.o.Delete(ctx, w.id)
}

// ObjectReader reads an object of known size and chunk size at any offset (io.ReaderAt), and
// reads ahead a few chunks when read forward. Close it to stop the read-ahead.
type ObjectReader struct {
	o     *Objects
	id    string
	size  int64
	chunk int64
	ahead int

	ctx    context.Context // ends the read-ahead; canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	cur   int // the chunk in data, -1 for none
	data  []byte
	fetch map[int]*fetch
}

type fetch struct {
	done chan struct{}
	data []byte
	err  error
}

// NewReader reads object id, which holds size bytes in chunks of chunkSize bytes (as written by
// a store whose ChunkSize was chunkSize). ctx bounds every read.
func (o *Objects) NewReader(ctx context.Context, id string, size int64, chunkSize int) *ObjectReader {
	ctx, cancel := context.WithCancel(ctx)
	return &ObjectReader{o: o, id: id, size: size, chunk: int64(chunkSize), ahead: 4, ctx: ctx, cancel: cancel,
		cur: -1, fetch: map[int]*fetch{}}
}

// Size is the object's size in bytes.
func (r *ObjectReader) Size() int64 { return r.size }

func (r *ObjectReader) get(n int) ([]byte, error) {
	subj := r.o.subject(r.id, n)
	m, err := r.o.st.GetLastMsgForSubject(r.ctx, subj)
	var data []byte
	if err == nil {
		data = m.Data
	} else if errors.Is(err, jetstream.ErrMsgNotFound) {
		// A direct get may be answered by a replica that has not caught up yet with a chunk the
		// leader acknowledged; ask the leader before calling the chunk missing.
		data, err = r.o.leaderGet(r.ctx, subj)
	}
	if err != nil {
		return nil, fmt.Errorf("engine: read object %s chunk %d: %w", r.id, n, mapErr(err))
	}
	want := min(r.chunk, r.size-int64(n)*r.chunk)
	if int64(len(data)) != want {
		return nil, fmt.Errorf("engine: object %s chunk %d holds %d bytes, want %d: %w", r.id, n, len(data), want, io.ErrUnexpectedEOF)
	}
	return data, nil
}

// leaderGet reads the last message on subj through the stream leader (the JetStream API's
// message get, not a direct get that any replica may answer).
func (o *Objects) leaderGet(ctx context.Context, subj string) ([]byte, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": subj})
	m, err := o.e.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+o.name, req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Message *struct {
			Data []byte `json:"data"` // base64 in the JSON, decoded by encoding/json
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, err
	}
	if resp.Error != nil {
		if resp.Error.Code == 404 {
			return nil, jetstream.ErrMsgNotFound
		}
		return nil, fmt.Errorf("%s (%d)", resp.Error.Description, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return nil, errors.New("empty answer")
	}
	return resp.Message.Data, nil
}

// startFetch reads chunk n in the background unless it is being read already. r.mu is held.
func (r *ObjectReader) startFetch(n int) {
	if _, ok := r.fetch[n]; ok || int64(n)*r.chunk >= r.size {
		return
	}
	f := &fetch{done: make(chan struct{})}
	r.fetch[n] = f
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f.data, f.err = r.get(n)
		close(f.done)
	}()
}

// chunkAt returns chunk n. r.mu is held.
func (r *ObjectReader) chunkAt(n int) ([]byte, error) {
	if n == r.cur {
		return r.data, nil
	}
	var data []byte
	var err error
	if f, ok := r.fetch[n]; ok {
		delete(r.fetch, n)
		select {
		case <-f.done:
		case <-r.ctx.Done():
			return nil, r.ctx.Err()
		}
		data, err = f.data, f.err
	} else {
		data, err = r.get(n)
	}
	if err != nil {
		return nil, err
	}
	r.cur, r.data = n, data
	// Forget read-aheads the reader has passed (a seek backwards), and read ahead of this one.
	for k := range r.fetch {
		if k < n {
			delete(r.fetch, k)
		}
	}
	for k := n + 1; k <= n+r.ahead; k++ {
		r.startFetch(k)
	}
	return data, nil
}

// ReadAt reads len(p) bytes at off; it returns io.EOF at the object's end.
func (r *ObjectReader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.size {
			return n, io.EOF
		}
		c, err := r.chunkAt(int(pos / r.chunk))
		if err != nil {
			return n, err
		}
		n += copy(p[n:], c[pos%r.chunk:])
	}
	return n, nil
}

// Close stops the read-ahead and waits for it.
func (r *ObjectReader) Close() error {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	r.fetch, r.data, r.cur = map[int]*fetch{}, nil, -1
	r.mu.Unlock()
	return nil
}

// Usage returns how many chunks the store holds and their size in bytes.
func (o *Objects) Usage(ctx context.Context) (chunks, bytes uint64, err error) {
	info, err := o.st.Info(ctx)
	if err != nil {
		return 0, 0, mapErr(err)
	}
	return info.State.Msgs, info.State.Bytes, nil
}
