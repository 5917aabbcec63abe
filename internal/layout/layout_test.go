package layout

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/roost-iot/roost"

type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
	Deps       []string
	Name       string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// Edges (adapters and wiring) may import anything; domain packages may not import edges.
var edges = map[string]bool{
	module + "/cmd/roost":        true,
	module + "/internal/app":     true,
	module + "/internal/httpapi": true,
	module + "/internal/mqtt":    true,
	module + "/internal/client":  true,
	module + "/internal/bench":   true,
	module + "/internal/layout":  true,
}

func TestDependenciesPointInward(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, dep := range p.Deps {
			if strings.HasPrefix(dep, "github.com/nats-io/") && !strings.HasPrefix(p.ImportPath, module+"/internal/engine") {
				for _, imp := range p.Imports {
					if strings.HasPrefix(imp, "github.com/nats-io/") {
						t.Errorf("%s imports %s: only internal/engine may import NATS", p.ImportPath, imp)
					}
				}
			}
			if !edges[p.ImportPath] && edges[dep] {
				t.Errorf("domain package %s depends on edge package %s", p.ImportPath, dep)
			}
		}
		if p.ImportPath == module+"/internal/errcode" {
			for _, dep := range p.Deps {
				if strings.HasPrefix(dep, module) {
					t.Errorf("errcode must not depend on other Roost packages, but depends on %s", dep)
				}
			}
		}
	}
}

func TestEveryPackageIsDocumented(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment", p.ImportPath)
		}
	}
}
