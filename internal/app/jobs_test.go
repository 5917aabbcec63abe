package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/roost-iot/roost/internal/config"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
)

// service calls the hub's REST API over TLS as the service SDK does: a SAS of the named policy
// in Authorization, api-version 2021-04-12.
type service struct {
	t      *testing.T
	h      *Hub
	policy string
	c      *http.Client
}

func newService(t *testing.T, h *Hub, policy string) *service {
	return &service{t: t, h: h, policy: policy, c: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: certPool(h), ServerName: h.Config.HostName, MinVersion: tls.VersionTLS12}}}}
}

func (s *service) do(method, path string, hdr map[string]string, body any) (int, http.Header, []byte) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			b, _ = json.Marshal(body)
		}
		rd = bytes.NewReader(b)
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequest(method, "https://"+s.h.HTTPSAddr+path+sep+"api-version=2021-04-12", rd)
	if err != nil {
		s.t.Fatal(err)
	}
	tok, err := sas.Sign(s.h.Config.HostName, mustPolicyKey(s.t, s.h, s.policy), s.policy, time.Now().Add(time.Hour))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", tok)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "azure-iothub/1.16.5")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, out
}

// waitJob polls GET /jobs/v2/{id} as the SDK samples do until the job has the status.
func (s *service) waitJob(id, want string) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, body := s.do("GET", "/jobs/v2/"+id, nil, nil)
		var j map[string]any
		if code != 200 || json.Unmarshal(body, &j) != nil {
			s.t.Fatalf("get job %s: %d %s", id, code, body)
		}
		if j["status"] == want {
			return j
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("job %s: %s, want status %s", id, body, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rows runs SELECT * FROM devices.jobs for the job and returns its rows by device.
func (s *service) rows(jobID string) map[string]map[string]any {
	s.t.Helper()
	code, hdr, body := s.do("POST", "/devices/query", map[string]string{"x-ms-max-item-count": "100"},
		map[string]string{"query": "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '" + jobID + "'"})
	var list []map[string]any
	if code != 200 || hdr.Get("x-ms-item-type") != "deviceJob" || json.Unmarshal(body, &list) != nil {
		s.t.Fatalf("devices.jobs query: %d %v %s", code, hdr, body)
	}
	out := map[string]map[string]any{}
	for _, r := range list {
		out[r["deviceId"].(string)] = r
	}
	return out
}

func tagDevices(t *testing.T, h *Hub, tags string, ids ...string) map[string]registry.Device {
	t.Helper()
	ctx := context.Background()
	out := map[string]registry.Device{}
	for _, id := range ids {
		d := createDevice(t, h, id)
		if _, err := h.Twins.Update(ctx, id, "", []byte(`{"tags":`+tags+`}`), "*"); err != nil {
			t.Fatal(err)
		}
		out[id] = d
	}
	return out
}

// TestJobsOverTheServiceAPI drives jobs v2 over TLS with the paths, bodies and headers of the
// Node SDK's JobClient: a twin update over a tag condition (one device connected over MQTT sees
// the desired-property push), a method job with one device answering and one offline, the
// devices.jobs query, the jobs query with paging, cancel, and the errors.
func TestJobsOverTheServiceAPI(t *testing.T) {
	t.Parallel()
	h, dd := startCLIHub(t)
	svc := newService(t, h, "iothubowner")

	devs := tagDevices(t, h, `{"fleet":"a"}`, "a1", "a2", "a3")
	tagDevices(t, h, `{"fleet":"b"}`, "b1")
	pushes := make(chan []byte, 4)
	c, err := mqttConnect(t, h, "a1", deviceSAS(t, h, "a1", devs["a1"].Authentication.SymmetricKey.PrimaryKey), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Subscribe("$iothub/twin/PATCH/properties/desired/#", 0, func(_ paho.Client, m paho.Message) { pushes <- m.Payload() }); !st.WaitTimeout(5*time.Second) || st.Error() != nil {
		t.Fatalf("subscribe: %v", st.Error())
	}

	// scheduleTwinUpdate, as the SDK builds it.
	twinBody := map[string]any{"jobId": "tw1", "type": "scheduleUpdateTwin",
		"updateTwin":     map[string]any{"etag": "*", "tags": map[string]any{"fw": "2.0"}, "properties": map[string]any{"desired": map[string]any{"interval": 30}, "reported": map[string]any{}}},
		"startTime":      time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		"queryCondition": "tags.fleet = 'a'", "maxExecutionTimeInSeconds": 120}
	code, hdr, body := svc.do("PUT", "/jobs/v2/tw1", nil, twinBody)
	var created map[string]any
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") || json.Unmarshal(body, &created) != nil ||
		created["status"] != "queued" || created["jobId"] != "tw1" {
		t.Fatalf("PUT job: %d %v %s", code, hdr, body)
	}
	j := svc.waitJob("tw1", "completed")
	st := j["deviceJobStatistics"].(map[string]any)
	if st["deviceCount"] != 3.0 || st["succeededCount"] != 3.0 || st["failedCount"] != 0.0 {
		t.Fatalf("statistics: %v", st)
	}
	select {
	case p := <-pushes:
		var d map[string]any
		if json.Unmarshal(p, &d) != nil || d["interval"] != 30.0 || d["$version"] != 2.0 {
			t.Fatalf("desired push: %s", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the connected device got no desired-property push")
	}
	code, _, body = svc.do("GET", "/twins/a2", nil, nil)
	if code != 200 || !strings.Contains(string(body), `"fw":"2.0"`) {
		t.Fatalf("twin of a2: %d %s", code, body)
	}
	rows := svc.rows("tw1")
	if len(rows) != 3 || rows["a3"]["status"] != "completed" || rows["a3"]["jobType"] != "scheduleUpdateTwin" {
		t.Fatalf("rows: %v", rows)
	}

	// scheduleDeviceMethod: one device answers, one is offline.
	methodDevice(t, h, "m-on")
	if _, err := h.Registry.CreateDevice(context.Background(), registry.Device{DeviceID: "m-off"}); err != nil {
		t.Fatal(err)
	}
	methodBody := map[string]any{"jobId": "mj", "type": "scheduleDeviceMethod",
		"cloudToDeviceMethod": map[string]any{"methodName": "reboot", "payload": map[string]any{"x": 1}, "responseTimeoutInSeconds": 30},
		"startTime":           time.Now().UTC().Format(time.RFC3339Nano), "queryCondition": "deviceId IN ['m-on', 'm-off']"}
	if code, _, body := svc.do("PUT", "/jobs/v2/mj", nil, methodBody); code != 200 {
		t.Fatalf("PUT method job: %d %s", code, body)
	}
	svc.waitJob("mj", "completed")
	rows = svc.rows("mj")
	resp, _ := rows["m-on"]["outcome"].(map[string]any)["deviceMethodResponse"].(map[string]any)
	if rows["m-on"]["status"] != "completed" || resp["status"] != 200.0 || fmt.Sprint(resp["payload"]) != "map[x:1]" {
		t.Fatalf("answering device: %v", rows["m-on"])
	}
	if e, _ := rows["m-off"]["error"].(map[string]any); rows["m-off"]["status"] != "failed" || e["code"] != "DeviceNotOnline" {
		t.Fatalf("offline device: %v", rows["m-off"])
	}

	// Errors as the SDK parses them.
	for _, tc := range []struct {
		method, path string
		body         any
		status       int
		name         string
	}{
		{"PUT", "/jobs/v2/tw1", twinBody, 409, "JobAlreadyExists"},
		{"GET", "/jobs/v2/missing", nil, 404, "JobNotFound"},
		{"POST", "/jobs/v2/missing/cancel", nil, 404, "JobNotFound"},
		{"PUT", "/jobs/v2/bad", map[string]any{"type": "scheduleUpdateTwin", "queryCondition": "tags.x = ", "updateTwin": map[string]any{"tags": map[string]any{}}}, 400, "ArgumentInvalid"},
		{"PUT", "/jobs/v2/bad", map[string]any{"type": "scheduleUpdateTwin", "queryCondition": "*", "updateTwin": map[string]any{"desired": map[string]any{"a": 1}}}, 400, "ArgumentInvalid"},
	} {
		code, hdr, body := svc.do(tc.method, tc.path, nil, tc.body)
		if code != tc.status || hdr.Get("iothub-errorcode") != tc.name || !strings.Contains(string(body), "ErrorCode:"+tc.name+";") {
			t.Errorf("%s %s: %d %s %s, want %d %s", tc.method, tc.path, code, hdr.Get("iothub-errorcode"), body, tc.status, tc.name)
		}
	}
	// A device policy may not schedule jobs; the registryRead policy may read them.
	if code, _, _ := newService(t, h, "device").do("GET", "/jobs/v2/tw1", nil, nil); code != 401 {
		t.Fatalf("device policy reading a job: %d", code)
	}
	if code, _, _ := newService(t, h, "registryRead").do("GET", "/jobs/v2/tw1", nil, nil); code != 200 {
		t.Fatalf("registryRead policy reading a job: %d", code)
	}
	if code, _, _ := newService(t, h, "registryRead").do("POST", "/jobs/v2/tw1/cancel", nil, nil); code != 401 {
		t.Fatalf("registryRead policy cancelling a job: %d", code)
	}

	// A job for later answers queued, reads scheduled, and cancels.
	later := map[string]any{"jobId": "later", "type": "scheduleUpdateTwin", "queryCondition": "*",
		"updateTwin": map[string]any{"etag": "*", "tags": map[string]any{}, "properties": map[string]any{"desired": map[string]any{}, "reported": map[string]any{}}},
		"startTime":  time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "maxExecutionTimeInSeconds": 120}
	if code, _, body := svc.do("PUT", "/jobs/v2/later", nil, later); code != 200 || !strings.Contains(string(body), `"status":"queued"`) {
		t.Fatalf("PUT later: %d %s", code, body)
	}
	svc.waitJob("later", "scheduled")
	if code, _, body := svc.do("POST", "/jobs/v2/later/cancel", nil, nil); code != 200 || !strings.Contains(string(body), `"status":"cancelled"`) {
		t.Fatalf("cancel: %d %s", code, body)
	}

	// GET /jobs/v2/query pages with the SDK's headers.
	var ids []string
	token := ""
	for range 5 {
		hdrs := map[string]string{"x-ms-max-item-count": "1"}
		if token != "" {
			hdrs["x-ms-continuation"] = token
		}
		code, hdr, body := svc.do("GET", "/jobs/v2/query?jobType=scheduleUpdateTwin", hdrs, nil)
		var page []map[string]any
		if code != 200 || hdr.Get("x-ms-item-type") != "jobResponse" || json.Unmarshal(body, &page) != nil || len(page) != 1 {
			t.Fatalf("jobs query: %d %v %s", code, hdr, body)
		}
		ids = append(ids, page[0]["jobId"].(string))
		if token = hdr.Get("x-ms-continuation"); token == "" {
			break
		}
	}
	if fmt.Sprint(ids) != "[later tw1]" {
		t.Fatalf("twin jobs listed: %v", ids)
	}

	// The completed jobs' JobsOperations records.
	recs := queryRows(t, dd, 2, `AzureDiagnostics | where Category == "JobsOperations" and OperationName == "jobCompleted"`)
	if len(recs) < 2 {
		t.Fatalf("jobCompleted records: %v", recs)
	}
	p := props(t, recs[0])
	if p["jobId"] == nil || p["filter"] == nil || p["startTimeUtc"] == nil {
		t.Fatalf("record properties: %v", p)
	}
}

// TestJobsConcurrencyCapOnS1 checks the tier's limit on active jobs: one on S1, 429004 for the
// second until the first ends.
func TestJobsConcurrencyCapOnS1(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.DataDir, cfg.HostName = t.TempDir(), "hub.test"
	cfg.HTTPSAddr, cfg.MQTTAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Throttle.SKU = "S1"
	h, err := Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(context.Background())
	svc := newService(t, h, "service")
	job := func(id string) map[string]any {
		return map[string]any{"jobId": id, "type": "scheduleDeviceMethod", "queryCondition": "*",
			"cloudToDeviceMethod": map[string]any{"methodName": "m", "payload": nil, "responseTimeoutInSeconds": 30},
			"startTime":           time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "maxExecutionTimeInSeconds": 3600}
	}
	if code, _, body := svc.do("PUT", "/jobs/v2/one", nil, job("one")); code != 200 {
		t.Fatalf("first job: %d %s", code, body)
	}
	code, hdr, body := svc.do("PUT", "/jobs/v2/two", nil, job("two"))
	if code != 429 || hdr.Get("iothub-errorcode") != "ThrottlingMaxActiveJobCountExceeded" {
		t.Fatalf("second job on S1: %d %v %s", code, hdr, body)
	}
	if code, _, _ := svc.do("POST", "/jobs/v2/one/cancel", nil, nil); code != 200 {
		t.Fatalf("cancel: %d", code)
	}
	if code, _, body := svc.do("PUT", "/jobs/v2/two", nil, job("two")); code != 200 {
		t.Fatalf("second job once the first ended: %d %s", code, body)
	}
}

// TestJobsAcrossNodes runs two hubs on one standalone nats-server: a twin job created on one
// node runs on one node; when that node shuts down mid-run, the other goes on with the devices
// not done yet and completes the job, each twin updated once.
func TestJobsAcrossNodes(t *testing.T) {
	t.Parallel()
	x := enginetest.StartExternal(t)
	start := func(node string) *Hub {
		cfg := config.Default()
		cfg.DataDir, cfg.HostName, cfg.NodeID = t.TempDir(), "hub.test", node
		cfg.HTTPSAddr, cfg.MQTTAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.NATSURLs = []string{x.URL}
		// S1 paces a job at 10 devices/s once a one-second burst is spent, so the job runs long
		// enough to stop its node in the middle.
		cfg.Throttle.SKU, cfg.Throttle.Burst = "S1", time.Second
		h, err := Start(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Shutdown(context.Background()) })
		return h
	}
	a, b := start("node-a"), start("node-b")
	var ids []string
	for i := range 40 {
		ids = append(ids, fmt.Sprintf("dev-%02d", i))
	}
	tagDevices(t, a, `{"fleet":"x"}`, ids...)
	body := map[string]any{"jobId": "big", "type": "scheduleUpdateTwin", "queryCondition": "tags.fleet = 'x'",
		"updateTwin": map[string]any{"etag": "*", "properties": map[string]any{"desired": map[string]any{"mode": "eco"}}}}
	if code, _, out := newService(t, a, "iothubowner").do("PUT", "/jobs/v2/big", nil, body); code != 200 {
		t.Fatalf("PUT on node a: %d %s", code, out)
	}
	// Find the node running it, and stop it once some devices are done.
	var runner, other *Hub
	deadline := time.Now().Add(20 * time.Second)
	for runner == nil {
		for _, h := range []*Hub{a, b} {
			if len(h.Jobs.Running()) == 1 {
				runner = h
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no node runs the job")
		}
		time.Sleep(10 * time.Millisecond)
	}
	other = a
	if runner == a {
		other = b
	}
	for {
		j, err := other.Jobs.Get(context.Background(), "big")
		if err != nil {
			t.Fatal(err)
		}
		if j.DeviceJobStatistics.SucceededCount >= 5 {
			if j.DeviceJobStatistics.SucceededCount >= 40 {
				t.Fatal("the job ended before its node could be stopped")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job does not progress: %+v", j)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := runner.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	svc := newService(t, other, "iothubowner")
	j := svc.waitJob("big", "completed")
	if st := j["deviceJobStatistics"].(map[string]any); st["succeededCount"] != 40.0 || st["failedCount"] != 0.0 {
		t.Fatalf("statistics: %v", st)
	}
	if got := other.Jobs.Running(); len(got) != 0 {
		t.Fatalf("still running: %v", got)
	}
	for _, id := range ids {
		tw, err := other.Twins.Get(context.Background(), id, "")
		if err != nil {
			t.Fatal(err)
		}
		// Version 1 fresh, 2 after the tags, 3 after the job: applied exactly once.
		if tw.Version() != 3 || tw.DesiredVersion() != 2 {
			t.Fatalf("twin of %s: version %d, desired $version %d", id, tw.Version(), tw.DesiredVersion())
		}
	}
	if rows := svc.rows("big"); len(rows) != 40 {
		t.Fatalf("rows: %d", len(rows))
	}
}

func TestCLIJobs(t *testing.T) {
	t.Parallel()
	h, dd := startCLIHub(t)
	tagDevices(t, h, `{"site":"north"}`, "n1", "n2")
	out, errs, code := run(t, "jobs", "schedule-twin", "cli-1", "--condition", "tags.site = 'north'", "--desired", `{"fan":true}`, dd)
	if code != 0 || !strings.Contains(out, `"status": "queued"`) {
		t.Fatalf("schedule-twin: %d %s %s", code, out, errs)
	}
	newService(t, h, "iothubowner").waitJob("cli-1", "completed")
	out, errs, code = run(t, "jobs", "show", "cli-1", dd)
	if code != 0 || !strings.Contains(out, `"succeededCount": 2`) {
		t.Fatalf("show: %d %s %s", code, out, errs)
	}
	out, errs, code = run(t, "jobs", "schedule-method", "cli-2", "--condition", "*", "--method", "reboot", "--start", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), dd)
	if code != 0 {
		t.Fatalf("schedule-method: %d %s %s", code, out, errs)
	}
	out, errs, code = run(t, "jobs", "list", dd)
	if code != 0 || !strings.Contains(out, "cli-1") || !strings.Contains(out, "scheduled") {
		t.Fatalf("list: %d %s %s", code, out, errs)
	}
	if out, errs, code = run(t, "jobs", "cancel", "cli-2", dd); code != 0 || !strings.Contains(out, `"cancelled"`) {
		t.Fatalf("cancel: %d %s %s", code, out, errs)
	}
	if _, errs, code = run(t, "jobs", "show", "nope", dd); code == 0 || !strings.Contains(errs, "JobNotFound") {
		t.Fatalf("show of an unknown job: %d %s", code, errs)
	}
}
