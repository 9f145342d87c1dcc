package app

import (
	"context"

	"github.com/kiln-build/kiln/exporter"
	"github.com/kiln-build/kiln/frontend"
)

// localResolver finds base images in the local store.
type localResolver struct{ a *App }

// ResolveImage implements frontend.ImageResolver.
func (r localResolver) ResolveImage(ctx context.Context, ref string) (*frontend.Image, error) {
	img, err := exporter.Lookup(ctx, r.a.Store, ref)
	if err != nil {
		return nil, err
	}
	name, err := exporter.NormalizeName(ref)
	if err != nil {
		name = ref
	}
	return &frontend.Image{Ref: name, Manifest: img.ManifestDigest, Config: img.Config, Chain: img.Chain}, nil
}
