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

func (o *File) fastLinkFromStage(context.Context, *cache.Store, *cache.Active, cache.Chain) (bool, error) {
	return false, nil
}
