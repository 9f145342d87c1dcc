package linux_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/executor/executortest"
)

// TestDetectCopyMode puts the upper dir on an overlayfs, which overlayfs
// rejects as upper filesystem (as in Docker-in-Docker): the run falls back
// to copying and later runs copy right away.
func TestDetectCopyMode(t *testing.T) {
	executortest.RequireRoot(t)
	dir := t.TempDir()
	for _, d := range []string{"l", "u", "w", "m"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := filepath.Join(dir, "m")
	opts := fmt.Sprintf("lowerdir=%s/l,upperdir=%s/u,workdir=%s/w", dir, dir, dir)
	if err := syscall.Mount("overlay", m, "overlay", 0, opts); err != nil {
		t.Skipf("cannot mount the outer overlay: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(m, syscall.MNT_DETACH) })

	e := newExecutor(t)
	bin, etc := executortest.BinLayer(t), executortest.EtcLayer(t)
	for i := range 2 {
		rootfs := executor.Rootfs{
			LowerDirs: []string{bin, etc},
			UpperDir:  filepath.Join(m, fmt.Sprintf("upper%d", i)),
			WorkDir:   filepath.Join(m, fmt.Sprintf("work%d", i)),
		}
		for _, d := range []string{rootfs.UpperDir, rootfs.WorkDir} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		var out bytes.Buffer
		spec := executor.Spec{Rootfs: rootfs, Process: &executor.Process{
			Args: []string{"sh", "-c", "echo hi > /new; cat /etc/motd"}, Stdout: &out, Stderr: &out,
		}}
		if err := e.Run(t.Context(), spec); err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out.String())
		}
		if !e.CopyMode() {
			t.Fatalf("run %d: the executor did not switch to copy mode", i)
		}
		if out.String() != "welcome\n" {
			t.Errorf("run %d: output %q", i, out.String())
		}
		if got, err := os.ReadFile(filepath.Join(rootfs.UpperDir, "new")); string(got) != "hi\n" {
			t.Errorf("run %d: upper new = %q, %v", i, got, err)
		}
		if left, _ := os.ReadDir(rootfs.WorkDir); len(left) != 0 {
			t.Errorf("run %d: work dir holds %v", i, left)
		}
	}

	// Where overlayfs works, the executor keeps using it.
	e = newExecutor(t)
	spec := executor.Spec{Rootfs: executortest.NewRootfs(t, bin), Process: &executor.Process{Args: []string{"true"}}}
	if err := e.Run(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	if e.CopyMode() {
		t.Error("the executor switched to copy mode although overlayfs works")
	}
}
