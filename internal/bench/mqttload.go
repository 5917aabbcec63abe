package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Modes of [TelemetryConfig].
const (
	ModeThroughput = "throughput" // every connection publishes QoS 1 telemetry for Duration
	ModeIdle       = "idle"       // connections are opened, held idle for Duration, then pinged
)

// TelemetryConfig describes one run of [Telemetry].
type TelemetryConfig struct {
	// Target names the server in the report ("roost", "mosquitto", ...).
	Target string
	// Addr is the server's MQTT address, host:port.
	Addr string
	// TLS is the client TLS configuration. Nil means plain TCP. Leave its session cache unset:
	// every connection then makes a full handshake, as a device after a restart does.
	TLS *tls.Config
	// Identities holds one identity per connection; their count is the number of connections.
	Identities []Identity
	// Mode is ModeThroughput or ModeIdle. Empty means ModeThroughput.
	Mode string
	// Payload is the telemetry message size in bytes. Zero means 256.
	Payload int
	// Duration is how long connections publish (throughput) or stay idle before the final ping
	// (idle). Zero means 10 s.
	Duration time.Duration
	// Rate is the total publish rate in messages per second, spread evenly over the connections.
	// Zero means as fast as the server acknowledges, within Inflight. With a rate, a message's
	// latency counts from when it was due, so a server that falls behind is not excused by the
	// generator waiting for it (no coordinated omission).
	Rate float64
	// Inflight is how many QoS 1 messages a connection may have unacknowledged. Zero means 64.
	Inflight int
	// KeepAlive is the MQTT keep-alive sent in CONNECT. Zero means 300 s. Idle connections ping
	// every half keep-alive.
	KeepAlive time.Duration
	// ConnectConcurrency is how many connections are being set up at once. Zero means 32.
	ConnectConcurrency int
	// ServerRSS, when set, reads the server's resident memory in bytes; idle runs report it before
	// connecting and after the idle time, and the difference per connection.
	ServerRSS func(ctx context.Context) (int64, error)
	// ServerCPU, when set, reads the CPU time the server process has used so far; the result
	// then says how much of it each connect and each message cost, a figure that other work on
	// the machine skews much less than rates.
	ServerCPU func(ctx context.Context) (time.Duration, error)
	// Errors receives the first ShowErrors failures, one line each. Nil discards them.
	Errors io.Writer
	// ShowErrors is how many failures are printed. Zero means 5; negative means none.
	ShowErrors int
	// Progress receives a line as each step starts. Nil discards them.
	Progress io.Writer
}

// TelemetryResult is the outcome of one [Telemetry] run.
type TelemetryResult struct {
	Target      string `json:"target"`
	Mode        string `json:"mode"`
	Connections int    `json:"connections"`

	// Connected counts connections whose CONNECT was accepted; ConnectsPerSec is that count over
	// the time from the first dial to the last CONNACK, and ConnectLatency the time from dial to
	// CONNACK (TCP, TLS handshake, authentication) of each.
	Connected      int       `json:"connected"`
	ConnectSeconds float64   `json:"connectSeconds"`
	ConnectsPerSec float64   `json:"connectsPerSec"`
	ConnectLatency Latencies `json:"connectLatency"`
	// ConnectClientCPU is the CPU the generator used per second of the connect phase (its side
	// of the TLS handshakes). ServerCPUPerConnectMs is the server's CPU time per connection
	// accepted during the connect phase, in milliseconds, when ServerCPU is set.
	ConnectClientCPU      float64 `json:"connectClientCpu"`
	ServerCPUPerConnectMs float64 `json:"serverCpuPerConnectMs,omitempty"`

	PayloadBytes int     `json:"payloadBytes,omitempty"`
	Rate         float64 `json:"rate,omitempty"` // the requested total rate; 0 is as fast as possible
	Inflight     int     `json:"inflight,omitempty"`
	Seconds      float64 `json:"seconds"`
	// Published counts PUBLISHes written during Seconds, Acked the PUBACKs that came back
	// during it; MsgsPerSec is Acked over Seconds. Latency is from PUBLISH (or, with a rate,
	// from when it was due) to PUBACK, of every acknowledged message.
	Published  int64     `json:"published,omitempty"`
	Acked      int64     `json:"acked,omitempty"`
	MsgsPerSec float64   `json:"msgsPerSec"`
	Latency    Latencies `json:"latency"`
	// Unacked counts messages still unacknowledged when the run gave up waiting (5 s after
	// publishing stopped).
	Unacked int64 `json:"unacked,omitempty"`
	// ServerCPU is the server's CPU per second of publishing (1.0 is one core) and
	// ServerCPUPerMsgUs its CPU time per acknowledged message, in microseconds, when ServerCPU
	// is set.
	ServerCPU         float64 `json:"serverCpu,omitempty"`
	ServerCPUPerMsgUs float64 `json:"serverCpuPerMsgUs,omitempty"`
	// Errors counts failed connects, connections the server closed and protocol errors.
	Errors int `json:"errors"`

	// Alive counts idle connections that answered the final PINGREQ.
	Alive int `json:"alive,omitempty"`
	// ServerRSSBefore and ServerRSSAfter are the server's resident memory before connecting and
	// at the end of the idle time, in bytes; RSSPerConnKB is their difference per connected
	// connection, in KiB. Zero when not measured.
	ServerRSSBefore int64   `json:"serverRssBefore,omitempty"`
	ServerRSSAfter  int64   `json:"serverRssAfter,omitempty"`
	RSSPerConnKB    float64 `json:"rssPerConnKiB,omitempty"`

	// ClientCPU is the CPU the generator used per second of the measured phase (1.0 is one core).
	ClientCPU float64 `json:"clientCpu"`
	// LoadAvg is the machine's 1-, 5- and 15-minute load average at the end of the run.
	LoadAvg string `json:"loadAvg,omitempty"`
}

// Telemetry connects every identity of cfg to the server and then, in ModeThroughput, publishes
// QoS 1 telemetry on all connections for cfg.Duration, or, in ModeIdle, holds the connections
// idle for cfg.Duration and checks they still answer a PINGREQ. Failures are counted, not fatal;
// Telemetry returns an error only when it cannot start.
func Telemetry(ctx context.Context, cfg TelemetryConfig) (TelemetryResult, error) {
	cfg = cfg.withDefaults()
	if cfg.Mode != ModeThroughput && cfg.Mode != ModeIdle {
		return TelemetryResult{}, fmt.Errorf("mode %q: want %s or %s", cfg.Mode, ModeThroughput, ModeIdle)
	}
	if len(cfg.Identities) == 0 {
		return TelemetryResult{}, errors.New("bench: no identities to connect")
	}
	t := &telemetryRun{cfg: cfg, errs: &errorLog{w: cfg.Errors, max: cfg.ShowErrors}}
	res := TelemetryResult{Target: cfg.Target, Mode: cfg.Mode, Connections: len(cfg.Identities)}
	if cfg.Mode == ModeThroughput {
		res.PayloadBytes, res.Rate, res.Inflight = cfg.Payload, cfg.Rate, cfg.Inflight
	}
	if cfg.Mode == ModeIdle && cfg.ServerRSS != nil {
		rss, err := cfg.ServerRSS(ctx)
		if err != nil {
			return res, fmt.Errorf("server RSS: %w", err)
		}
		res.ServerRSSBefore = rss
	}

	t.progress("connecting %d clients to %s (%d at a time)", len(cfg.Identities), cfg.Addr, cfg.ConnectConcurrency)
	conns := t.connect(ctx, &res)
	defer func() {
		var wg sync.WaitGroup
		for _, c := range conns {
			if c != nil {
				wg.Go(c.close)
			}
		}
		wg.Wait()
	}()
	if ctx.Err() == nil && res.Connected > 0 {
		if cfg.Mode == ModeThroughput {
			t.progress("publishing %d-byte QoS 1 messages on %d connections for %s", cfg.Payload, res.Connected, cfg.Duration)
			t.publish(ctx, conns, &res)
		} else {
			t.progress("holding %d connections idle for %s", res.Connected, cfg.Duration)
			t.idle(ctx, conns, &res)
		}
	}
	res.Errors = t.errs.total()
	res.LoadAvg = loadAvg()
	return res, nil
}

func (c TelemetryConfig) withDefaults() TelemetryConfig {
	if c.Mode == "" {
		c.Mode = ModeThroughput
	}
	if c.Payload <= 0 {
		c.Payload = 256
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Inflight <= 0 {
		c.Inflight = 64
	}
	c.Inflight = min(c.Inflight, 65535) // packet ids are 16 bits and never 0
	if c.KeepAlive <= 0 {
		c.KeepAlive = 300 * time.Second
	}
	if c.ConnectConcurrency <= 0 {
		c.ConnectConcurrency = 32
	}
	if c.ShowErrors == 0 {
		c.ShowErrors = 5
	}
	return c
}

// telemetryRun is the state of one Telemetry call.
type telemetryRun struct {
	cfg  TelemetryConfig
	errs *errorLog
}

func (t *telemetryRun) progress(format string, args ...any) {
	if t.cfg.Progress != nil {
		fmt.Fprintf(t.cfg.Progress, "bench: "+format+"\n", args...)
	}
}

// connect opens a connection for every identity, ConnectConcurrency at a time. The slice it
// returns has nil where a connection failed.
func (t *telemetryRun) connect(ctx context.Context, res *TelemetryResult) []*mqttConn {
	ids := t.cfg.Identities
	conns := make([]*mqttConn, len(ids))
	lat := make([]time.Duration, len(ids))
	rbuf, wbuf := 4<<10, 32<<10
	if t.cfg.Mode == ModeIdle {
		rbuf, wbuf = 16, 64 // thousands of idle connections: keep the generator small too
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	srv0 := t.serverCPU(ctx)
	start, cpu0 := time.Now(), cpuTime()
	for range min(t.cfg.ConnectConcurrency, len(ids)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(ids) {
					return
				}
				t0 := time.Now()
				c, err := dialMQTT(ctx, t.cfg.Addr, t.cfg.TLS, ids[i], t.cfg.KeepAlive, rbuf, wbuf)
				if err != nil {
					if ctx.Err() == nil {
						t.errs.add("connect", ids[i].ClientID, err)
					}
					continue
				}
				lat[i] = time.Since(t0)
				conns[i] = c
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var ok []time.Duration
	for i, c := range conns {
		if c != nil {
			ok = append(ok, lat[i])
		}
	}
	res.Connected = len(ok)
	res.ConnectSeconds = elapsed.Seconds()
	res.ConnectsPerSec = float64(len(ok)) / elapsed.Seconds()
	res.ConnectLatency = Summarize(ok)
	res.ConnectClientCPU = (cpuTime() - cpu0).Seconds() / elapsed.Seconds()
	if srv1 := t.serverCPU(ctx); srv0 >= 0 && srv1 >= 0 && len(ok) > 0 {
		res.ServerCPUPerConnectMs = (srv1 - srv0).Seconds() * 1000 / float64(len(ok))
	}
	return conns
}

// pubStats is what one connection measured while publishing. Only its reader goroutine writes
// lat, acked and inWindow; only its writer writes sent.
type pubStats struct {
	lat      []time.Duration
	sent     int64
	acked    int64
	inWindow int64 // PUBACKs that arrived before the deadline
	// inFlight counts messages sent and not yet acknowledged; failed is set once the
	// connection's first failure is reported. Both goroutines touch them.
	inFlight atomic.Int64
	failed   atomic.Bool
}

// fail reports a connection's first failure.
func (s *pubStats) fail(t *telemetryRun, op, clientID string, err error) {
	if s.failed.CompareAndSwap(false, true) {
		t.errs.add(op, clientID, err)
	}
}

// publish runs the throughput phase: a writer and a reader goroutine per connection.
//
// Each connection's packet ids double as its window: a buffered channel holds the ids not in
// flight, the writer takes one to publish and the reader gives it back when its PUBACK comes,
// so a PUBACK for an id that is not in flight is a server error, and acknowledgements may come
// in any order. sentAt[id] is when the message with that id was sent (or due), in nanoseconds
// since the phase started, plus one; zero when the id is not in flight.
func (t *telemetryRun) publish(ctx context.Context, conns []*mqttConn, res *TelemetryResult) {
	live := slices.DeleteFunc(slices.Clone(conns), func(c *mqttConn) bool { return c == nil })
	payload := make([]byte, t.cfg.Payload)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	stats := make([]pubStats, len(live))
	var perConn time.Duration // pause between one connection's messages when paced
	if t.cfg.Rate > 0 {
		perConn = time.Duration(float64(time.Second) * float64(len(live)) / t.cfg.Rate)
	}

	srv0 := t.serverCPU(ctx)
	base := time.Now()
	deadline := base.Add(t.cfg.Duration)
	stop := make(chan struct{}) // closed at the deadline
	stopTimer := time.AfterFunc(t.cfg.Duration, func() { close(stop) })
	defer stopTimer.Stop()
	cpu0 := cpuTime()
	var readers, writers sync.WaitGroup
	idx := 0
	for i, c := range conns {
		if c == nil {
			continue
		}
		st := &stats[idx]
		offset := time.Duration(0)
		if perConn > 0 {
			offset = perConn * time.Duration(idx) / time.Duration(len(live)) // spread the connections' ticks
		}
		idx++
		free := make(chan uint16, t.cfg.Inflight)
		for id := 1; id <= t.cfg.Inflight; id++ {
			free <- uint16(id)
		}
		sentAt := make([]atomic.Int64, t.cfg.Inflight+1)
		tmpl := newPublishTemplate(t.cfg.Identities[i].Topic, payload)
		clientID := t.cfg.Identities[i].ClientID
		readerDone := make(chan struct{})
		readers.Go(func() {
			defer close(readerDone)
			t.readAcks(c, clientID, st, free, sentAt, base, deadline)
		})
		writers.Go(func() {
			w := pubWriter{t: t, c: c, clientID: clientID, st: st, tmpl: &tmpl, free: free, sentAt: sentAt,
				base: base, end: t.cfg.Duration, perConn: perConn, offset: offset, stop: stop, readerDone: readerDone}
			w.run(ctx)
		})
	}
	writers.Wait()
	// Every writer has stopped: wait up to 5 s for the PUBACKs still due, then unblock the
	// readers (a read deadline in the past ends a blocked read).
	for drainEnd := time.Now().Add(5 * time.Second); time.Now().Before(drainEnd); time.Sleep(5 * time.Millisecond) {
		var n int64
		for i := range stats {
			if !stats[i].failed.Load() {
				n += stats[i].inFlight.Load()
			}
		}
		if n == 0 {
			break
		}
	}
	for _, c := range live {
		_ = c.nc.SetReadDeadline(time.Now())
	}
	readers.Wait()
	elapsed := t.cfg.Duration
	cpu := cpuTime() - cpu0
	wall := time.Since(base)
	srv1 := t.serverCPU(ctx)

	var all []time.Duration
	for i := range stats {
		s := &stats[i]
		res.Published += s.sent
		res.Acked += s.inWindow
		res.Unacked += s.sent - s.acked
		all = append(all, s.lat...)
	}
	res.Seconds = elapsed.Seconds()
	res.MsgsPerSec = float64(res.Acked) / elapsed.Seconds()
	res.Latency = Summarize(all)
	res.ClientCPU = cpu.Seconds() / wall.Seconds()
	if srv0 >= 0 && srv1 >= 0 {
		res.ServerCPU = (srv1 - srv0).Seconds() / wall.Seconds()
		var acked int64
		for i := range stats {
			acked += stats[i].acked
		}
		if acked > 0 {
			res.ServerCPUPerMsgUs = float64(srv1-srv0) / float64(time.Microsecond) / float64(acked)
		}
	}
}

// serverCPU reads the server's CPU time, or returns -1 when it is not measured.
func (t *telemetryRun) serverCPU(ctx context.Context) time.Duration {
	if t.cfg.ServerCPU == nil {
		return -1
	}
	d, err := t.cfg.ServerCPU(ctx)
	if err != nil {
		t.errs.add("cpu", "server", err)
		return -1
	}
	return d
}

// pubWriter publishes on one connection until the deadline: as fast as the window allows, or
// paced at one message per perConn. It flushes whenever it would wait, so messages sent in a
// burst share TLS records and system calls.
type pubWriter struct {
	t          *telemetryRun
	c          *mqttConn
	clientID   string
	st         *pubStats
	tmpl       *publishTemplate
	free       chan uint16
	sentAt     []atomic.Int64
	base       time.Time
	end        time.Duration // since base
	perConn    time.Duration // 0: as fast as possible
	offset     time.Duration // when the first paced message is due, since base
	stop       <-chan struct{}
	readerDone <-chan struct{}
}

func (w *pubWriter) run(ctx context.Context) {
	due := w.offset
	for {
		now := time.Since(w.base)
		if now >= w.end || ctx.Err() != nil {
			break
		}
		stamp := now
		if w.perConn > 0 {
			if due > now {
				if !w.flush() {
					return
				}
				sleepUntil(ctx, w.base.Add(due), w.stop)
				continue
			}
			stamp = due // latency counts from when the message was due
			due += w.perConn
		}
		var id uint16
		select {
		case id = <-w.free:
		default:
			// The window is full: send what is buffered and wait for a PUBACK.
			if !w.flush() {
				return
			}
			select {
			case id = <-w.free:
			case <-w.readerDone:
				return // the connection failed; the reader reported it
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			}
			if w.perConn == 0 {
				stamp = time.Since(w.base)
			}
		}
		w.sentAt[id].Store(int64(stamp) + 1) // + 1: zero means not in flight
		w.st.inFlight.Add(1)
		if err := w.c.publish(w.tmpl, id); err != nil {
			w.st.fail(w.t, "publish", w.clientID, err)
			return
		}
		w.st.sent++
	}
	w.flush()
}

func (w *pubWriter) flush() bool {
	if err := w.c.bw.Flush(); err != nil {
		w.st.fail(w.t, "publish", w.clientID, err)
		return false
	}
	return true
}

// sleepUntil waits until t, ctx ends or stop closes.
func sleepUntil(ctx context.Context, t time.Time, stop <-chan struct{}) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	case <-stop:
	}
}

// readAcks reads PUBACKs on one connection until its read deadline passes (set once every
// writer has stopped) or every message sent has been acknowledged after the deadline.
func (t *telemetryRun) readAcks(c *mqttConn, clientID string, st *pubStats, free chan uint16, sentAt []atomic.Int64, base, deadline time.Time) {
	end := int64(deadline.Sub(base))
	var buf [8]byte
	for {
		typ, body, err := c.readPacket(buf[:0])
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() && time.Now().After(deadline) {
				return // the end of the drain: the caller counts what is still unacknowledged
			}
			st.fail(t, "read", clientID, err)
			return
		}
		now := int64(time.Since(base))
		switch typ {
		case pktPuback:
			if len(body) != 2 {
				st.fail(t, "read", clientID, fmt.Errorf("%w: a PUBACK of %d bytes", errProtocol, len(body)))
				return
			}
			id := uint16(body[0])<<8 | uint16(body[1])
			if id == 0 || int(id) >= len(sentAt) {
				st.fail(t, "read", clientID, fmt.Errorf("%w: PUBACK for packet id %d, never sent", errProtocol, id))
				return
			}
			at := sentAt[id].Swap(0)
			if at == 0 {
				st.fail(t, "read", clientID, fmt.Errorf("%w: PUBACK for packet id %d, not in flight", errProtocol, id))
				return
			}
			st.lat = append(st.lat, time.Duration(now-(at-1)))
			st.acked++
			st.inFlight.Add(-1)
			if now <= end {
				st.inWindow++
			}
			free <- id
		case pktPingresp:
		default:
			st.fail(t, "read", clientID, fmt.Errorf("%w: unexpected packet type %d", errProtocol, typ))
			return
		}
	}
}

// idle holds the connections for the configured time, pinging each every half keep-alive, then
// reads the server's RSS and checks every connection answers a last PINGREQ.
func (t *telemetryRun) idle(ctx context.Context, conns []*mqttConn, res *TelemetryResult) {
	cpu0, start := cpuTime(), time.Now()
	end := start.Add(t.cfg.Duration)
	pings := make([]int, len(conns)) // PINGREQs sent per connection, each owed a PINGRESP
	for time.Now().Before(end) && ctx.Err() == nil {
		next := time.Now().Add(t.cfg.KeepAlive / 2)
		if next.After(end) {
			next = end
		}
		sleepUntil(ctx, next, nil)
		if !time.Now().Before(end) || ctx.Err() != nil {
			break
		}
		t.forEach(conns, func(i int, c *mqttConn) {
			if c.ping() == nil {
				pings[i]++
			}
		})
	}
	if t.cfg.ServerRSS != nil {
		if rss, err := t.cfg.ServerRSS(ctx); err != nil {
			t.errs.add("rss", "server", err)
		} else {
			res.ServerRSSAfter = rss
			if res.Connected > 0 {
				res.RSSPerConnKB = float64(rss-res.ServerRSSBefore) / 1024 / float64(res.Connected)
			}
		}
	}
	var alive atomic.Int64
	t.forEach(conns, func(i int, c *mqttConn) {
		_ = c.nc.SetDeadline(time.Now().Add(15 * time.Second))
		err := c.ping()
		for want := pings[i] + 1; err == nil && want > 0; {
			var typ byte
			var buf [4]byte
			typ, _, err = c.readPacket(buf[:0])
			if err == nil && typ == pktPingresp {
				want--
			}
		}
		_ = c.nc.SetDeadline(time.Time{})
		if err != nil {
			t.errs.add("ping", t.cfg.Identities[i].ClientID, err)
			return
		}
		alive.Add(1)
	})
	res.Alive = int(alive.Load())
	res.Seconds = time.Since(start).Seconds()
	res.ClientCPU = (cpuTime() - cpu0).Seconds() / res.Seconds
}

// forEach runs fn on every open connection, ConnectConcurrency at a time.
func (t *telemetryRun) forEach(conns []*mqttConn, fn func(i int, c *mqttConn)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(t.cfg.ConnectConcurrency, len(conns)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				if conns[i] != nil {
					fn(i, conns[i])
				}
			}
		})
	}
	wg.Wait()
}

// loadAvg returns the first three fields of /proc/loadavg, or "" where there is none.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
