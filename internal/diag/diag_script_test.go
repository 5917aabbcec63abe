package diag_test

import (
	"testing"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/kql"
	"github.com/roost-iot/roost/internal/kql/kqltest"
)

// TestGuideQueriesOnExports runs every query of the diagnostics fact sheet, verbatim, on the
// sample export in each shape an IoT hub writes: one {"records":[...]} file, and a storage
// account's tree of JSON-lines blobs.
func TestGuideQueriesOnExports(t *testing.T) {
	t.Parallel()
	for _, src := range []string{"testdata/export-records.json", "testdata/export-tree"} {
		t.Run(src, func(t *testing.T) {
			t.Parallel()
			ft, err := diag.OpenFiles(src)
			if err != nil {
				t.Fatal(err)
			}
			for _, script := range []string{"testdata/guide-queries.txt", "testdata/explain.txt"} {
				kqltest.RunFile(t, script, kqltest.Options{Catalog: kql.Catalog{ft}, Explain: diag.Explain})
			}
		})
	}
}
