package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/certs"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/sas"
	"github.com/roost-iot/roost/internal/telemetry"
	"github.com/roost-iot/roost/internal/throttle"
)

// maxSubscriptions is IoT Hub's limit of topic filters per connection.
const maxSubscriptions = 5

// conn is one device connection.
type conn struct {
	s         *Server
	nc        net.Conn
	br        *smallReader
	raw       syscall.RawConn // the socket under TLS, for quiet connections to wait on (idle.go)
	protocol  string          // "Mqtt" or "MqttWs"
	remote    string
	certs     []*x509.Certificate // client certificates from the TLS handshake
	connID    string
	startedAt time.Time

	id         auth.Identity
	sdkVersion string
	subject    string // kick subject
	presKey    string
	presRev    atomic.Uint64
	registered bool
	subs       map[string]byte
	listening  []string      // cluster subjects besides kick (see listen)
	kaWindow   time.Duration // read deadline after each packet
	kaDeadline time.Time     // when the keep-alive window ends
	expiry     *time.Timer   // closes the connection when its SAS token expires

	wq     writeQueue // what is to be written (writeq.go)
	ctx    context.Context
	cancel context.CancelFunc

	reasonMu sync.Mutex
	reason   *closeReason // why the connection ends; first one set wins

	lastActivity atomic.Int64 // unix nanos of the last activity write
	activityBusy atomic.Bool

	meth methodState // direct methods (methods.go)
	tw   twinState   // device twins (twin.go)
	c2   c2dState    // cloud-to-device messages (c2d.go)

	devLimit *throttle.DeviceLimiter // the device's own telemetry limits (throttle.go); nil: none
}

// closeReason records why a connection ended, for its deviceDisconnect record.
type closeReason struct {
	err      error // nil: a clean disconnect
	graceful bool
	kicked   bool // another connection of the identity took over
	shutdown bool
	silent   bool // nothing to log (connection never authenticated)
}

// outItem is one entry of the write queue: bytes to write, or an acknowledgement to send once a
// telemetry message is stored.
type outItem struct {
	data    []byte
	pending *telemetry.Pending
	size    int32  // payload bytes of the telemetry message, for its error record
	ackID   uint16 // PUBACK packet id after pending; 0 for QoS 0
}

// ServeConn runs one device connection to its end. protocol is "Mqtt" or "MqttWs".
func (s *Server) ServeConn(nc net.Conn, protocol string) {
	c := &conn{
		s: s, nc: nc, raw: rawSocket(nc), protocol: protocol,
		remote: nc.RemoteAddr().String(), connID: randomID(), startedAt: s.cfg.Now(),
		subs: map[string]byte{},
	}
	// Not a child of the server's context: that would put every connection in one map of the
	// server's (about 0.5 KiB each). Shutdown cancels each connection itself.
	c.br = &smallReader{rd: packetReader{c}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if !s.track(c, true) {
		c.cancel()
		_ = nc.Close()
		return
	}
	if c.raw != nil {
		// The handshakes and the first packets run on this goroutine; once the device is quiet
		// a fresh goroutine waits for its next packet and this one, with the deep stack the
		// handshakes grew, ends (idle.go).
		if !c.open() {
			c.end()
			return
		}
		c.serve()
		return
	}
	// Without the probe (WebSockets) the caller's goroutine is the read loop for the
	// connection's whole life. The handshakes run on a goroutine of their own, which ends with
	// them: their crypto and engine calls grow a stack to tens of KiB, and a stack shrinks
	// only by half per GC cycle.
	ok := make(chan bool, 1)
	go func() { ok <- c.open() }()
	if !<-ok {
		c.end()
		return
	}
	c.serve()
}

// end releases what ServeConn took for a connection: its context and its place in the
// server's set. It comes last, after finish for an authenticated connection.
func (c *conn) end() {
	_ = c.nc.Close()
	c.cancel()
	c.s.track(c, false)
}

// certConn makes ServeConn see the client certificates of a connection whose TLS
// handshake happened elsewhere (WebSockets behind the HTTPS listener).
type certConn struct {
	net.Conn
	certs []*x509.Certificate
}

// serve handles packets until the connection ends, or until the device is quiet on a
// connection that can wait for it on a fresh goroutine (idle.go), which then carries on.
func (c *conn) serve() {
	err := c.readLoop()
	if errors.Is(err, errQuiet) {
		c.s.wg.Add(1)
		go c.await()
		return
	}
	c.finish(err)
	c.end()
}

// open completes the TLS handshake under the connect deadline, keeping the client
// certificates, then the MQTT one; false means the connection must close.
func (c *conn) open() bool {
	_ = c.nc.SetDeadline(time.Now().Add(c.s.cfg.ConnectTimeout))
	switch tc := c.nc.(type) {
	case *tls.Conn:
		// The deadline above bounds it and Shutdown moves it to now; HandshakeContext would also
		// leave a child-context map on c.ctx for the connection's whole life.
		if err := tc.Handshake(); err != nil {
			return false
		}
		c.certs = tc.ConnectionState().PeerCertificates
	case *certConn:
		c.certs = tc.certs
	}
	return c.handshake()
}

// handshake reads CONNECT, authenticates, claims the identity and answers CONNACK. It returns
// false when the connection must close.
func (c *conn) handshake() bool {
	h, err := readHeader(c.br, c.s.cfg.MaxPacket)
	if err != nil {
		c.logRefused("", "", errcode.New(errcode.GenericBadRequest, "the connection sent no valid MQTT packet: %v", err))
		return false
	}
	if h.typ != typeConnect {
		c.logRefused("", "", errcode.New(errcode.GenericBadRequest, "the first packet must be CONNECT, got packet type %d", h.typ))
		return false
	}
	body := make([]byte, h.length)
	if _, err := io.ReadFull(c.br, body); err != nil {
		return false
	}
	cp, err := decodeConnect(body)
	if err != nil {
		c.logRefused("", "", errcode.New(errcode.GenericBadRequest, "malformed CONNECT: %v", err))
		return false
	}
	refuse := func(code byte, dev, mod string, e *errcode.Error) bool {
		c.writeNow(appendConnack(nil, false, code))
		c.logRefused(dev, mod, e)
		return false
	}
	if cp.protocolName != "MQTT" || cp.protocolLevel != 4 {
		return refuse(connRefusedProtocol, "", "", errcode.New(errcode.InvalidProtocolVersion,
			"only MQTT 3.1.1 (protocol level 4) is supported; got %q level %d", cp.protocolName, cp.protocolLevel))
	}
	dev, mod, ok := parseClientID(cp.clientID)
	if !ok {
		return refuse(connRefusedIdentifier, "", "", errcode.New(errcode.ArgumentInvalid,
			"client id %q is not deviceId or deviceId/moduleId", cp.clientID))
	}
	q, ok := parseUsername(cp.username, c.s.cfg.HostName, cp.clientID)
	if !ok {
		return refuse(connRefusedNotAuthorized, dev, mod, errcode.New(errcode.IotHubUnauthorized,
			"user name %q is not %s/%s/?api-version=...", cp.username, c.s.cfg.HostName, cp.clientID))
	}
	c.sdkVersion = q.Get("DeviceClientType")
	creds := auth.DeviceCredentials{DeviceID: dev, ModuleID: mod, Token: string(cp.password)}
	for _, cert := range c.certs {
		s1, s256 := certs.Thumbprint(cert)
		creds.Thumbprints = append(creds.Thumbprints, s1, s256)
		break // the leaf is what the registry's thumbprints name
	}
	// One deadline for the engine calls of the whole CONNECT (authentication, the claim, the
	// connection state): a timer per call was a measurable share of a connect's cost.
	hctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	id, err := c.s.cfg.Policies.AuthenticateDevice(hctx, c.s.cfg.Registry, creds)
	if err != nil {
		e := errcode.As(err)
		code := byte(connRefusedNotAuthorized)
		if e.Code.HTTPStatus() >= 500 || e.Code == errcode.ThrottlingException {
			code = connRefusedUnavailable
		}
		return refuse(code, dev, mod, e)
	}
	c.id = id
	if e := c.connectFault(dev); e != nil {
		return refuse(connRefusedUnavailable, dev, mod, e)
	}
	if e := c.throttleConnect(); e != nil {
		return refuse(connRefusedUnavailable, dev, mod, e)
	}
	if cp.willFlag && !c.allowedWill(cp.willTopic) {
		return refuse(connRefusedNotAuthorized, dev, mod, errcode.New(errcode.IotHubUnauthorized,
			"the will topic %q is not this identity's telemetry topic", cp.willTopic))
	}
	if err := c.claim(hctx); err != nil {
		return refuse(connRefusedUnavailable, dev, mod, errcode.Wrap(errcode.ServerError, err, "could not record the connection"))
	}
	if tok, err := sas.ParseToken(creds.Token); err == nil && creds.Token != "" {
		// IoT Hub severs a connection when its token expires; MQTT cannot renew in band.
		if d := time.Until(tok.Expiry); d > 0 {
			c.expiry = time.AfterFunc(d, func() {
				c.setReason(closeReason{err: errcode.New(errcode.IotHubUnauthorized, "the SAS token expired; the device must reconnect with a new one")})
				c.cancel()
				_ = c.nc.Close()
			})
		}
	}
	c.keepAlive(cp.keepAlive)
	c.writeNow(appendConnack(nil, false, connAccepted))
	now := c.s.cfg.Now()
	_ = c.s.cfg.Registry.SetConnectionState(hctx, dev, mod, true, now)
	c.lastActivity.Store(now.UnixNano())
	c.s.cfg.Metrics.ConnectedDevices.Inc()
	c.record("deviceConnect", nil)
	return true
}

// allowedWill reports whether a will topic is this identity's telemetry topic, the only will
// IoT Hub accepts.
func (c *conn) allowedWill(topic string) bool {
	p := parsePublishTopic(topic)
	return p.kind == topicTelemetry && p.deviceID == c.id.DeviceID && p.moduleID == c.id.ModuleID
}

// claim writes this connection's presence and tells older connections of the identity to close.
func (c *conn) claim(ctx context.Context) error {
	c.subject = engine.DeviceSubject(c.id.DeviceID, c.id.ModuleID, "kick")
	if err := c.s.register(c, c.subject); err != nil {
		return err
	}
	c.registered = true
	c.presKey = presenceKey(c.id.DeviceID, c.id.ModuleID)
	b, _ := json.Marshal(presenceEntry{Node: c.s.cfg.NodeID, Conn: c.connID, Since: c.s.cfg.Now().UTC()})
	rev, err := c.s.presence.Put(ctx, c.presKey, b)
	if err != nil {
		return err
	}
	c.presRev.Store(rev)
	kb, _ := json.Marshal(kickMsg{Rev: rev, Node: c.s.cfg.NodeID})
	return c.s.cfg.Engine.PublishCore(c.subject, kb)
}

// kicked closes the connection if a newer claim for its identity exists.
func (c *conn) kicked(rev uint64) {
	if rev <= c.presRev.Load() {
		return
	}
	c.setReason(closeReason{kicked: true, err: errcode.New(errcode.LinkCreationConflict,
		"a new connection for the same identity closed this one (%s)", errcode.ConnectionForcefullyClosedOnNewConnection.Name())})
	c.cancel()
	_ = c.nc.Close()
}

// revoked closes the connection because its identity was disabled or deleted.
func (c *conn) revoked(e *errcode.Error) {
	c.setReason(closeReason{err: e})
	c.cancel()
	_ = c.nc.Close()
}

func (c *conn) shutdown() {
	c.setReason(closeReason{shutdown: true})
	c.cancel()
	_ = c.nc.SetReadDeadline(time.Now())
}

func (c *conn) setReason(r closeReason) {
	c.reasonMu.Lock()
	defer c.reasonMu.Unlock()
	if c.reason == nil {
		c.reason = &r
	}
}

// keepAlive sets the read deadline: 1.5 times the client's keep-alive, capped as IoT Hub does.
func (c *conn) keepAlive(seconds uint16) {
	d := c.s.cfg.MaxKeepAlive
	if seconds > 0 {
		if ka := time.Duration(seconds) * 1500 * time.Millisecond; ka < d {
			d = ka
		}
	}
	c.kaWindow = d
	_ = c.nc.SetDeadline(time.Time{})
	c.armDeadline()
}

// writeNow writes directly, before the write loop runs (CONNACK, refusals).
func (c *conn) writeNow(b []byte) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.nc.Write(b)
	_ = c.nc.SetWriteDeadline(time.Time{})
}

// readLoop handles packets until the connection ends; the error says why.
func (c *conn) readLoop() error {
	for {
		if err := c.nextPacket(); err != nil {
			return err
		}
		h, err := readHeader(c.br, c.s.cfg.MaxPacket)
		if err != nil {
			return c.readErr(err)
		}
		var body []byte
		if h.length > 0 {
			body = make([]byte, h.length)
			if _, err := io.ReadFull(c.br, body); err != nil {
				return c.readErr(err)
			}
		}
		c.armDeadline()
		if err := c.handle(h, body); err != nil {
			return err
		}
	}
}

// readErr classifies a read failure.
func (c *conn) readErr(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, errTooLarge):
		return errcode.New(errcode.MessageTooLarge, "packet too large: %v", err)
	case errors.Is(err, errMalformed):
		return errcode.New(errcode.GenericBadRequest, "malformed MQTT packet: %v", err)
	case errors.As(err, &ne) && ne.Timeout():
		return errcode.New(errcode.DeviceConnectionClosedRemotely, "no packet within the keep-alive window (%s)", c.kaWindow)
	}
	return errcode.New(errcode.DeviceConnectionClosedRemotely, "the connection closed without DISCONNECT")
}

// errDisconnect ends the read loop after a clean DISCONNECT.
var errDisconnect = errors.New("disconnect")

func (c *conn) handle(h header, body []byte) error {
	switch h.typ {
	case typePublish:
		p, err := decodePublish(h, body)
		if err != nil {
			return errcode.New(errcode.GenericBadRequest, "malformed PUBLISH: %v", err)
		}
		return c.onPublish(p)
	case typePuback:
		id, err := decodeAck(body)
		if err != nil {
			return errcode.New(errcode.GenericBadRequest, "malformed PUBACK: %v", err)
		}
		return c.onPuback(id)
	case typeSubscribe:
		id, subs, err := decodeSubscribe(body)
		if err != nil {
			return errcode.New(errcode.GenericBadRequest, "malformed SUBSCRIBE: %v", err)
		}
		return c.onSubscribe(id, subs)
	case typeUnsubscribe:
		id, filters, err := decodeUnsubscribe(body)
		if err != nil {
			return errcode.New(errcode.GenericBadRequest, "malformed UNSUBSCRIBE: %v", err)
		}
		for _, f := range filters {
			delete(c.subs, f)
			c.onUnsubscribed(f)
		}
		return c.enqueue(outItem{data: appendAck(nil, typeUnsuback, id)})
	case typePingreq:
		if len(body) != 0 {
			return errcode.New(errcode.GenericBadRequest, "PINGREQ with a body")
		}
		return c.enqueue(outItem{data: []byte{typePingresp << 4, 0}})
	case typeDisconnect:
		if len(body) != 0 {
			return errcode.New(errcode.GenericBadRequest, "DISCONNECT with a body")
		}
		c.setReason(closeReason{graceful: true})
		return errDisconnect
	case typeConnect:
		return errcode.New(errcode.GenericBadRequest, "a second CONNECT on one connection") // [MQTT-3.1.0-2]
	case typePubrec, typePubrel, typePubcomp:
		return errcode.New(errcode.GenericBadRequest, "QoS 2 is not supported")
	}
	return errcode.New(errcode.GenericBadRequest, "packet type %d is not allowed from a client", h.typ)
}

func (c *conn) onSubscribe(id uint16, subs []subscription) error {
	codes := make([]byte, len(subs))
	for i, sub := range subs {
		if !allowedFilter(sub.filter, c.id.DeviceID, c.id.ModuleID) {
			// IoT Hub disconnects instead of answering 0x80.
			return errcode.New(errcode.IotHubUnauthorized, "subscription to %q is not allowed for this identity", sub.filter)
		}
		q := sub.qos
		if q > 1 {
			q = 1 // the hub grants at most QoS 1
		}
		c.subs[sub.filter] = q
		codes[i] = q
	}
	if len(c.subs) > maxSubscriptions {
		return errcode.New(errcode.ArgumentInvalid, "more than %d subscriptions on one connection", maxSubscriptions)
	}
	// Features a caller may use as soon as the device has its SUBACK (direct methods) start
	// before it is queued; their PUBLISHes may precede it, as [MQTT-3.8.4] permits.
	for _, sub := range subs {
		if err := c.onSubscribing(sub.filter); err != nil {
			return err
		}
	}
	if err := c.enqueue(outItem{data: appendSuback(nil, id, codes)}); err != nil {
		return err
	}
	// Features start after the SUBACK is queued, so the device sees the SUBACK first.
	for _, sub := range subs {
		if err := c.onSubscribed(sub.filter); err != nil {
			return err
		}
	}
	return nil
}

func (c *conn) onPublish(p publish) error {
	if p.qos == 2 {
		return errcode.New(errcode.GenericBadRequest, "QoS 2 PUBLISH is not supported") // IoT Hub closes the connection
	}
	t := parsePublishTopic(p.topic)
	switch t.kind {
	case topicTelemetry:
		if t.deviceID != c.id.DeviceID || t.moduleID != c.id.ModuleID {
			return errcode.New(errcode.IotHubUnauthorized, "publishing to %q, which belongs to another identity", p.topic)
		}
		return c.onTelemetry(p, t)
	case topicTwinGet, topicTwinPatchReported:
		return c.onTwin(t, p)
	case topicMethodResponse:
		return c.onMethodResponse(t, p)
	}
	return errcode.New(errcode.ArgumentInvalid, "publishing to %q, which is not an IoT Hub topic", p.topic)
}

func (c *conn) onTelemetry(p publish, t parsedTopic) error {
	m := c.s.cfg.Metrics
	m.TelemetryAttempts.Inc()
	msg := &telemetry.Message{
		DeviceID: c.id.DeviceID, ModuleID: c.id.ModuleID, Body: p.payload,
		AuthMethod: c.id.AuthMethodJSON(), AuthGenerationID: c.id.GenerationID, Protocol: c.protocol,
	}
	if err := parseBag(t.bag, msg); err != nil {
		c.recordTelemetryError(msg, len(p.payload), errcode.New(errcode.ArgumentInvalid, "the topic's property bag cannot be decoded: %v", err))
		return errcode.New(errcode.ArgumentInvalid, "malformed property bag in %q", p.topic)
	}
	if p.retain {
		msg.Properties = append(msg.Properties, telemetry.Property{Name: "mqtt-retain", Value: "true"})
	}
	if size := telemetry.Size(msg); size > telemetry.MaxMessageSize {
		e := errcode.New(errcode.MessageTooLarge, "the message is %d bytes; the limit is %d", size, telemetry.MaxMessageSize)
		c.recordTelemetryError(msg, size, e)
		return e
	}
	if err := c.telemetryFault(msg, len(p.payload)); err != nil {
		return err
	}
	if err := c.throttleTelemetry(msg, len(p.payload)); err != nil {
		return err
	}
	pending, err := c.s.cfg.Telemetry.SendAsync(msg)
	if err != nil {
		e := errcode.As(err)
		c.recordTelemetryError(msg, len(p.payload), e)
		return e
	}
	c.touch()
	return c.enqueue(outItem{pending: pending, ackID: p.packetID, size: int32(len(p.payload))})
}

// touch writes lastActivityTime at most once per ActivityInterval, off the read path.
func (c *conn) touch() {
	now := c.s.cfg.Now()
	if now.UnixNano()-c.lastActivity.Load() < int64(c.s.cfg.ActivityInterval) || !c.activityBusy.CompareAndSwap(false, true) {
		return
	}
	c.lastActivity.Store(now.UnixNano())
	go func() {
		defer c.activityBusy.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.s.cfg.Registry.RecordActivity(ctx, c.id.DeviceID, c.id.ModuleID, now)
	}()
}

// finish ends an authenticated connection: it releases the identity's claim if it still holds
// it, updates the registry and writes the deviceDisconnect record.
func (c *conn) finish(readErr error) {
	if !errors.Is(readErr, errDisconnect) && readErr != nil && !errors.Is(readErr, context.Canceled) {
		c.setReason(closeReason{err: readErr})
	}
	c.setReason(closeReason{err: errcode.New(errcode.DeviceConnectionClosedRemotely, "the connection closed without DISCONNECT")})
	c.cancel()
	_ = c.nc.Close()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.s.cfg.Metrics.ConnectedDevices.Dec()
	if c.registered {
		c.s.unregister(c, c.subject)
	}
	for _, subj := range c.listening {
		c.s.unregister(c, subj)
	}
	c.onClose()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.s.presence.Delete(ctx, c.presKey, c.presRev.Load()); err == nil {
		_ = c.s.cfg.Registry.SetConnectionState(ctx, c.id.DeviceID, c.id.ModuleID, false, c.s.cfg.Now())
	}
	c.reasonMu.Lock()
	r := *c.reason
	c.reasonMu.Unlock()
	switch {
	case r.graceful, r.shutdown:
		c.record("deviceDisconnect", nil)
	default:
		c.record("deviceDisconnect", r.err)
	}
}

// logRefused writes the deviceConnect record of a connection that was refused.
func (c *conn) logRefused(dev, mod string, e *errcode.Error) {
	c.id = auth.Identity{DeviceID: dev, ModuleID: mod}
	c.record("deviceConnect", e)
}

// record writes a Connections record.
func (c *conn) record(op string, err error) {
	props := map[string]any{
		"deviceId":        c.id.DeviceID,
		"protocol":        c.protocol,
		"authType":        nil,
		"maskedIpAddress": diag.MaskIP(c.remote),
		"sdkVersion":      c.sdkVersion,
		"statusCode":      nil,
	}
	if c.id.ModuleID != "" {
		props["moduleId"] = c.id.ModuleID
	}
	if c.id.Type != "" {
		props["authType"] = c.id.AuthTypeJSON()
	}
	if err != nil {
		e := errcode.As(err)
		props["statusCode"] = strconv.Itoa(e.Code.HTTPStatus())
		c.s.cfg.Metrics.ConnectionErrors.WithLabelValues(e.Code.String()).Inc()
		c.s.log.Debug("connection error", "device", c.id.DeviceID, "module", c.id.ModuleID, "op", op, "err", e)
	}
	if c.s.cfg.Diag == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.s.cfg.Diag.Write(ctx, diag.Record{Category: diag.Connections, OperationName: op, Err: err, DurationMs: -1, Properties: props})
}

// recordTelemetryError writes the DeviceTelemetry record of a message that could not be taken.
func (c *conn) recordTelemetryError(msg *telemetry.Message, size int, err error) {
	e := errcode.As(err)
	c.s.cfg.Metrics.OperationErrors.WithLabelValues(diag.DeviceTelemetry, e.Code.String()).Inc()
	if c.s.cfg.Diag == nil {
		return
	}
	now := c.s.cfg.Now().UTC().Format(time.RFC3339Nano)
	props := map[string]any{
		"deviceId": msg.DeviceID, "batching": "0", "messageSizeInBytes": strconv.Itoa(size),
		"EventProcessedUtcTime": now, "EventEnqueuedUtcTime": now, "protocol": c.protocol,
		"authType": c.id.AuthTypeJSON(), "statusCode": strconv.Itoa(e.Code.HTTPStatus()),
	}
	if msg.ModuleID != "" {
		props["moduleId"] = msg.ModuleID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.s.cfg.Diag.Write(ctx, diag.Record{Category: diag.DeviceTelemetry, OperationName: "ingress", Err: e, DurationMs: -1, Properties: props})
}
