package linux_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/executor/executortest"
	"github.com/kiln-build/kiln/executor/linux"
)

func TestMain(m *testing.M) {
	// Runs become this test binary re-executed as the container init.
	linux.RunInit(map[string]linux.Handler{
		executortest.CopyHandlerName: executortest.CopyHandler,
		executortest.FailHandlerName: executortest.FailHandler,
	})
	os.Exit(m.Run())
}

func newExecutor(t testing.TB) *linux.Executor {
	t.Helper()
	e, err := linux.New(linux.Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestConformance(t *testing.T) {
	executortest.Suite(t, func(t *testing.T) executor.Executor { return newExecutor(t) })
}

func TestStarterConformance(t *testing.T) {
	executortest.StarterSuite(t, func(t *testing.T) executor.Starter { return newExecutor(t) })
}

// TestStarterCgroupV2 runs the Starter suite with containers' cgroups on
// the v2 hierarchy, also on a hybrid host (where the tests of memory,
// pids and CPU limits then skip: its v2 hierarchy has no such
// controllers).
func TestStarterCgroupV2(t *testing.T) {
	if !linux.HasCgroupV2() {
		t.Skip("no cgroup v2 hierarchy mounted")
	}
	executortest.StarterSuite(t, func(t *testing.T) executor.Starter {
		e, err := linux.NewCgroupV2(linux.Options{StateDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	})
}

// TestStarterCopyMode runs the Starter suite with a copied root filesystem.
func TestStarterCopyMode(t *testing.T) {
	executortest.StarterSuite(t, func(t *testing.T) executor.Starter { return newCopyExecutor(t) })
}

// TestSuiteLinkMount runs the conformance suite with overlays mounted the
// way kernels before 6.8 need: layers named by short links in one option
// string.
func TestSuiteLinkMount(t *testing.T) {
	executortest.Suite(t, func(t *testing.T) executor.Executor {
		e, err := linux.NewLinkMount(linux.Options{StateDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	})
}

// TestSuiteCopyMode runs the conformance suite with the copying fallback
// that replaces overlayfs where it cannot be mounted.
func TestSuiteCopyMode(t *testing.T) {
	executortest.Suite(t, func(t *testing.T) executor.Executor { return newCopyExecutor(t) })
}

func newCopyExecutor(t testing.TB) *linux.Executor {
	t.Helper()
	e, err := linux.NewCopyMode(linux.Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !e.CopyMode() {
		t.Fatal("NewCopyMode returned an executor that does not copy")
	}
	return e
}

func TestSnapshotterEnv(t *testing.T) {
	for _, tt := range []struct {
		val      string
		copyMode bool
		err      bool
	}{{"", false, false}, {"auto", false, false}, {"copy", true, false}, {"overlay2", false, true}} {
		t.Run(tt.val, func(t *testing.T) {
			t.Setenv(linux.SnapshotterEnv, tt.val)
			e, err := linux.New(linux.Options{StateDir: t.TempDir()})
			if (err != nil) != tt.err {
				t.Fatalf("New: error %v, want error %v", err, tt.err)
			}
			if err == nil && e.CopyMode() != tt.copyMode {
				t.Errorf("copy mode %v, want %v", e.CopyMode(), tt.copyMode)
			}
		})
	}
}

func TestStateDirCleanedUp(t *testing.T) {
	executortest.RequireRoot(t)
	state := t.TempDir()
	e, err := linux.New(linux.Options{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	spec := executor.Spec{
		Rootfs:  executortest.NewRootfs(t, executortest.BinLayer(t)),
		Process: &executor.Process{Args: []string{"true"}},
	}
	if err := e.Run(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(state); len(left) != 0 {
		t.Errorf("state dir holds %v after the run", left)
	}
}

func TestSpecErrors(t *testing.T) {
	e := newExecutor(t)
	rootfs := executor.Rootfs{UpperDir: "/u", WorkDir: "/w"}
	for name, spec := range map[string]executor.Spec{
		"empty":       {Rootfs: rootfs},
		"both":        {Rootfs: rootfs, Process: &executor.Process{Args: []string{"true"}}, Func: &executor.Func{Name: "x"}},
		"no args":     {Rootfs: rootfs, Process: &executor.Process{}},
		"func init":   {Rootfs: rootfs, Func: &executor.Func{Name: "x"}, Init: true},
		"func mounts": {Rootfs: rootfs, Func: &executor.Func{Name: "x"}, Mounts: []executor.Mount{{Type: "tmpfs", Target: "/t"}}},
		"mount type":  {Rootfs: rootfs, Process: &executor.Process{Args: []string{"true"}}, Mounts: []executor.Mount{{Type: "nfs", Target: "/t"}}},
		"mount root":  {Rootfs: rootfs, Process: &executor.Process{Args: []string{"true"}}, Mounts: []executor.Mount{{Type: "tmpfs", Target: "/"}}},
		"mount rel":   {Rootfs: rootfs, Process: &executor.Process{Args: []string{"true"}}, Mounts: []executor.Mount{{Type: "bind", Source: "rel", Target: "/t"}}},
		"tmpfs opt":   {Rootfs: rootfs, Process: &executor.Process{Args: []string{"true"}}, Mounts: []executor.Mount{{Type: "tmpfs", Target: "/t", Options: []string{"foo=1"}}}},
		"cap":         {Rootfs: rootfs, Process: &executor.Process{Args: []string{"true"}}, CapAdd: []string{"CAP_NOPE"}},
		"limits":      {Rootfs: rootfs, Process: &executor.Process{Args: []string{"true"}}, Resources: &executor.Resources{Memory: 1 << 20}},
		"cgroup abs":  {Rootfs: rootfs, Process: &executor.Process{Args: []string{"true"}}, CgroupPath: "/kiln/x"},
		"cgroup dots": {Rootfs: rootfs, Process: &executor.Process{Args: []string{"true"}}, CgroupPath: "kiln/../../x"},
		"network":     {Rootfs: rootfs, Process: &executor.Process{Args: []string{"true"}}, Network: "bridge"},
		"no upper":    {Process: &executor.Process{Args: []string{"true"}}},
	} {
		if err := e.Run(t.Context(), spec); err == nil {
			t.Errorf("%s: Run succeeded", name)
		}
	}
}

func TestIsInit(t *testing.T) {
	if linux.IsInit() {
		t.Fatal("IsInit in the test process")
	}
}

// BenchmarkRunTrue measures start-to-exit latency of `true` in a container.
func BenchmarkRunTrue(b *testing.B) {
	executortest.RequireRoot(b)
	e := newExecutor(b)
	bin := executortest.BinLayer(b)
	etc := executortest.EtcLayer(b)
	ce := newCopyExecutor(b)
	for _, bc := range []struct {
		name string
		net  executor.Network
		e    *linux.Executor
	}{{"host", executor.NetworkHost, e}, {"none", executor.NetworkNone, e}, {"copy", executor.NetworkHost, ce}} {
		b.Run(bc.name, func(b *testing.B) {
			rootfs := executortest.NewRootfs(b, bin, etc)
			spec := executor.Spec{Rootfs: rootfs, Network: bc.net, Process: &executor.Process{Args: []string{"true"}}}
			before := childrenCPU(b)
			for b.Loop() {
				if err := bc.e.Run(b.Context(), spec); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(childrenCPU(b)-before)/float64(b.N), "child-cpu-ns/op")
		})
	}
}

// BenchmarkExecTrue is the baseline: fork and exec of the same `true`
// without namespaces or mounts.
func BenchmarkExecTrue(b *testing.B) {
	executortest.RequireRoot(b)
	bin := executortest.BinLayer(b)
	before := childrenCPU(b)
	for b.Loop() {
		p, err := os.StartProcess(filepath.Join(bin, "bin", "true"), []string{"true"}, &os.ProcAttr{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Wait(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(childrenCPU(b)-before)/float64(b.N), "child-cpu-ns/op")
}

// childrenCPU is the user and system CPU time of all reaped children, in ns.
func childrenCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// TestOnceMountsVolatile checks that a build step's root (Rootfs.Once) is
// mounted volatile, so its end does not sync the host filesystem, and a
// container's root is not (it must be mountable again on restart).
func TestOnceMountsVolatile(t *testing.T) {
	executortest.RequireRoot(t)
	e := newExecutor(t)
	bin := executortest.BinLayer(t)
	for _, once := range []bool{true, false} {
		rootfs := executortest.NewRootfs(t, bin)
		rootfs.Once = once
		err := e.Run(t.Context(), executor.Spec{Rootfs: rootfs, Process: &executor.Process{Args: []string{"true"}, Cwd: "/"}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = os.Stat(filepath.Join(rootfs.WorkDir, "work", "incompat", "volatile"))
		if got := err == nil; got != once {
			t.Errorf("Once=%v: volatile marker present = %v (%v)", once, got, err)
		}
	}
}
