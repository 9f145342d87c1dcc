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
