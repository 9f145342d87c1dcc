package linux

// NewCopyMode is New with copy mode forced, for tests that run the
// conformance suite without overlayfs.
func NewCopyMode(opts Options) (*Executor, error) {
	opts.forceCopy = true
	return New(opts)
}

// CopyMode reports whether e builds root filesystems by copying.
func (e *Executor) CopyMode() bool { return e.copyMode.Load() }
