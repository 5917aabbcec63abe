package upload_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/blob/blobtest"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/upload"
)

type fixture struct {
	eng   *engine.Engine
	svc   *upload.Service
	queue *upload.Queue
	store *blob.Local
	dw    *diag.Writer
	clk   *blobtest.Clock
	start time.Time
}

func newFixture(t *testing.T, eng *engine.Engine, clk *blobtest.Clock) *fixture {
	t.Helper()
	ctx := context.Background()
	if eng == nil {
		eng = enginetest.Start(t)
	}
	if clk == nil {
		clk = blobtest.NewClock()
	}
	st, ix := blobtest.Open(t, eng, blob.LocalConfig{NodeID: "n1", Now: clk.Now})
	dw, err := diag.NewWriter(ctx, eng, diag.Config{ResourceID: diag.ResourceID("0", "RG", "HUB")})
	if err != nil {
		t.Fatal(err)
	}
	q, err := upload.OpenQueue(ctx, eng, upload.QueueConfig{Now: clk.Now, LockDuration: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := upload.Open(ctx, upload.Config{Engine: eng, Store: st, Index: ix, Queue: q, Diag: dw, Now: clk.Now, SweepEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dw.Close)
	t.Cleanup(svc.Close)
	return &fixture{eng: eng, svc: svc, queue: q, store: st, dw: dw, clk: clk, start: time.Now().Add(-time.Second)}
}

func code(err error) errcode.Code {
	if err == nil {
		return 0
	}
	return errcode.As(err).Code
}

func (f *fixture) start1(t *testing.T, dev, name string) upload.Started {
	t.Helper()
	st, err := f.svc.Start(context.Background(), upload.Request{DeviceID: dev, BlobName: name})
	if err != nil {
		t.Fatalf("start %s/%s: %v", dev, name, err)
	}
	return st
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

// waitRecord waits for a FileUploadOperations record matching op, device and code.
func (f *fixture) waitRecord(t *testing.T, op, dev, resultType string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var found map[string]any
		_ = diag.Read(context.Background(), f.eng, diag.FileUploadOperations, f.start, func(w diag.Wire) bool {
			var props map[string]any
			_ = json.Unmarshal([]byte(w.Properties), &props)
			if w.OperationName == op && w.Level == "Error" && w.ResultType == resultType && props["deviceId"] == dev {
				found = props
				return false
			}
			return true
		})
		if found != nil {
			return found
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s record for %s with %s", op, dev, resultType)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUploadStartGivesASASForOneBlob(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil)
	st := f.start1(t, "cam.1", "photos/a b.jpg")
	if st.BlobName != "cam.1/photos/a b.jpg" || st.HostName != "hub.test" || st.ContainerName != "fileupload" ||
		!strings.HasPrefix(st.SASToken, "?") || st.CorrelationID == "" {
		t.Fatalf("started: %+v", st)
	}
	q, _ := urlValues(st.SASToken)
	if q.Get("sr") != "b" || q.Get("sp") != "cw" || q.Get("sig") == "" {
		t.Errorf("SAS %s: want a write-only blob SAS", st.SASToken)
	}
	exp, err := time.Parse("2006-01-02T15:04:05Z", q.Get("se"))
	if err != nil || exp.Sub(f.clk.Now()) > time.Hour || exp.Sub(f.clk.Now()) < 59*time.Minute {
		t.Errorf("expiry %s, want an hour from now", q.Get("se"))
	}
	if err := f.store.Authorize(q, st.BlobName, "w", nil); err != nil {
		t.Errorf("the store refuses the SAS it was given: %v", err)
	}
	if err := f.store.Authorize(q, "cam.1/photos/other.jpg", "w", nil); err == nil {
		t.Error("the SAS works for another blob")
	}
	for _, bad := range []struct {
		name string
		code errcode.Code
	}{{"", errcode.ArgumentNull}, {"../x", errcode.ArgumentInvalid}, {"a//b", errcode.ArgumentInvalid}, {"a\\b", errcode.ArgumentInvalid},
		{strings.Repeat("x", 1024), errcode.ArgumentInvalid}, {"x.", errcode.ArgumentInvalid}, {"a\x01", errcode.ArgumentInvalid}} {
		if _, err := f.svc.Start(context.Background(), upload.Request{DeviceID: "cam.1", BlobName: bad.name}); code(err) != bad.code {
			t.Errorf("blob name %q: got %v, want %d", bad.name, err, bad.code)
		}
	}
	if n, _ := f.svc.Active(context.Background(), "cam.1"); n != 1 {
		t.Errorf("bad names took slots: %d active", n)
	}
}

func TestUploadTenActivePerDevice(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil)
	ctx := context.Background()
	var first upload.Started
	for i := 0; i < 10; i++ {
		st := f.start1(t, "d1", "f"+string(rune('a'+i)))
		if i == 0 {
			first = st
		}
	}
	_, err := f.svc.Start(ctx, upload.Request{DeviceID: "d1", BlobName: "eleventh"})
	if code(err) != errcode.DeviceMaximumActiveFileUploadLimitExceeded {
		t.Fatalf("11th upload: %v", err)
	}
	if !strings.Contains(errcode.As(err).Msg, "10 file uploads") {
		t.Errorf("message %q", errcode.As(err).Msg)
	}
	f.start1(t, "d2", "other device") // the limit is per device
	// A completion frees a slot, whether the upload succeeded or not.
	if _, err := f.svc.Complete(ctx, upload.Result{DeviceID: "d1", CorrelationID: first.CorrelationID, IsSuccess: no(), StatusCode: 500}); err != nil {
		t.Fatal(err)
	}
	f.start1(t, "d1", "eleventh")
	if _, err := f.svc.Start(ctx, upload.Request{DeviceID: "d1", BlobName: "twelfth"}); code(err) != errcode.DeviceMaximumActiveFileUploadLimitExceeded {
		t.Fatalf("12th upload: %v", err)
	}
	// The device-reported failure is logged.
	props := f.waitRecord(t, upload.OpComplete, "d1", "400020")
	if props["protocol"] != "Https" || !strings.Contains(props["blobUri"].(string), "/fileupload/d1/fa") {
		t.Errorf("record properties: %v", props)
	}
}

func TestUploadExpiryFreesSlots(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil)
	ctx := context.Background()
	var sts []upload.Started
	for i := 0; i < 10; i++ {
		sts = append(sts, f.start1(t, "d1", "f"+string(rune('a'+i))))
		f.clk.Advance(time.Minute)
	}
	if _, err := f.svc.Start(ctx, upload.Request{DeviceID: "d1", BlobName: "x"}); code(err) != errcode.DeviceMaximumActiveFileUploadLimitExceeded {
		t.Fatalf("11th: %v", err)
	}
	// The first upload's SAS expires an hour after it started: its slot is free again, even
	// before the sweeper has run.
	f.clk.Advance(50*time.Minute + 30*time.Second)
	f.start1(t, "d1", "x")
	if _, err := f.svc.Start(ctx, upload.Request{DeviceID: "d1", BlobName: "y"}); code(err) != errcode.DeviceMaximumActiveFileUploadLimitExceeded {
		t.Fatalf("only one slot had expired: %v", err)
	}
	// The sweeper marks the expired upload and logs it once, however often it runs.
	if n, err := f.svc.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if n, err := f.svc.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("second sweep: %d %v", n, err)
	}
	f.waitRecord(t, upload.OpExpire, "d1", "400016")
	// A notification that comes too late is 400016, not 400015.
	_, err := f.svc.Complete(ctx, upload.Result{DeviceID: "d1", CorrelationID: sts[0].CorrelationID, IsSuccess: yes()})
	if code(err) != errcode.ExpiredFileUploadCorrelationId {
		t.Fatalf("late completion: %v", err)
	}
	f.clk.Advance(time.Hour)
	if n, _ := f.svc.Active(ctx, "d1"); n != 0 {
		t.Fatalf("%d uploads still active after every SAS expired", n)
	}
}

func TestUploadCompletion(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil)
	ctx := context.Background()
	st := f.start1(t, "d1", "data.csv")
	tests := []struct {
		name string
		res  upload.Result
		want errcode.Code
	}{
		{"no correlation id", upload.Result{DeviceID: "d1", IsSuccess: yes()}, errcode.InvalidFileUploadCorrelationId},
		{"unknown", upload.Result{DeviceID: "d1", CorrelationID: "nope", IsSuccess: yes()}, errcode.InvalidFileUploadCorrelationId},
		{"hostile id", upload.Result{DeviceID: "d1", CorrelationID: "a.b.>*", IsSuccess: yes()}, errcode.InvalidFileUploadCorrelationId},
		{"another device's upload", upload.Result{DeviceID: "d2", CorrelationID: st.CorrelationID, IsSuccess: yes()}, errcode.InvalidFileUploadCorrelationId},
		{"no isSuccess", upload.Result{DeviceID: "d1", CorrelationID: st.CorrelationID}, errcode.InvalidFileUploadCompletionStatus},
	}
	for _, tc := range tests {
		if _, err := f.svc.Complete(ctx, tc.res); code(err) != tc.want {
			t.Errorf("%s: got %v, want %d", tc.name, err, tc.want)
		}
	}
	// Success without the blob: accepted, logged, no notification.
	done, err := f.svc.Complete(ctx, upload.Result{DeviceID: "d1", CorrelationID: st.CorrelationID, IsSuccess: yes(), StatusCode: 201})
	if err != nil || done.Notified {
		t.Fatalf("success without a blob: %+v %v", done, err)
	}
	f.waitRecord(t, upload.OpComplete, "d1", "404000")
	if _, err := f.svc.Complete(ctx, upload.Result{DeviceID: "d1", CorrelationID: st.CorrelationID, IsSuccess: yes()}); code(err) != errcode.InvalidFileUploadCorrelationId {
		t.Fatalf("second completion: %v", err)
	}
	// Success with the blob: a notification with IoT Hub's fields.
	st = f.start1(t, "d1", "dir/data.csv")
	if _, err := f.store.PutBlob(ctx, st.BlobName, strings.NewReader("a,b\n1,2\n"), 8, blob.Headers{}, blob.Conditions{}, nil); err != nil {
		t.Fatal(err)
	}
	done, err = f.svc.Complete(ctx, upload.Result{DeviceID: "d1", CorrelationID: st.CorrelationID, IsSuccess: yes(), StatusCode: 201})
	if err != nil || !done.Notified || done.Size != 8 {
		t.Fatalf("completion: %+v %v", done, err)
	}
	r, ok, err := f.queue.Receive(ctx)
	if err != nil || !ok {
		t.Fatalf("receive: %v %v", ok, err)
	}
	n := r.Notification
	if n.DeviceID != "d1" || n.BlobName != "d1/dir/data.csv" || n.BlobSizeInBytes != 8 || n.BlobURI != "https://hub.test/fileupload/d1/dir/data.csv" ||
		n.LastUpdatedTime.IsZero() || n.EnqueuedTimeUtc.IsZero() {
		t.Fatalf("notification: %+v", n)
	}
	var wire map[string]any
	if err := json.Unmarshal(r.Body, &wire); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"deviceId", "blobUri", "blobName", "lastUpdatedTime", "blobSizeInBytes", "enqueuedTimeUtc"} {
		if _, ok := wire[k]; !ok {
			t.Errorf("notification body lacks %s: %s", k, r.Body)
		}
	}
	var names []string
	_ = f.svc.Files(ctx, "d1", func(p blob.Props) bool { names = append(names, p.Name); return true })
	if len(names) != 1 || names[0] != "d1/dir/data.csv" {
		t.Errorf("files of d1: %v", names)
	}
}

// The limit is one count in the engine: devices racing from two nodes on one NATS cluster get
// exactly 10 uploads between them.
func TestUploadLimitAcrossNodes(t *testing.T) {
	t.Parallel()
	ext := enginetest.StartExternal(t)
	a := newFixture(t, ext.Connect(t), nil)
	b := newFixture(t, ext.Connect(t), nil)
	ctx := context.Background()
	var (
		wg      sync.WaitGroup
		ok, lim atomic.Int32
		other   atomic.Value
	)
	for i := 0; i < 30; i++ {
		svc := a.svc
		if i%2 == 1 {
			svc = b.svc
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := svc.Start(ctx, upload.Request{DeviceID: "shared", BlobName: "f" + strconv.Itoa(i)})
			switch code(err) {
			case 0:
				ok.Add(1)
			case errcode.DeviceMaximumActiveFileUploadLimitExceeded:
				lim.Add(1)
			default:
				other.Store(err)
			}
		}()
	}
	wg.Wait()
	if e := other.Load(); e != nil {
		t.Fatal(e)
	}
	if ok.Load() != 10 || lim.Load() != 20 {
		t.Fatalf("%d started, %d refused; want 10 and 20", ok.Load(), lim.Load())
	}
	// An upload started on one node completes on the other.
	st := a.start1(t, "d9", "x")
	if _, err := b.store.PutBlob(ctx, st.BlobName, strings.NewReader("x"), 1, blob.Headers{}, blob.Conditions{}, nil); err != nil {
		t.Fatal(err)
	}
	if done, err := b.svc.Complete(ctx, upload.Result{DeviceID: "d9", CorrelationID: st.CorrelationID, IsSuccess: yes()}); err != nil || !done.Notified {
		t.Fatalf("complete on the other node: %+v %v", done, err)
	}
	if r, ok, err := a.queue.Receive(ctx); err != nil || !ok || r.DeviceID != "d9" {
		t.Fatalf("the notification is not on the first node's queue: %+v %v %v", r, ok, err)
	}
}

func TestFileNotificationQueue(t *testing.T) {
	t.Parallel()
	ext := enginetest.StartExternal(t)
	clk := blobtest.NewClock()
	a := newFixture(t, ext.Connect(t), clk)
	b := newFixture(t, ext.Connect(t), clk)
	ctx := context.Background()
	for _, dev := range []string{"d1", "d2", "d3"} {
		if err := a.queue.Send(ctx, upload.Notification{DeviceID: dev, BlobName: dev + "/f"}); err != nil {
			t.Fatal(err)
		}
	}
	r1, ok, err := a.queue.Receive(ctx)
	if err != nil || !ok || r1.DeviceID != "d1" || r1.DeliveryCount != 1 {
		t.Fatalf("first: %+v %v %v", r1, ok, err)
	}
	// The other node does not get the locked one.
	r2, ok, err := b.queue.Receive(ctx)
	if err != nil || !ok || r2.DeviceID != "d2" {
		t.Fatalf("second (other node): %+v %v %v", r2, ok, err)
	}
	if err := b.queue.Complete(ctx, r1.LockToken); err != nil {
		t.Fatalf("complete node a's lock on node b: %v", err)
	}
	if err := a.queue.Complete(ctx, r1.LockToken); code(err) != errcode.DeviceMessageLockLost {
		t.Fatalf("second complete: %v", err)
	}
	if err := a.queue.Abandon(ctx, r2.LockToken); err != nil {
		t.Fatal(err)
	}
	again, ok, err := a.queue.Receive(ctx)
	if err != nil || !ok || again.DeviceID != "d2" || again.DeliveryCount != 2 || again.LockToken == r2.LockToken {
		t.Fatalf("abandoned notification: %+v %v %v", again, ok, err)
	}
	for _, bad := range []string{"", "not-a-token", "../../x", strings.Repeat("9", 36)} {
		if err := a.queue.Complete(ctx, bad); code(err) != errcode.ArgumentInvalid {
			t.Errorf("token %q: %v", bad, err)
		}
	}
	if err := a.queue.Complete(ctx, "00000000-0000-4000-8000-000000000000"); code(err) != errcode.DeviceMessageLockLost {
		t.Errorf("unknown token: %v", err)
	}
	// A lock that ran out cannot settle.
	r3, ok, _ := a.queue.Receive(ctx)
	if !ok || r3.DeviceID != "d3" {
		t.Fatalf("third: %+v", r3)
	}
	clk.Advance(31 * time.Second)
	if err := a.queue.Complete(ctx, r3.LockToken); code(err) != errcode.DeviceMessageLockLost {
		t.Fatalf("expired lock: %v", err)
	}
	if err := a.queue.Complete(ctx, again.LockToken); code(err) != errcode.DeviceMessageLockLost {
		t.Fatalf("expired lock: %v", err)
	}
}

func urlValues(sas string) (url.Values, error) { return url.ParseQuery(strings.TrimPrefix(sas, "?")) }
