package kql_test

import (
	"path/filepath"
	"testing"

	"github.com/roost-iot/roost/internal/kql/kqltest"
)

func TestKQLScripts(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			kqltest.RunFile(t, f, kqltest.Options{})
		})
	}
}
