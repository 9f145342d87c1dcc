//go:build !linux

package layer

import (
	"context"
	"errors"
	"fmt"
	"io"
)

func unpack(ctx context.Context, r io.Reader, dir string, opts UnpackOptions) error {
	return fmt.Errorf("unpack layer: %w", errors.ErrUnsupported)
}

func diff(ctx context.Context, upper string, w io.Writer) (int, error) {
	return 0, fmt.Errorf("diff layer: %w", errors.ErrUnsupported)
}
