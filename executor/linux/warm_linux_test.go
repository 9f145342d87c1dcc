package linux_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/executor/executortest"
)

// TestWarmInits runs a sequence of processes, as a build's RUN steps do:
// from the second run on an init is started ahead, and every run must
// still get exactly its own output and exit code, also when the spare
// died before it was taken.
func TestWarmInits(t *testing.T) {
	executortest.RequireRoot(t)
	e := newExecutor(t)
	bin := executortest.BinLayer(t)
	run := func(i int) {
		t.Helper()
		var out, errb bytes.Buffer
		spec := executor.Spec{
			Rootfs: executortest.NewRootfs(t, bin),
			Process: &executor.Process{
				Args:   []string{"sh", "-c", fmt.Sprintf("echo out%d; echo err%d >&2; exit %d", i, i, i%3)},
				Cwd:    "/",
				Stdout: &out,
				Stderr: &errb,
			},
		}
		err := e.Run(context.Background(), spec)
		code := 0
		if ee, ok := err.(*executor.ExitError); ok {
			code = ee.Code
		} else if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if code != i%3 || out.String() != fmt.Sprintf("out%d\n", i) || errb.String() != fmt.Sprintf("err%d\n", i) {
			t.Fatalf("run %d: exit %d, stdout %q, stderr %q", i, code, out.String(), errb.String())
		}
	}
	waitWarm := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for e.WarmInits() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no init was started ahead after the second run")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	run(1)
	if n := e.WarmInits(); n != 0 {
		t.Fatalf("%d inits started ahead after a single run, want 0", n)
	}
	run(2)
	for i := 3; i < 7; i++ {
		waitWarm()
		run(i)
	}
	waitWarm()
	e.KillWarmInits()
	run(7) // the dead spare is dropped, a new init started
	waitWarm()
	before := countChildren(t)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if n := e.WarmInits(); n != 0 {
		t.Fatalf("%d inits ready after Close", n)
	}
	if after := countChildren(t); after >= before {
		t.Fatalf("Close left the spare init running: %d children before, %d after", before, after)
	}
	run(8) // still usable
}

// countChildren counts the test process's child processes.
func countChildren(t *testing.T) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if _, err := strconv.Atoi(f); err == nil {
				n++
			}
		}
	}
	return n
}
