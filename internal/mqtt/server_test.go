package mqtt_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/certs"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/mqtt"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
	"github.com/roost-iot/roost/internal/telemetry"
)

const hubHost = "hub.test"

// hub is one node: engine, registry, telemetry and an MQTT server on a random TLS port.
type hub struct {
	eng   *engine.Engine
	reg   *registry.Registry
	pols  *auth.Store
	tel   *telemetry.Pipeline
	dw    *diag.Writer
	srv   *mqtt.Server
	addr  string
	caPEM []byte
	start time.Time
	stop  func() // shuts the node down as a clean exit would; the test's cleanup calls it too
}

func startHub(t testing.TB, eng *engine.Engine, cfg mqtt.Config) *hub {
	t.Helper()
	return startHubWith(t, eng, cfg, nil)
}

// startHubWith is startHub with wire, when set, run on the node's parts before its MQTT server
// is made: it adds services to cfg and returns what closes them once the server has shut down.
func startHubWith(t testing.TB, eng *engine.Engine, cfg mqtt.Config, wire func(h *hub, cfg *mqtt.Config) (closeFn func())) *hub {
	t.Helper()
	ctx := context.Background()
	h := &hub{eng: eng, start: time.Now().Add(-time.Second)}
	var err error
	if h.pols, _, err = auth.Open(ctx, eng, auth.Config{HostName: hubHost}); err != nil {
		t.Fatal(err)
	}
	if h.reg, err = registry.New(ctx, eng, registry.Config{}); err != nil {
		t.Fatal(err)
	}
	if h.tel, err = telemetry.Open(ctx, eng, telemetry.Config{}); err != nil {
		t.Fatal(err)
	}
	if h.dw, err = diag.NewWriter(ctx, eng, diag.Config{ResourceID: "/SUBSCRIPTIONS/X"}); err != nil {
		t.Fatal(err)
	}
	closeWired := func() {}
	if wire != nil {
		closeWired = wire(h, &cfg)
	}
	mat, err := certs.Load(certs.Options{Dir: filepath.Join(t.TempDir(), "tls"), Hostnames: []string{hubHost}})
	if err != nil {
		t.Fatal(err)
	}
	h.caPEM = mat.CAPEM
	cfg.HostName, cfg.Engine, cfg.Registry, cfg.Policies, cfg.Telemetry, cfg.Diag = hubHost, eng, h.reg, h.pols, h.tel, h.dw
	if h.srv, err = mqtt.New(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	go func() { _ = h.srv.Serve(tls.NewListener(ln, mat.Config)) }()
	stopped := false
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.srv.Shutdown(ctx)
		closeWired()
		h.tel.Close()
		h.dw.Close()
	}
	t.Cleanup(h.stop)
	return h
}

func (h *hub) tlsConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.caPEM)
	return &tls.Config{RootCAs: pool, ServerName: hubHost, MinVersion: tls.VersionTLS12}
}

func (h *hub) device(t *testing.T, id string) registry.Device {
	t.Helper()
	d, err := h.reg.CreateDevice(context.Background(), registry.Device{DeviceID: id})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func deviceToken(t *testing.T, d registry.Device, ttl time.Duration) string {
	t.Helper()
	tok, err := sas.Sign(sas.DeviceResource(hubHost, d.DeviceID, ""), d.Authentication.SymmetricKey.PrimaryKey, "", time.Now().Add(ttl))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// client connects paho as the device would.
func (h *hub) client(t *testing.T, clientID, password string, onLost func(error)) (paho.Client, error) {
	t.Helper()
	opts := paho.NewClientOptions().
		AddBroker("ssl://" + h.addr).
		SetClientID(clientID).
		SetUsername(hubHost + "/" + clientID + "/?api-version=2021-04-12&DeviceClientType=roost-test%2F1.0").
		SetPassword(password).
		SetTLSConfig(h.tlsConfig()).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(5 * time.Second)
	if onLost != nil {
		opts.SetConnectionLostHandler(func(_ paho.Client, err error) { onLost(err) })
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

// records returns the diagnostic records of a category written since the hub started.
func (h *hub) records(t *testing.T, category string) []diag.Wire {
	t.Helper()
	var out []diag.Wire
	err := diag.Read(context.Background(), h.eng, category, h.start, func(w diag.Wire) bool { out = append(out, w); return true })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitRecord waits until a record of the category matches.
func (h *hub) waitRecord(t *testing.T, category string, match func(diag.Wire, map[string]any) bool) diag.Wire {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, r := range h.records(t, category) {
			var props map[string]any
			_ = json.Unmarshal([]byte(r.Properties), &props)
			if match(r, props) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching %s record; have %+v", category, h.records(t, category))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func errorRecord(op, device, code string) func(diag.Wire, map[string]any) bool {
	return func(r diag.Wire, p map[string]any) bool {
		return r.OperationName == op && r.Level == "Error" && r.ResultType == code && p["deviceId"] == device
	}
}

func waitState(t *testing.T, h *hub, id, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := h.reg.GetDevice(context.Background(), id)
		if err == nil && d.ConnectionState == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %s connectionState = %q, want %q", id, d.ConnectionState, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMQTTConnectSendDisconnect(t *testing.T) {
	t.Parallel()
	h := startHub(t, enginetest.Start(t), mqtt.Config{})
	d := h.device(t, "dev-1")
	c, err := h.client(t, "dev-1", deviceToken(t, d, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, h, "dev-1", "Connected")
	for i := 0; i < 20; i++ {
		tok := c.Publish(fmt.Sprintf("devices/dev-1/messages/events/%%24.mid=m%d&%%24.ct=application%%2Fjson&temp=%d", i, i), 1, false, fmt.Sprintf(`{"n":%d}`, i))
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	sub := c.Subscribe("devices/dev-1/messages/devicebound/#", 1, nil)
	if !sub.WaitTimeout(5*time.Second) || sub.Error() != nil {
		t.Fatalf("subscribe: %v", sub.Error())
	}
	c.Disconnect(250)
	waitState(t, h, "dev-1", "Disconnected")
	h.waitRecord(t, diag.Connections, func(r diag.Wire, p map[string]any) bool {
		return r.OperationName == "deviceConnect" && r.Level == "Information" && p["deviceId"] == "dev-1" && p["protocol"] == "Mqtt" &&
			p["sdkVersion"] == "roost-test/1.0" && strings.Contains(fmt.Sprint(p["authType"]), `"type":"sas"`) && strings.HasSuffix(fmt.Sprint(p["maskedIpAddress"]), "XXX")
	})
	h.waitRecord(t, diag.Connections, func(r diag.Wire, p map[string]any) bool {
		return r.OperationName == "deviceDisconnect" && r.Level == "Information" && p["deviceId"] == "dev-1"
	})
	msgs := readAll(t, h, "dev-1", 20)
	for i, m := range msgs {
		if m.MessageID != fmt.Sprintf("m%d", i) || m.ContentType != "application/json" || string(m.Body) != fmt.Sprintf(`{"n":%d}`, i) ||
			len(m.Properties) != 1 || m.Properties[0].Name != "temp" || !strings.Contains(m.AuthMethod, `"scope":"device"`) {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
}

func TestMQTTRefusesBadCredentials(t *testing.T) {
	t.Parallel()
	h := startHub(t, enginetest.Start(t), mqtt.Config{})
	d := h.device(t, "dev-a")
	other := h.device(t, "dev-b")
	disabled := h.device(t, "dev-off")
	disabled.Status = "disabled"
	if _, err := h.reg.UpdateDevice(context.Background(), disabled, "*"); err != nil {
		t.Fatal(err)
	}
	forged, _ := sas.Sign(sas.DeviceResource(hubHost, "dev-a", ""), other.Authentication.SymmetricKey.PrimaryKey, "", time.Now().Add(time.Hour))
	tests := []struct {
		name, clientID, password, code string
	}{
		{"wrong key", "dev-a", forged, "401003"},
		{"expired", "dev-a", deviceToken(t, d, -time.Minute), "401002"},
		{"token of another device", "dev-a", deviceToken(t, other, time.Hour), "401003"},
		{"unknown device", "ghost", deviceToken(t, registry.Device{DeviceID: "ghost", Authentication: d.Authentication}, time.Hour), "401002"},
		{"disabled", "dev-off", deviceToken(t, disabled, time.Hour), "401002"},
		{"garbage token", "dev-a", "not a token", "401003"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.client(t, tt.clientID, tt.password, nil)
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), "not authorized") {
				t.Fatalf("connect: got %v, want not authorized (CONNACK 5)", err)
			}
			h.waitRecord(t, diag.Connections, errorRecord("deviceConnect", tt.clientID, tt.code))
		})
	}
	waitState(t, h, "dev-a", "Disconnected")
}

func TestMQTTSecondConnectionClosesFirst(t *testing.T) {
	t.Parallel()
	h := startHub(t, enginetest.Start(t), mqtt.Config{})
	d := h.device(t, "twin-conn")
	lost := make(chan error, 1)
	if _, err := h.client(t, "twin-conn", deviceToken(t, d, time.Hour), func(err error) { lost <- err }); err != nil {
		t.Fatal(err)
	}
	c2, err := h.client(t, "twin-conn", deviceToken(t, d, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the first connection was not closed")
	}
	h.waitRecord(t, diag.Connections, errorRecord("deviceDisconnect", "twin-conn", "409002"))
	if !c2.IsConnectionOpen() {
		t.Fatal("the second connection must stay open")
	}
	waitState(t, h, "twin-conn", "Connected")
	if tok := c2.Publish("devices/twin-conn/messages/events/", 1, false, "x"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish on the new connection: %v", tok.Error())
	}
}

// TestMQTTOneConnectionAcrossNodes runs two hubs on one external NATS server: connecting to the
// second closes the connection held by the first.
func TestMQTTOneConnectionAcrossNodes(t *testing.T) {
	t.Parallel()
	ext := enginetest.StartExternal(t)
	a := startHub(t, ext.Connect(t), mqtt.Config{NodeID: "a"})
	b := startHub(t, ext.Connect(t), mqtt.Config{NodeID: "b"})
	d := a.device(t, "roamer")
	lost := make(chan error, 1)
	if _, err := a.client(t, "roamer", deviceToken(t, d, time.Hour), func(err error) { lost <- err }); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client(t, "roamer", deviceToken(t, d, time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection on node a was not closed by the one on node b")
	}
	a.waitRecord(t, diag.Connections, errorRecord("deviceDisconnect", "roamer", "409002"))
	waitState(t, b, "roamer", "Connected")
}

// raw opens a TLS connection for hand-made packets.
func (h *hub) raw(t *testing.T) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", h.addr, h.tlsConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func connectPacket(clientID, username, password string, keepAlive uint16, level byte) []byte {
	var body []byte
	str := func(s string) { body = append(body, byte(len(s)>>8), byte(len(s))); body = append(body, s...) }
	str("MQTT")
	body = append(body, level, 0xC2, byte(keepAlive>>8), byte(keepAlive))
	str(clientID)
	str(username)
	str(password)
	return append(remainingLength([]byte{0x10}, len(body)), body...)
}

func remainingLength(dst []byte, n int) []byte {
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			return dst
		}
	}
}

// expectClosed waits until the server closes c, returning what it sent before.
func expectClosed(t *testing.T, c net.Conn, within time.Duration) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %s (read %x)", within, b)
	}
	return b
}

func TestMQTTProtocolViolationsCloseTheConnection(t *testing.T) {
	t.Parallel()
	h := startHub(t, enginetest.Start(t), mqtt.Config{})
	d := h.device(t, "rude")
	victim := h.device(t, "victim")
	tok := deviceToken(t, d, time.Hour)
	user := hubHost + "/rude/?api-version=2021-04-12"
	t.Run("garbage", func(t *testing.T) {
		c := h.raw(t)
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		expectClosed(t, c, 5*time.Second)
	})
	t.Run("publish before connect", func(t *testing.T) {
		c := h.raw(t)
		_, _ = c.Write([]byte{0x30, 0x05, 0, 1, 'a', 'h', 'i'})
		expectClosed(t, c, 5*time.Second)
	})
	t.Run("wrong protocol level", func(t *testing.T) {
		c := h.raw(t)
		_, _ = c.Write(connectPacket("rude", user, tok, 30, 3))
		if got := expectClosed(t, c, 5*time.Second); len(got) < 4 || got[0] != 0x20 || got[3] != 1 {
			t.Fatalf("got %x, want CONNACK 1", got)
		}
	})
	t.Run("truncated connect", func(t *testing.T) {
		c := h.raw(t)
		_, _ = c.Write([]byte{0x10, 0x30, 0, 4, 'M'})
		_ = c.CloseWrite()
		expectClosed(t, c, 5*time.Second)
	})
	connected := func(t *testing.T) *tls.Conn {
		c := h.raw(t)
		_, _ = c.Write(connectPacket("rude", user, tok, 30, 4))
		ack := make([]byte, 4)
		if _, err := io.ReadFull(c, ack); err != nil || ack[3] != 0 {
			t.Fatalf("CONNACK %x %v", ack, err)
		}
		return c
	}
	t.Run("qos 2", func(t *testing.T) {
		c := connected(t)
		topic := "devices/rude/messages/events/"
		_, _ = c.Write(append([]byte{0x34, byte(2 + len(topic) + 2 + 1), 0, byte(len(topic))}, append([]byte(topic), 0, 1, 'x')...))
		expectClosed(t, c, 5*time.Second)
	})
	t.Run("another device's topic", func(t *testing.T) {
		c := connected(t)
		topic := "devices/victim/messages/events/"
		_, _ = c.Write(append([]byte{0x32, byte(2 + len(topic) + 2 + 1), 0, byte(len(topic))}, append([]byte(topic), 0, 1, 'x')...))
		expectClosed(t, c, 5*time.Second)
		h.waitRecord(t, diag.Connections, errorRecord("deviceDisconnect", "rude", "401003"))
	})
	t.Run("another device's c2d", func(t *testing.T) {
		c := connected(t)
		filter := "devices/victim/messages/devicebound/#"
		_, _ = c.Write(append([]byte{0x82, byte(2 + 2 + len(filter) + 1), 0, 1, 0, byte(len(filter))}, append([]byte(filter), 1)...))
		expectClosed(t, c, 5*time.Second)
	})
	t.Run("unknown topic", func(t *testing.T) {
		c := connected(t)
		topic := "random/topic"
		_, _ = c.Write(append([]byte{0x30, byte(2 + len(topic) + 1), 0, byte(len(topic))}, append([]byte(topic), 'x')...))
		expectClosed(t, c, 5*time.Second)
	})
	t.Run("oversized message", func(t *testing.T) {
		c := connected(t)
		topic := "devices/rude/messages/events/"
		payload := make([]byte, 300<<10)
		pk := remainingLength([]byte{0x30}, 2+len(topic)+len(payload))
		pk = append(pk, 0, byte(len(topic)))
		pk = append(pk, topic...)
		pk = append(pk, payload...)
		_, _ = c.Write(pk)
		expectClosed(t, c, 5*time.Second)
		h.waitRecord(t, diag.DeviceTelemetry, errorRecord("ingress", "rude", "413001"))
	})
	// The victim is unaffected by all of the above.
	if _, err := h.client(t, "victim", deviceToken(t, victim, time.Hour), nil); err != nil {
		t.Fatalf("victim: %v", err)
	}
}

func TestMQTTKeepAliveAndTokenExpiry(t *testing.T) {
	t.Parallel()
	h := startHub(t, enginetest.Start(t), mqtt.Config{})
	d := h.device(t, "sleepy")
	c := h.raw(t)
	_, _ = c.Write(connectPacket("sleepy", hubHost+"/sleepy/?api-version=2021-04-12", deviceToken(t, d, time.Hour), 1, 4))
	start := time.Now()
	got := expectClosed(t, c, 10*time.Second)
	if len(got) != 4 || got[3] != 0 {
		t.Fatalf("CONNACK %x", got)
	}
	if el := time.Since(start); el < time.Second || el > 5*time.Second {
		t.Fatalf("closed after %s; want about 1.5 s for keep-alive 1 s", el)
	}
	h.waitRecord(t, diag.Connections, errorRecord("deviceDisconnect", "sleepy", "404104"))
	waitState(t, h, "sleepy", "Disconnected")

	e := h.device(t, "short-lived")
	lost := make(chan error, 1)
	if _, err := h.client(t, "short-lived", deviceToken(t, e, 2*time.Second), func(err error) { lost <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("connection outlived its token")
	}
	h.waitRecord(t, diag.Connections, errorRecord("deviceDisconnect", "short-lived", "401003"))
}

// TestMQTTNothingAcknowledgedIsLost has devices publish concurrently and checks that a reader
// from the beginning sees every acknowledged message.
func TestMQTTNothingAcknowledgedIsLost(t *testing.T) {
	t.Parallel()
	h := startHub(t, enginetest.Start(t), mqtt.Config{})
	const devices, each = 5, 200
	var wg sync.WaitGroup
	for i := 0; i < devices; i++ {
		d := h.device(t, fmt.Sprintf("load-%d", i))
		c, err := h.client(t, d.DeviceID, deviceToken(t, d, time.Hour), nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks := make([]paho.Token, 0, each)
			for j := 0; j < each; j++ {
				toks = append(toks, c.Publish(fmt.Sprintf("devices/%s/messages/events/%%24.mid=%d", d.DeviceID, j), 1, false, "payload"))
			}
			for _, tok := range toks {
				if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
					t.Errorf("publish: %v", tok.Error())
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := 0; i < devices; i++ {
		msgs := readAll(t, h, fmt.Sprintf("load-%d", i), each)
		for j, m := range msgs {
			if m.MessageID != fmt.Sprint(j) {
				t.Fatalf("device %d message %d has id %s: order or loss", i, j, m.MessageID)
			}
		}
	}
}

// readAll reads a device's first n messages from the start of its partition.
func readAll(t *testing.T, h *hub, deviceID string, n int) []*telemetry.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := h.tel.NewReader(ctx, telemetry.ReadOptions{From: telemetry.FromStart, DeviceID: deviceID})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := make([]*telemetry.Message, 0, n)
	for len(out) < n {
		m, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("read %s: got %d of %d messages: %v", deviceID, len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}
