package mqtt_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/roost-iot/roost/internal/certs"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/mqtt"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
)

func selfSignedCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestMQTTX509SelfSignedDevice(t *testing.T) {
	t.Parallel()
	h := startHub(t, enginetest.Start(t), mqtt.Config{})
	cert := selfSignedCert(t, "cam-1")
	_, sha256hex := certs.Thumbprint(cert.Leaf)
	if _, err := h.reg.CreateDevice(context.Background(), registry.Device{DeviceID: "cam-1", Authentication: registry.Authentication{
		Type: "selfSigned", X509Thumbprint: &registry.X509Thumbprint{PrimaryThumbprint: &sha256hex}}}); err != nil {
		t.Fatal(err)
	}
	connect := func(c tls.Certificate) error {
		cfg := h.tlsConfig()
		cfg.Certificates = []tls.Certificate{c}
		opts := paho.NewClientOptions().AddBroker("ssl://" + h.addr).SetClientID("cam-1").
			SetUsername(hubHost + "/cam-1/?api-version=2021-04-12").SetTLSConfig(cfg).SetProtocolVersion(4).
			SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
		cl := paho.NewClient(opts)
		tok := cl.Connect()
		tok.WaitTimeout(10 * time.Second)
		if tok.Error() == nil {
			defer cl.Disconnect(50)
			p := cl.Publish("devices/cam-1/messages/events/", 1, false, "frame")
			p.WaitTimeout(5 * time.Second)
			return p.Error()
		}
		return tok.Error()
	}
	if err := connect(cert); err != nil {
		t.Fatalf("registered certificate: %v", err)
	}
	if err := connect(selfSignedCert(t, "cam-1")); err == nil || !strings.Contains(strings.ToLower(err.Error()), "not authorized") {
		t.Fatalf("unregistered certificate: got %v, want not authorized", err)
	}
	h.waitRecord(t, diag.Connections, func(r diag.Wire, p map[string]any) bool {
		return r.OperationName == "deviceConnect" && r.Level == "Information" && strings.Contains(p["authType"].(string), "x509Certificate")
	})
	h.waitRecord(t, diag.Connections, errorRecord("deviceConnect", "cam-1", "401003"))
}

func TestMQTTOverWebSocketsAndModules(t *testing.T) {
	t.Parallel()
	h := startHub(t, enginetest.Start(t), mqtt.Config{})
	mat, err := certs.Load(certs.Options{Dir: t.TempDir(), Hostnames: []string{hubHost}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/$iothub/websocket", h.srv.WebSocketHandler())
	ws := httptest.NewUnstartedServer(mux)
	ws.TLS = mat.Config
	ws.StartTLS()
	defer ws.Close()
	d := h.device(t, "ws-dev")
	m, err := h.reg.CreateModule(context.Background(), registry.Module{DeviceID: "ws-dev", ModuleID: "filter"})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mat.CAPEM)
	modTok, _ := sas.Sign(sas.DeviceResource(hubHost, "ws-dev", "filter"), m.Authentication.SymmetricKey.PrimaryKey, "", time.Now().Add(time.Hour))
	for _, tc := range []struct{ clientID, password, topic string }{
		{"ws-dev", deviceToken(t, d, time.Hour), "devices/ws-dev/messages/events/a=1"},
		{"ws-dev/filter", modTok, "devices/ws-dev/modules/filter/messages/events/%24.on=out1/"},
	} {
		host := strings.TrimPrefix(ws.URL, "https://")
		opts := paho.NewClientOptions().AddBroker("wss://" + host + "/$iothub/websocket").SetClientID(tc.clientID).
			SetUsername(hubHost + "/" + tc.clientID + "/?api-version=2021-04-12").SetPassword(tc.password).
			SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: hubHost}).SetProtocolVersion(4).SetAutoReconnect(false)
		cl := paho.NewClient(opts)
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: connect over WebSockets: %v", tc.clientID, tok.Error())
		}
		if tok := cl.Publish(tc.topic, 1, false, "hi"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: publish: %v", tc.clientID, tok.Error())
		}
		cl.Disconnect(100)
	}
	h.waitRecord(t, diag.Connections, func(r diag.Wire, p map[string]any) bool {
		return r.OperationName == "deviceConnect" && p["protocol"] == "MqttWs" && p["moduleId"] == "filter"
	})
	msgs := readAll(t, h, "ws-dev", 2)
	var sawModule bool
	for _, msg := range msgs {
		if msg.ModuleID == "filter" && msg.OutputName == "out1" {
			sawModule = true
		}
	}
	if !sawModule {
		t.Fatalf("module message missing: %+v", msgs)
	}
	dev, _ := h.reg.GetDevice(context.Background(), "ws-dev")
	if dev.LastActivityTime.IsZero() || dev.ConnectionStateUpdatedTime.IsZero() {
		t.Fatalf("activity times not recorded: %+v", dev)
	}
}

func TestMQTTDisablingADeviceClosesItsConnection(t *testing.T) {
	t.Parallel()
	ext := enginetest.StartExternal(t)
	h := startHub(t, ext.Connect(t), mqtt.Config{NodeID: "n1"})
	h2 := startHub(t, ext.Connect(t), mqtt.Config{NodeID: "n2"})
	d := h.device(t, "doomed")
	lost := make(chan error, 1)
	if _, err := h.client(t, "doomed", deviceToken(t, d, time.Hour), func(err error) { lost <- err }); err != nil {
		t.Fatal(err)
	}
	if err := h2.srv.Revoke("doomed", "", 401002, "the device was disabled"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("revoking on another node did not close the connection")
	}
	h.waitRecord(t, diag.Connections, errorRecord("deviceDisconnect", "doomed", "401002"))
	waitState(t, h, "doomed", "Disconnected")
}
