package diag

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/engine"
)

// Export formats.
const (
	// FormatRecords writes batches shaped {"records":[...]}, as Event Hubs exports do.
	FormatRecords = "records"
	// FormatLines writes one record per line, as storage-account exports do.
	FormatLines = "lines"
)

// ExportConfig describes one diagnostic setting: which records go where, in what shape.
type ExportConfig struct {
	// Name identifies the export; its position in the records is kept under it, so a restarted
	// hub resumes where it stopped. Empty means Dest.
	Name string
	// Dest is "stdout", a file path (optionally "file:" first) to append to, or an http(s) URL
	// to POST batches to.
	Dest string
	// Format is FormatRecords (the default) or FormatLines.
	Format string
	// Categories limits the export to these categories. Empty means all.
	Categories []string
	// BatchSize is the most records per batch. Zero means 100.
	BatchSize int
	// FlushInterval is the longest a record waits for its batch to fill. Zero means 2 s.
	FlushInterval time.Duration
	// Timeout bounds one HTTP delivery. Zero means 10 s.
	Timeout time.Duration
	// Stdout is where "stdout" writes. Nil means os.Stdout.
	Stdout io.Writer
	// Client makes HTTP deliveries. Nil means a client of its own.
	Client *http.Client
	Logger *slog.Logger
}

// ParseExport reads a diagnostic setting written as DEST[;format=lines][;categories=A+B][;name=N],
// the form of the --diag-export flag.
func ParseExport(s string) (ExportConfig, error) {
	parts := strings.Split(s, ";")
	cfg := ExportConfig{Dest: strings.TrimSpace(parts[0]), Format: FormatRecords}
	if cfg.Dest == "" {
		return cfg, errors.New("an export needs a destination: stdout, a file path or an http(s) URL")
	}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			return cfg, fmt.Errorf("export option %q is not key=value", p)
		}
		switch k {
		case "format":
			if v != FormatRecords && v != FormatLines {
				return cfg, fmt.Errorf("export format %q is not records or lines", v)
			}
			cfg.Format = v
		case "categories":
			for _, c := range strings.Split(v, "+") {
				cat, ok := FindCategory(c)
				if !ok {
					return cfg, fmt.Errorf("export category %q is not a diagnostic category", c)
				}
				cfg.Categories = append(cfg.Categories, cat.Name)
			}
		case "name":
			cfg.Name = v
		default:
			return cfg, fmt.Errorf("unknown export option %q (format, categories, name)", k)
		}
	}
	return cfg, nil
}

// Exporter ships records to one destination as they are stored, in order, at least once: its
// position is saved in the engine after each delivered batch. Run it on one node of a cluster
// at a time (under an engine lease); a slow or failing destination delays only the export.
type Exporter struct {
	cfg  ExportConfig
	eng  *engine.Engine
	log  *slog.Logger
	kv   *engine.Bucket
	mu   sync.Mutex // guards the file
	file *os.File
}

// NewExporter prepares an export.
func NewExporter(ctx context.Context, eng *engine.Engine, cfg ExportConfig) (*Exporter, error) {
	if cfg.Name == "" {
		cfg.Name = cfg.Dest
	}
	if cfg.Format == "" {
		cfg.Format = FormatRecords
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 2 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kv, err := eng.KV(ctx, engine.BucketConfig{Name: "diag-export", Description: "where each diagnostic export got to"})
	if err != nil {
		return nil, err
	}
	return &Exporter{cfg: cfg, eng: eng, kv: kv, log: log.With("component", "diag-export", "dest", redactURL(cfg.Dest))}, nil
}

func redactURL(s string) string {
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return s[:i] + "?..."
	}
	return s
}

func (x *Exporter) key() string { return "x." + engine.EncodeToken(x.cfg.Name) }

// Run exports until ctx ends. A new export starts with the records stored from then on.
func (x *Exporter) Run(ctx context.Context) {
	defer x.closeFile()
	for ctx.Err() == nil {
		if err := x.run(ctx); err != nil && ctx.Err() == nil {
			x.log.Warn("diagnostic export interrupted; retrying", "err", err)
			sleepCtx(ctx, 2*time.Second)
		}
	}
}

func (x *Exporter) run(ctx context.Context) error {
	st, err := x.eng.OpenStream(ctx, StreamName)
	if err != nil {
		return err
	}
	fc := engine.FollowConfig{Filters: Filters(x.cfg.Categories, nil)}
	if ent, err := x.kv.Get(ctx, x.key()); err == nil {
		seq, _ := strconv.ParseUint(string(ent.Value), 10, 64)
		fc.StartSeq = seq + 1
	} else if errors.Is(err, engine.ErrNotFound) {
		fc.NewOnly = true
	} else {
		return err
	}
	f, err := st.Follow(ctx, fc)
	if err != nil {
		return err
	}
	defer f.Stop()
	var batch []json.RawMessage
	var lastSeq uint64
	var deadline time.Time
	for {
		wait := time.Hour
		if len(batch) > 0 {
			wait = time.Until(deadline)
		}
		nctx, cancel := context.WithTimeout(ctx, max(wait, time.Millisecond))
		m, err := f.Next(nctx)
		cancel()
		switch {
		case err == nil:
			if len(batch) == 0 {
				deadline = time.Now().Add(x.cfg.FlushInterval)
			}
			batch = append(batch, json.RawMessage(m.Data))
			lastSeq = m.Sequence
			if len(batch) < x.cfg.BatchSize {
				continue
			}
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, context.DeadlineExceeded):
			if len(batch) == 0 {
				continue
			}
		default:
			return err
		}
		if err := x.deliver(ctx, batch); err != nil {
			return err
		}
		if _, err := x.kv.Put(ctx, x.key(), []byte(strconv.FormatUint(lastSeq, 10))); err != nil {
			return err
		}
		batch = batch[:0]
	}
}

// Encode writes records in the export's format.
func Encode(format string, recs []json.RawMessage) []byte {
	var buf bytes.Buffer
	if format == FormatLines {
		for _, r := range recs {
			buf.Write(r)
			buf.WriteByte('\n')
		}
		return buf.Bytes()
	}
	buf.WriteString(`{"records":[`)
	for i, r := range recs {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(r)
	}
	buf.WriteString("]}\n")
	return buf.Bytes()
}

// deliver writes one batch, retrying an HTTP endpoint with back-off until it takes it or ctx
// ends.
func (x *Exporter) deliver(ctx context.Context, batch []json.RawMessage) error {
	body := Encode(x.cfg.Format, batch)
	dest := x.cfg.Dest
	switch {
	case dest == "stdout" || dest == "-":
		_, err := x.cfg.Stdout.Write(body)
		return err
	case strings.HasPrefix(dest, "http://") || strings.HasPrefix(dest, "https://"):
		backoff := time.Second
		for attempt := 1; ; attempt++ {
			err := x.post(ctx, body)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			x.log.Warn("diagnostic export delivery failed", "attempt", attempt, "err", err, "retry_in", backoff)
			sleepCtx(ctx, backoff)
			backoff = min(2*backoff, time.Minute)
		}
	default:
		return x.appendFile(strings.TrimPrefix(dest, "file:"), body)
	}
}

func (x *Exporter) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, x.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.cfg.Dest, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if x.cfg.Format == FormatLines {
		req.Header.Set("Content-Type", "application/x-ndjson")
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := x.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the endpoint answered %s", resp.Status)
	}
	return nil
}

func (x *Exporter) appendFile(path string, body []byte) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.file == nil {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		x.file = f
	}
	_, err := x.file.Write(body)
	return err
}

func (x *Exporter) closeFile() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.file != nil {
		_ = x.file.Close()
		x.file = nil
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Tail calls fn with each record stored from now on that matches the categories and levels
// (empty means any), until ctx ends or fn returns false.
func Tail(ctx context.Context, eng *engine.Engine, cats, levels []string, fn func(Wire) bool) error {
	st, err := eng.OpenStream(ctx, StreamName)
	if err != nil {
		return err
	}
	f, err := st.Follow(ctx, engine.FollowConfig{Filters: Filters(cats, levels), NewOnly: true})
	if err != nil {
		return err
	}
	defer f.Stop()
	for {
		m, err := f.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var w Wire
		if json.Unmarshal(m.Data, &w) != nil {
			continue
		}
		if !fn(w) {
			return nil
		}
	}
}
