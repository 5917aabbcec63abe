package mqtt_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/faults"
	"github.com/roost-iot/roost/internal/mqtt"
)

// TestMQTTTwinFaultInjection: a fault rule on twin operations fails a device's twin GET with the
// injected code in its response topic and a marked D2CTwinOperations record; the connection stays.
func TestMQTTTwinFaultInjection(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx := context.Background()
	inj, err := faults.Open(ctx, eng, faults.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inj.Close)
	th := startTwinHub(t, func(cfg mqtt.Config) *hub {
		cfg.Faults = inj
		return startHub(t, eng, cfg)
	}, "n1")
	d := th.device(t, "flaky")
	if _, err := inj.Add(ctx, faults.Rule{Operations: []string{"twin"}, Devices: []string{"flaky"}, Error: "500001", Count: 1}); err != nil {
		t.Fatal(err)
	}
	c, ch := twinDevice(t, th, "flaky", deviceToken(t, d, time.Hour))
	publish(t, c, "$iothub/twin/GET/?$rid=1", 0, " ")
	if m := receive(t, ch); !strings.HasPrefix(m.topic, "$iothub/twin/res/500/?$rid=1") || !strings.Contains(m.payload, "500001") {
		t.Fatalf("faulted GET answered %s %s", m.topic, m.payload)
	}
	publish(t, c, "$iothub/twin/GET/?$rid=2", 0, " ")
	if m := receive(t, ch); !strings.HasPrefix(m.topic, "$iothub/twin/res/200/?$rid=2") {
		t.Fatalf("the rule had a count of 1, but the next GET answered %s %s", m.topic, m.payload)
	}
	th.waitRecord(t, diag.D2CTwinOperations, func(r diag.Wire, p map[string]any) bool {
		return r.Level == "Error" && r.ResultType == "500001" && p["deviceId"] == "flaky"
	})
}
