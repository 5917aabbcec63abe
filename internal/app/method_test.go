package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
)

// methodDevice connects a device to the hub over MQTT and answers every direct method with 200
// and the request's payload.
func methodDevice(t *testing.T, h *Hub, id string) {
	t.Helper()
	d, err := h.Registry.CreateDevice(context.Background(), registry.Device{DeviceID: id})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := sas.Sign(sas.DeviceResource(h.Config.HostName, id, ""), d.Authentication.SymmetricKey.PrimaryKey, "", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.TLS.CAPEM)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + h.MQTTAddr).SetClientID(id).
		SetUsername(h.Config.HostName + "/" + id + "/?api-version=2021-04-12").SetPassword(tok).
		SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: h.Config.HostName, MinVersion: tls.VersionTLS12}).
		SetProtocolVersion(4).SetAutoReconnect(false))
	if ct := c.Connect(); !ct.WaitTimeout(10*time.Second) || ct.Error() != nil {
		t.Fatalf("connect: %v", ct.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	rid := regexp.MustCompile(`\?\$rid=(.+)$`)
	st := c.Subscribe("$iothub/methods/POST/#", 0, func(c paho.Client, m paho.Message) {
		if sm := rid.FindStringSubmatch(m.Topic()); sm != nil {
			c.Publish("$iothub/methods/res/200/?$rid="+sm[1], 0, false, m.Payload())
		}
	})
	if !st.WaitTimeout(5*time.Second) || st.Error() != nil {
		t.Fatalf("subscribe: %v", st.Error())
	}
}

func TestCLIMethodInvoke(t *testing.T) {
	t.Parallel()
	h, dd := startCLIHub(t)
	methodDevice(t, h, "thermostat")

	out, errs, code := run(t, "method", "invoke", "thermostat", "setPoint", "--payload", `{"celsius":21.5}`, dd)
	var res struct {
		Status  int            `json:"status"`
		Payload map[string]any `json:"payload"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Status != 200 || res.Payload["celsius"] != 21.5 {
		t.Fatalf("invoke: %d %s %s", code, out, errs)
	}
	out, _, code = run(t, "method", "invoke", "thermostat", "ping", dd, "--response-timeout", "10")
	if code != 0 || !strings.Contains(out, `"payload": null`) {
		t.Fatalf("no payload: %d %s", code, out)
	}

	_, errs, code = run(t, "method", "invoke", "nobody", "ping", dd)
	if code != 1 || !strings.Contains(errs, "404001 DeviceNotFound") {
		t.Fatalf("unknown device: %d %s", code, errs)
	}
	if _, err := h.Registry.CreateDevice(context.Background(), registry.Device{DeviceID: "offline"}); err != nil {
		t.Fatal(err)
	}
	_, errs, code = run(t, "method", "invoke", "offline", "ping", dd)
	if code != 1 || !strings.Contains(errs, "404103 DeviceNotOnline: Timed out waiting for device to connect.") || !strings.Contains(errs, "Tracking ID:") {
		t.Fatalf("offline device: %d %s", code, errs)
	}
	_, errs, code = run(t, "method", "invoke", "thermostat", "ping", dd, "--response-timeout", "1")
	if code != 1 || !strings.Contains(errs, "400004 ArgumentInvalid") {
		t.Fatalf("response timeout 1: %d %s", code, errs)
	}
	_, errs, code = run(t, "method", "invoke", "thermostat", "ping", "--payload", "{nope", dd)
	if code != 2 || !strings.Contains(errs, "not valid JSON") {
		t.Fatalf("bad payload: %d %s", code, errs)
	}
	if _, _, code = run(t, "method"); code != 2 {
		t.Fatalf("usage: %d", code)
	}
}
