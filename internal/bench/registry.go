package bench

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roost-iot/roost/internal/client"
	"github.com/roost-iot/roost/internal/registry"
)

// Delete modes of [RegistryConfig].
const (
	DeleteBulk   = "bulk"   // POST /devices with importMode delete, BulkSize devices per request
	DeleteSingle = "single" // DELETE /devices/{id}, one request per device
)

// BulkSize is how many devices one bulk delete request carries, IoT Hub's limit per request.
const BulkSize = 100

// RegistryConfig describes one run of [Registry].
type RegistryConfig struct {
	// NewClient makes a REST client. Registry calls it once per concurrent client, so each client
	// holds its own keep-alive connection instead of contending for a shared pool.
	NewClient func() (*client.Client, error)
	// Clients is how many clients send requests at once. Zero means 16.
	Clients int
	// Devices is how many devices the create phase registers. Zero means 2000.
	Devices int
	// Duration is how long the get phase reads devices. Zero means 10 s.
	Duration time.Duration
	// DeleteMode is DeleteBulk or DeleteSingle. Empty means DeleteBulk.
	DeleteMode string
	// RunID prefixes the device ids ("bench-<RunID>-000042"), so runs never collide with each
	// other or with real devices. Empty means a random id.
	RunID string
	// Errors receives the first ShowErrors failed requests, one line each. Nil discards them.
	Errors io.Writer
	// ShowErrors is how many failed requests are printed. Zero means 5; negative means none.
	ShowErrors int
	// Progress receives a line as each phase starts. Nil discards them.
	Progress io.Writer
}

// Phase is the outcome of one phase of a run. Ops counts devices that were created, read or
// deleted; Requests counts HTTP requests, which differ only for bulk deletes. Latencies are of
// successful requests.
type Phase struct {
	Name      string    `json:"phase"`
	Ops       int       `json:"ops"`
	Requests  int       `json:"requests"`
	Errors    int       `json:"errors"`
	Seconds   float64   `json:"seconds"`
	OpsPerSec float64   `json:"opsPerSec"`
	Latency   Latencies `json:"latency"`
	// Conns is how many distinct TCP connections carried the phase's requests.
	Conns int `json:"connections"`
	// ClientCPU is the CPU time this process (the load generator) used per second of the phase:
	// 1.0 is one core busy. On a small machine the generator competes with the hub for cores.
	ClientCPU float64 `json:"clientCpu"`
}

// Result is the outcome of one [Registry] run.
type Result struct {
	RunID      string  `json:"runId"`
	Clients    int     `json:"clients"`
	Devices    int     `json:"devices"`
	Duration   string  `json:"getDuration"`
	DeleteMode string  `json:"deleteMode"`
	Phases     []Phase `json:"phases"`
}

// Registry creates cfg.Devices devices spread over cfg.Clients clients, reads random ones of
// them for cfg.Duration, and deletes them again. Failed requests are counted, not fatal. The
// delete phase runs even when ctx ends early, so an interrupted run removes the devices it
// created (within two minutes). Registry returns an error only when it cannot start.
func Registry(ctx context.Context, cfg RegistryConfig) (Result, error) {
	cfg = cfg.withDefaults()
	if cfg.DeleteMode != DeleteBulk && cfg.DeleteMode != DeleteSingle {
		return Result{}, fmt.Errorf("delete mode %q: want %s or %s", cfg.DeleteMode, DeleteBulk, DeleteSingle)
	}
	if cfg.NewClient == nil {
		return Result{}, errors.New("bench: no NewClient")
	}
	workers := make([]*worker, cfg.Clients)
	for i := range workers {
		c, err := cfg.NewClient()
		if err != nil {
			return Result{}, err
		}
		workers[i] = &worker{c: c, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))}
	}
	r := &run{cfg: cfg, workers: workers, errs: &errorLog{w: cfg.Errors, max: cfg.ShowErrors}}
	res := Result{RunID: cfg.RunID, Clients: cfg.Clients, Devices: cfg.Devices, Duration: cfg.Duration.String(), DeleteMode: cfg.DeleteMode}

	ids := make([]string, cfg.Devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%s-%06d", cfg.RunID, i)
	}
	created := make([]bool, len(ids))
	r.progress("creating %d devices with %d clients (run %s)", len(ids), cfg.Clients, cfg.RunID)
	res.Phases = append(res.Phases, r.create(ctx, ids, created))

	var live []string
	for i, ok := range created {
		if ok {
			live = append(live, ids[i])
		}
	}
	if ctx.Err() == nil && len(live) > 0 {
		r.progress("reading random devices for %s", cfg.Duration)
		res.Phases = append(res.Phases, r.get(ctx, live))
	}

	// Clean up even after an interrupt, within a bound.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	r.progress("deleting %d devices (%s)", len(live), cfg.DeleteMode)
	res.Phases = append(res.Phases, r.delete(dctx, live))
	return res, nil
}

func (c RegistryConfig) withDefaults() RegistryConfig {
	if c.Clients <= 0 {
		c.Clients = 16
	}
	if c.Devices <= 0 {
		c.Devices = 2000
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.DeleteMode == "" {
		c.DeleteMode = DeleteBulk
	}
	if c.RunID == "" {
		var b [3]byte
		_, _ = crand.Read(b[:])
		c.RunID = hex.EncodeToString(b[:])
	}
	if c.ShowErrors == 0 {
		c.ShowErrors = 5
	}
	return c
}

// run is the state of one Registry call.
type run struct {
	cfg     RegistryConfig
	workers []*worker
	errs    *errorLog
}

func (r *run) progress(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "bench: "+format+"\n", args...)
	}
}

// worker is one client: its REST client (and so its connection pool), its random source and
// what it measured in the current phase. Only its own goroutine touches it during a phase.
type worker struct {
	c   *client.Client
	rng *rand.Rand

	lat             []time.Duration
	ops, reqs, errs int
	conns           map[string]struct{}
}

// phase runs fn on every worker at once and merges what they measured.
func (r *run) phase(ctx context.Context, name string, fn func(ctx context.Context, w *worker)) Phase {
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for _, w := range r.workers {
		w.lat, w.ops, w.reqs, w.errs = w.lat[:0], 0, 0, 0
		w.conns = map[string]struct{}{}
		var mu sync.Mutex // the trace hook may run off the worker's goroutine
		tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				mu.Lock()
				w.conns[info.Conn.LocalAddr().String()] = struct{}{}
				mu.Unlock()
			},
		})
		wg.Go(func() { fn(tctx, w) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0

	p := Phase{Name: name, Seconds: elapsed.Seconds()}
	var all []time.Duration
	conns := map[string]struct{}{}
	for _, w := range r.workers {
		p.Ops += w.ops
		p.Requests += w.reqs
		p.Errors += w.errs
		all = append(all, w.lat...)
		for c := range w.conns {
			conns[c] = struct{}{}
		}
	}
	p.Conns = len(conns)
	p.Latency = Summarize(all)
	if elapsed > 0 {
		p.OpsPerSec = float64(p.Ops) / elapsed.Seconds()
		p.ClientCPU = cpu.Seconds() / elapsed.Seconds()
	}
	return p
}

// create registers ids, the workers taking the next unregistered id in turn. created[i] says
// whether ids[i] was registered.
func (r *run) create(ctx context.Context, ids []string, created []bool) Phase {
	var next atomic.Int64
	return r.phase(ctx, "create", func(ctx context.Context, w *worker) {
		for ctx.Err() == nil {
			i := int(next.Add(1) - 1)
			if i >= len(ids) {
				return
			}
			t0 := time.Now()
			_, err := w.c.CreateDevice(ctx, registry.Device{DeviceID: ids[i]})
			d := time.Since(t0)
			if ctx.Err() != nil {
				return
			}
			w.reqs++
			if err != nil {
				w.errs++
				r.errs.add("create", ids[i], err)
				continue
			}
			w.ops++
			w.lat = append(w.lat, d)
			created[i] = true
		}
	})
}

// get reads random devices of ids until the configured duration has passed. A request in flight
// at the deadline completes and is counted.
func (r *run) get(ctx context.Context, ids []string) Phase {
	deadline := time.Now().Add(r.cfg.Duration)
	return r.phase(ctx, "get", func(ctx context.Context, w *worker) {
		for ctx.Err() == nil && time.Now().Before(deadline) {
			id := ids[w.rng.IntN(len(ids))]
			t0 := time.Now()
			// Decode only the id: the full registry.Device costs the generator CPU that, on a
			// small machine, the hub would otherwise get.
			var dev struct {
				DeviceID string `json:"deviceId"`
			}
			_, err := w.c.Do(ctx, http.MethodGet, "/devices/"+url.PathEscape(id), nil, nil, nil, &dev)
			d := time.Since(t0)
			if ctx.Err() != nil {
				return
			}
			w.reqs++
			if err == nil && dev.DeviceID != id {
				err = fmt.Errorf("asked for %s, got %q", id, dev.DeviceID)
			}
			if err != nil {
				w.errs++
				r.errs.add("get", id, err)
				continue
			}
			w.ops++
			w.lat = append(w.lat, d)
		}
	})
}

// delete removes ids, in bulk requests of BulkSize or one by one.
func (r *run) delete(ctx context.Context, ids []string) Phase {
	size := 1
	if r.cfg.DeleteMode == DeleteBulk {
		size = BulkSize
	}
	var next atomic.Int64
	return r.phase(ctx, "delete", func(ctx context.Context, w *worker) {
		for ctx.Err() == nil {
			lo := int(next.Add(1)-1) * size
			if lo >= len(ids) {
				return
			}
			batch := ids[lo:min(lo+size, len(ids))]
			t0 := time.Now()
			failed, err := r.deleteBatch(ctx, w.c, batch)
			d := time.Since(t0)
			w.reqs++
			if err != nil {
				w.errs += len(batch)
				r.errs.add("delete", batch[0], err)
				continue
			}
			w.errs += failed
			w.ops += len(batch) - failed
			w.lat = append(w.lat, d)
		}
	})
}

// deleteBatch deletes one device with DELETE, or several with one bulk request, and returns how
// many entries of a bulk request failed.
func (r *run) deleteBatch(ctx context.Context, c *client.Client, ids []string) (int, error) {
	if r.cfg.DeleteMode == DeleteSingle {
		return 0, c.DeleteDevice(ctx, ids[0], "")
	}
	entries := make([]registry.ImportDevice, len(ids))
	for i, id := range ids {
		entries[i] = registry.ImportDevice{ID: id, ImportMode: registry.ModeDelete}
	}
	var res registry.BulkResult
	if _, err := c.Do(ctx, http.MethodPost, "/devices", nil, nil, entries, &res); err != nil {
		return 0, err
	}
	for _, e := range res.Errors {
		r.errs.add("delete", e.DeviceID, fmt.Errorf("bulk entry failed: %s %s", e.ErrorCode, e.ErrorStatus))
	}
	return len(res.Errors), nil
}

// errorLog prints the first max errors and counts the rest.
type errorLog struct {
	w   io.Writer
	max int

	mu    sync.Mutex
	count int
}

func (l *errorLog) add(op, id string, err error) {
	l.mu.Lock()
	l.count++
	n := l.count
	l.mu.Unlock()
	if l.w == nil || n > l.max {
		return
	}
	msg := fmt.Sprintf("bench: %s %s: %v\n", op, id, err)
	if n == l.max {
		msg += "bench: (further errors are counted, not printed)\n"
	}
	_, _ = io.WriteString(l.w, msg)
}

// total returns how many errors were added.
func (l *errorLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count
}
