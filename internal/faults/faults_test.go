package faults_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/faults"
)

func TestFaultRules(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx := context.Background()
	var mu sync.Mutex
	var dropped []string
	var injected []errcode.Code
	open := func() *faults.Injector {
		inj, err := faults.Open(ctx, eng, faults.Config{
			Refresh: 20 * time.Millisecond,
			Drop: func(dev, rule string) error {
				mu.Lock()
				defer mu.Unlock()
				dropped = append(dropped, dev+"/"+rule)
				return nil
			},
			OnInject: func(c errcode.Code) { mu.Lock(); defer mu.Unlock(); injected = append(injected, c) },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(inj.Close)
		return inj
	}
	n1, n2 := open(), open()

	if e := n1.Check(ctx, diag.Connections, diag.OpDeviceConnect, "d1"); e != nil {
		t.Fatalf("no rules, got %v", e)
	}
	r, err := n1.Add(ctx, faults.Rule{ID: "conn", Operations: []string{"connect"}, Devices: []string{"dev-*"}, Error: "ServerError", Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r.Operations[0] != "Connections/deviceConnect" || r.Rate != 1 {
		t.Fatalf("normalized rule %+v", r)
	}
	time.Sleep(100 * time.Millisecond) // n2 refreshes
	// Exactly three failures, whichever node sees the operations.
	fails := 0
	for i := range 10 {
		inj := n1
		if i%2 == 1 {
			inj = n2
		}
		if e := inj.Check(ctx, diag.Connections, diag.OpDeviceConnect, "dev-7"); e != nil {
			fails++
			var f *diag.InjectedFault
			if e.Code != errcode.ServerError || !errors.As(e, &f) || f.Rule != "conn" {
				t.Fatalf("injected %v", e)
			}
		}
	}
	if fails != 3 {
		t.Fatalf("%d failures, want 3", fails)
	}
	if e := n1.Check(ctx, diag.Connections, diag.OpDeviceConnect, "other"); e != nil {
		t.Fatal("a device the rule does not name must pass")
	}
	if e := n1.Check(ctx, diag.Connections, diag.OpDeviceDisconnect, "dev-7"); e != nil {
		t.Fatal("an operation the rule does not name must pass")
	}

	// InternalServerError has no code of its own: 500000 with the guide's name.
	if _, err := n1.Add(ctx, faults.Rule{ID: "ise", Operations: []string{"DeviceIdentityOperations/get"}, Error: "InternalServerError"}); err != nil {
		t.Fatal(err)
	}
	e := n1.Check(ctx, diag.DeviceIdentityOperations, "get", "x")
	var f *diag.InjectedFault
	if e == nil || e.Code != 500000 || !errors.As(e, &f) || f.Description != "InternalServerError" {
		t.Fatalf("InternalServerError: %v", e)
	}

	// Rates: about half of many operations fail.
	if _, err := n1.Add(ctx, faults.Rule{ID: "half", Operations: []string{"telemetry"}, Error: "429001", Rate: 0.5}); err != nil {
		t.Fatal(err)
	}
	hits := 0
	for range 2000 {
		if n1.Check(ctx, diag.DeviceTelemetry, diag.OpIngress, "d") != nil {
			hits++
		}
	}
	if hits < 850 || hits > 1150 {
		t.Fatalf("rate 0.5 failed %d of 2000", hits)
	}

	// A drop rule naming devices drops them at once.
	if _, err := n1.Add(ctx, faults.Rule{ID: "drop", Operations: []string{"telemetry"}, Devices: []string{"d9"}, Error: "drop"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(dropped) != 1 || dropped[0] != "d9/drop" {
		t.Fatalf("dropped %v", dropped)
	}
	mu.Unlock()

	rules, _ := n2.List(ctx)
	if len(rules) != 3 {
		t.Fatalf("rules: %+v", rules)
	}
	if ok, _ := n2.Remove(ctx, "half"); !ok {
		t.Fatal("remove")
	}
	if n, _ := n2.Clear(ctx); n != 2 {
		t.Fatalf("cleared %d", n)
	}
	time.Sleep(100 * time.Millisecond)
	if e := n1.Check(ctx, diag.DeviceTelemetry, diag.OpIngress, "d9"); e != nil {
		t.Fatalf("after clear: %v", e)
	}

	// Expiry.
	if _, err := n1.Add(ctx, faults.Rule{ID: "old", Operations: []string{"*"}, Error: "503", Expires: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if e := n1.Check(ctx, diag.DirectMethods, diag.OpMethodSend, "d"); e != nil {
		t.Fatalf("expired rule fired: %v", e)
	}
}

func TestNormalizeRejectsBadRules(t *testing.T) {
	t.Parallel()
	for _, r := range []faults.Rule{
		{Error: "500001"},
		{Operations: []string{"teleport"}, Error: "500001"},
		{Operations: []string{"Connections/nope"}, Error: "500001"},
		{Operations: []string{"connect"}, Error: "418"},
		{Operations: []string{"connect"}, Error: "500001", Rate: 2},
		{Operations: []string{"connect"}, Error: "500001", Count: -1},
		{Operations: []string{"connect"}, Error: "500001", Devices: []string{" "}},
	} {
		if err := faults.Normalize(&r); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
}
