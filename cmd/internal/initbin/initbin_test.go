package initbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// build compiles testdata/prog into dir with the given -ldflags.
func build(t *testing.T, dir, name, ldflags string) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command to build a test binary")
	}
	out := filepath.Join(dir, name)
	args := []string{"build", "-o", out}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	if b, err := exec.Command("go", append(args, "./testdata/prog")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func TestMatches(t *testing.T) {
	dir := t.TempDir()
	tokened := build(t, dir, "tokened", "-s -X "+tokenFlag+"abc123 -X main.other=x")
	plain := build(t, dir, "plain", "")
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path, token string
		want              bool
	}{
		{"same token", tokened, "abc123", true},
		{"other token", tokened, "abc12", false},
		{"longer token", tokened, "abc1234", false},
		{"no token asked", tokened, "", false},
		{"built without token", plain, "abc123", false},
		{"not a Go program", script, "abc123", false},
		{"missing", filepath.Join(dir, "missing"), "abc123", false},
	} {
		if got := Matches(c.path, c.token); got != c.want {
			t.Errorf("%s: Matches(%s, %q) = %v, want %v", c.name, filepath.Base(c.path), c.token, got, c.want)
		}
	}
}

func TestFindWithoutToken(t *testing.T) {
	// A test binary has no build token, so it never uses a kiln-init.
	if p := Find(); p != "" {
		t.Errorf("Find() = %q in a binary without a build token", p)
	}
}
