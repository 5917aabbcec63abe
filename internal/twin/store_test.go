package twin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/twin"
)

// clock is a settable time source for $metadata.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

type fixture struct {
	eng   *engine.Engine
	reg   *registry.Registry
	store *twin.Store
	clock *clock
}

func newFixture(t testing.TB, eng *engine.Engine) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{eng: eng, clock: &clock{t: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}}
	var err error
	f.reg, err = registry.New(ctx, eng, registry.Config{OnDelete: func(dev, mod string) {
		_ = f.store.Delete(context.Background(), dev, mod)
	}})
	if err != nil {
		t.Fatal(err)
	}
	f.store, err = twin.Open(ctx, eng, twin.Config{Registry: f.reg, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) device(t testing.TB, id string) registry.Device {
	t.Helper()
	d, err := f.reg.CreateDevice(context.Background(), registry.Device{DeviceID: id})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// backends runs a behaviour suite against the embedded engine and a standalone nats-server.
func backends(t *testing.T, fn func(t *testing.T, f *fixture)) {
	t.Helper()
	enginetest.Each(t, func(t *testing.T, eng *engine.Engine) {
		fn(t, newFixture(t, eng))
	})
}

// doc returns the twin's JSON decoded into a map.
func doc(t testing.TB, tw *twin.Twin) map[string]any {
	t.Helper()
	b, err := json.Marshal(tw)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("twin JSON %s: %v", b, err)
	}
	return m
}

func jsonMap(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return m
}

func wantCode(t testing.TB, err error, code errcode.Code) {
	t.Helper()
	if !errcode.Is(err, code) {
		t.Fatalf("got error %v, want code %d", err, code)
	}
}

func TestTwinFreshTwinOfNewDevice(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		d := f.device(t, "dev.1")
		tw, err := f.store.Get(ctx, "dev.1", "")
		if err != nil {
			t.Fatal(err)
		}
		got := doc(t, tw)
		want := jsonMap(t, `{
			"deviceId":"dev.1","etag":"AAAAAAAAAAA=","deviceEtag":"`+d.ETag+`","status":"enabled",
			"statusUpdateTime":"`+got["statusUpdateTime"].(string)+`",
			"connectionState":"Disconnected","lastActivityTime":"0001-01-01T00:00:00Z",
			"cloudToDeviceMessageCount":0,"authenticationType":"sas",
			"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"modelId":"",
			"version":1,"tags":{},
			"properties":{
				"desired":{"$metadata":{"$lastUpdated":"0001-01-01T00:00:00Z","$lastUpdatedVersion":1},"$version":1},
				"reported":{"$metadata":{"$lastUpdated":"0001-01-01T00:00:00Z"},"$version":1}},
			"capabilities":{"iotEdge":false}}`)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("fresh twin (-want +got):\n%s", diff)
		}
		_, err = f.store.Get(ctx, "nobody", "")
		wantCode(t, err, errcode.DeviceNotFound)
		_, err = f.store.Get(ctx, "dev.1", "nomod")
		wantCode(t, err, errcode.ModuleNotFound)
		_, err = f.store.Update(ctx, "nobody", "", []byte(`{"tags":{"a":1}}`), "")
		wantCode(t, err, errcode.DeviceNotFound)
	})
}

func TestTwinPatchMergesTagsAndDesiredWithMetadata(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.device(t, "d1")
		t1 := time.Date(2026, 3, 4, 10, 0, 1, 500, time.UTC)
		f.clock.Set(t1)
		tw, err := f.store.Update(ctx, "d1", "", []byte(`{
			"tags":{"location":{"region":"US","plant":"7"},"owner":"ann"},
			"properties":{"desired":{"fan":{"speed":3,"on":true},"mode":"eco"}}}`), "")
		if err != nil {
			t.Fatal(err)
		}
		if tw.Version() != 2 || tw.DesiredVersion() != 2 || tw.ReportedVersion() != 1 {
			t.Fatalf("versions after first patch: %d %d %d, want 2 2 1", tw.Version(), tw.DesiredVersion(), tw.ReportedVersion())
		}
		etag1 := tw.ETag()
		t2 := t1.Add(time.Minute)
		f.clock.Set(t2)
		tw, err = f.store.Update(ctx, "d1", "", []byte(`{
			"tags":{"location":{"plant":null},"owner":null,"new":[1,"two",null]},
			"properties":{"desired":{"fan":{"speed":5},"mode":null}}}`), `"`+etag1+`"`)
		if err != nil {
			t.Fatal(err)
		}
		if tw.ETag() == etag1 {
			t.Fatal("etag did not change")
		}
		got := doc(t, tw)
		if diff := cmp.Diff(jsonMap(t, `{"location":{"region":"US"},"new":[1,"two",null]}`), got["tags"]); diff != "" {
			t.Fatalf("tags (-want +got):\n%s", diff)
		}
		ts1, ts2 := "2026-03-04T10:00:01.0000005Z", "2026-03-04T10:01:01.0000005Z"
		want := jsonMap(t, `{
			"fan":{"speed":5,"on":true},
			"$metadata":{"$lastUpdated":"`+ts2+`","$lastUpdatedVersion":3,
				"fan":{"$lastUpdated":"`+ts2+`","$lastUpdatedVersion":3,
					"speed":{"$lastUpdated":"`+ts2+`","$lastUpdatedVersion":3},
					"on":{"$lastUpdated":"`+ts1+`","$lastUpdatedVersion":2}}},
			"$version":3}`)
		if diff := cmp.Diff(want, got["properties"].(map[string]any)["desired"]); diff != "" {
			t.Fatalf("desired (-want +got):\n%s", diff)
		}
		if got["version"] != 3.0 {
			t.Fatalf("version %v, want 3", got["version"])
		}
		// A stale etag changes nothing.
		_, err = f.store.Update(ctx, "d1", "", []byte(`{"tags":{"x":1}}`), etag1)
		wantCode(t, err, errcode.PreconditionFailed)
		_, err = f.store.Update(ctx, "d1", "", []byte(`{"tags":{"x":1}}`), "garbage")
		wantCode(t, err, errcode.PreconditionFailed)
		again, err := f.store.Get(ctx, "d1", "")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(got, doc(t, again)); diff != "" {
			t.Fatalf("a failed patch changed the twin (-before +after):\n%s", diff)
		}
		// "*" matches any etag.
		if _, err := f.store.Update(ctx, "d1", "", []byte(`{"tags":{"x":1}}`), `"*"`); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTwinReplace(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.device(t, "d1")
		if _, err := f.store.Update(ctx, "d1", "", []byte(`{"tags":{"a":1,"b":2},"properties":{"desired":{"x":{"y":1,"z":2},"w":1}}}`), ""); err != nil {
			t.Fatal(err)
		}
		// A PUT with the twin read back (metadata, version, reported included) changes only what differs.
		tw, err := f.store.Get(ctx, "d1", "")
		if err != nil {
			t.Fatal(err)
		}
		m := doc(t, tw)
		m["tags"] = map[string]any{"b": 3.0}
		m["properties"].(map[string]any)["desired"].(map[string]any)["x"] = map[string]any{"y": 1.0}
		delete(m["properties"].(map[string]any)["desired"].(map[string]any), "w")
		body, _ := json.Marshal(m)
		tw, err = f.store.Replace(ctx, "d1", "", body, tw.ETag())
		if err != nil {
			t.Fatal(err)
		}
		got := doc(t, tw)
		if diff := cmp.Diff(map[string]any{"b": 3.0}, got["tags"]); diff != "" {
			t.Fatalf("tags (-want +got):\n%s", diff)
		}
		des := got["properties"].(map[string]any)["desired"].(map[string]any)
		if diff := cmp.Diff(map[string]any{"y": 1.0}, des["x"]); diff != "" {
			t.Fatalf("desired.x (-want +got):\n%s", diff)
		}
		if _, ok := des["w"]; ok {
			t.Fatal("desired.w survived a replace without it")
		}
		if des["$version"] != 3.0 || got["version"] != 3.0 {
			t.Fatalf("$version %v version %v, want 3 and 3", des["$version"], got["version"])
		}
		// Unchanged leaves keep their metadata version.
		if v := des["$metadata"].(map[string]any)["x"].(map[string]any)["y"].(map[string]any)["$lastUpdatedVersion"]; v != 2.0 {
			t.Fatalf("x.y $lastUpdatedVersion %v, want 2 (unchanged by the replace)", v)
		}
		// A replace that changes nothing writes nothing.
		before := tw.ETag()
		tw, err = f.store.Replace(ctx, "d1", "", body, "")
		if err != nil {
			t.Fatal(err)
		}
		if tw.ETag() != before {
			t.Fatal("a no-op replace changed the etag")
		}
		// An empty replace clears tags and desired.
		tw, err = f.store.Replace(ctx, "d1", "", []byte(`{}`), "")
		if err != nil {
			t.Fatal(err)
		}
		got = doc(t, tw)
		if len(got["tags"].(map[string]any)) != 0 {
			t.Fatalf("tags after an empty replace: %v", got["tags"])
		}
	})
}

func TestTwinReportedFromDevice(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		d := f.device(t, "d1")
		v, err := f.store.UpdateReported(ctx, "d1", "", d.GenerationID, []byte(`{"temp":21.5,"fw":{"version":"1.0","ok":true}}`))
		if err != nil || v != 2 {
			t.Fatalf("UpdateReported = %d, %v; want 2", v, err)
		}
		v, err = f.store.UpdateReported(ctx, "d1", "", d.GenerationID, []byte(`{"fw":{"ok":null},"temp":22}`))
		if err != nil || v != 3 {
			t.Fatalf("UpdateReported = %d, %v; want 3", v, err)
		}
		b, err := f.store.DeviceDocument(ctx, "d1", "", d.GenerationID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(jsonMap(t, `{"desired":{"$version":1},"reported":{"temp":22,"fw":{"version":"1.0"},"$version":3}}`), jsonMap(t, string(b))); diff != "" {
			t.Fatalf("device document (-want +got):\n%s", diff)
		}
		tw, err := f.store.Get(ctx, "d1", "")
		if err != nil {
			t.Fatal(err)
		}
		if tw.Version() != 1 {
			t.Fatalf("reported changes moved the twin version to %d", tw.Version())
		}
		rep := doc(t, tw)["properties"].(map[string]any)["reported"].(map[string]any)
		if _, ok := rep["$metadata"].(map[string]any)["fw"].(map[string]any)["$lastUpdatedVersion"]; ok {
			t.Fatal("reported metadata carries $lastUpdatedVersion")
		}
		// An empty patch changes nothing and answers the current version.
		if v, err := f.store.UpdateReported(ctx, "d1", "", d.GenerationID, []byte(`{}`)); err != nil || v != 3 {
			t.Fatalf("empty patch = %d, %v; want 3", v, err)
		}
	})
}

func TestTwinBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, enginetest.Start(t))
	ctx := context.Background()
	d := f.device(t, "d1")
	if _, err := f.store.Update(ctx, "d1", "", []byte(`{"tags":{"keep":1},"properties":{"desired":{"keep":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	nest := func(levels int) string {
		return strings.Repeat(`{"k":`, levels) + `1` + strings.Repeat(`}`, levels)
	}
	big := func(n int) string { return `{"big":"` + strings.Repeat("x", n) + `"}` }
	manyKeys := func(section string, total int) string {
		var sb strings.Builder
		sb.WriteString("{")
		for i := 0; i*1000 < total; i++ {
			if i > 0 {
				sb.WriteString(",")
			}
			fmt.Fprintf(&sb, `"k%04d":"%s"`, i, strings.Repeat("v", 995))
		}
		sb.WriteString("}")
		return sb.String()
	}
	cases := []struct {
		name string
		body string // reported patch
		code errcode.Code
	}{
		{"malformed JSON", `{"a":`, errcode.IotHubFormatError},
		{"trailing data", `{"a":1} x`, errcode.IotHubFormatError},
		{"not an object", `[1,2]`, errcode.IotHubFormatError},
		{"empty body", ``, errcode.IotHubFormatError},
		{"key with dot", `{"a.b":1}`, errcode.ArgumentInvalid},
		{"key with dollar", `{"$a":1}`, errcode.ArgumentInvalid},
		{"key with space", `{"a b":1}`, errcode.ArgumentInvalid},
		{"key with control", `{"a\u0001":1}`, errcode.ArgumentInvalid},
		{"key with C1 control", `{"a\u0085":1}`, errcode.ArgumentInvalid},
		{"empty key", `{"":1}`, errcode.ArgumentInvalid},
		{"nested bad key", `{"a":{"b":{"c$":1}}}`, errcode.ArgumentInvalid},
		{"bad key in array", `{"a":[{"b.c":1}]}`, errcode.ArgumentInvalid},
		{"key too long", `{"` + strings.Repeat("k", 1025) + `":1}`, errcode.ArgumentInvalid},
		{"string too long", big(4097), errcode.ArgumentInvalid},
		{"integer too big", `{"a":4503599627370496}`, errcode.ArgumentInvalid},
		{"integer too small", `{"a":-4503599627370497}`, errcode.ArgumentInvalid},
		{"huge float", `{"a":1e999}`, errcode.ArgumentInvalid},
		{"too deep", nest(12), errcode.ArgumentInvalid},
		{"section too big", manyKeys("reported", 33<<10), errcode.DeviceModelMaxPropertiesExceeded},
	}
	before, _ := f.store.DeviceDocument(ctx, "d1", "", d.GenerationID)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.store.UpdateReported(ctx, "d1", "", d.GenerationID, []byte(tc.body))
			wantCode(t, err, tc.code)
			// The same content as desired properties or tags fails the same way (apart from the
			// body's own shape, which a service patch wraps).
			if tc.code == errcode.IotHubFormatError {
				return
			}
			_, err = f.store.Update(ctx, "d1", "", []byte(`{"properties":{"desired":`+tc.body+`}}`), "")
			wantCode(t, err, tc.code)
			if tc.code == errcode.DeviceModelMaxPropertiesExceeded {
				return // 33 KB of tags is over their 8 KB too, tested below
			}
			_, err = f.store.Update(ctx, "d1", "", []byte(`{"tags":`+tc.body+`}`), "")
			wantCode(t, err, tc.code)
		})
	}
	after, _ := f.store.DeviceDocument(ctx, "d1", "", d.GenerationID)
	if string(before) != string(after) {
		t.Fatalf("bad input changed the twin:\nbefore %s\nafter  %s", before, after)
	}
	// Limits at the edge: 10 levels of objects are fine, tags allow 8 KB, desired 32 KB.
	if _, err := f.store.UpdateReported(ctx, "d1", "", d.GenerationID, []byte(nest(11))); err != nil {
		t.Fatalf("10 nested objects: %v", err)
	}
	if _, err := f.store.Update(ctx, "d1", "", []byte(`{"tags":`+manyKeys("tags", 8<<10)+`}`), ""); !errcode.Is(err, errcode.DeviceModelMaxPropertiesExceeded) {
		t.Fatalf("9 KB of tags: got %v, want 403100", err)
	}
	if _, err := f.store.Update(ctx, "d1", "", []byte(`{"tags":`+manyKeys("tags", 7<<10)+`}`), ""); err != nil {
		t.Fatalf("8 KB of tags: %v", err)
	}
	if _, err := f.store.Update(ctx, "d1", "", []byte(`{"properties":{"desired":`+manyKeys("desired", 31<<10)+`}}`), ""); err != nil {
		t.Fatalf("32 KB of desired: %v", err)
	}
	// Wrong shapes in a service body.
	for _, body := range []string{`{"tags":[1]}`, `{"tags":"x"}`, `{"properties":[]}`, `{"properties":{"desired":5}}`} {
		_, err := f.store.Update(ctx, "d1", "", []byte(body), "")
		wantCode(t, err, errcode.ArgumentInvalid)
	}
	_, err := f.store.Update(ctx, "d1", "", []byte(`not json`), "")
	wantCode(t, err, errcode.IotHubFormatError)
}

func TestTwinSizeCountsAsIoTHub(t *testing.T) {
	t.Parallel()
	cases := []struct {
		doc  string
		want int
	}{
		{`{}`, 0},
		{`{"ab":"cde"}`, 5},
		{`{"a":1}`, 9},
		{`{"a":1.5}`, 9},
		{`{"a":true}`, 5},
		{`{"a":null}`, 1},
		{`{"a":{"bb":false}}`, 7},
		{`{"a":[1,"xy",true]}`, 1 + 8 + 2 + 4},
		{`{"é":"ü\u0001"}`, 2},
	}
	for _, tc := range cases {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(tc.doc))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		if got := twin.Size(m); got != tc.want {
			t.Errorf("Size(%s) = %d, want %d", tc.doc, got, tc.want)
		}
	}
}

func TestTwinDeletedWithItsIdentity(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.device(t, "d1")
		if _, err := f.reg.CreateModule(ctx, registry.Module{DeviceID: "d1", ModuleID: "m1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.Update(ctx, "d1", "", []byte(`{"tags":{"a":1}}`), ""); err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.Update(ctx, "d1", "m1", []byte(`{"tags":{"b":1}}`), ""); err != nil {
			t.Fatal(err)
		}
		if err := f.reg.DeleteDevice(ctx, "d1", ""); err != nil {
			t.Fatal(err)
		}
		_, err := f.store.Get(ctx, "d1", "")
		wantCode(t, err, errcode.DeviceNotFound)
		f.device(t, "d1")
		if _, err := f.reg.CreateModule(ctx, registry.Module{DeviceID: "d1", ModuleID: "m1"}); err != nil {
			t.Fatal(err)
		}
		for _, mod := range []string{"", "m1"} {
			tw, err := f.store.Get(ctx, "d1", mod)
			if err != nil {
				t.Fatal(err)
			}
			if tags := doc(t, tw)["tags"].(map[string]any); len(tags) != 0 || tw.Version() != 1 {
				t.Fatalf("twin of re-created %q: tags %v version %d, want a fresh twin", mod, tags, tw.Version())
			}
		}
	})
}

func TestTwinStaleDocumentOfEarlierIdentityIsIgnored(t *testing.T) {
	t.Parallel()
	// Without the delete hook (as after a crash between the two deletes) the old document stays
	// in the bucket; the new device with the same id must still see a fresh twin, and a
	// connection of the old device must not write over it.
	ctx := context.Background()
	eng := enginetest.Start(t)
	reg, err := registry.New(ctx, eng, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := twin.Open(ctx, eng, twin.Config{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	old, err := reg.CreateDevice(ctx, registry.Device{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(ctx, "d1", "", []byte(`{"tags":{"old":1}}`), ""); err != nil {
		t.Fatal(err)
	}
	if err := reg.DeleteDevice(ctx, "d1", ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // generation ids are clock based
	d, err := reg.CreateDevice(ctx, registry.Device{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	tw, err := store.Get(ctx, "d1", "")
	if err != nil {
		t.Fatal(err)
	}
	if tw.ETag() != twin.ETag(0) || tw.Version() != 1 {
		t.Fatalf("etag %s version %d, want a fresh twin", tw.ETag(), tw.Version())
	}
	if _, err := store.UpdateReported(ctx, "d1", "", d.GenerationID, []byte(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	_, err = store.UpdateReported(ctx, "d1", "", old.GenerationID, []byte(`{"x":2}`))
	wantCode(t, err, errcode.DeviceNotFound)
	// The fresh etag works as If-Match only while the twin is still unwritten.
	_, err = store.Update(ctx, "d1", "", []byte(`{"tags":{"a":1}}`), twin.ETag(0))
	wantCode(t, err, errcode.PreconditionFailed)
}

func TestTwinConcurrentWritersLoseNothing(t *testing.T) {
	t.Parallel()
	// Two nodes: two engine connections to one standalone nats-server, each with its own store.
	ext := enginetest.StartExternal(t)
	f := newFixture(t, ext.Connect(t))
	ctx := context.Background()
	eng2 := ext.Connect(t)
	reg2, err := registry.New(ctx, eng2, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := twin.Open(ctx, eng2, twin.Config{Registry: reg2})
	if err != nil {
		t.Fatal(err)
	}
	d := f.device(t, "d1")
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for i := range n {
		wg.Add(3)
		go func() {
			defer wg.Done()
			_, err := f.store.Update(ctx, "d1", "", fmt.Appendf(nil, `{"properties":{"desired":{"a%d":%d}}}`, i, i), "")
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_, err := other.Update(ctx, "d1", "", fmt.Appendf(nil, `{"tags":{"t%d":%d}}`, i, i), "")
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_, err := other.UpdateReported(ctx, "d1", "", d.GenerationID, fmt.Appendf(nil, `{"r%d":%d}`, i, i))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	tw, err := f.store.Get(ctx, "d1", "")
	if err != nil {
		t.Fatal(err)
	}
	if tw.DesiredVersion() != 1+n || tw.ReportedVersion() != 1+n || tw.Version() != 1+2*n {
		t.Fatalf("versions %d/%d/%d, want %d/%d/%d", tw.DesiredVersion(), tw.ReportedVersion(), tw.Version(), 1+n, 1+n, 1+2*n)
	}
	m := doc(t, tw)
	props := m["properties"].(map[string]any)
	if len(m["tags"].(map[string]any)) != n || len(props["desired"].(map[string]any)) != n+2 || len(props["reported"].(map[string]any)) != n+2 {
		t.Fatalf("lost updates: %v", m)
	}
}

func TestTwinDesiredNotificationsReachTheIdentitySubject(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		d := f.device(t, "dev.x*")
		mb := f.eng.NewMailbox(64)
		sub, err := mb.Subscribe(engine.DeviceSubject("dev.x*", "", twin.Kind))
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		next := func() []byte {
			t.Helper()
			nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			in, err := mb.Next(nctx)
			if err != nil {
				t.Fatal(err)
			}
			return in.Data
		}
		if _, err := f.store.Update(ctx, "dev.x*", "", []byte(`{"properties":{"desired":{"a":1,"gone":null}}}`), ""); err != nil {
			t.Fatal(err)
		}
		v, body, ok := f.store.DesiredNotification(next(), d.GenerationID, 1)
		if !ok || v != 2 || string(body) != `{"a":1,"gone":null,"$version":2}` {
			t.Fatalf("notification = %d %s %v, want 2 {\"a\":1,\"gone\":null,\"$version\":2}", v, body, ok)
		}
		// A reported change is published too, but is no news for the device.
		if _, err := f.store.UpdateReported(ctx, "dev.x*", "", d.GenerationID, []byte(`{"r":1}`)); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := f.store.DesiredNotification(next(), d.GenerationID, 2); ok {
			t.Fatal("a reported change made a desired notification")
		}
		// Another generation's twin is ignored.
		if _, err := f.store.Update(ctx, "dev.x*", "", []byte(`{"properties":{"desired":{"b":{"c":2}}}}`), ""); err != nil {
			t.Fatal(err)
		}
		change := next()
		if _, _, ok := f.store.DesiredNotification(change, "other-generation", 2); ok {
			t.Fatal("notification for another generation")
		}
		// A gap (version 2 missed) gives the whole desired section.
		v, body, ok = f.store.DesiredNotification(change, d.GenerationID, 1)
		if !ok || v != 3 || string(body) != `{"a":1,"b":{"c":2},"$version":3}` {
			t.Fatalf("gap notification = %d %s %v", v, body, ok)
		}
		// An empty replace tells the device what went away.
		if _, err := f.store.Replace(ctx, "dev.x*", "", []byte(`{"properties":{"desired":{"a":1}}}`), ""); err != nil {
			t.Fatal(err)
		}
		v, body, ok = f.store.DesiredNotification(next(), d.GenerationID, 3)
		if !ok || v != 4 || string(body) != `{"b":null,"$version":4}` {
			t.Fatalf("replace notification = %d %s %v", v, body, ok)
		}
		// Deleting the device publishes an empty value, which is not a notification.
		if err := f.reg.DeleteDevice(ctx, "dev.x*", ""); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := f.store.DesiredNotification(next(), d.GenerationID, 0); ok {
			t.Fatal("a deletion made a notification")
		}
	})
}

func TestTwinScan(t *testing.T) {
	t.Parallel()
	f := newFixture(t, enginetest.Start(t))
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		f.device(t, id)
	}
	if _, err := f.reg.CreateModule(ctx, registry.Module{DeviceID: "a", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Update(ctx, "b", "", []byte(`{"tags":{"line":"A"}}`), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Update(ctx, "a", "m", []byte(`{"properties":{"desired":{"x":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]any{}
	if err := f.store.Scan(ctx, false, func(d map[string]any) bool { got[d["deviceId"].(string)] = d; return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["b"]["tags"].(map[string]any)["line"] != "A" || got["a"]["etag"] != twin.ETag(0) {
		t.Fatalf("device scan: %v", got)
	}
	tw, err := f.store.Get(ctx, "b", "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(doc(t, tw), got["b"]); diff != "" {
		t.Fatalf("scan and Get differ (-get +scan):\n%s", diff)
	}
	var mods []map[string]any
	if err := f.store.Scan(ctx, true, func(d map[string]any) bool { mods = append(mods, d); return true }); err != nil {
		t.Fatal(err)
	}
	if len(mods) != 1 || mods[0]["moduleId"] != "m" || mods[0]["deviceId"] != "a" {
		t.Fatalf("module scan: %v", mods)
	}
	n := 0
	if err := f.store.Scan(ctx, false, func(map[string]any) bool { n++; return false }); err != nil || n != 1 {
		t.Fatalf("scan stopped after %d (err %v), want 1", n, err)
	}
}
