package jobs

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/methods"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/twin"
)

// TestJobsTakeOverFromADeadNode leaves a job as a node that died mid-run would: still running,
// owned by that node with a lapsed lease, one device done, one method call in flight, one device
// not reached. This node takes it over: the in-flight call is reported failed (not made twice),
// the device done is left alone, the one not reached is called.
func TestJobsTakeOverFromADeadNode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	eng := enginetest.Start(t)
	reg, err := registry.New(ctx, eng, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	twins, err := twin.Open(ctx, eng, twin.Config{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	meth, err := methods.New(methods.Config{Engine: eng, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	callc := make(chan string, 10)
	for _, id := range []string{"done", "inflight", "todo"} {
		if _, err := reg.CreateDevice(ctx, registry.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
		sub, err := eng.Subscribe(methods.Subject(id, ""), func(in engine.Inbound) {
			callc <- id
			_ = in.Reply(methods.AppendResponse(nil, 200, nil))
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Unsubscribe)
	}
	svc, err := New(ctx, Config{Engine: eng, Twins: twins, Methods: meth, Devices: twins.Scan, NodeID: "alive", PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()

	start := time.Now().UTC().Add(-time.Minute)
	rec := record{Job: Job{JobID: "orphan", QueryCondition: "*", CreatedTime: start, StartTime: start, MaxExecutionTimeInSeconds: 3600,
		Type: TypeDeviceMethod, Status: StatusRunning, CloudToDeviceMethod: &MethodRequest{MethodName: "m", Payload: json.RawMessage("null"), ResponseTimeoutInSeconds: 30}},
		Owner: "dead", LeaseUntil: start, Targeted: true, RunStart: start}
	b, _ := json.Marshal(rec)
	if _, err := svc.bucket.Create(ctx, recordKey("orphan"), b); err != nil {
		t.Fatal(err)
	}
	for dev, st := range map[string]string{"done": DeviceCompleted, "inflight": DeviceRunning, "todo": DevicePending} {
		b, _ := json.Marshal(Row{DeviceID: dev, JobID: "orphan", JobType: TypeDeviceMethod, Status: st, CreatedDateTimeUtc: start, LastUpdatedDateTimeUtc: start})
		if _, err := svc.bucket.Put(ctx, rowKey("orphan", dev), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.addActive(ctx, "orphan"); err != nil {
		t.Fatal(err)
	}
	svc.poke()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := svc.Get(ctx, "orphan")
		if err != nil {
			t.Fatal(err)
		}
		if j.Status == StatusCompleted {
			if st := j.DeviceJobStatistics; st.DeviceCount != 3 || st.SucceededCount != 2 || st.FailedCount != 1 {
				t.Fatalf("statistics %+v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the orphaned job was not taken over: %+v", j)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(callc)
	for id := range callc {
		calls[id]++
	}
	if calls["todo"] != 1 || calls["inflight"] != 0 || calls["done"] != 0 {
		t.Fatalf("calls after the takeover: %v", calls)
	}
	var row Row
	if ok, err := svc.bucket.GetJSON(ctx, rowKey("orphan", "inflight"), &row); !ok || err != nil || row.Status != DeviceFailed || row.Error == nil || row.Error.Code != "ServerError" {
		t.Fatalf("in-flight row: %+v %v", row, err)
	}
}
