package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/cmd/internal/initbin"
)

// initExe starts a detached container with the kiln binary bin and returns
// the executables of its init process and of its shim, as the host sees
// them.
func initExe(t *testing.T, e *env, bin, name string) (initPath, shimPath string) {
	t.Helper()
	e.bin = bin
	// With --init the init stays, as PID 1 of the container.
	e.must("run", "-d", "--init", "--name", name, "busybox", "sleep", "1000")
	defer e.must("rm", "-f", name)
	var recs []struct {
		State struct{ Pid int }
	}
	if err := json.Unmarshal([]byte(e.must("inspect", name).stdout), &recs); err != nil || len(recs) != 1 || recs[0].State.Pid == 0 {
		t.Fatalf("inspect %s: %v %+v", name, err, recs)
	}
	pid := recs[0].State.Pid
	// The shim is the init's parent: field 4 of /proc/PID/stat, after the
	// command in parentheses.
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatalf("parent of %d in %q: %v", pid, stat, err)
	}
	exe := func(pid int) string {
		p, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	return exe(pid), exe(ppid)
}

// TestInitHelper checks that kiln starts the kiln-init and kiln-shim built
// with it as the container init and shim, and itself when the ones beside
// it are from another build, missing, or no Go program at all.
func TestInitHelper(t *testing.T) {
	e := newEnv(t)
	bin := e.bin
	gotInit, gotShim := initExe(t, e, bin, "same")
	if want := filepath.Join(filepath.Dir(bin), initbin.Name); gotInit != want {
		t.Errorf("init of a container: %s, want the kiln-init built with kiln, %s", gotInit, want)
	}
	if want := filepath.Join(filepath.Dir(bin), initbin.ShimName); gotShim != want {
		t.Errorf("shim of a container: %s, want the kiln-shim built with kiln, %s", gotShim, want)
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
	if err := goBuild(filepath.Join(other, initbin.ShimName), "../kiln-shim", "another"); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(other, "kiln")
	if gotInit, gotShim := initExe(t, e, self, "stale"); gotInit != self || gotShim != self {
		t.Errorf("beside a kiln-init and kiln-shim of another build: init %s, shim %s, want kiln itself", gotInit, gotShim)
	}
	// And beside a kiln-init that is not a Go program.
	if err := os.Remove(filepath.Join(other, initbin.Name)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, initbin.Name), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(other, initbin.ShimName)); err != nil {
		t.Fatal(err)
	}
	if gotInit, gotShim := initExe(t, e, self, "script"); gotInit != self || gotShim != self {
		t.Errorf("beside a kiln-init script and no kiln-shim: init %s, shim %s, want kiln itself", gotInit, gotShim)
	}
}
