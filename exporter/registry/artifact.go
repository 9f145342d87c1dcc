package registry

import (
	"context"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/exporter"
)

// Artifact is a manifest fetched from a registry whose blobs can be read on
// demand (a build cache export, an image whose layers are wanted lazily).
type Artifact struct {
	// Manifest is the manifest's bytes, checked against its digest.
	Manifest []byte
	// Digest is the manifest digest.
	Digest digest.Digest
	puller *remote.Puller
	repo   name.Repository
	reg    string
}

// FetchArtifact fetches the manifest ref names (no index resolution).
func FetchArtifact(ctx context.Context, ref string, opts Options) (*Artifact, error) {
	normalized, err := exporter.NormalizeName(ref)
	if err != nil {
		return nil, err
	}
	r, err := parseReference(normalized, opts)
	if err != nil {
		return nil, err
	}
	reg := registryName(r.Context().Registry)
	puller, err := remote.NewPuller(opts.remoteOptions()...)
	if err != nil {
		return nil, err
	}
	desc, err := puller.Get(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("fetch %s from %s: %w", exporter.FamiliarName(normalized), reg, explain(err, reg, exporter.FamiliarName(normalized)))
	}
	d := digest.FromBytes(desc.Manifest)
	if desc.Digest.String() != d.String() {
		return nil, fmt.Errorf("fetch %s from %s: the registry sent a manifest that does not match its digest %s", ref, reg, desc.Digest)
	}
	return &Artifact{Manifest: desc.Manifest, Digest: d, puller: puller, repo: r.Context(), reg: reg}, nil
}

// Blob opens blob d of the artifact's repository. The reader fails at EOF
// when the bytes do not match d.
func (a *Artifact) Blob(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	l, err := a.puller.Layer(ctx, a.repo.Digest(d.String()))
	if err != nil {
		return nil, explain(err, a.reg, "blob "+short(d))
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, explain(err, a.reg, "blob "+short(d))
	}
	return rc, nil
}
