package buildcache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/exporter"
	"github.com/kiln-build/kiln/exporter/registry"
)

// manifestFor stores cfg and an OCI manifest listing every layer of cfg
// in the store, and returns the manifest bytes and the config digest.
func manifestFor(ctx context.Context, store *cache.Store, cfg *Config) ([]byte, digest.Digest, error) {
	cb, err := json.Marshal(cfg)
	if err != nil {
		return nil, "", err
	}
	cd, cn, err := store.WriteBlob(ctx, bytesReader(cb), "")
	if err != nil {
		return nil, "", fmt.Errorf("store build cache metadata: %w", err)
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: ConfigMediaType, Digest: hash(cd), Size: cn},
		Layers:        []v1.Descriptor{},
		Annotations:   map[string]string{"org.opencontainers.artifact.type": ArtifactType},
	}
	for _, l := range cfg.Layers {
		size, err := store.StatBlob(ctx, l.Digest)
		if err != nil {
			return nil, "", fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.MediaType(l.MediaType), Digest: hash(l.Digest), Size: size})
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, "", err
	}
	if _, _, err := store.WriteBlob(ctx, bytesReader(mb), ""); err != nil {
		return nil, "", fmt.Errorf("store build cache manifest: %w", err)
	}
	return mb, cd, nil
}

// ExportRegistry pushes cfg and its layers to ref.
func ExportRegistry(ctx context.Context, store *cache.Store, ref string, cfg *Config, opts registry.Options) error {
	mb, cd, err := manifestFor(ctx, store, cfg)
	if err != nil {
		return fmt.Errorf("export build cache to %s: %w", ref, err)
	}
	img := &exporter.Image{ManifestDigest: digest.FromBytes(mb), ID: cd}
	if _, err := registry.Push(ctx, store, img, ref, opts); err != nil {
		return fmt.Errorf("export build cache: %w", err)
	}
	return nil
}

// ImportRegistry fetches the cache export at ref; its layers are fetched
// later, when needed.
func ImportRegistry(ctx context.Context, ref string, opts registry.Options) (*Source, error) {
	a, err := registry.FetchArtifact(ctx, ref, opts)
	if err != nil {
		return nil, fmt.Errorf("import build cache: %w", err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(a.Manifest, &m); err != nil {
		return nil, fmt.Errorf("import build cache %s: manifest: %w", ref, err)
	}
	inline := false
	switch string(m.Config.MediaType) {
	case ConfigMediaType:
	case string(types.OCIConfigJSON), string(types.DockerConfigJSON):
		inline = true
	default:
		return nil, fmt.Errorf("import build cache %s: it is not a kiln build cache (config media type %q)", ref, m.Config.MediaType)
	}
	rc, err := a.Blob(ctx, digest.Digest(m.Config.Digest.String()))
	if err != nil {
		return nil, fmt.Errorf("import build cache %s: %w", ref, err)
	}
	defer rc.Close()
	b, err := readVerified(rc, digest.Digest(m.Config.Digest.String()), 64<<20)
	if err != nil {
		return nil, fmt.Errorf("import build cache %s: %w", ref, err)
	}
	var pushed []cache.Layer
	if inline {
		imageConfig := b
		if b, err = InlineConfig(imageConfig); err != nil {
			return nil, fmt.Errorf("import build cache %s: %w", ref, err)
		}
		if pushed, err = imageLayers(imageConfig, m); err != nil {
			return nil, fmt.Errorf("import build cache %s: %w", ref, err)
		}
	}
	cfg, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("import build cache %s: %w", ref, err)
	}
	src := NewSource("cache "+ref, cfg, a.Blob)
	if inline {
		src.WithBlobs(pushed)
	}
	return src, nil
}

// imageLayers pairs an image manifest's layer blobs with the config's diff
// IDs.
func imageLayers(imageConfig []byte, m v1.Manifest) ([]cache.Layer, error) {
	var ic v1.ConfigFile
	if err := json.Unmarshal(imageConfig, &ic); err != nil {
		return nil, err
	}
	if len(ic.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("the image has %d layers but %d diff IDs", len(m.Layers), len(ic.RootFS.DiffIDs))
	}
	out := make([]cache.Layer, len(m.Layers))
	for i, l := range m.Layers {
		out[i] = cache.Layer{
			DiffID:    digest.Digest(ic.RootFS.DiffIDs[i].String()),
			Digest:    digest.Digest(l.Digest.String()),
			Size:      l.Size,
			MediaType: string(l.MediaType),
		}
	}
	return out, nil
}

// InlineConfig returns the cache metadata an image config carries in its
// InlineLabel.
func InlineConfig(imageConfig []byte) ([]byte, error) {
	var ic v1.ConfigFile
	if err := json.Unmarshal(imageConfig, &ic); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	s, ok := ic.Config.Labels[InlineLabel]
	if !ok {
		return nil, errors.New("the image carries no inline build cache (build it with --cache-to type=inline)")
	}
	return []byte(s), nil
}

// ExportLocal writes cfg and its layers as an OCI layout in dir (created
// when missing; blobs already there are kept).
func ExportLocal(ctx context.Context, store *cache.Store, dir string, cfg *Config) error {
	mb, cd, err := manifestFor(ctx, store, cfg)
	if err != nil {
		return fmt.Errorf("export build cache to %s: %w", dir, err)
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return fmt.Errorf("export build cache: %w", err)
	}
	copyBlob := func(d digest.Digest) error {
		dst := filepath.Join(blobs, d.Encoded())
		if _, err := os.Stat(dst); err == nil {
			return nil
		}
		rc, err := store.OpenBlob(ctx, d)
		if err != nil {
			return err
		}
		defer rc.Close()
		return writeAtomic(dst, rc)
	}
	for _, l := range cfg.Layers {
		if err := copyBlob(l.Digest); err != nil {
			return fmt.Errorf("export build cache: layer %s: %w", l.Digest, err)
		}
	}
	if err := copyBlob(cd); err != nil {
		return fmt.Errorf("export build cache: %w", err)
	}
	md := digest.FromBytes(mb)
	if err := writeAtomic(filepath.Join(blobs, md.Encoded()), bytesReader(mb)); err != nil {
		return fmt.Errorf("export build cache: %w", err)
	}
	idx := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType:   types.OCIManifestSchema1,
			Digest:      hash(md),
			Size:        int64(len(mb)),
			Annotations: map[string]string{"org.opencontainers.image.ref.name": "latest"},
		}},
	}
	ib, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, "oci-layout"), bytesReader([]byte(`{"imageLayoutVersion":"1.0.0"}`))); err != nil {
		return fmt.Errorf("export build cache: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, "index.json"), bytesReader(ib)); err != nil {
		return fmt.Errorf("export build cache: %w", err)
	}
	return nil
}

// ImportLocal reads a cache export from the OCI layout in dir.
func ImportLocal(ctx context.Context, dir string) (*Source, error) {
	fail := func(err error) (*Source, error) {
		return nil, fmt.Errorf("import build cache from %s: %w", dir, err)
	}
	ib, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return fail(err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(ib, &idx); err != nil || len(idx.Manifests) == 0 {
		return fail(errors.New("index.json lists no manifest"))
	}
	blob := func(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
		if err := d.Validate(); err != nil {
			return nil, err
		}
		return os.Open(filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded()))
	}
	md := digest.Digest(idx.Manifests[0].Digest.String())
	mb, err := readBlob(ctx, blob, md)
	if err != nil {
		return fail(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return fail(fmt.Errorf("manifest: %w", err))
	}
	if string(m.Config.MediaType) != ConfigMediaType {
		return fail(fmt.Errorf("it is not a kiln build cache (config media type %q)", m.Config.MediaType))
	}
	cb, err := readBlob(ctx, blob, digest.Digest(m.Config.Digest.String()))
	if err != nil {
		return fail(err)
	}
	cfg, err := Parse(cb)
	if err != nil {
		return fail(err)
	}
	return NewSource("cache "+dir, cfg, blob), nil
}

func readBlob(ctx context.Context, blob BlobFunc, d digest.Digest) ([]byte, error) {
	rc, err := blob(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readVerified(rc, d, 64<<20)
}

// readVerified reads at most limit bytes and checks them against d.
func readVerified(r io.Reader, d digest.Digest, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", d, limit)
	}
	if digest.FromBytes(b) != d {
		return nil, fmt.Errorf("blob %s: %w", d, cache.ErrCorrupt)
	}
	return b, nil
}

func writeAtomic(path string, r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	_, cerr := io.Copy(tmp, r)
	if err := errors.Join(cerr, tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

func hash(d digest.Digest) v1.Hash {
	return v1.Hash{Algorithm: d.Algorithm().String(), Hex: d.Encoded()}
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
