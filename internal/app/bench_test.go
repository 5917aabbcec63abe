package app

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/roost-iot/roost/internal/bench"
)

// TestBenchRegistryRunsAgainstAHub runs a tiny `roost bench registry` end to end: every phase
// succeeds, each client uses its own connection, and the devices are gone afterwards.
func TestBenchRegistryRunsAgainstAHub(t *testing.T) {
	t.Parallel()
	h, dd := startCLIHub(t)

	out, errs, code := run(t, "bench", "registry", dd, "--clients", "1,3",
		"--devices", "30", "--duration", "200ms", "--output", "json")
	if code != 0 {
		t.Fatalf("bench: exit %d\n%s\n%s", code, out, errs)
	}
	var res []bench.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("bench output is not JSON: %v\n%s", err, out)
	}
	if len(res) != 2 {
		t.Fatalf("got %d results, want 2 (one per client count)", len(res))
	}
	for i, clients := range []int{1, 3} {
		r := res[i]
		if r.Clients != clients || len(r.Phases) != 3 {
			t.Fatalf("result %d: clients %d, %d phases; want %d clients, 3 phases", i, r.Clients, len(r.Phases), clients)
		}
		for _, p := range r.Phases {
			if p.Errors != 0 || p.Ops == 0 || p.OpsPerSec <= 0 || p.Latency.P50 <= 0 || p.Latency.P50 > p.Latency.P99 {
				t.Errorf("%d clients, %s: %+v", clients, p.Name, p)
			}
		}
		if create := r.Phases[0]; create.Ops != 30 || create.Conns > clients {
			t.Errorf("%d clients, create: %d ops over %d connections, want 30 over at most %d", clients, create.Ops, create.Conns, clients)
		}
		if get := r.Phases[1]; get.Conns != clients {
			t.Errorf("%d clients, get: %d connections, want one per client", clients, get.Conns)
		}
		if del := r.Phases[2]; del.Ops != 30 || del.Requests != 1 {
			t.Errorf("%d clients, delete: %d ops in %d requests, want 30 in 1 bulk request", clients, del.Ops, del.Requests)
		}
	}
	stats, err := h.Registry.Statistics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stats.TotalDeviceCount != 0 {
		t.Errorf("%d devices left after the benchmark, want 0", stats.TotalDeviceCount)
	}

	_, errs, code = run(t, "bench", "registry", dd, "--clients", "0")
	if code != 2 || !strings.Contains(errs, "--clients") {
		t.Errorf("--clients 0: exit %d, %q; want 2 and a message about --clients", code, errs)
	}
}
