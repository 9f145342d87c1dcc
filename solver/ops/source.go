package ops

import (
	"context"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/solver"
)

// Image is a base image already in the store. Its key is the manifest
// digest, so a moved tag changes every key above it.
type Image struct {
	// Ref is the name as written, for display.
	Ref string
	// Manifest is the resolved manifest digest.
	Manifest digest.Digest
	// Chain is the image's layer stack.
	Chain cache.Chain
}

// Kind implements solver.Op.
func (o *Image) Kind() string { return "image" }

// CacheKey implements solver.Op.
func (o *Image) CacheKey(context.Context) (digest.Digest, error) {
	return digest.FromString(string(o.Manifest) + " " + string(o.Chain.ChainID())), nil
}

// NoRecord implements solver.Uncacheable.
func (o *Image) NoRecord() bool { return true }

// Run implements solver.Op.
func (o *Image) Run(context.Context, *solver.RunContext, []solver.Result) (solver.Result, error) {
	return solver.Result{Chain: o.Chain}, nil
}

// Scratch is the empty filesystem.
type Scratch struct{}

// Kind implements solver.Op.
func (Scratch) Kind() string { return "scratch" }

// CacheKey implements solver.Op.
func (Scratch) CacheKey(context.Context) (digest.Digest, error) {
	return digest.FromString("scratch"), nil
}

// NoRecord implements solver.Uncacheable.
func (Scratch) NoRecord() bool { return true }

// Run implements solver.Op.
func (Scratch) Run(context.Context, *solver.RunContext, []solver.Result) (solver.Result, error) {
	return solver.Result{}, nil
}
