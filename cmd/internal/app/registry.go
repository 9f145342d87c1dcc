package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/exporter"
	"github.com/kiln-build/kiln/exporter/registry"
)

// PullPolicy says when a build fetches its base images from their registry.
type PullPolicy string

// The pull policies of kiln build --pull.
const (
	// PullMissing pulls base images the store does not have (the default).
	PullMissing PullPolicy = "missing"
	// PullAlways asks the registry for every base image named by tag, and
	// fails when it cannot.
	PullAlways PullPolicy = "always"
	// PullNever uses the store only.
	PullNever PullPolicy = "never"
)

// ParsePullPolicy reads the value of --pull: "" or "missing", "always",
// "never"; docker's boolean form works too ("true" is always, "false" is
// missing).
func ParsePullPolicy(s string) (PullPolicy, error) {
	switch strings.ToLower(s) {
	case "", "missing", "false":
		return PullMissing, nil
	case "always", "true":
		return PullAlways, nil
	case "never":
		return PullNever, nil
	}
	return "", fmt.Errorf("--pull=%s: want missing, always or never", s)
}

// RegistryOptions says how a build reaches registries for its base images.
type RegistryOptions struct {
	// Pull is when to pull; "" means PullMissing.
	Pull PullPolicy
	// Registry configures the pulls.
	Registry registry.Options
}

// Pull fetches an image from its registry into the store and tags it.
func (a *App) Pull(ctx context.Context, ref string, opts registry.Options) (*exporter.Image, error) {
	return registry.Pull(ctx, a.Store, ref, opts)
}

// Push uploads the local image ref to the registry its name points at and
// returns the manifest digest the registry stores it under.
func (a *App) Push(ctx context.Context, ref string, opts registry.Options) (digest.Digest, error) {
	img, err := exporter.Lookup(ctx, a.Store, ref)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return registry.Push(ctx, a.Store, img, ref, opts)
}

// notPulledError is a base image that is not in the store and could not be
// pulled either. It wraps both errors, so errors.Is finds
// cache.ErrNotFound and the registry's reasons.
type notPulledError struct {
	local, pull error
}

func (e *notPulledError) Error() string   { return e.local.Error() + ", and " + e.pull.Error() }
func (e *notPulledError) Unwrap() []error { return []error{e.local, e.pull} }
