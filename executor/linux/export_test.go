package linux

import "time"

// NewCopyMode is New with copy mode forced, for tests that run the
// conformance suite without overlayfs.
func NewCopyMode(opts Options) (*Executor, error) {
	opts.forceCopy = true
	return New(opts)
}

// CopyMode reports whether e builds root filesystems by copying.
func (e *Executor) CopyMode() bool { return e.copyMode.Load() }

// WarmInits is the number of inits started ahead and ready.
func (e *Executor) WarmInits() int {
	e.warm.mu.Lock()
	defer e.warm.mu.Unlock()
	return len(e.warm.ready)
}

// KillWarmInits kills the ready inits but leaves them in the pool, as if
// they had died on their own.
func (e *Executor) KillWarmInits() {
	e.warm.mu.Lock()
	defer e.warm.mu.Unlock()
	for _, ip := range e.warm.ready {
		_ = ip.cmd.Process.Kill()
		for !ip.exited() {
			time.Sleep(time.Millisecond)
		}
	}
}

// NewLinkMount is New with overlays mounted through a link dir and
// mount(2), as on kernels without lowerdir+.
func NewLinkMount(opts Options) (*Executor, error) {
	opts.linkMount = true
	return New(opts)
}

// NewCgroupV2 is New with containers' cgroups on the v2 hierarchy even on
// a hybrid host.
func NewCgroupV2(opts Options) (*Executor, error) {
	opts.forceCgroupV2 = true
	return New(opts)
}

// HasCgroupV2 reports whether a cgroup v2 hierarchy is mounted.
func HasCgroupV2() bool {
	m, err := findCgroupMounts()
	return err == nil && m.v2 != ""
}
