// Package engine is Roost's only door to NATS JetStream: it starts the embedded server or
// connects to an external cluster, and offers the few storage shapes the hub needs (key-value
// buckets with compare-and-set, append-only streams) under names it owns.
//
// Every durable fact of the hub lives behind this package, so two Roost nodes that share one NATS
// cluster see the same registry, queues and logs. No other package imports NATS.
//
//	eng, err := engine.Open(ctx, engine.Config{DataDir: "./roost-data"})
//	if err != nil { ... }
//	defer eng.Close()
//	kv, err := eng.KV(ctx, engine.BucketConfig{Name: "registry"})
//	rev, err := kv.Create(ctx, "d."+engine.EncodeToken("dev1"), data)
//
// Device and module ids may hold characters that are not legal in NATS subjects or KV keys;
// [EncodeToken] maps them reversibly onto a safe alphabet.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config says how the engine runs. The zero value (plus a DataDir) runs an embedded server.
type Config struct {
	// DataDir is where the embedded server keeps its files (under DataDir/engine). Unused with
	// NATSURLs.
	DataDir string
	// NATSURLs, when not empty, selects an external NATS cluster instead of the embedded server.
	NATSURLs []string
	// Replicas is the replica count of every bucket and stream. Zero means 1.
	Replicas int
	// SyncAlways makes the embedded server fsync every write. It costs about 10x in throughput;
	// without it an acknowledged write survives a process crash but not a power cut.
	SyncAlways bool
	// MaxStore caps the embedded server's file storage in bytes. Zero means 64 GiB.
	MaxStore int64
	// MaxMemory caps the embedded server's memory storage in bytes. Zero means 256 MiB.
	MaxMemory int64
	// ConnectTimeout bounds connecting to an external cluster. Zero means 10 s.
	ConnectTimeout time.Duration
	// Logger receives the engine's own log lines. Nil discards them.
	Logger *slog.Logger
}

// Engine is an open connection to JetStream, embedded or external.
type Engine struct {
	cfg Config
	srv *server.Server // nil when external
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger
}

// Errors callers branch on.
var (
	ErrNotFound         = errors.New("not found")
	ErrExists           = errors.New("already exists")
	ErrRevisionMismatch = errors.New("revision mismatch")
	ErrLimit            = errors.New("limit reached")
)

// Open starts or connects to the engine. It returns once JetStream answers.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, log: log.With("component", "engine")}
	if len(cfg.NATSURLs) == 0 {
		if err := e.startEmbedded(); err != nil {
			return nil, err
		}
	} else if err := e.connectExternal(ctx); err != nil {
		return nil, err
	}
	js, err := jetstream.New(e.nc)
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("engine: jetstream: %w", err)
	}
	e.js = js
	// Ask JetStream once so that a cluster without JetStream fails here, with a clear message.
	actx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if _, err := js.AccountInfo(actx); err != nil {
		e.Close()
		return nil, fmt.Errorf("engine: JetStream is not available: %w", err)
	}
	return e, nil
}

func (e *Engine) startEmbedded() error {
	if e.cfg.DataDir == "" {
		return errors.New("engine: no data dir")
	}
	dir := filepath.Join(e.cfg.DataDir, "engine")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	maxStore, maxMem := e.cfg.MaxStore, e.cfg.MaxMemory
	if maxStore <= 0 {
		maxStore = 64 << 30
	}
	if maxMem <= 0 {
		maxMem = 256 << 20
	}
	opts := &server.Options{
		ServerName:         "roost",
		JetStream:          true,
		StoreDir:           dir,
		DontListen:         true,
		NoSigs:             true,
		JetStreamMaxStore:  maxStore,
		JetStreamMaxMemory: maxMem,
		SyncAlways:         e.cfg.SyncAlways,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	srv.SetLoggerV2(&natsLogger{log: e.log}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return errors.New("engine: embedded server did not start in 10s")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("roost"), nats.MaxReconnects(-1))
	if err != nil {
		srv.Shutdown()
		return fmt.Errorf("engine: connect in-process: %w", err)
	}
	e.srv, e.nc = srv, nc
	return nil
}

func (e *Engine) connectExternal(ctx context.Context) error {
	url := strings.Join(e.cfg.NATSURLs, ",")
	deadline := time.Now().Add(e.cfg.ConnectTimeout)
	for {
		nc, err := nats.Connect(url,
			nats.Name("roost"),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(250*time.Millisecond),
			nats.Timeout(2*time.Second),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					e.log.Warn("disconnected from NATS", "err", err)
				}
			}),
			nats.ReconnectHandler(func(c *nats.Conn) { e.log.Info("reconnected to NATS", "url", c.ConnectedUrlRedacted()) }),
		)
		if err == nil {
			e.nc = nc
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("engine: connect to %s: %w", url, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Embedded reports whether the engine runs the NATS server in-process.
func (e *Engine) Embedded() bool { return e.srv != nil }

// Replicas returns the replica count used for buckets and streams.
func (e *Engine) Replicas() int { return e.cfg.Replicas }

// Close drains the connection and stops the embedded server, if any.
func (e *Engine) Close() error {
	if e.nc != nil {
		_ = e.nc.Drain()
		// Drain is asynchronous; wait briefly so in-flight acks reach the server.
		for i := 0; i < 100 && !e.nc.IsClosed(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		e.nc.Close()
	}
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
	}
	return nil
}

// natsLogger bridges the NATS server's logger onto slog.
type natsLogger struct{ log *slog.Logger }

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any)  {}

// mapErr turns JetStream's not-found errors into [ErrNotFound]. Conflicts are mapped by each
// operation, since JetStream reports "exists" and "wrong revision" with the same code.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted),
		errors.Is(err, jetstream.ErrMsgNotFound):
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}

// isWrongLastSequence reports whether err is JetStream's compare-and-set failure.
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}
