package app

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestCLIQuery runs roost query against a hub: every page is printed, as JSON or as a table,
// and a bad query fails with the code and the position.
func TestCLIQuery(t *testing.T) {
	t.Parallel()
	_, dd := startCLIHub(t)
	for i := range 5 {
		if _, errs, code := run(t, "device", "create", fmt.Sprintf("q-%d", i), dd); code != 0 {
			t.Fatalf("create: %s", errs)
		}
	}
	if _, errs, code := run(t, "device", "disable", "q-3", dd); code != 0 {
		t.Fatalf("disable: %s", errs)
	}

	out, errs, code := run(t, "query", "SELECT * FROM devices WHERE status = 'enabled'", "--page-size", "2", "--output", "json", dd)
	var twins []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &twins) != nil {
		t.Fatalf("json: %d %s %s", code, out, errs)
	}
	var ids []string
	for _, tw := range twins {
		ids = append(ids, fmt.Sprint(tw["deviceId"]))
		if _, ok := tw["properties"]; !ok {
			t.Fatalf("not a twin: %v", tw)
		}
	}
	if strings.Join(ids, " ") != "q-0 q-1 q-2 q-4" {
		t.Fatalf("ids %v", ids)
	}

	out, _, code = run(t, "query", "SELECT status, COUNT() AS n FROM devices GROUP BY status", dd)
	if code != 0 || !strings.Contains(out, "n  status") || !strings.Contains(out, "1  disabled") || !strings.Contains(out, "4  enabled") {
		t.Fatalf("table: %d\n%s", code, out)
	}
	out, _, code = run(t, "query", "SELECT * FROM devices WHERE deviceId = 'q-1'", dd)
	if code != 0 || !strings.Contains(out, "deviceId  status") || !strings.Contains(out, "q-1") || !strings.Contains(out, "1 results") {
		t.Fatalf("twin table: %d\n%s", code, out)
	}
	out, _, code = run(t, "query", "SELECT * FROM devices.modules", "--output", "json", dd)
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("empty: %d %q", code, out)
	}

	_, errs, code = run(t, "query", "SELECT * FROM devices WHERE", dd)
	if code != 1 || !strings.Contains(errs, "400004 ArgumentInvalid") || !strings.Contains(errs, "line 1, column 28") {
		t.Fatalf("bad query: %d %s", code, errs)
	}
	if _, _, code = run(t, "query", dd); code != 2 {
		t.Fatalf("no query: exit %d, want 2", code)
	}
}
