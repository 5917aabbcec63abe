package diag_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/roost-iot/roost/internal/diag"
)

// FuzzReadRecords feeds arbitrary bytes to the export reader: it must return records or an
// error, never panic or hang.
func FuzzReadRecords(f *testing.F) {
	for _, p := range []string{"testdata/export-records.json", "testdata/export-object-props.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("{\"time\":\"2025-01-01T00:00:00Z\",\"category\":\"Connections\"}\n{\"time\":\"x\"}\n"))
	f.Add([]byte(`[{"TimeGenerated":"2025-01-01 10:00:00","Category":"Routes","properties_s":"{}"}]`))
	f.Add([]byte(`{"records":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		_ = diag.ReadRecords(context.Background(), bytes.NewReader(data), func(w *diag.Wire) bool {
			n++
			return n < 10000
		})
	})
}

// FuzzDecodeWire checks the fast record decoder against encoding/json on any input.
func FuzzDecodeWire(f *testing.F) {
	f.Add([]byte(`{"time":"2025-01-01T00:00:00Z","category":"Connections","properties":"{\"a\":\"b\\u00e9\"}"}`))
	f.Add([]byte(`{"time":"x","durationMs":3}`))
	f.Add([]byte(`{"location":"a\/b","level":"\ud83d\ude00"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast, slow diag.Wire
		errFast := diag.DecodeWireForTest(data, &fast)
		errSlow := json.Unmarshal(data, &slow)
		if (errFast == nil) != (errSlow == nil) {
			t.Fatalf("fast %v, slow %v for %q", errFast, errSlow, data)
		}
		if errFast == nil && fast != slow {
			t.Fatalf("fast %+v\nslow %+v\nfor %q", fast, slow, data)
		}
	})
}
