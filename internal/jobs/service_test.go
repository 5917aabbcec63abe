package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/jobs"
	"github.com/roost-iot/roost/internal/methods"
	"github.com/roost-iot/roost/internal/metrics"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/throttle"
	"github.com/roost-iot/roost/internal/twin"
)

// clock is a fake clock the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	eng   *engine.Engine
	reg   *registry.Registry
	twins *twin.Store
	meth  *methods.Service
	met   *metrics.Metrics
	clk   *clock
	svc   *jobs.Service
}

type option func(*jobs.Config)

func newFixture(t *testing.T, opts ...option) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{eng: enginetest.Start(t), met: metrics.New(), clk: &clock{t: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}}
	var err error
	if f.reg, err = registry.New(ctx, f.eng, registry.Config{}); err != nil {
		t.Fatal(err)
	}
	if f.twins, err = twin.Open(ctx, f.eng, twin.Config{Registry: f.reg}); err != nil {
		t.Fatal(err)
	}
	if f.meth, err = methods.New(methods.Config{Engine: f.eng, Registry: f.reg, Metrics: f.met}); err != nil {
		t.Fatal(err)
	}
	cfg := jobs.Config{Engine: f.eng, Twins: f.twins, Methods: f.meth, Devices: f.twins.Scan, Metrics: f.met,
		NodeID: "node-a", Clock: f.clk, PollInterval: 20 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	if f.svc, err = jobs.New(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.svc.Close)
	return f
}

func (f *fixture) devices(t *testing.T, tags map[string]string, ids ...string) {
	t.Helper()
	ctx := context.Background()
	for _, id := range ids {
		if _, err := f.reg.CreateDevice(ctx, registry.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
		if len(tags) > 0 {
			b, _ := json.Marshal(map[string]any{"tags": tags})
			if _, err := f.twins.Update(ctx, id, "", b, "*"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// answer stands in for a device's connection: it answers every method call with reply.
func (f *fixture) answer(t *testing.T, dev string, reply func(methods.Request) (int32, []byte)) {
	t.Helper()
	sub, err := f.eng.Subscribe(methods.Subject(dev, ""), func(in engine.Inbound) {
		req, err := methods.DecodeRequest(in.Data)
		if err != nil {
			t.Errorf("decode: %v", err)
			return
		}
		st, body := reply(req)
		_ = in.Reply(methods.AppendResponse(nil, st, body))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Unsubscribe)
}

func (f *fixture) waitStatus(t *testing.T, id, want string) jobs.Job {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		j, err := f.svc.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		if j.Status == want {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %s (%+v), want %s", id, j.Status, j.DeviceJobStatistics, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rows returns the job's device rows by device.
func (f *fixture) rows(t *testing.T, id string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	if err := f.svc.Rows(context.Background(), false, func(doc map[string]any) bool {
		if doc["jobId"] == id {
			out[doc["deviceId"].(string)] = doc
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantCode(t *testing.T, err error, code errcode.Code) {
	t.Helper()
	if err == nil || errcode.As(err).Code != code {
		t.Fatalf("got %v, want %d", err, code)
	}
}

func twinJob(cond, start string) []byte {
	b, _ := json.Marshal(map[string]any{"type": "scheduleUpdateTwin", "queryCondition": cond, "startTime": start,
		"maxExecutionTimeInSeconds": 120,
		"updateTwin": map[string]any{"etag": "*", "tags": map[string]any{"fw": "2.0"},
			"properties": map[string]any{"desired": map[string]any{"interval": 30}, "reported": map[string]any{}}}})
	return b
}

func methodJob(cond string, extra map[string]any) []byte {
	m := map[string]any{"methodName": "reboot", "payload": map[string]any{"delay": 1}, "responseTimeoutInSeconds": 30}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(map[string]any{"type": "scheduleDeviceMethod", "queryCondition": cond, "cloudToDeviceMethod": m})
	return b
}

func TestJobsScheduledStartWaitsForTheClock(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.devices(t, map[string]string{"site": "north"}, "n1", "n2")
	f.devices(t, map[string]string{"site": "south"}, "s1")
	ctx := context.Background()
	start := f.clk.Now().Add(time.Hour).Format(time.RFC3339)
	job, err := f.svc.Create(ctx, "later", twinJob("tags.site = 'north'", start), jobs.Caller{APIVersion: "2021-04-12"})
	if err != nil {
		t.Fatal(err)
	}
	if job.Status != jobs.StatusQueued || job.JobID != "later" || job.Type != jobs.TypeUpdateTwin {
		t.Fatalf("create answered %+v, want status queued", job)
	}
	time.Sleep(200 * time.Millisecond) // ten polls
	if j, _ := f.svc.Get(ctx, "later"); j.Status != jobs.StatusScheduled || len(f.rows(t, "later")) != 0 {
		t.Fatalf("before its start the job is %s with rows %v", j.Status, f.rows(t, "later"))
	}
	f.clk.Advance(time.Hour)
	j := f.waitStatus(t, "later", jobs.StatusCompleted)
	if st := j.DeviceJobStatistics; st.DeviceCount != 2 || st.SucceededCount != 2 || st.FailedCount != 0 || j.EndTime == nil {
		t.Fatalf("statistics %+v, end %v", st, j.EndTime)
	}
	rows := f.rows(t, "later")
	for _, id := range []string{"n1", "n2"} {
		if rows[id]["status"] != jobs.DeviceCompleted || rows[id]["jobType"] != jobs.TypeUpdateTwin {
			t.Fatalf("row of %s: %v", id, rows[id])
		}
		tw, _ := f.twins.Get(ctx, id, "")
		b, _ := tw.MarshalJSON()
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		desired := m["properties"].(map[string]any)["desired"].(map[string]any)
		if m["tags"].(map[string]any)["fw"] != "2.0" || desired["interval"] != 30.0 || tw.Version() != 3 {
			t.Fatalf("twin of %s: %s", id, b)
		}
	}
	if _, ok := rows["s1"]; ok {
		t.Fatal("s1 does not match the condition")
	}
}

func TestJobsMethodOnlineAndOffline(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.devices(t, nil, "on", "off")
	f.answer(t, "on", func(r methods.Request) (int32, []byte) { return 201, []byte(`{"done":true}`) })
	ctx := context.Background()
	if _, err := f.svc.Create(ctx, "m1", methodJob("deviceId IN ['on', 'off']", nil), jobs.Caller{}); err != nil {
		t.Fatal(err)
	}
	j := f.waitStatus(t, "m1", jobs.StatusCompleted)
	if st := j.DeviceJobStatistics; st.DeviceCount != 2 || st.SucceededCount != 1 || st.FailedCount != 1 {
		t.Fatalf("statistics %+v", st)
	}
	rows := f.rows(t, "m1")
	resp := rows["on"]["outcome"].(map[string]any)["deviceMethodResponse"].(map[string]any)
	if rows["on"]["status"] != "completed" || resp["status"] != 201.0 || resp["payload"].(map[string]any)["done"] != true {
		t.Fatalf("online row %v", rows["on"])
	}
	e := rows["off"]["error"].(map[string]any)
	if rows["off"]["status"] != "failed" || e["code"] != "DeviceNotOnline" || e["description"] != "Timed out waiting for device to connect." {
		t.Fatalf("offline row %v", rows["off"])
	}
	if v := counter(t, f.met, "roost_jobs_completed_total"); v != 1 {
		t.Fatalf("jobs.completed = %v", v)
	}
	if v := counter(t, f.met, "roost_jobs_create_direct_method_job_success_total"); v != 1 {
		t.Fatalf("jobs.createDirectMethodJob.success = %v", v)
	}
}

func counter(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestJobsCancelStopsTheRunningJob(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *jobs.Config) { c.Workers = 1 })
	ids := []string{"c1", "c2", "c3", "c4"}
	f.devices(t, nil, ids...)
	release := make(chan struct{})
	called := make(chan string, 10)
	for _, id := range ids {
		f.answer(t, id, func(r methods.Request) (int32, []byte) {
			called <- id
			<-release
			return 200, nil
		})
	}
	defer close(release)
	ctx := context.Background()
	if _, err := f.svc.Create(ctx, "stopme", methodJob("*", nil), jobs.Caller{}); err != nil {
		t.Fatal(err)
	}
	var first string
	select {
	case first = <-called:
	case <-time.After(10 * time.Second):
		t.Fatal("no device was called")
	}
	begin := time.Now()
	j, err := f.svc.Cancel(ctx, "stopme")
	if err != nil || j.Status != jobs.StatusCancelled {
		t.Fatalf("cancel: %+v %v", j, err)
	}
	j = f.waitStatus(t, "stopme", jobs.StatusCancelled)
	deadline := time.Now().Add(5 * time.Second)
	for len(f.svc.Running()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(f.svc.Running()) > 0 || time.Since(begin) > 3*time.Second {
		t.Fatalf("the runner did not stop promptly: %v after %s", f.svc.Running(), time.Since(begin))
	}
	rows := f.rows(t, "stopme")
	for _, id := range ids {
		if rows[id]["status"] != jobs.DeviceCanceled {
			t.Fatalf("row of %s (first called %s): %v", id, first, rows[id])
		}
	}
	if len(called) != 0 {
		t.Fatalf("devices called after the cancel: %d", len(called))
	}
	if j2, _ := f.svc.Get(ctx, "stopme"); j2.DeviceJobStatistics.PendingCount != 0 || j2.DeviceJobStatistics.RunningCount != 0 {
		t.Fatalf("statistics after cancel: %+v", j2.DeviceJobStatistics)
	}
	// Cancelling again changes nothing.
	if j2, err := f.svc.Cancel(ctx, "stopme"); err != nil || j2.Status != jobs.StatusCancelled {
		t.Fatalf("second cancel: %+v %v", j2, err)
	}
}

func TestJobsErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *jobs.Config) { c.MaxActive = 1 })
	f.devices(t, nil, "d1")
	ctx := context.Background()
	later := f.clk.Now().Add(time.Hour).Format(time.RFC3339)
	if _, err := f.svc.Create(ctx, "j1", twinJob("deviceId = 'd1'", later), jobs.Caller{}); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.Create(ctx, "j1", twinJob("deviceId = 'd1'", later), jobs.Caller{})
	wantCode(t, err, errcode.JobAlreadyExists)
	_, err = f.svc.Create(ctx, "j2", twinJob("deviceId = 'd1'", later), jobs.Caller{})
	wantCode(t, err, errcode.ThrottlingMaxActiveJobCountExceeded)
	_, err = f.svc.Get(ctx, "nope")
	wantCode(t, err, errcode.JobNotFound)
	_, err = f.svc.Cancel(ctx, "nope")
	wantCode(t, err, errcode.JobNotFound)
	if _, err := f.svc.Cancel(ctx, "j1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Create(ctx, "j2", twinJob("deviceId = 'd1'", later), jobs.Caller{}); err != nil {
		t.Fatalf("a cancelled job frees its slot: %v", err)
	}
	for name, tc := range map[string]struct {
		body string
		code errcode.Code
	}{
		"not json":          {`{"type":`, errcode.IotHubFormatError},
		"empty":             {``, errcode.ArgumentNull},
		"no type":           {`{"queryCondition":"*","updateTwin":{}}`, errcode.ArgumentInvalid},
		"bad type":          {`{"type":"reboot","queryCondition":"*"}`, errcode.ArgumentInvalid},
		"no condition":      {`{"type":"scheduleUpdateTwin","updateTwin":{"tags":{}}}`, errcode.ArgumentNull},
		"bad condition":     {`{"type":"scheduleUpdateTwin","queryCondition":"tags.a = ","updateTwin":{"tags":{}}}`, errcode.ArgumentInvalid},
		"desired at top":    {`{"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"desired":{"a":1}}}`, errcode.ArgumentInvalid},
		"reported":          {`{"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"properties":{"reported":{"a":1}}}}`, errcode.ArgumentInvalid},
		"bad twin key":      {`{"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"tags":{"a.b":1}}}`, errcode.ArgumentInvalid},
		"no updateTwin":     {`{"type":"scheduleUpdateTwin","queryCondition":"*"}`, errcode.ArgumentNull},
		"no method":         {`{"type":"scheduleDeviceMethod","queryCondition":"*"}`, errcode.ArgumentNull},
		"bad method name":   {`{"type":"scheduleDeviceMethod","queryCondition":"*","cloudToDeviceMethod":{"methodName":"a b"}}`, errcode.ArgumentInvalid},
		"bad timeout":       {`{"type":"scheduleDeviceMethod","queryCondition":"*","cloudToDeviceMethod":{"methodName":"a","responseTimeoutInSeconds":1}}`, errcode.ArgumentInvalid},
		"other id":          {`{"jobId":"x","type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"tags":{}}}`, errcode.ArgumentInvalid},
		"bad start":         {`{"type":"scheduleUpdateTwin","queryCondition":"*","startTime":"tomorrow","updateTwin":{"tags":{}}}`, errcode.ArgumentInvalid},
		"negative max time": {`{"type":"scheduleUpdateTwin","queryCondition":"*","maxExecutionTimeInSeconds":-1,"updateTwin":{"tags":{}}}`, errcode.ArgumentInvalid},
	} {
		_, err := f.svc.Create(ctx, "bad", []byte(tc.body), jobs.Caller{})
		if err == nil || errcode.As(err).Code != tc.code {
			t.Errorf("%s: got %v, want %d", name, err, tc.code)
		}
	}
	if _, err := f.svc.Get(ctx, "bad"); errcode.As(err).Code != errcode.JobNotFound {
		t.Fatalf("a refused job must not exist: %v", err)
	}
}

func TestJobsTierLimits(t *testing.T) {
	t.Parallel()
	basic, err := throttle.New(throttle.Config{SKU: "B1"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *jobs.Config) { c.Throttle = basic })
	_, err = f.svc.Create(context.Background(), "j", twinJob("*", ""), jobs.Caller{})
	wantCode(t, err, errcode.OperationNotAvailableInCurrentTier)

	s2, err := throttle.New(throttle.Config{SKU: "S2"})
	if err != nil {
		t.Fatal(err)
	}
	g := newFixture(t, func(c *jobs.Config) { c.Throttle = s2 })
	later := g.clk.Now().Add(time.Hour).Format(time.RFC3339)
	for i := range 5 {
		if _, err := g.svc.Create(context.Background(), fmt.Sprint("j", i), twinJob("*", later), jobs.Caller{}); err != nil {
			t.Fatalf("job %d of 5 on S2: %v", i, err)
		}
	}
	_, err = g.svc.Create(context.Background(), "j5", twinJob("*", later), jobs.Caller{})
	wantCode(t, err, errcode.ThrottlingMaxActiveJobCountExceeded)
}

func TestJobsMaxExecutionTimeAndRetention(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *jobs.Config) { c.Workers = 1 })
	f.devices(t, nil, "slow", "never")
	release := make(chan struct{})
	f.answer(t, "slow", func(methods.Request) (int32, []byte) { <-release; return 200, nil })
	f.answer(t, "never", func(methods.Request) (int32, []byte) { return 200, nil })
	defer close(release)
	ctx := context.Background()
	body := methodJob("*", nil)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	m["maxExecutionTimeInSeconds"] = 60
	body, _ = json.Marshal(m)
	if _, err := f.svc.Create(ctx, "short", body, jobs.Caller{}); err != nil {
		t.Fatal(err)
	}
	// Wait until the first device is being called, then let the clock pass the limit.
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, _ := f.svc.Get(ctx, "short")
		if j.DeviceJobStatistics.RunningCount == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job never ran a device: %+v", j)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.clk.Advance(61 * time.Second)
	j := f.waitStatus(t, "short", jobs.StatusFailed)
	if j.FailureReason == "" || j.DeviceJobStatistics.FailedCount != 2 {
		t.Fatalf("job %+v", j)
	}
	rows := f.rows(t, "short")
	for id, row := range rows {
		e, _ := row["error"].(map[string]any)
		if row["status"] != jobs.DeviceFailed && row["status"] != jobs.DeviceCanceled || (row["status"] == jobs.DeviceFailed && e["code"] != "RequestTimedOut") {
			t.Fatalf("row of %s: %v", id, row)
		}
	}
	if n, err := f.svc.Purge(ctx); err != nil || n != 0 {
		t.Fatalf("purge right after: %d %v", n, err)
	}
	f.clk.Advance(31 * 24 * time.Hour)
	if n, err := f.svc.Purge(ctx); err != nil || n != 1 {
		t.Fatalf("purge after 31 days: %d %v", n, err)
	}
	_, err := f.svc.Get(ctx, "short")
	wantCode(t, err, errcode.JobNotFound)
	if len(f.rows(t, "short")) != 0 {
		t.Fatal("the rows must go with the job")
	}
}

func TestJobsListPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *jobs.Config) { c.MaxActive = 10 })
	ctx := context.Background()
	later := f.clk.Now().Add(time.Hour).Format(time.RFC3339)
	for i := range 5 {
		if _, err := f.svc.Create(ctx, fmt.Sprint("t", i), twinJob("*", later), jobs.Caller{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.Create(ctx, "m", methodJob("*", map[string]any{}), jobs.Caller{}); err != nil {
		t.Fatal(err)
	}
	var got []string
	tok := ""
	for range 10 {
		page, next, err := f.svc.List(ctx, jobs.ListRequest{Type: jobs.TypeUpdateTwin, PageSize: 2, Continuation: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range page {
			got = append(got, j.JobID)
		}
		if tok = next; tok == "" {
			break
		}
	}
	if fmt.Sprint(got) != "[t0 t1 t2 t3 t4]" {
		t.Fatalf("listed %v", got)
	}
	page, _, err := f.svc.List(ctx, jobs.ListRequest{Status: jobs.StatusScheduled})
	if err != nil || len(page) != 5 {
		t.Fatalf("scheduled jobs: %d %v", len(page), err)
	}
	_, _, err = f.svc.List(ctx, jobs.ListRequest{Continuation: "garbage"})
	wantCode(t, err, errcode.ArgumentInvalid)
}
