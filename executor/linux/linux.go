package linux

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/kiln-build/kiln/executor"
)

// InitArg is the hidden first argument that makes the binary the container init.
const InitArg = "kiln-container-init"

// Handler is a file operation run inside the container's mount namespace,
// chrooted to the root filesystem (so "/" is the container's root). inputs
// are the Spec's Inputs opened as roots, in order.
type Handler func(ctx context.Context, inputs []*os.Root, payload []byte) error

// Options configures an Executor.
type Options struct {
	// StateDir holds per-run scratch dirs (mount points, link dirs, the
	// generated /etc/hosts). Each run uses its own subdirectory and removes
	// it when the run ends. Default: kiln-executor under os.TempDir().
	StateDir string

	// InitPath is a binary to start as the init of containers that run a
	// process (Spec.Process): one whose main calls RunInit first, built
	// from the same sources as this one (see cmd/kiln-init). Containers
	// that run a function (Spec.Func) always start /proc/self/exe, whose
	// handlers they need. Default: /proc/self/exe for both.
	InitPath string

	// forceCopy starts the Executor in copy mode (see SnapshotterEnv); set
	// by tests.
	forceCopy bool
	// linkMount mounts overlays the way kernels before 6.8 need (see
	// initConfig.LinkMount); set by tests.
	linkMount bool
	// forceCgroupV2 puts containers' cgroups on the v2 hierarchy even on
	// a hybrid host, whose v2 hierarchy lacks the limit controllers; set
	// by tests, to run v2's paths (freezing, device filters) there.
	forceCgroupV2 bool
}

// SnapshotterEnv names the environment variable New reads as a debugging
// aid: "copy" makes every run build its root filesystem by copying instead
// of trying overlayfs first; "" or "auto" detects (the default).
const SnapshotterEnv = "KILN_SNAPSHOTTER"

// Executor runs containers with namespaces and overlayfs, or, where
// overlayfs cannot be mounted, with a copied root filesystem. It is safe for
// concurrent use; each Run is independent.
type Executor struct {
	opts Options
	// copyMode is set once an overlay mount of a root filesystem failed
	// (or copy mode was forced): later runs copy straight away.
	copyMode atomic.Bool
	// warm holds inits started ahead of the next run.
	warm warmPool
	// initID identifies the file at opts.InitPath as New found it, so a
	// binary replaced since (a rebuild during a long build) is not used.
	initID fileID
	// initGone is set once opts.InitPath cannot be used: runs start
	// /proc/self/exe from then on.
	initGone atomic.Bool
	// seccomp holds the assembled seccomp profiles.
	seccomp seccompPrograms
	// forker starts the inits of Start's containers.
	forker forkThread
	// devices is the cgroup the inits of containers without a cgroup of
	// their own (build steps) are cloned into, for its device filter.
	devices deviceCgroup
}

// New returns an Executor. It creates Options.StateDir when missing.
func New(opts Options) (*Executor, error) {
	switch v := os.Getenv(SnapshotterEnv); v {
	case "", "auto":
	case "copy":
		opts.forceCopy = true
	default:
		return nil, fmt.Errorf("%s=%q: want \"copy\" or \"auto\"", SnapshotterEnv, v)
	}
	if opts.InitPath == "" {
		opts.InitPath = selfExe
	}
	if opts.StateDir == "" {
		opts.StateDir = filepath.Join(os.TempDir(), "kiln-executor")
	}
	abs, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return nil, err
	}
	opts.StateDir = abs
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, err
	}
	e := &Executor{opts: opts}
	e.copyMode.Store(opts.forceCopy)
	e.noteInit()
	return e, nil
}

var (
	_ executor.Executor = (*Executor)(nil)
	_ executor.Starter  = (*Executor)(nil)
)

// Run implements executor.Executor. It starts Options.InitPath (or
// /proc/self/exe) as the container init in new mount, PID, UTS and IPC namespaces (plus a network
// namespace for executor.NetworkNone) and blocks until the container exits.
func (e *Executor) Run(ctx context.Context, spec executor.Spec) error {
	return e.run(ctx, spec)
}

// Start implements executor.Starter: it starts the container like Run and
// returns once the process runs (the init exec'd it or, with Spec.Init,
// started it as its child). A setup failure is returned as Run would
// return it. ctx bounds the start only; the caller must Wait, which also
// removes the container's state dir and cgroup.
func (e *Executor) Start(ctx context.Context, spec executor.Spec) (executor.Container, error) {
	return e.startContainer(ctx, spec)
}

// Close kills the inits the Executor started ahead of runs that never
// came and removes the cgroup of build steps. Runs in progress are not
// affected; the Executor stays usable, without starting inits ahead any
// more.
func (e *Executor) Close() error {
	e.warm.close()
	e.devices.close()
	return nil
}

// IsInit reports whether the process was started as a container init.
func IsInit() bool { return len(os.Args) > 1 && os.Args[1] == InitArg }

// RunInit becomes the container init when IsInit; it never returns then.
// Otherwise it returns at once. Call it first thing in main (and in TestMain
// of tests that run containers). handlers are the Funcs a Spec may name.
func RunInit(handlers map[string]Handler) {
	if !IsInit() {
		return
	}
	runInit(handlers)
}
