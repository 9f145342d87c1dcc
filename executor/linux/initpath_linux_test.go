package linux_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/executor/executortest"
	"github.com/kiln-build/kiln/executor/linux"
)

// TestInitDiesBeforeProcess starts containers with an init that exits
// before it runs anything (a broken or foreign InitPath): Run and Start
// must say the init failed, not report its exit status as the process's
// or a container that never started as running.
func TestInitDiesBeforeProcess(t *testing.T) {
	executortest.RequireRoot(t)
	broken := filepath.Join(t.TempDir(), "kiln-init")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho broken init >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e, err := linux.New(linux.Options{StateDir: t.TempDir(), InitPath: broken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	bin := executortest.BinLayer(t)
	spec := func(init bool) (executor.Spec, *bytes.Buffer) {
		var errb bytes.Buffer
		return executor.Spec{
			Rootfs:  executortest.NewRootfs(t, bin),
			Init:    init,
			Process: &executor.Process{Args: []string{"true"}, Cwd: "/", Stdout: &bytes.Buffer{}, Stderr: &errb},
		}, &errb
	}

	s, errb := spec(false)
	err = e.Run(context.Background(), s)
	var ee *executor.ExitError
	if err == nil || errors.As(err, &ee) || !strings.Contains(err.Error(), "before it started the process") {
		t.Errorf("Run with a broken init: %v, want an error about the init", err)
	}
	if !strings.Contains(errb.String(), "broken init") {
		t.Errorf("Run with a broken init: stderr %q, want the init's output", errb.String())
	}

	s, _ = spec(true)
	c, err := e.Start(context.Background(), s)
	if err == nil {
		c.Wait()
		t.Fatal("Start with a broken init succeeded")
	}
	if !strings.Contains(err.Error(), "before it started the process") {
		t.Errorf("Start with a broken init: %v, want an error about the init", err)
	}
}

// TestInitPathFallback starts containers with an InitPath that cannot be
// used: not executable, or replaced after New found it. Runs must use this
// binary instead and succeed.
func TestInitPathFallback(t *testing.T) {
	executortest.RequireRoot(t)
	bin := executortest.BinLayer(t)
	run := func(e *linux.Executor) error {
		var out bytes.Buffer
		err := e.Run(context.Background(), executor.Spec{
			Rootfs:  executortest.NewRootfs(t, bin),
			Process: &executor.Process{Args: []string{"echo", "ok"}, Cwd: "/", Stdout: &out},
		})
		if err == nil && out.String() != "ok\n" {
			err = errors.New("output " + out.String())
		}
		return err
	}
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-exec")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\nexit 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := linux.New(linux.Options{StateDir: t.TempDir(), InitPath: notExec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if err := run(e); err != nil {
		t.Errorf("InitPath not executable: %v", err)
	}

	// A broken init that is replaced after New: the replacement is not
	// what New checked, so it is not started either.
	replaced := filepath.Join(dir, "replaced")
	if err := os.WriteFile(replaced, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e2, err := linux.New(linux.Options{StateDir: t.TempDir(), InitPath: replaced})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e2.Close() })
	if err := os.Remove(replaced); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(replaced, []byte("#!/bin/sh\nexit 4\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run(e2); err != nil {
		t.Errorf("InitPath replaced after New: %v", err)
	}
}
