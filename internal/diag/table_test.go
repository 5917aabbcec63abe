package diag_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/kql"
)

const guideQuery = `search *
| where ( Type == "AzureDiagnostics" and ResourceType == "IOTHUBS")
| where ( Category == "Connections" and Level == "Error")`

func newWriter(t *testing.T, eng *engine.Engine) *diag.Writer {
	t.Helper()
	w, err := diag.NewWriter(context.Background(), eng, diag.Config{ResourceID: diag.ResourceID("sub-1", "rg", "myhub"), Location: "local"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

func TestDiagTableAnswersTheGuideQuery(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx := context.Background()
	w := newWriter(t, eng)
	base := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
	write := func(at time.Time, cat, op string, err error, dev string) {
		w.Write(ctx, diag.Record{Time: at, Category: cat, OperationName: op, Err: err, DurationMs: -1,
			Properties: map[string]any{"deviceId": dev, "protocol": "Mqtt"}})
	}
	write(base, diag.Connections, diag.OpDeviceConnect, nil, "d1")
	write(base.Add(time.Minute), diag.Connections, diag.OpDeviceConnect, errcode.New(errcode.IotHubUnauthorized, "bad key"), "d2")
	write(base.Add(130*time.Minute), diag.DeviceTelemetry, diag.OpIngress, errcode.New(errcode.ThrottlingException, "slow down"), "d1")
	write(base.Add(150*time.Minute), diag.Connections, diag.OpDeviceDisconnect, errcode.New(errcode.DeviceConnectionClosedRemotely, "gone"), "d1")
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := diag.Query(ctx, eng, guideQuery, kql.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 2 {
		t.Fatalf("guide query: %d rows, want 2", len(res.Rows))
	}
	for i, want := range []struct{ op, code, name string }{
		{"deviceConnect", "401003", "IoTHubUnauthorized"},
		{"deviceDisconnect", "404104", "DeviceConnectionClosedRemotely"},
	} {
		row := res.Rows[i]
		got := func(c string) string { return row[res.ColumnIndex(c)].String() }
		if got("OperationName") != want.op || got("ResultType") != want.code || got("ResultDescription") != want.name ||
			got("Resource") != "MYHUB" || got("ResourceGroup") != "RG" || got("Type") != "AzureDiagnostics" {
			t.Errorf("row %d: %s %s %s on %s", i, got("OperationName"), got("ResultType"), got("ResultDescription"), got("Resource"))
		}
	}
	// A one-hour window uses the time index and still finds the recent error.
	res, err = diag.Query(ctx, eng, `AzureDiagnostics | where TimeGenerated > ago(1h) | project Category, ResultType`, kql.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 2 || res.Rows[0][1].String() != "429001" {
		t.Fatalf("last hour: %v", res.Rows)
	}
	// The Log Analytics timespan narrows every query. (The scan's time index is the engine's
	// stored time, which for records written now is their own time.)
	now := time.Now()
	write(time.Time{}, diag.Connections, diag.OpDeviceConnect, nil, "d3")
	_ = w.Flush(ctx)
	res, err = diag.Query(ctx, eng, `AzureDiagnostics | count`, kql.Options{From: now.Add(-time.Second), To: now.Add(time.Minute)})
	if err != nil || res.Rows[0][0].I != 1 {
		t.Fatalf("timespan: %v %v", res, err)
	}
	res, err = diag.Query(ctx, eng, `AzureDiagnostics | count`, kql.Options{From: base.Add(-time.Second), To: base.Add(90 * time.Second)})
	if err != nil || res.Rows[0][0].I != 0 {
		t.Fatalf("records stored hours after their own time are outside the stored-time window: %v %v", res, err)
	}
	// Explanations.
	res, err = diag.Query(ctx, eng, `AzureDiagnostics | where Level == "Error" | project ResultType`, kql.Options{})
	if err != nil {
		t.Fatal(err)
	}
	diag.AddExplanations(res)
	if res.ColumnIndex("Cause") < 0 || res.Rows[0][res.ColumnIndex("Resolution")].String() == "" {
		t.Fatalf("explanations: %v", res.Columns)
	}
	// Every stored record has its category's shape.
	_ = diag.Read(ctx, eng, "", time.Time{}, func(r diag.Wire) bool {
		if err := diag.Check(r); err != nil {
			t.Errorf("record %+v: %v", r, err)
		}
		return true
	})
}

func TestDiagRecordsAreStoredOnce(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx := context.Background()
	w := newWriter(t, eng)
	for i := range 1500 {
		w.Write(ctx, diag.Record{Category: diag.Connections, OperationName: diag.OpDeviceConnect, DurationMs: -1,
			Properties: map[string]any{"deviceId": "d" + string(rune('a'+i%26))}})
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := diag.Query(ctx, eng, `AzureDiagnostics | count`, kql.Options{})
	if err != nil || res.Rows[0][0].I != 1500 {
		t.Fatalf("count: %v %v", res, err)
	}
	// A batch sent again with the same ids (a retry after a lost acknowledgement) stores
	// nothing new.
	msgs := []engine.OutMsg{{Subject: diag.Subject(diag.Connections, diag.LevelInformation), ID: "retry-1", Data: []byte(`{"time":"2025-01-01T00:00:00Z","category":"Connections","level":"Information","operationName":"deviceConnect","properties":"{}"}`)}}
	for range 3 {
		if err := eng.PublishBatch(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	}
	res, _ = diag.Query(ctx, eng, `AzureDiagnostics | count`, kql.Options{})
	if res.Rows[0][0].I != 1501 {
		t.Fatalf("after a retried batch: %d records, want 1501", res.Rows[0][0].I)
	}
}

func TestInjectedFaultsAreMarked(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx := context.Background()
	w := newWriter(t, eng)
	props := map[string]any{"deviceId": "d1"}
	err := errcode.Wrap(500000, &diag.InjectedFault{Rule: "f1", Description: "InternalServerError"}, "injected")
	w.Write(ctx, diag.Record{Category: diag.Connections, OperationName: diag.OpDeviceConnect, Err: err, DurationMs: -1, Properties: props})
	_ = w.Flush(ctx)
	if _, ok := props[diag.PropFaultInjected]; ok {
		t.Fatal("the caller's properties map must not change")
	}
	res, qerr := diag.Query(ctx, eng, `AzureDiagnostics | extend p = parse_json(properties_s) | project ResultType, ResultDescription, Injected = tostring(p.faultInjected), Rule = tostring(p.faultRule)`, kql.Options{})
	if qerr != nil {
		t.Fatal(qerr)
	}
	got := []string{res.Rows[0][0].String(), res.Rows[0][1].String(), res.Rows[0][2].String(), res.Rows[0][3].String()}
	if strings.Join(got, ",") != "500000,InternalServerError,true,f1" {
		t.Fatalf("injected record: %v", got)
	}
}

func TestExportToHTTPAndFile(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newWriter(t, eng)

	var mu sync.Mutex
	var bodies []string
	fails := 2
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 { // the endpoint fails at first: the export retries
			fails--
			http.Error(rw, "busy", http.StatusServiceUnavailable)
			return
		}
		bodies = append(bodies, string(b))
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "diag.jsonl")
	var wg sync.WaitGroup
	for _, cfg := range []diag.ExportConfig{
		{Dest: srv.URL, BatchSize: 2, FlushInterval: 100 * time.Millisecond},
		{Dest: "file:" + file, Format: diag.FormatLines, Categories: []string{diag.Connections}, FlushInterval: 50 * time.Millisecond},
	} {
		x, err := diag.NewExporter(ctx, eng, cfg)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); x.Run(ctx) }()
	}
	time.Sleep(300 * time.Millisecond) // the exports start from records stored after they do
	for i, cat := range []string{diag.Connections, diag.DeviceTelemetry, diag.Connections} {
		w.Write(ctx, diag.Record{Category: cat, OperationName: "op" + string(rune('0'+i)), DurationMs: -1})
	}
	_ = w.Flush(ctx)
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := 0
		for _, b := range bodies {
			var batch struct{ Records []diag.Wire }
			if err := json.Unmarshal([]byte(b), &batch); err != nil {
				t.Fatalf("batch %q: %v", b, err)
			}
			n += len(batch.Records)
		}
		mu.Unlock()
		data, _ := os.ReadFile(file)
		lines := strings.Count(string(data), "\n")
		if n == 3 && lines == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exported %d records over HTTP (want 3) and %d lines to the file (want 2)", n, lines)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	// The exported file reads back as an export.
	ft, err := diag.OpenFiles(file)
	if err != nil {
		t.Fatal(err)
	}
	res, err := kql.Run(context.Background(), kql.Catalog{ft}, `AzureDiagnostics | summarize count() by Category`, kql.Options{})
	if err != nil || len(res.Rows) != 1 || res.Rows[0][1].I != 2 {
		t.Fatalf("read back: %v %v", res, err)
	}
}

func TestReadRecordsErrorsNameTheLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"bad.json":      "{\"records\":[\n{\"time\":\"2025-01-01T00:00:00Z\"},\n{\"time\": oops}]}",
		"notime.jsonl":  "{\"category\":\"Connections\"}\n",
		"notrecord.log": "\n\n42\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		ft, err := diag.OpenFiles(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = kql.Run(context.Background(), kql.Catalog{ft}, "AzureDiagnostics | count", kql.Options{})
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%s: error %v should name the file and line", name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "props.json"), []byte(`{"records":[{"time":"2025-01-01T00:00:00Z","properties":{"deviceId":"x"}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ft, _ := diag.OpenFiles(filepath.Join(dir, "props.json"))
	res, err := kql.Run(context.Background(), kql.Catalog{ft}, "AzureDiagnostics | project tostring(parse_json(properties_s).deviceId)", kql.Options{})
	if err != nil || res.Rows[0][0].String() != "x" {
		t.Fatalf("properties as an object: %v %v", res, err)
	}
}

func TestSummarizeErrors(t *testing.T) {
	t.Parallel()
	ft, err := diag.OpenFiles("testdata/export-tree", "testdata/export-object-props.json")
	if err != nil {
		t.Fatal(err)
	}
	sums, err := diag.Summarize(context.Background(), kql.Catalog{ft}, kql.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 6 || sums[0].Code != "404104" || sums[0].Count != 2 || sums[0].Devices != 1 ||
		sums[0].FirstSeen != "2025-03-04T11:20:41Z" || sums[0].Cause == "" || sums[0].Resolution == "" {
		t.Fatalf("summary: %+v", sums[0])
	}
	for _, s := range sums {
		if s.Code == "429001" && (s.Name != "ThrottlingException" || s.Resolution == "" || s.SampleDevices[0] != "press-07") {
			t.Errorf("429001 summary: %+v", s)
		}
	}
}

func TestParseExport(t *testing.T) {
	t.Parallel()
	cfg, err := diag.ParseExport("https://collector.example/ingest?k=1;format=lines;categories=connections+DeviceTelemetry")
	if err != nil || cfg.Format != "lines" || len(cfg.Categories) != 2 || cfg.Categories[0] != "Connections" {
		t.Fatalf("%+v %v", cfg, err)
	}
	for _, bad := range []string{"", "stdout;format=xml", "stdout;categories=Nope", "stdout;color=red", "stdout;x"} {
		if _, err := diag.ParseExport(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestCategoriesAreComplete(t *testing.T) {
	t.Parallel()
	want := []string{"Connections", "DeviceTelemetry", "C2DCommands", "DeviceIdentityOperations", "FileUploadOperations",
		"Routes", "D2CTwinOperations", "C2DTwinOperations", "TwinQueries", "JobsOperations", "DirectMethods",
		"DistributedTracing", "Configurations", "DeviceStreams"}
	cats := diag.Categories()
	if len(cats) != len(want) {
		t.Fatalf("%d categories, want %d", len(cats), len(want))
	}
	for i, c := range cats {
		if c.Name != want[i] || len(c.Operations) == 0 || len(c.Properties) == 0 || c.Display == "" {
			t.Errorf("category %d: %+v", i, c)
		}
		documented := false
		for _, op := range c.Operations {
			documented = documented || op.Documented
		}
		if !documented {
			t.Errorf("%s has no documented operation", c.Name)
		}
	}
	// The sample export of every category passes the shape check.
	ft, _ := diag.OpenFiles("testdata/export-records.json")
	_ = ft.Scan(context.Background(), kql.ScanRequest{}, func(kql.Row) bool { return true })
	data, _ := os.ReadFile("testdata/export-records.json")
	var batch struct{ Records []diag.Wire }
	if err := json.Unmarshal(data, &batch); err != nil {
		t.Fatal(err)
	}
	for _, r := range batch.Records {
		if r.Level == "Error" && (r.ResultType == "Event status") {
			continue // the fact sheet copies a doc placeholder there
		}
		if err := diag.Check(r); err != nil {
			t.Errorf("%s/%s: %v", r.Category, r.OperationName, err)
		}
	}
}
