package app

import (
	"context"
	"errors"
	"strings"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/exporter"
	"github.com/kiln-build/kiln/exporter/registry"
	"github.com/kiln-build/kiln/frontend"
)

// localResolver finds base images in the local store and, as its
// RegistryOptions allow, pulls them from their registry.
type localResolver struct {
	a    *App
	opts RegistryOptions
}

// ResolveImage implements frontend.ImageResolver.
//
// With PullMissing (the default) an image the store lacks is pulled; with
// PullAlways an image named by tag is pulled even when the store has it
// (layers already stored are not downloaded again); with PullNever only
// the store is used. When an image is neither stored nor pullable the error
// wraps cache.ErrNotFound and says why the pull failed.
func (r localResolver) ResolveImage(ctx context.Context, ref string) (*frontend.Image, error) {
	img, err := r.resolve(ctx, ref, r.opts)
	if err != nil {
		return nil, err
	}
	name, err := exporter.NormalizeName(ref)
	if err != nil {
		name = ref
	}
	return &frontend.Image{Ref: name, Manifest: img.ManifestDigest, Config: img.Config, Chain: img.Chain}, nil
}

func (r localResolver) resolve(ctx context.Context, ref string, opts RegistryOptions) (*exporter.Image, error) {
	if opts.Pull == "" {
		opts.Pull = PullMissing
	}
	pullable := pullableName(ref)
	if opts.Pull == PullAlways && pullable && !strings.Contains(ref, "@") {
		return registry.Pull(ctx, r.a.Store, ref, opts.Registry)
	}
	img, err := exporter.Lookup(ctx, r.a.Store, ref)
	if err == nil || !errors.Is(err, cache.ErrNotFound) || opts.Pull == PullNever || !pullable {
		return img, err
	}
	img, perr := registry.Pull(ctx, r.a.Store, ref, opts.Registry)
	if perr != nil {
		return nil, &notPulledError{local: err, pull: perr}
	}
	return img, nil
}

// pullableName reports whether ref is an image name a registry could
// have, rather than an image ID.
func pullableName(ref string) bool {
	if strings.HasPrefix(ref, "sha256:") {
		return false
	}
	_, err := exporter.NormalizeName(ref)
	return err == nil
}
