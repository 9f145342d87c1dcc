package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/exporter"
)

// Push uploads the stored image img to the registry as ref ("app:1" goes
// to docker.io/library/app:1, "127.0.0.1:5000/app:1" to that registry) and
// returns the manifest digest the registry stores it under.
//
// The image goes up as it is stored: the same manifest bytes, so the
// digest is the local one. Up to Options.Jobs blobs upload at once; blobs
// the registry already has are skipped, and blobs in another repository of
// the same registry are mounted instead of uploaded when the image was
// pulled from there.
func Push(ctx context.Context, store *cache.Store, img *exporter.Image, ref string, opts Options) (digest.Digest, error) {
	normalized, err := exporter.NormalizeName(ref)
	if err != nil {
		return "", fmt.Errorf("push: %w", err)
	}
	r, err := parseReference(normalized, opts)
	if err != nil {
		return "", fmt.Errorf("push: %w", err)
	}
	reg := registryName(r.Context().Registry)
	shown := exporter.FamiliarName(normalized)
	fail := func(err error) (digest.Digest, error) {
		return "", fmt.Errorf("push %s to %s: %w", shown, reg, err)
	}
	img, err = exporter.Compress(ctx, store, img, opts.compression(), opts.CompressionLevel)
	if err != nil {
		return fail(err)
	}
	si, err := newStoredImage(ctx, store, img)
	if err != nil {
		return fail(err)
	}
	v1img, err := partial.CompressedToImage(si)
	if err != nil {
		return fail(err)
	}
	if from := mountSources(ctx, store, r.Context()); len(from) > 0 {
		v1img = &mountableImage{Image: v1img, from: from}
	}
	pusher, err := remote.NewPusher(opts.remoteOptions()...)
	if err != nil {
		return fail(err)
	}
	if err := pusher.Push(ctx, r, v1img); err != nil {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		return fail(explain(err, reg, "repository "+r.Context().RepositoryStr()))
	}
	return digest.FromBytes(si.manifest), nil
}

// mountSources maps the layers of the images the store has under other
// names in repo's registry to those repositories, so Push can mount them
// there instead of uploading them. Unreadable images are skipped: this is
// only an optimization.
func mountSources(ctx context.Context, store *cache.Store, repo name.Repository) map[v1.Hash]name.Repository {
	all, err := store.Images(ctx)
	if err != nil {
		return nil
	}
	names := slices.Sorted(maps.Keys(all))
	from := map[v1.Hash]name.Repository{}
	for _, n := range names {
		r, err := name.ParseReference(n)
		if err != nil || r.Context().RegistryStr() != repo.RegistryStr() || r.Context().RepositoryStr() == repo.RepositoryStr() {
			continue
		}
		raw, err := store.ReadBlob(ctx, all[n])
		if err != nil {
			continue
		}
		var m v1.Manifest
		if json.Unmarshal(raw, &m) != nil {
			continue
		}
		for _, l := range m.Layers {
			if _, ok := from[l.Digest]; !ok {
				from[l.Digest] = r.Context()
			}
		}
	}
	return from
}

// mountableImage marks the layers of an image that another repository of
// the target registry has, so ggcr mounts them instead of uploading them.
type mountableImage struct {
	v1.Image
	from map[v1.Hash]name.Repository
}

// Layers implements v1.Image.
func (m *mountableImage) Layers() ([]v1.Layer, error) {
	ls, err := m.Image.Layers()
	if err != nil {
		return nil, err
	}
	for i, l := range ls {
		ls[i] = m.mountable(l)
	}
	return ls, nil
}

// LayerByDigest implements v1.Image.
func (m *mountableImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := m.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return m.mountable(l), nil
}

func (m *mountableImage) mountable(l v1.Layer) v1.Layer {
	h, err := l.Digest()
	if err != nil {
		return l
	}
	repo, ok := m.from[h]
	if !ok {
		return l
	}
	return &remote.MountableLayer{Layer: l, Reference: repo.Digest(h.String())}
}

// storedImage is a stored image as ggcr's partial.CompressedImageCore, for
// remote.Push: manifest and config are the stored bytes, layers are read
// from the store's blobs (verified against their digests as they are read).
type storedImage struct {
	// ctx is the ctx of the Push call that made it; the image does not
	// outlive the call.
	ctx       context.Context
	store     *cache.Store
	manifest  []byte
	config    []byte
	mediaType types.MediaType
	// layers are the manifest's layer descriptors, by digest.
	layers map[v1.Hash]v1.Descriptor
}

var _ partial.CompressedImageCore = (*storedImage)(nil)

func newStoredImage(ctx context.Context, store *cache.Store, img *exporter.Image) (*storedImage, error) {
	raw, err := store.ReadBlob(ctx, img.ManifestDigest)
	if err != nil {
		return nil, fmt.Errorf("read image manifest: %w", err)
	}
	cfg, err := store.ReadBlob(ctx, img.ID)
	if err != nil {
		return nil, fmt.Errorf("read image config: %w", err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("image manifest %s is not valid: %w", img.ManifestDigest, err)
	}
	mt := m.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	si := &storedImage{ctx: ctx, store: store, manifest: raw, config: cfg, mediaType: mt, layers: map[v1.Hash]v1.Descriptor{}}
	for i, l := range m.Layers {
		if _, err := store.StatBlob(ctx, digest.Digest(l.Digest.String())); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
		si.layers[l.Digest] = l
	}
	return si, nil
}

// RawManifest implements partial.CompressedImageCore.
func (s *storedImage) RawManifest() ([]byte, error) { return s.manifest, nil }

// RawConfigFile implements partial.CompressedImageCore.
func (s *storedImage) RawConfigFile() ([]byte, error) { return s.config, nil }

// MediaType implements partial.CompressedImageCore.
func (s *storedImage) MediaType() (types.MediaType, error) { return s.mediaType, nil }

// LayerByDigest implements partial.CompressedImageCore.
func (s *storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if desc, ok := s.layers[h]; ok {
		return &storedLayer{ctx: s.ctx, store: s.store, desc: desc}, nil
	}
	if d := digest.FromBytes(s.config); h.String() == d.String() {
		return &storedLayer{ctx: s.ctx, store: s.store, desc: v1.Descriptor{
			Digest: h, Size: int64(len(s.config)), MediaType: types.OCIConfigJSON,
		}, data: s.config}, nil
	}
	return nil, fmt.Errorf("image has no layer %s", h)
}

// storedLayer is a stored blob as a partial.CompressedLayer.
type storedLayer struct {
	ctx   context.Context
	store *cache.Store
	desc  v1.Descriptor
	data  []byte // set for the config blob
}

// Digest implements partial.CompressedLayer.
func (l *storedLayer) Digest() (v1.Hash, error) { return l.desc.Digest, nil }

// Size implements partial.CompressedLayer.
func (l *storedLayer) Size() (int64, error) { return l.desc.Size, nil }

// MediaType implements partial.CompressedLayer.
func (l *storedLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

// Compressed implements partial.CompressedLayer.
func (l *storedLayer) Compressed() (io.ReadCloser, error) {
	if l.data != nil {
		return io.NopCloser(bytes.NewReader(l.data)), nil
	}
	return l.store.OpenBlob(l.ctx, digest.Digest(l.desc.Digest.String()))
}
