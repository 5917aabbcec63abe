package app

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCLITwinShowAndUpdate(t *testing.T) {
	t.Parallel()
	_, dd := startCLIHub(t)
	if _, errs, code := run(t, "device", "create", "tw-1", dd); code != 0 {
		t.Fatalf("create: %s", errs)
	}
	twinOf := func(out string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("twin output %q: %v", out, err)
		}
		return m
	}
	out, errs, code := run(t, "twin", "show", "tw-1", dd)
	if code != 0 {
		t.Fatalf("show: %d %s", code, errs)
	}
	etag := twinOf(out)["etag"].(string)
	out, errs, code = run(t, "twin", "update", "tw-1", "--desired", `{"interval":30,"fan":{"on":true}}`, "--tags", `{"site":"north"}`, "--etag", etag, dd)
	if code != 0 {
		t.Fatalf("update: %d %s", code, errs)
	}
	tw := twinOf(out)
	desired := tw["properties"].(map[string]any)["desired"].(map[string]any)
	if desired["interval"] != 30.0 || desired["$version"] != 2.0 || tw["tags"].(map[string]any)["site"] != "north" {
		t.Fatalf("updated twin: %s", out)
	}
	// The etag is stale now.
	_, errs, code = run(t, "twin", "update", "tw-1", "--desired", `{"interval":60}`, "--etag", etag, dd)
	if code != 1 || !strings.Contains(errs, "412001 PreconditionFailed") {
		t.Fatalf("stale etag: %d %s", code, errs)
	}
	_, errs, code = run(t, "twin", "update", "tw-1", "--desired", `{"a.b":1}`, dd)
	if code != 1 || !strings.Contains(errs, "400004 ArgumentInvalid") {
		t.Fatalf("bad key: %d %s", code, errs)
	}
	_, _, code = run(t, "twin", "update", "tw-1", "--desired", `[1]`, dd)
	if code != 2 {
		t.Fatalf("non-object --desired: exit %d, want 2", code)
	}
	out, _, code = run(t, "twin", "update", "tw-1", "--replace", "--desired", `{"mode":"eco"}`, dd)
	desired = twinOf(out)["properties"].(map[string]any)["desired"].(map[string]any)
	if code != 0 || desired["mode"] != "eco" || desired["interval"] != nil || len(twinOf(out)["tags"].(map[string]any)) != 0 {
		t.Fatalf("replace: %d %s", code, out)
	}
	// Deleting the device deletes its twin; a new device of the same id starts fresh.
	if _, errs, code := run(t, "device", "delete", "tw-1", dd); code != 0 {
		t.Fatalf("delete: %s", errs)
	}
	_, errs, code = run(t, "twin", "show", "tw-1", dd)
	if code != 1 || !strings.Contains(errs, "404001 DeviceNotFound") {
		t.Fatalf("show after delete: %d %s", code, errs)
	}
	if _, errs, code := run(t, "device", "create", "tw-1", dd); code != 0 {
		t.Fatalf("re-create: %s", errs)
	}
	out, _, _ = run(t, "twin", "show", "tw-1", dd)
	if twinOf(out)["version"] != 1.0 {
		t.Fatalf("twin of the new device: %s", out)
	}
}
