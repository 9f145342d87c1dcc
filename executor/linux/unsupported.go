//go:build !linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/kiln-build/kiln/executor"
)

func (e *Executor) run(ctx context.Context, spec executor.Spec) error {
	return fmt.Errorf("run container on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func (e *Executor) startContainer(ctx context.Context, spec executor.Spec) (executor.Container, error) {
	return nil, fmt.Errorf("start container on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func runInit(handlers map[string]Handler) {
	fmt.Fprintf(os.Stderr, "kiln: containers are not supported on %s\n", runtime.GOOS)
	os.Exit(1)
}
