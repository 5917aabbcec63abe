package twin

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// mergeSeeds are base documents and patches from the merge tests, plus shapes that stress the
// merge: objects replacing leaves and leaves replacing objects, nulls at depth, arrays.
var mergeSeeds = [][2]string{
	{`{}`, `{"a":1}`},
	{`{"a":{"b":1,"c":2}}`, `{"a":{"b":null,"d":{"e":true}}}`},
	{`{"a":1}`, `{"a":{"b":{"c":null}}}`},
	{`{"a":{"b":1}}`, `{"a":"leaf"}`},
	{`{"a":[1,{"x":null}],"b":null}`, `{"a":null,"c":[]}`},
	{`{"fan":{"speed":3,"on":true},"mode":"eco"}`, `{"fan":{"speed":5},"mode":null}`},
	{`{"k":"` + strings.Repeat("x", 100) + `"}`, `{"k\u0001":1,"a.b":2,"$c":3}`},
	{`{"n":4503599627370495}`, `{"n":4503599627370496,"f":1e999}`},
}

func FuzzTwinMerge(f *testing.F) {
	for _, s := range mergeSeeds {
		f.Add(s[0], s[1])
	}
	st := newStamp(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), 7)
	f.Fuzz(func(t *testing.T, baseText, patchText string) {
		base, err := decodeObject([]byte(baseText), "base")
		if err != nil {
			return
		}
		patch, err := decodeObject([]byte(patchText), "patch")
		if err != nil {
			return
		}
		if checkSection(base, "base") != nil {
			return
		}
		// Validation and sizing never panic, whatever the patch holds.
		perr := checkSection(patch, "patch")
		_ = Size(patch)
		if perr != nil {
			return
		}
		dropNulls(base)
		props, meta := cloneMap(base), map[string]any{}
		merge(props, meta, cloneMap(base), st) // metadata for the base
		before := cloneMap(props)
		merge(props, meta, cloneMap(patch), st)

		// The result holds no nulls in objects, and what the patch set is there.
		checkNoNulls(t, props, "")
		checkApplied(t, props, patch, "")
		// The metadata tree has an entry for every key and nothing else.
		checkMeta(t, props, meta, "")
		// diff finds the change again: applying it to the old document gives the new one.
		again := cloneMap(before)
		merge(again, nil, diff(before, props), stamp{})
		if !reflect.DeepEqual(again, props) {
			t.Fatalf("diff/merge round trip:\nbefore %v\nafter  %v\nagain  %v", before, props, again)
		}
		// The result encodes and reads back the same.
		b, err := marshal(props)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		back, err := decodeObject(b, "result")
		if err != nil || !reflect.DeepEqual(back, props) {
			t.Fatalf("round trip of %s: %v", b, err)
		}
	})
}

func checkNoNulls(t *testing.T, m map[string]any, path string) {
	t.Helper()
	for k, v := range m {
		switch x := v.(type) {
		case nil:
			t.Fatalf("null left at %s.%s", path, k)
		case map[string]any:
			checkNoNulls(t, x, path+"."+k)
		}
	}
}

func checkApplied(t *testing.T, props, patch map[string]any, path string) {
	t.Helper()
	for k, pv := range patch {
		got, ok := props[k]
		switch x := pv.(type) {
		case nil:
			if ok {
				t.Fatalf("%s.%s survived a null", path, k)
			}
		case map[string]any:
			gm, isObj := got.(map[string]any)
			if !isObj {
				t.Fatalf("%s.%s is %v, want an object", path, k, got)
			}
			checkApplied(t, gm, x, path+"."+k)
		default:
			if !reflect.DeepEqual(got, pv) {
				t.Fatalf("%s.%s = %v, want %v", path, k, got, pv)
			}
		}
	}
}

func checkMeta(t *testing.T, props, meta map[string]any, path string) {
	t.Helper()
	if _, ok := meta["$lastUpdated"]; !ok {
		t.Fatalf("no $lastUpdated at %q", path)
	}
	for k, v := range props {
		m, ok := meta[k].(map[string]any)
		if !ok {
			t.Fatalf("no metadata for %s.%s", path, k)
		}
		if obj, isObj := v.(map[string]any); isObj {
			checkMeta(t, obj, m, path+"."+k)
		} else if len(m) != 2 {
			t.Fatalf("leaf metadata of %s.%s is %v", path, k, m)
		}
	}
	for k := range meta {
		if strings.HasPrefix(k, "$") {
			continue
		}
		if _, ok := props[k]; !ok {
			t.Fatalf("metadata for %s.%s, which does not exist", path, k)
		}
	}
}

// FuzzTwinNotification feeds arbitrary published values to the function the dispatcher calls
// for every twin change: it must never panic, and what it sends must be a JSON object with the
// version it reports.
func FuzzTwinNotification(f *testing.F) {
	d := fresh("g1")
	d.DesiredVersion = 5
	d.DesiredPatch = json.RawMessage(`{"a":1}`)
	good, _ := marshal(d)
	f.Add(good, int64(4))
	f.Add(good, int64(0))
	f.Add(good, int64(2))
	f.Add([]byte(`{"gen":"g1","dv":3}`), int64(1))
	f.Add([]byte(`{"gen":"g1","dv":3,"dp":[1]}`), int64(2))
	f.Add([]byte(`{"gen":`), int64(0))
	f.Add([]byte(``), int64(0))
	s := &Store{}
	f.Fuzz(func(t *testing.T, change []byte, after int64) {
		v, body, ok := s.DesiredNotification(change, "g1", after)
		if !ok {
			return
		}
		if v <= after {
			t.Fatalf("version %d sent after %d", v, after)
		}
		m, err := decodeObject(body, "notification")
		if err != nil {
			t.Fatalf("body %q is not a JSON object: %v", body, err)
		}
		if got, _ := m["$version"].(json.Number); string(got) != strconv.FormatInt(v, 10) {
			t.Fatalf("body %s carries $version %v, want %d", body, m["$version"], v)
		}
	})
}
