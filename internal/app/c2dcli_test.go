package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/roost-iot/roost/internal/sas"
)

func TestCLIC2DSendPurgeFeedback(t *testing.T) {
	t.Parallel()
	h, dd := startCLIHub(t)
	ctx := context.Background()
	d := createDevice(t, h, "fan")

	// Queued while the device is away: the registry counts them.
	out, errs, code := run(t, "c2d", "send", "fan", "--data", "spin", "--id", "m-1", "--ack", "full", "--property", "speed=3", dd)
	if code != 0 || strings.TrimSpace(out) != "m-1" {
		t.Fatalf("send: %d %s %s", code, out, errs)
	}
	out, _, code = run(t, "c2d", "send", "fan", "--data", "stop", "--expiry", "10m", "--output", "json", dd)
	var sent struct{ MessageID string }
	if code != 0 || json.Unmarshal([]byte(out), &sent) != nil || len(sent.MessageID) != 36 {
		t.Fatalf("send with json output: %d %s", code, out)
	}
	if dev, _ := h.Registry.GetDevice(ctx, "fan"); dev.CloudToDeviceMessageCount != 2 {
		t.Fatalf("cloudToDeviceMessageCount = %d", dev.CloudToDeviceMessageCount)
	}
	out, _, code = run(t, "c2d", "purge", "fan", dd)
	if code != 0 || !strings.Contains(out, "purged 2 message(s) for fan") {
		t.Fatalf("purge: %d %s", code, out)
	}
	if _, errs, code = run(t, "c2d", "send", "ghost", "--data", "x", dd); code != 1 || !strings.Contains(errs, "404001 DeviceNotFound") {
		t.Fatalf("unknown device: %d %s", code, errs)
	}
	if _, errs, code = run(t, "c2d", "send", "fan", "--data", "x", "--ack", "maybe", dd); code != 1 || !strings.Contains(errs, "400004 ArgumentInvalid") {
		t.Fatalf("bad ack: %d %s", code, errs)
	}

	// A device over MQTT receives the next one and acknowledges it; the sender gets Success.
	tok, _ := sas.Sign(sas.DeviceResource(h.Config.HostName, "fan", ""), d.Authentication.SymmetricKey.PrimaryKey, "", time.Now().Add(time.Hour))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.TLS.CAPEM)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + h.MQTTAddr).SetClientID("fan").
		SetUsername(h.Config.HostName + "/fan/?api-version=2021-04-12").SetPassword(tok).
		SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: h.Config.HostName, MinVersion: tls.VersionTLS12}).
		SetProtocolVersion(4).SetAutoReconnect(false))
	if ct := c.Connect(); !ct.WaitTimeout(10*time.Second) || ct.Error() != nil {
		t.Fatalf("connect: %v", ct.Error())
	}
	defer c.Disconnect(50)
	got := make(chan string, 4)
	if st := c.Subscribe("devices/fan/messages/devicebound/#", 1, func(_ paho.Client, m paho.Message) {
		got <- m.Topic() + " " + string(m.Payload())
	}); !st.WaitTimeout(5*time.Second) || st.Error() != nil {
		t.Fatalf("subscribe: %v", st.Error())
	}
	if _, errs, code = run(t, "c2d", "send", "fan", "--data", "on", "--id", "m-2", "--ack", "positive", "--property", "Mode=eco", dd); code != 0 {
		t.Fatalf("send: %s", errs)
	}
	select {
	case m := <-got:
		if !strings.HasPrefix(m, "devices/fan/messages/devicebound/mode=eco&%24.mid=m-2&") || !strings.HasSuffix(m, " on") {
			t.Fatalf("delivered %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the device got nothing")
	}
	out, errs, code = run(t, "c2d", "feedback", "--wait", "2s", "--output", "json", dd)
	if code != 0 || !strings.Contains(out, `"originalMessageId": "m-2"`) || !strings.Contains(out, `"statusCode": "Success"`) {
		t.Fatalf("feedback: %d %s %s", code, out, errs)
	}
	// m-1 was purged before anyone read it, and asked for full feedback.
	if !strings.Contains(out, `"originalMessageId": "m-1"`) || !strings.Contains(out, `"statusCode": "Purged"`) {
		t.Fatalf("no Purged feedback for m-1: %s", out)
	}
	if out, _, _ = run(t, "c2d", "feedback", dd); strings.Contains(out, "m-2") {
		t.Fatalf("feedback was not completed: %s", out)
	}
	if _, _, code = run(t, "c2d"); code != 2 {
		t.Fatalf("usage: %d", code)
	}
}
