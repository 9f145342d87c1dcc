package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules enforces who may import whom (see STYLE.md): the executor
// stays free of kiln's other packages, the store never reaches up into the
// solver, frontend or exporter, and only the frontend imports BuildKit.
func TestImportRules(t *testing.T) {
	const mod = "github.com/kiln-build/kiln/"
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		{"executor", []string{mod + "cache", mod + "solver", mod + "frontend", mod + "exporter", mod + "cmd", "github.com/moby/buildkit"}},
		{"executor/linux", []string{mod + "cache", mod + "solver", mod + "frontend", mod + "exporter", mod + "cmd", "github.com/moby/buildkit"}},
		{"cache", []string{mod + "solver", mod + "executor", mod + "frontend", mod + "exporter", mod + "cmd", "github.com/moby/buildkit"}},
		{"cache/layer", []string{mod + "solver", mod + "executor", mod + "frontend", mod + "exporter", mod + "cmd"}},
		{"solver", []string{mod + "frontend", mod + "exporter", mod + "cmd", mod + "executor/linux", "github.com/moby/buildkit"}},
		{"solver/ops", []string{mod + "frontend", mod + "exporter", mod + "cmd", mod + "executor/linux", "github.com/moby/buildkit"}},
		{"exporter", []string{mod + "solver", mod + "executor", mod + "frontend", mod + "cmd", "github.com/moby/buildkit"}},
		{"frontend", []string{mod + "exporter", mod + "cmd", mod + "executor/linux"}},
	}
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", mod+r.pkg).Output()
			if err != nil {
				t.Fatalf("go list %s: %v", r.pkg, err)
			}
			for _, dep := range strings.Fields(string(out)) {
				for _, f := range r.forbidden {
					if dep == f || strings.HasPrefix(dep, f+"/") {
						t.Errorf("%s imports %s, which it must not", r.pkg, dep)
					}
				}
			}
		})
	}
}
