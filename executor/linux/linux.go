package linux

import (
	"context"
	"errors"
	"os"

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
	// StateDir holds per-run scratch dirs (mount points, link dirs).
	StateDir string
}

// Executor runs containers with namespaces and overlayfs.
type Executor struct{ opts Options }

// New returns an Executor.
func New(opts Options) (*Executor, error) { return &Executor{opts: opts}, nil }

var _ executor.Executor = (*Executor)(nil)

// Run implements executor.Executor.
func (e *Executor) Run(ctx context.Context, spec executor.Spec) error {
	return errors.New("not implemented")
}

// IsInit reports whether the process was started as a container init.
func IsInit() bool { return len(os.Args) > 1 && os.Args[1] == InitArg }

// RunInit becomes the container init when IsInit; it never returns then.
// handlers are the Funcs a Spec may name.
func RunInit(handlers map[string]Handler) {}
