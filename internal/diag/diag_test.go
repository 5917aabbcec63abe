package diag_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
)

func TestMaskIP(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7:5555":    "203.0.113.XXX",
		"10.1.2.3":            "10.1.2.XXX",
		"[2001:db8::1]:443":   "2001:db8::XXXX",
		"[::ffff:10.0.0.9]:1": "10.0.0.XXX",
		"not an address":      "",
		"":                    "",
	} {
		if got := diag.MaskIP(in); got != want {
			t.Errorf("MaskIP(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRecordsAreStoredInTheResourceLogShape(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx := context.Background()
	w, err := diag.NewWriter(ctx, eng, diag.Config{ResourceID: diag.ResourceID("sub", "rg", "myhub"), Location: "westeurope"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Second)
	w.Write(ctx, diag.Record{Category: diag.Connections, OperationName: "deviceDisconnect", DurationMs: -1,
		Err: errcode.New(errcode.DeviceConnectionClosedRemotely, "gone"), Properties: map[string]any{"deviceId": "d1", "statusCode": "404"}})
	w.Write(ctx, diag.Record{Category: diag.Connections, OperationName: "deviceConnect", DurationMs: -1, Properties: map[string]any{"deviceId": "d1"}})
	w.Write(ctx, diag.Record{Category: diag.DeviceIdentityOperations, OperationName: "get", DurationMs: 3,
		Err: errcode.New(errcode.IotHubUnauthorizedAccess, "x")})
	w.Close()
	w.Write(ctx, diag.Record{Category: diag.Connections, OperationName: "late"}) // after Close: dropped, no panic
	var got []diag.Wire
	if err := diag.Read(ctx, eng, diag.Connections, start, func(r diag.Wire) bool { got = append(got, r); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d Connections records, want 2", len(got))
	}
	r := got[0]
	if r.ResourceID != "/SUBSCRIPTIONS/SUB/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/MYHUB" || r.Level != "Error" ||
		r.ResultType != "404104" || r.ResultDescription != "DeviceConnectionClosedRemotely" || r.Location != "westeurope" || r.DurationMs != "" {
		t.Fatalf("record %+v", r)
	}
	var props map[string]any
	if err := json.Unmarshal([]byte(r.Properties), &props); err != nil || props["deviceId"] != "d1" {
		t.Fatalf("properties must be a JSON-encoded string: %q", r.Properties)
	}
	if got[1].Level != "Information" || got[1].ResultType != "" {
		t.Fatalf("success record %+v", got[1])
	}
	var ids []diag.Wire
	_ = diag.Read(ctx, eng, diag.DeviceIdentityOperations, start, func(r diag.Wire) bool { ids = append(ids, r); return true })
	if len(ids) != 1 || ids[0].ResultDescription != "AuthenticationFailed" || ids[0].DurationMs != "3" {
		t.Fatalf("401002 must carry the guide's name AuthenticationFailed: %+v", ids)
	}
}
