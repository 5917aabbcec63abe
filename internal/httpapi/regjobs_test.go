package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/httpapi"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/regjobs"
	"github.com/roost-iot/roost/internal/throttle"
)

// jobsHub is one hub with the built-in blob store (its hostName blobHost) and import/export
// jobs, served over TLS.
type jobsHub struct {
	*fixture
	jobs  *regjobs.Service
	owner string
}

func newJobsHub(t *testing.T, blobHost string, client *http.Client, th *throttle.Throttler) *jobsHub {
	t.Helper()
	h := &jobsHub{}
	h.fixture = newHub(t, hubOptions{twins: true, blobHost: blobHost, api: httpapi.Config{Throttle: th},
		wire: func(f *fixture, api *httpapi.Config) {
			jobs, err := regjobs.New(context.Background(), regjobs.Config{Engine: f.eng, Registry: f.reg, Twins: f.twins, Blobs: f.store, NodeID: "n1",
				HTTPClient: client, Lease: 600 * time.Millisecond, Poll: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(jobs.Close)
			h.jobs, api.RegJobs = jobs, jobs
		}})
	h.owner = h.token(t, "iothubowner", time.Hour)
	return h
}

// containerURI asks the hub for a container SAS URI (POST /files/containerSas), as
// `roost files container-sas` does; the URI names the store's hostName.
func (h *jobsHub) containerURI(t *testing.T) string {
	t.Helper()
	a := h.do(t, "POST", "/files/containerSas"+v, h.owner, nil, `{"permissions":"rwc","expiresInSeconds":3600}`)
	var out struct{ ContainerURI string }
	if a.status != 200 || json.Unmarshal(a.body, &out) != nil || !strings.Contains(out.ContainerURI, "sr=c") {
		t.Fatalf("containerSas: %d %s", a.status, a.body)
	}
	return out.ContainerURI
}

// reachable rewrites a container URI to the test server's address, for clients outside the hub.
func (h *jobsHub) reachable(uri string) string {
	_, rest, _ := strings.Cut(strings.TrimPrefix(uri, "https://"), "/")
	return h.srv.URL + "/" + rest
}

// blobURL is the URL of one blob of a container URI.
func blobURL(container, name string) string {
	base, q, _ := strings.Cut(container, "?")
	return base + "/" + name + "?" + q
}

func (h *jobsHub) getBlob(t *testing.T, container, name string) (int, []byte) {
	t.Helper()
	resp, err := h.srv.Client().Get(blobURL(h.reachable(container), name))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (h *jobsHub) putBlob(t *testing.T, container, name, body string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", blobURL(h.reachable(container), name), strings.NewReader(body))
	req.Header.Set("x-ms-blob-type", "BlockBlob")
	req.Header.Set("x-ms-version", "2020-10-02")
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("put blob %s: %d", name, resp.StatusCode)
	}
}

func (h *jobsHub) createJob(t *testing.T, body string) regjobs.Job {
	t.Helper()
	a := h.do(t, "POST", "/jobs/create"+v, h.owner, map[string]string{"Content-Type": "application/json; charset=utf-8"}, body)
	var j regjobs.Job
	if a.status != 200 || json.Unmarshal(a.body, &j) != nil || j.JobID == "" || j.Status != "enqueued" {
		t.Fatalf("create job: %d %s", a.status, a.body)
	}
	return j
}

// wait polls GET /jobs/{id} until the job ends.
func (h *jobsHub) wait(t *testing.T, id string) regjobs.Job {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		a := h.do(t, "GET", "/jobs/"+id+v, h.owner, nil, "")
		var j regjobs.Job
		if a.status != 200 || json.Unmarshal(a.body, &j) != nil {
			t.Fatalf("get job: %d %s", a.status, a.body)
		}
		if j.Terminal() {
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("job %s did not end", id)
	return regjobs.Job{}
}

func lines(b []byte) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestRegistryExportImport exports 50 devices (keys, status, twin tags) from one hub into its
// built-in blob store, reads devices.txt back over the blob endpoint, and imports it into a
// fresh hub that reads the first hub's container with Azure Blob REST over HTTPS: the devices
// come back with the same keys, status and tags, and importErrors.log is empty.
func TestRegistryExportImport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := newJobsHub(t, "a.hub.test", nil, nil)
	for i := range 50 {
		d := registry.Device{DeviceID: fmt.Sprintf("dev-%02d", i)}
		if i == 7 {
			d.Status = "disabled"
		}
		if _, err := a.reg.CreateDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.twins.Update(ctx, "dev-03", "", []byte(`{"tags":{"fleet":"north"},"properties":{"desired":{"rate":5}}}`), "*"); err != nil {
		t.Fatal(err)
	}
	cont := a.containerURI(t)
	if !strings.HasPrefix(cont, "https://a.hub.test/fileupload?") {
		t.Fatalf("container URI %s", cont)
	}
	job := a.createJob(t, `{"type":"export","outputBlobContainerUri":"`+cont+`","excludeKeysInExport":false}`)
	if job.Type != "export" || job.OutputBlobName != "devices.txt" || job.StartTimeUTC == nil {
		t.Fatalf("created %+v", job)
	}
	done := a.wait(t, job.JobID)
	if done.Status != "completed" || done.Progress != 100 || done.EndTimeUTC == nil {
		t.Fatalf("export ended %+v", done)
	}
	status, body := a.getBlob(t, cont, "devices.txt")
	got := lines(body)
	if status != 200 || len(got) != 50 {
		t.Fatalf("devices.txt: %d, %d lines", status, len(got))
	}
	byID := map[string]map[string]any{}
	for _, l := range got {
		byID[l["id"].(string)] = l
	}
	d3, _ := a.reg.GetDevice(ctx, "dev-03")
	l3 := byID["dev-03"]
	auth3, _ := l3["authentication"].(map[string]any)
	sk3, _ := auth3["symmetricKey"].(map[string]any)
	if l3["eTag"] != d3.ETag || sk3["primaryKey"] != d3.Authentication.SymmetricKey.PrimaryKey || l3["status"] != "enabled" ||
		!strings.Contains(string(mustJSON(l3["tags"])), `"fleet":"north"`) || l3["twinETag"] == "" ||
		!strings.Contains(string(mustJSON(l3["properties"])), `"rate":5`) {
		t.Fatalf("dev-03 exported as %s", mustJSON(l3))
	}
	if byID["dev-07"]["status"] != "disabled" {
		t.Fatalf("dev-07 exported as %s", mustJSON(byID["dev-07"]))
	}

	// Without keys.
	job = a.createJob(t, `{"type":"export","outputBlobContainerUri":"`+cont+`","outputBlobName":"nokeys.txt","excludeKeysInExport":true}`)
	if done := a.wait(t, job.JobID); done.Status != "completed" {
		t.Fatalf("export without keys %+v", done)
	}
	_, body = a.getBlob(t, cont, "nokeys.txt")
	if bytes.Contains(body, []byte(d3.Authentication.SymmetricKey.PrimaryKey)) || !bytes.Contains(body, []byte(`"primaryKey":null`)) {
		t.Fatalf("keys exported with excludeKeysInExport: %.300s", body)
	}

	// Import into a fresh hub, reading hub a's container over HTTPS.
	b := newJobsHub(t, "b.hub.test", a.srv.Client(), nil)
	in := a.reachable(cont)
	out := b.containerURI(t)
	job = b.createJob(t, `{"type":"import","inputBlobContainerUri":"`+in+`","outputBlobContainerUri":"`+out+`"}`)
	if job.InputBlobName != "devices.txt" || job.OutputBlobName != "importErrors.log" {
		t.Fatalf("import created %+v", job)
	}
	if done := b.wait(t, job.JobID); done.Status != "completed" {
		t.Fatalf("import ended %+v", done)
	}
	if s, _ := b.reg.Statistics(ctx); s.TotalDeviceCount != 50 || s.DisabledDeviceCount != 1 {
		t.Fatalf("imported %+v", s)
	}
	nd3, err := b.reg.GetDevice(ctx, "dev-03")
	if err != nil || nd3.Authentication.SymmetricKey.PrimaryKey != d3.Authentication.SymmetricKey.PrimaryKey {
		t.Fatalf("dev-03 imported as %+v (%v)", nd3, err)
	}
	tw, err := b.twins.Get(ctx, "dev-03", "")
	if err != nil || !strings.Contains(string(mustJSON(tw)), `"fleet":"north"`) || !strings.Contains(string(mustJSON(tw)), `"rate":5`) {
		t.Fatalf("dev-03's twin imported as %s (%v)", mustJSON(tw), err)
	}
	if status, body := b.getBlob(t, out, "importErrors.log"); status != 200 || len(bytes.TrimSpace(body)) != 0 {
		t.Fatalf("importErrors.log: %d %q", status, body)
	}
	// GET /jobs lists both hubs' jobs, each on its own hub.
	if l := a.do(t, "GET", "/jobs"+v, a.owner, nil, ""); l.status != 200 || bytes.Count(l.body, []byte(`"jobId"`)) != 2 {
		t.Fatalf("list: %d %s", l.status, l.body)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// TestRegistryImportErrors: lines that cannot be applied are logged in importErrors.log, one
// JSON line each with the line number, device and IoT Hub error code; the other lines apply.
func TestRegistryImportErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newJobsHub(t, "hub.test", nil, nil)
	if _, err := h.reg.CreateDevice(ctx, registry.Device{DeviceID: "exists"}); err != nil {
		t.Fatal(err)
	}
	cont := h.containerURI(t)
	h.putBlob(t, cont, "in/devices.txt", strings.Join([]string{
		`{"id":"ok-1","importMode":"create"}`,
		`not json`,
		``,
		`{"id":"exists","importMode":"create"}`,
		`{"id":"bad id/slash","importMode":"create"}`,
		`{"id":"ok-2"}`,
		`{"id":"ok-3","importMode":"Frobnicate"}`,
		`{"id":"exists","importMode":"updateIfMatchETag","eTag":"nope"}`,
		`{"id":"ok-4","importMode":"createOrUpdate","status":"disabled","tags":{"a":1}}`,
	}, "\n"))
	job := h.createJob(t, `{"type":"import","inputBlobContainerUri":"`+cont+`","inputBlobName":"in/devices.txt","outputBlobContainerUri":"`+cont+`","outputBlobName":"in/errors.log"}`)
	if done := h.wait(t, job.JobID); done.Status != "completed" {
		t.Fatalf("import ended %+v", done)
	}
	for _, id := range []string{"ok-1", "ok-2", "ok-4"} {
		if _, err := h.reg.GetDevice(ctx, id); err != nil {
			t.Errorf("%s not imported: %v", id, err)
		}
	}
	if _, err := h.reg.GetDevice(ctx, "ok-3"); err == nil {
		t.Error("a line with an unknown importMode was applied")
	}
	_, body := h.getBlob(t, cont, "in/errors.log")
	got := lines(body)
	want := []struct {
		line float64
		code string
	}{{2, "ArgumentInvalid"}, {4, "DeviceAlreadyExists"}, {5, "ArgumentInvalid"}, {7, "ArgumentInvalid"}, {8, "PreconditionFailed"}}
	if len(got) != len(want) {
		t.Fatalf("errors log:\n%s", body)
	}
	for i, w := range want {
		if got[i]["line"] != w.line || got[i]["errorCode"] != w.code || got[i]["errorStatus"] == "" {
			t.Errorf("error %d: %v, want line %v %s", i, got[i], w.line, w.code)
		}
	}
	// A missing input blob fails the job with a reason.
	job = h.createJob(t, `{"type":"import","inputBlobContainerUri":"`+cont+`","inputBlobName":"nothing.txt","outputBlobContainerUri":"`+cont+`"}`)
	if done := h.wait(t, job.JobID); done.Status != "failed" || !strings.Contains(done.FailureReason, "nothing.txt") {
		t.Fatalf("import of a missing blob: %+v", done)
	}
	// A SAS without the write permission: the export fails, nothing is written.
	a := h.do(t, "POST", "/files/containerSas"+v, h.owner, nil, `{"permissions":"r"}`)
	var ro struct{ ContainerURI string }
	_ = json.Unmarshal(a.body, &ro)
	job = h.createJob(t, `{"type":"export","outputBlobContainerUri":"`+ro.ContainerURI+`","outputBlobName":"ro.txt"}`)
	if done := h.wait(t, job.JobID); done.Status != "failed" || done.FailureReason == "" {
		t.Fatalf("export with a read-only SAS: %+v", done)
	}
	if status, _ := h.getBlob(t, cont, "ro.txt"); status != 404 {
		t.Fatalf("ro.txt: %d", status)
	}
}

// TestRegistryJobCapAndCancel: while an import/export job runs, another is refused with 403003
// JobQuotaExceeded; a cancelled job stops, stays cancelled and frees the slot. The job's output
// container is a Blob endpoint that never answers, so the job runs until cancelled.
func TestRegistryJobCapAndCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stuck := make(chan struct{}, 10)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then the server notices when the client goes away
		// Never block here: httptest's Close waits for every handler to return.
		select {
		case stuck <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	h := newJobsHub(t, "hub.test", nil, nil)
	if _, err := h.reg.CreateDevice(ctx, registry.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	slowURI := slow.URL + "/c?sv=2019-12-12&sr=c&sp=rcw&se=2099-01-01T00:00:00Z&sig=x"
	job := h.createJob(t, `{"type":"export","outputBlobContainerUri":"`+slowURI+`"}`)
	select {
	case <-stuck:
	case <-time.After(20 * time.Second):
		t.Fatal("the job never reached its output container")
	}
	if g := h.do(t, "GET", "/jobs/"+job.JobID+v, h.owner, nil, ""); !bytes.Contains(g.body, []byte(`"status":"running"`)) {
		t.Fatalf("running job: %s", g.body)
	}
	cont := h.containerURI(t)
	second := h.do(t, "POST", "/jobs/create"+v, h.owner, nil, `{"type":"export","outputBlobContainerUri":"`+cont+`"}`)
	if second.status != 403 || second.errorName() != "JobQuotaExceeded" || !errorBodyShape.Match(second.body) {
		t.Fatalf("second job while one runs: %d %s", second.status, second.body)
	}
	c := h.do(t, "DELETE", "/jobs/"+job.JobID+v, h.owner, nil, "")
	if c.status != 200 || !bytes.Contains(c.body, []byte(`"status":"cancelled"`)) {
		t.Fatalf("cancel: %d %s", c.status, c.body)
	}
	// The slot is free at once, and the cancelled job stays cancelled once its node notices.
	next := h.createJob(t, `{"type":"export","outputBlobContainerUri":"`+cont+`"}`)
	if done := h.wait(t, next.JobID); done.Status != "completed" {
		t.Fatalf("job after the cancel: %+v", done)
	}
	time.Sleep(time.Second) // more than the lease: the cancelled job's runner has seen it
	if g := h.do(t, "GET", "/jobs/"+job.JobID+v, h.owner, nil, ""); !bytes.Contains(g.body, []byte(`"status":"cancelled"`)) {
		t.Fatalf("cancelled job later: %s", g.body)
	}
	if h.jobs.Running() != "" {
		t.Fatalf("still running %s", h.jobs.Running())
	}
	// Cancelling a job that ended returns it unchanged.
	if c := h.do(t, "DELETE", "/jobs/"+next.JobID+v, h.owner, nil, ""); c.status != 200 || !bytes.Contains(c.body, []byte(`"status":"completed"`)) {
		t.Fatalf("cancel of a completed job: %d %s", c.status, c.body)
	}
}

// TestRegistryJobRequests: bad requests get IoT Hub's codes and change nothing; unknown ids
// get 404002 JobNotFound; the jobs rate of the tier applies, with a JobsOperations record.
func TestRegistryJobRequests(t *testing.T) {
	t.Parallel()
	clk := &stoppedClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	th, err := throttle.New(throttle.Config{SKU: "S1", Burst: time.Second, Backlog: time.Second, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	h := newJobsHub(t, "hub.test", nil, th)
	start := time.Now().Add(-time.Second)
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/jobs/create", `{"type":"export"}`, 400, "ArgumentNull"},
		{"POST", "/jobs/create", `{"type":"import","outputBlobContainerUri":"https://x/c?sig=1"}`, 400, "ArgumentNull"},
		{"POST", "/jobs/create", `{"type":"export","outputBlobContainerUri":"ftp://x/c"}`, 400, "InvalidStorageEndpoint"},
		{"POST", "/jobs/create", `{"type":"export","outputBlobContainerUri":"https://x/c?sig=1","storageAuthenticationType":"IdentityBased"}`, 400, "ArgumentInvalid"},
		{"POST", "/jobs/create", `{"type":"scheduleUpdateTwin","outputBlobContainerUri":"https://x/c?sig=1"}`, 400, "ArgumentInvalid"},
		{"POST", "/jobs/create", `{"type":"export","outputBlobContainerUri":"https://x/c?sig=1","outputBlobName":"../x"}`, 400, "ArgumentInvalid"},
		{"POST", "/jobs/create", `[1,2`, 400, "IotHubFormatError"},
	} {
		clk.now = clk.now.Add(time.Minute) // keep under the rate
		a := h.do(t, tc.method, tc.path+v, h.owner, nil, tc.body)
		if a.status != tc.status || a.errorName() != tc.code {
			t.Errorf("%s %s %s: %d %s, want %d %s", tc.method, tc.path, tc.body, a.status, a.body, tc.status, tc.code)
		}
	}
	clk.now = clk.now.Add(time.Minute)
	if l := h.do(t, "GET", "/jobs"+v, h.owner, nil, ""); l.status != 200 || string(bytes.TrimSpace(l.body)) != "[]" {
		t.Fatalf("a bad request created a job: %s", l.body)
	}
	for _, id := range []string{"0b0e6a5e-0000-4000-8000-000000000000", "not-a-job", "x%2Fy"} {
		clk.now = clk.now.Add(time.Minute)
		if a := h.do(t, "GET", "/jobs/"+id+v, h.owner, nil, ""); a.status != 404 || a.errorName() != "JobNotFound" {
			t.Errorf("GET unknown job %s: %d %s", id, a.status, a.body)
		}
		clk.now = clk.now.Add(time.Minute)
		if a := h.do(t, "DELETE", "/jobs/"+id+v, h.owner, nil, ""); a.status != 404 || a.errorName() != "JobNotFound" {
			t.Errorf("DELETE unknown job %s: %d %s", id, a.status, a.body)
		}
	}
	// Rights: registryRead may read jobs but not create them.
	reader := h.token(t, "registryRead", time.Hour)
	clk.now = clk.now.Add(time.Minute)
	if a := h.do(t, "POST", "/jobs/create"+v, reader, nil, `{"type":"export","outputBlobContainerUri":"https://x/c?sig=1"}`); a.status != 401 {
		t.Errorf("create with registryRead: %d %s", a.status, a.body)
	}
	// S1 runs jobs operations at 100/min: with a 1 s burst and a 1 s backlog the fourth quick
	// request gets 429001.
	clk.now = clk.now.Add(time.Hour)
	for i := range 3 {
		if a := h.do(t, "GET", "/jobs"+v, h.owner, nil, ""); a.status != 200 {
			t.Fatalf("list %d: %d %s", i, a.status, a.body)
		}
	}
	if a := h.do(t, "GET", "/jobs"+v, h.owner, nil, ""); a.status != 429 || a.errorName() != "ThrottlingException" {
		t.Fatalf("fourth list: %d %s", a.status, a.body)
	}
	h.dw.Close()
	var throttled, notFound bool
	err = diag.Read(context.Background(), h.eng, diag.JobsOperations, start, func(w diag.Wire) bool {
		throttled = throttled || (w.OperationName == diag.OpJobQuery && w.ResultType == "429001")
		notFound = notFound || (w.OperationName == diag.OpJobRead && w.ResultType == "404002")
		return true
	})
	if err != nil || !throttled || !notFound {
		t.Fatalf("JobsOperations records: throttled %v, not found %v (%v)", throttled, notFound, err)
	}
}

// TestRegistryJobsBasicTier: a basic tier has no jobs, import/export included.
func TestRegistryJobsBasicTier(t *testing.T) {
	t.Parallel()
	th, err := throttle.New(throttle.Config{SKU: "B1"})
	if err != nil {
		t.Fatal(err)
	}
	h := newJobsHub(t, "hub.test", nil, th)
	a := h.do(t, "POST", "/jobs/create"+v, h.owner, nil, `{"type":"export","outputBlobContainerUri":"`+h.containerURI(t)+`"}`)
	if a.status != 403 || a.errorName() != "OperationNotAvailableInCurrentTier" {
		t.Fatalf("export on B1: %d %s", a.status, a.body)
	}
}
