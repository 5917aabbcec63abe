package httpapi_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/httpapi"
	"github.com/roost-iot/roost/internal/throttle"
)

func bulkBody(prefix string, n int, mode string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`{"id":"%s%d","importMode":"%s"}`, prefix, i, mode)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// TestHTTPBulkCountsEveryDevice: on S1 the identity registry runs at 100/min. With a 30 s
// burst and a 30 s backlog an idle hub admits 50 operations at once and queues 50. A bulk call
// of 100 devices is one operation per device: it waits as long as the 100th single create
// would (30 s), fills the backlog (the next GET gets 429001), and, later, with room for only
// 40 more, is refused with 429001 and a DeviceIdentityOperations "bulk" record, creating none
// of its devices, while 40 single creates still pass.
func TestHTTPBulkCountsEveryDevice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := &stoppedClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	th, err := throttle.New(throttle.Config{SKU: "S1", Burst: 30 * time.Second, Backlog: 30 * time.Second, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	f := newHub(t, hubOptions{metrics: true, api: httpapi.Config{Throttle: th}})
	owner := f.token(t, "iothubowner", time.Hour)
	start := time.Now().Add(-time.Second)

	if a := f.do(t, "POST", "/devices"+v, owner, nil, bulkBody("a", 100, "create")); a.status != 200 {
		t.Fatalf("bulk of 100 on an idle hub: %d %s", a.status, a.body)
	}
	if len(clk.waits) != 1 || clk.waits[0] != 30*time.Second {
		t.Fatalf("shaping waits %v, want [30s] (the 100th single create's wait)", clk.waits)
	}
	if a := f.do(t, "GET", "/devices/a0"+v, owner, nil, ""); a.status != 429 || a.errorName() != "ThrottlingException" {
		t.Fatalf("GET after the bulk filled the backlog: %d %s", a.status, a.body)
	}
	// 24 s later the backlog has room for 40 operations: a bulk of 100 is refused whole.
	clk.now = clk.now.Add(24 * time.Second)
	a := f.do(t, "POST", "/devices"+v, owner, nil, bulkBody("b", 100, "create"))
	if a.status != 429 || a.errorName() != "ThrottlingException" || a.header.Get("iothub-errorcode") != "ThrottlingException" || !errorBodyShape.Match(a.body) {
		t.Fatalf("bulk of 100 with room for 40: %d %s", a.status, a.body)
	}
	for i := range 40 {
		if a := f.do(t, "PUT", fmt.Sprintf("/devices/c%d", i)+v, owner, nil, fmt.Sprintf(`{"deviceId":"c%d"}`, i)); a.status != 200 {
			t.Fatalf("single create %d after the refused bulk: %d %s", i, a.status, a.body)
		}
	}
	clk.now = clk.now.Add(time.Hour)
	if s, err := f.reg.Statistics(ctx); err != nil || s.TotalDeviceCount != 140 {
		t.Fatalf("devices %+v (%v): want the 100 of the first bulk and 40 singles, none of the refused bulk", s, err)
	}
	f.dw.Close()
	var found bool
	err = diag.Read(ctx, f.eng, diag.DeviceIdentityOperations, start, func(w diag.Wire) bool {
		if w.OperationName == "bulk" && w.ResultType == "429001" && w.Level == "Error" {
			found = true
		}
		return true
	})
	if err != nil || !found {
		t.Fatalf("no 429001 bulk record (%v)", err)
	}
	if got := testCounter(t, f.m, "roost_throttling_errors_total", "registry"); got != 2 {
		t.Fatalf("throttling errors for registry: %v", got)
	}
}
