package mqtt_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/certs"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/mqtt"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
	"github.com/roost-iot/roost/internal/twin"
)

// benchNode is one hub node for benchmarks: registry, twins and an MQTT server over TLS.
type benchNode struct {
	reg   *registry.Registry
	twins *twin.Store
	addr  string
	tls   *tls.Config
}

func startBenchNode(b *testing.B, eng *engine.Engine, nodeID string) *benchNode {
	b.Helper()
	ctx := context.Background()
	n := &benchNode{}
	pols, _, err := auth.Open(ctx, eng, auth.Config{HostName: hubHost})
	if err != nil {
		b.Fatal(err)
	}
	if n.reg, err = registry.New(ctx, eng, registry.Config{}); err != nil {
		b.Fatal(err)
	}
	if n.twins, err = twin.Open(ctx, eng, twin.Config{Registry: n.reg}); err != nil {
		b.Fatal(err)
	}
	mat, err := certs.Load(certs.Options{Dir: filepath.Join(b.TempDir(), "tls"), Hostnames: []string{hubHost}})
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mat.CAPEM)
	n.tls = &tls.Config{RootCAs: pool, ServerName: hubHost, MinVersion: tls.VersionTLS12}
	srv, err := mqtt.New(ctx, mqtt.Config{HostName: hubHost, Engine: eng, Registry: n.reg, Policies: pols, NodeID: nodeID, Twins: n.twins})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	n.addr = ln.Addr().String()
	go func() { _ = srv.Serve(tls.NewListener(ln, mat.Config)) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return n
}

// BenchmarkTwinDesiredToDevice measures how long a desired-property change takes from the
// service's write until the device holds the notification: the compare-and-set write, the
// engine's republish, the owner node's dispatch and the MQTT delivery. "one-node" runs on the
// embedded engine; "two-nodes" writes on one node while the device is connected to another,
// both on a standalone nats-server.
//
//	go test -run '^$' -bench TwinDesiredToDevice -benchtime 2000x ./internal/mqtt/
func BenchmarkTwinDesiredToDevice(b *testing.B) {
	b.Run("one-node", func(b *testing.B) {
		n := startBenchNode(b, enginetest.Start(b), "n1")
		benchDesired(b, n, n)
	})
	b.Run("two-nodes", func(b *testing.B) {
		ext := enginetest.StartExternal(b)
		device := startBenchNode(b, ext.Connect(b), "n1")
		service := startBenchNode(b, ext.Connect(b), "n2")
		benchDesired(b, device, service)
	})
}

func benchDesired(b *testing.B, device, service *benchNode) {
	ctx := context.Background()
	d, err := device.reg.CreateDevice(ctx, registry.Device{DeviceID: "bench-1"})
	if err != nil {
		b.Fatal(err)
	}
	tok, err := sas.Sign(sas.DeviceResource(hubHost, d.DeviceID, ""), d.Authentication.SymmetricKey.PrimaryKey, "", time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + device.addr).SetClientID(d.DeviceID).
		SetUsername(hubHost + "/" + d.DeviceID + "/?api-version=2021-04-12").SetPassword(tok).
		SetTLSConfig(device.tls).SetProtocolVersion(4).SetAutoReconnect(false).SetCleanSession(false))
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("connect: %v", t.Error())
	}
	defer c.Disconnect(100)
	got := make(chan string, 16)
	if t := c.Subscribe("$iothub/twin/PATCH/properties/desired/#", 0, func(_ paho.Client, m paho.Message) { got <- m.Topic() }); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("subscribe: %v", t.Error())
	}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if _, err := service.twins.Update(ctx, d.DeviceID, "", fmt.Appendf(nil, `{"properties":{"desired":{"seq":%d}}}`, i), ""); err != nil {
			b.Fatal(err)
		}
		want := fmt.Sprintf("$iothub/twin/PATCH/properties/desired/?$version=%d", i+2)
		select {
		case topic := <-got:
			if topic != want {
				b.Fatalf("got %s, want %s", topic, want)
			}
		case <-time.After(10 * time.Second):
			b.Fatalf("notification %d did not arrive", i+2)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(ms(0.5), "p50_ms")
	b.ReportMetric(ms(0.99), "p99_ms")
	b.ReportMetric(ms(1), "max_ms")
}
