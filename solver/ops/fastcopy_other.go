//go:build !linux

package ops

import (
	"context"

	"github.com/kiln-build/kiln/cache"
)

// fastCopy is Linux-only; elsewhere COPY always runs in a container.
func (o *File) fastCopy(context.Context, *cache.Store, *cache.Active) (bool, error) {
	return false, nil
}
