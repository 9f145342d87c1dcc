package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kiln-build/kiln/cmd/internal/initbin"
)

// initExe starts a detached container with the kiln binary bin and returns
// the executable of its init process, as the host sees it.
func initExe(t *testing.T, e *env, bin, name string) string {
	t.Helper()
	e.bin = bin
	e.must("run", "-d", "--name", name, "busybox", "sleep", "1000")
	defer e.must("rm", "-f", name)
	var recs []struct {
		State struct{ Pid int }
	}
	if err := json.Unmarshal([]byte(e.must("inspect", name).stdout), &recs); err != nil || len(recs) != 1 || recs[0].State.Pid == 0 {
		t.Fatalf("inspect %s: %v %+v", name, err, recs)
	}
	exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(recs[0].State.Pid), "exe"))
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// TestInitHelper checks that kiln starts the kiln-init built with it as the
// container init, and itself when the kiln-init beside it is from another
// build or is no Go program at all.
func TestInitHelper(t *testing.T) {
	e := newEnv(t)
	bin := e.bin
	if got, want := initExe(t, e, bin, "same"), filepath.Join(filepath.Dir(bin), initbin.Name); got != want {
		t.Errorf("init of a container: %s, want the kiln-init built with kiln, %s", got, want)
	}
	// A RUN step runs in kiln-init, a COPY step in kiln (its handler).
	ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY f /f\nRUN cat /f > /g\n", "f": "hello\n"})
	e.must("build", "-t", "helped", ctx)
	if out := e.must("run", "--rm", "helped", "cat", "/g").stdout; out != "hello\n" {
		t.Errorf("built with kiln-init: /g = %q", out)
	}

	// kiln beside a kiln-init of another build.
	other := t.TempDir()
	if err := os.Link(bin, filepath.Join(other, "kiln")); err != nil {
		t.Fatal(err)
	}
	if err := goBuild(filepath.Join(other, initbin.Name), "../kiln-init", "another"); err != nil {
		t.Fatal(err)
	}
	if got := initExe(t, e, filepath.Join(other, "kiln"), "stale"); got != filepath.Join(other, "kiln") {
		t.Errorf("init beside a kiln-init of another build: %s, want kiln itself", got)
	}
	// And beside a kiln-init that is not a Go program.
	if err := os.Remove(filepath.Join(other, initbin.Name)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, initbin.Name), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := initExe(t, e, filepath.Join(other, "kiln"), "script"); got != filepath.Join(other, "kiln") {
		t.Errorf("init beside a kiln-init script: %s, want kiln itself", got)
	}
}
