// Package mqtt is the hub's MQTT 3.1.1 device endpoint, over TLS and over WebSockets, with IoT
// Hub's rules: a device authenticates with a SAS token or an X.509 certificate, talks only on
// IoT Hub's topics, holds at most one connection cluster-wide, and every connection and failure
// is written to the Connections and DeviceTelemetry diagnostic logs as IoT Hub writes them.
//
// The listener hands each net.Conn to [Server.ServeConn]; a connection has a read loop (this
// goroutine) and a write loop fed by a bounded queue. Telemetry is acknowledged (PUBACK) only
// once the engine has stored it, in the order the device sent it.
//
//	srv, err := mqtt.New(mqtt.Config{HostName: "hub.local", Engine: eng, Registry: reg, ...})
//	go srv.Serve(tls.NewListener(ln, tlsConfig))
//	http.Handle("/$iothub/websocket", srv.WebSocketHandler())
//
// One connection per device: a connecting device writes its claim to the presence bucket and
// publishes a kick carrying the claim's revision on the device's subject; any connection of the
// same identity, on any node, with an older claim closes itself (409002 LinkCreationConflict).
package mqtt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/c2d"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/faults"
	"github.com/roost-iot/roost/internal/metrics"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/telemetry"
	"github.com/roost-iot/roost/internal/throttle"
)

// Config wires the MQTT server to the hub.
type Config struct {
	HostName  string
	Engine    *engine.Engine
	Registry  *registry.Registry
	Policies  *auth.Store
	Telemetry *telemetry.Pipeline
	Diag      *diag.Writer
	Metrics   *metrics.Metrics
	Logger    *slog.Logger
	// NodeID names this node in the presence bucket. Empty means a random id.
	NodeID string
	// MaxKeepAlive caps how long a silent connection lives: 1.5 times the client's keep-alive, at
	// most this. Zero means 1767 s, IoT Hub's cap.
	MaxKeepAlive time.Duration
	// ConnectTimeout is how long a new connection may take to send CONNECT. Zero means 30 s.
	ConnectTimeout time.Duration
	// WriteQueue is the per-connection outbound queue length. Zero means 256.
	WriteQueue int
	// MaxPacket caps a packet's remaining length in bytes. Zero means 512 KiB (a 256 KB message
	// plus a long topic); bigger packets close the connection before being read.
	MaxPacket int
	// ActivityInterval is how often a busy connection writes its lastActivityTime. Zero means 30 s.
	ActivityInterval time.Duration
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Faults, when set, injects failures into connects and telemetry (see faults.go).
	Faults *faults.Injector
	// OnThrottled, when set, is told of each telemetry message refused with 429001.
	OnThrottled func()
	// Throttle, when set, enforces the hub's IoT Hub tier (see throttle.go). Nil is unlimited.
	Throttle *throttle.Throttler
	// DeviceLimits, when set, caps each device's own telemetry (beyond IoT Hub; see throttle.go).
	DeviceLimits *throttle.DeviceLimits

	// Twins, when set, serves the device side of twins; without it twin requests get 503.
	Twins Twins
	// C2D, when set, delivers cloud-to-device messages to devices subscribed to their
	// devicebound topic; without it they receive none.
	C2D *c2d.Service
}

// Server accepts device connections.
type Server struct {
	cfg      Config
	log      *slog.Logger
	presence *engine.Bucket
	mailbox  *engine.Mailbox

	mu        sync.Mutex
	conns     map[*conn]struct{}
	bySubject map[string]*subjectConns // kick subject -> local connections of that identity
	listeners []net.Listener
	closed    bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// subjectConns is the local connections listening on one subject: almost always one, briefly
// two while a new connection of an identity replaces the old, so a slice, not a map.
type subjectConns struct {
	sub   *engine.Subscription
	conns []*conn
}

// presenceEntry is the claim a connection writes for its identity.
type presenceEntry struct {
	Node  string    `json:"node"`
	Conn  string    `json:"conn"`
	Since time.Time `json:"since"`
}

// kickMsg tells connections of an identity to close: those older than Rev when a new connection
// claims the identity, or all of them (Code set) when the identity is disabled or deleted.
type kickMsg struct {
	Rev  uint64 `json:"rev"`
	Node string `json:"node"`
	// Code, when set, is the error the closed connections are logged with.
	Code int    `json:"code,omitempty"`
	Msg  string `json:"msg,omitempty"`
	// Fault names the fault injection rule behind the kick, if any.
	Fault string `json:"fault,omitempty"`
}

// Revoke closes every connection of an identity, on any node: the registry calls it when a
// device is disabled or deleted, as IoT Hub drops such a device at once.
func (s *Server) Revoke(deviceID, moduleID string, code errcode.Code, msg string) error {
	b, _ := json.Marshal(kickMsg{Node: s.cfg.NodeID, Code: int(code), Msg: msg})
	return s.cfg.Engine.PublishCore(engine.DeviceSubject(deviceID, moduleID, "kick"), b)
}

// New opens the presence bucket, cleans up claims this node left behind when it last stopped,
// and starts delivering cluster messages to connections.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.MaxKeepAlive <= 0 {
		cfg.MaxKeepAlive = 1767 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	if cfg.WriteQueue <= 0 {
		cfg.WriteQueue = 256
	}
	if cfg.MaxPacket <= 0 {
		cfg.MaxPacket = 512 << 10
	}
	if cfg.ActivityInterval <= 0 {
		cfg.ActivityInterval = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NodeID == "" {
		cfg.NodeID = randomID()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	presence, err := cfg.Engine.KV(ctx, engine.BucketConfig{Name: "presence", Description: "which node holds each device's connection"})
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, log: log.With("component", "mqtt"), presence: presence,
		mailbox: cfg.Engine.NewMailbox(4096),
		conns:   map[*conn]struct{}{}, bySubject: map[string]*subjectConns{},
		ctx: sctx, cancel: cancel,
	}
	if err := s.subscribeKicks(); err != nil {
		cancel()
		return nil, err
	}
	s.cleanupStale(ctx)
	s.wg.Add(1)
	go s.dispatch()
	return s, nil
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// cleanupStale marks disconnected the identities whose claims name this node: they belong to
// connections of an earlier run that ended without closing them (a crash or kill).
func (s *Server) cleanupStale(ctx context.Context) {
	var stale []engine.Entry
	_ = s.presence.Scan(ctx, []string{">"}, func(e engine.Entry) bool {
		var pe presenceEntry
		if json.Unmarshal(e.Value, &pe) == nil && pe.Node == s.cfg.NodeID {
			stale = append(stale, e)
		}
		return true
	})
	now := s.cfg.Now()
	for _, e := range stale {
		dev, mod, ok := splitPresenceKey(e.Key)
		if !ok {
			continue
		}
		if err := s.presence.Delete(ctx, e.Key, e.Revision); err == nil {
			_ = s.cfg.Registry.SetConnectionState(ctx, dev, mod, false, now)
		}
	}
	if len(stale) > 0 {
		s.log.Info("cleared connections left from the previous run", "count", len(stale))
	}
}

func presenceKey(dev, mod string) string {
	if mod == "" {
		return "d." + engine.EncodeToken(dev)
	}
	return "m." + engine.EncodeToken(dev) + "." + engine.EncodeToken(mod)
}

func splitPresenceKey(k string) (dev, mod string, ok bool) {
	parts := strings.Split(k, ".")
	var err error
	switch {
	case len(parts) == 2 && parts[0] == "d":
		dev, err = engine.DecodeToken(parts[1])
	case len(parts) == 3 && parts[0] == "m":
		if dev, err = engine.DecodeToken(parts[1]); err == nil {
			mod, err = engine.DecodeToken(parts[2])
		}
	default:
		return "", "", false
	}
	return dev, mod, err == nil
}

// dispatch delivers cluster messages (kicks) to the local connections they are for.
func (s *Server) dispatch() {
	defer s.wg.Done()
	for {
		in, err := s.mailbox.Next(s.ctx)
		if err != nil {
			return
		}
		s.mu.Lock()
		var targets []*conn
		if sc := s.bySubject[in.Subject]; sc != nil {
			targets = append(targets, sc.conns...)
		}
		s.mu.Unlock()
		kind := in.Subject[strings.LastIndexByte(in.Subject, '.')+1:]
		if kind != "kick" {
			for _, c := range targets {
				c.onCluster(kind, in)
			}
			continue
		}
		var k kickMsg
		if json.Unmarshal(in.Data, &k) != nil {
			continue
		}
		for _, c := range targets {
			if k.Code != 0 {
				c.revoked(kickError(k))
				continue
			}
			c.kicked(k.Rev)
		}
	}
}

// register adds a connection to one of its identity's subjects (kick, method, c2d, twin).
func (s *Server) register(c *conn, subject string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.bySubject[subject]
	if sc == nil {
		// Kicks arrive through the node's two wildcard subscriptions (see subscribeKicks); other
		// kinds get a subscription of their own, so a node hears only its devices' calls.
		var sub *engine.Subscription
		if !strings.HasSuffix(subject, ".kick") {
			var err error
			if sub, err = s.mailbox.Subscribe(subject); err != nil {
				return err
			}
		}
		sc = &subjectConns{sub: sub}
		s.bySubject[subject] = sc
	}
	if !slices.Contains(sc.conns, c) {
		sc.conns = append(sc.conns, c)
	}
	return nil
}

// subscribeKicks makes the node hear every kick in the cluster with two subscriptions, instead of
// one per connection: a connect then costs no subscription round trip, and an idle connection no
// subscription state. Kicks are rare (one per connect, disable or delete), so hearing all of
// them costs a map lookup each.
func (s *Server) subscribeKicks() error {
	for _, pattern := range []string{engine.DeviceSubjects("kick", false), engine.DeviceSubjects("kick", true)} {
		if _, err := s.mailbox.Subscribe(pattern); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.cfg.Engine.Flush(ctx)
}

func (s *Server) unregister(c *conn, subject string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.bySubject[subject]
	if sc == nil {
		return
	}
	if i := slices.Index(sc.conns, c); i >= 0 {
		sc.conns = slices.Delete(sc.conns, i, i+1)
	}
	if len(sc.conns) == 0 {
		sc.sub.Unsubscribe()
		delete(s.bySubject, subject)
	}
}

// Serve accepts connections from ln (already wrapped in TLS) until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait and try again (net/http does the same).
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			s.log.Warn("accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.ServeConn(nc, "Mqtt")
		}()
	}
}

// Shutdown stops accepting, closes every connection and waits for them until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
	done := make(chan struct{})
	go func() {
		// Connections first, then the dispatcher: closing connections still updates presence.
		s.waitConns()
		s.cancel()
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.cancel()
		return ctx.Err()
	}
}

func (s *Server) waitConns() {
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// track adds or removes a live connection; it refuses new ones after Shutdown.
func (s *Server) track(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed {
			return false
		}
		s.conns[c] = struct{}{}
		return true
	}
	delete(s.conns, c)
	return true
}
