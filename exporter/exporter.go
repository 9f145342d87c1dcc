package exporter

import (
	"bytes"
	"context"
	_ "crypto/sha256" // registers sha256 for go-digest
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
)

// Image is an image in the store.
type Image struct {
	// ManifestDigest is the digest of the manifest blob.
	ManifestDigest digest.Digest
	// ID is the config digest (what docker calls the image ID).
	ID digest.Digest
	// Manifest is the parsed manifest blob.
	Manifest v1.Manifest
	// Config is the parsed config blob. Fields ggcr does not model (such as
	// docker's container_config) are only in the stored blob.
	Config v1.ConfigFile
	// Chain is the layer stack, bottom first, matching Config.RootFS.DiffIDs.
	Chain cache.Chain
}

// Defaults Write fills into an image config that leaves them empty.
const (
	defaultArchitecture = "amd64"
	defaultOS           = "linux"
)

// Write stores cfg (with RootFS.DiffIDs set from chain) and an OCI manifest
// for chain, and returns the image. It does not tag it.
//
// cfg.History is kept as given: the caller marks steps that made no layer
// with EmptyLayer. Architecture and OS default to amd64 and linux. The
// result depends only on chain and cfg, so writing the same inputs twice
// gives the same ID and manifest digest.
func Write(ctx context.Context, store *cache.Store, chain cache.Chain, cfg v1.ConfigFile) (*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg, raw, err := imageConfig(chain, cfg)
	if err != nil {
		return nil, fmt.Errorf("write image: %w", err)
	}
	id, size, err := store.WriteBlob(ctx, bytes.NewReader(raw), digest.FromBytes(raw))
	if err != nil {
		return nil, fmt.Errorf("write image config: %w", err)
	}
	m, err := ociManifest(ctx, store, chain, id, size)
	if err != nil {
		return nil, fmt.Errorf("write image: %w", err)
	}
	md, err := writeManifest(ctx, store, m)
	if err != nil {
		return nil, err
	}
	stored := make(cache.Chain, len(chain))
	for i, l := range chain {
		l.MediaType = string(m.Layers[i].MediaType)
		stored[i] = l
	}
	return &Image{ManifestDigest: md, ID: id, Manifest: *m, Config: cfg, Chain: stored}, nil
}

// imageConfig returns cfg as Write stores it, and its JSON: RootFS set from
// chain, Architecture and OS defaulted.
func imageConfig(chain cache.Chain, cfg v1.ConfigFile) (v1.ConfigFile, []byte, error) {
	diffIDs := make([]v1.Hash, len(chain))
	for i, l := range chain {
		h, err := toHash(l.DiffID)
		if err != nil {
			return cfg, nil, fmt.Errorf("layer %d has an invalid diff ID: %w", i+1, err)
		}
		diffIDs[i] = h
	}
	cfg.RootFS = v1.RootFS{Type: "layers", DiffIDs: diffIDs}
	if cfg.Architecture == "" {
		cfg.Architecture = defaultArchitecture
	}
	if cfg.OS == "" {
		cfg.OS = defaultOS
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return cfg, nil, fmt.Errorf("encode config: %w", err)
	}
	return cfg, raw, nil
}

// ociManifest builds the OCI image manifest for a stored config blob and a
// chain of stored layers.
func ociManifest(ctx context.Context, store *cache.Store, chain cache.Chain, config digest.Digest, configSize int64) (*v1.Manifest, error) {
	ch, err := toHash(config)
	if err != nil {
		return nil, fmt.Errorf("config digest: %w", err)
	}
	m := &v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config: v1.Descriptor{
			MediaType: types.OCIConfigJSON,
			Size:      configSize,
			Digest:    ch,
		},
		Layers: make([]v1.Descriptor, 0, len(chain)),
	}
	for i, l := range chain {
		lh, err := toHash(l.Digest)
		if err != nil {
			return nil, fmt.Errorf("layer %d has an invalid digest: %w", i+1, err)
		}
		mt, err := layerMediaType(ctx, store, l)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: mt, Size: l.Size, Digest: lh})
	}
	return m, nil
}

// writeManifest stores m as JSON and returns its digest.
func writeManifest(ctx context.Context, store *cache.Store, m *v1.Manifest) (digest.Digest, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode image manifest: %w", err)
	}
	d, _, err := store.WriteBlob(ctx, bytes.NewReader(raw), digest.FromBytes(raw))
	if err != nil {
		return "", fmt.Errorf("write image manifest: %w", err)
	}
	return d, nil
}

// Read loads the image whose manifest is stored under d.
func Read(ctx context.Context, store *cache.Store, d digest.Digest) (*Image, error) {
	img, _, err := readImage(ctx, store, d)
	return img, err
}

// readImage is Read that also returns the raw manifest bytes.
func readImage(ctx context.Context, store *cache.Store, d digest.Digest) (*Image, []byte, error) {
	raw, err := store.ReadBlob(ctx, d)
	if err != nil {
		return nil, nil, fmt.Errorf("read image manifest %s: %w", d, err)
	}
	m, err := parseManifest(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("read image manifest %s: %w", d, err)
	}
	id := digest.Digest(m.Config.Digest.String())
	cfgRaw, err := store.ReadBlob(ctx, id)
	if err != nil {
		return nil, nil, fmt.Errorf("read config of image %s: %w", d, err)
	}
	cfg, err := parseConfig(cfgRaw)
	if err != nil {
		return nil, nil, fmt.Errorf("read config of image %s: %w", d, err)
	}
	chain, err := chainOf(m, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("read image %s: %w", d, err)
	}
	return &Image{ManifestDigest: d, ID: id, Manifest: *m, Config: *cfg, Chain: chain}, raw, nil
}

// parseManifest decodes an OCI or Docker schema 2 image manifest and checks
// the fields Read relies on.
func parseManifest(raw []byte) (*v1.Manifest, error) {
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("not a valid manifest: %w", err)
	}
	switch m.MediaType {
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
	case "":
		// OCI allows leaving mediaType out; tell an index from a manifest.
		if m.Config.Digest.Hex == "" {
			return nil, fmt.Errorf("not an image manifest (an image index or unknown document)")
		}
	case types.OCIImageIndex, types.DockerManifestList:
		return nil, fmt.Errorf("is an image index (%s), not an image manifest", m.MediaType)
	default:
		return nil, fmt.Errorf("unsupported manifest media type %q", m.MediaType)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("unsupported manifest schema version %d", m.SchemaVersion)
	}
	if _, err := fromHash(m.Config.Digest); err != nil {
		return nil, fmt.Errorf("config descriptor: %w", err)
	}
	for i, l := range m.Layers {
		if _, err := fromHash(l.Digest); err != nil {
			return nil, fmt.Errorf("layer %d descriptor: %w", i+1, err)
		}
		if _, err := OCILayerMediaType(l.MediaType); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	return &m, nil
}

// parseConfig decodes an image config and checks its root filesystem.
func parseConfig(raw []byte) (*v1.ConfigFile, error) {
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("not a valid image config: %w", err)
	}
	if cfg.RootFS.Type != "layers" {
		return nil, fmt.Errorf("image config has rootfs type %q, want \"layers\"", cfg.RootFS.Type)
	}
	return cfg, nil
}

// chainOf pairs the layer descriptors of m with the diff IDs of cfg.
func chainOf(m *v1.Manifest, cfg *v1.ConfigFile) (cache.Chain, error) {
	if len(m.Layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("manifest lists %d layers but the config lists %d diff IDs; the image is inconsistent",
			len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	chain := make(cache.Chain, len(m.Layers))
	for i, l := range m.Layers {
		diffID, err := fromHash(cfg.RootFS.DiffIDs[i])
		if err != nil {
			return nil, fmt.Errorf("diff ID %d in config: %w", i+1, err)
		}
		blob, err := fromHash(l.Digest)
		if err != nil {
			return nil, fmt.Errorf("layer %d descriptor: %w", i+1, err)
		}
		mt, err := OCILayerMediaType(l.MediaType)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
		chain[i] = cache.Layer{DiffID: diffID, Digest: blob, Size: l.Size, MediaType: string(mt)}
	}
	return chain, nil
}

// OCILayerMediaType maps a layer media type from a manifest to the OCI type
// the store uses (the cache.MediaTypeLayer* names). Docker schema 2 types have exact OCI equivalents.
// Non-distributable (foreign) layers are refused: kiln cannot fetch them.
func OCILayerMediaType(mt types.MediaType) (types.MediaType, error) {
	switch mt {
	case types.OCILayer, types.DockerLayer:
		return types.OCILayer, nil
	case types.OCIUncompressedLayer, types.DockerUncompressedLayer:
		return types.OCIUncompressedLayer, nil
	case types.OCILayerZStd:
		return types.OCILayerZStd, nil
	case types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer, types.DockerForeignLayer:
		return "", fmt.Errorf("foreign (non-distributable) layers such as %q are not supported", mt)
	default:
		return "", fmt.Errorf("unsupported layer media type %q", mt)
	}
}

// Magic numbers at the start of compressed layer blobs.
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// layerMediaType returns the OCI media type for a stored layer, looking at
// the first bytes of the blob when the chain does not record it.
func layerMediaType(ctx context.Context, store *cache.Store, l cache.Layer) (types.MediaType, error) {
	if l.MediaType != "" {
		return OCILayerMediaType(types.MediaType(l.MediaType))
	}
	rc, err := store.OpenBlob(ctx, l.Digest)
	if err != nil {
		return "", fmt.Errorf("detect compression of layer %s: %w", l.Digest, err)
	}
	defer rc.Close()
	head := make([]byte, len(zstdMagic))
	n, err := io.ReadFull(rc, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", fmt.Errorf("detect compression of layer %s: %w", l.Digest, err)
	}
	return sniffLayer(head[:n]), nil
}

// sniffLayer guesses a layer media type from the first bytes of its blob.
func sniffLayer(head []byte) types.MediaType {
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return types.OCILayer
	case bytes.HasPrefix(head, zstdMagic):
		return types.OCILayerZStd
	default:
		return types.OCIUncompressedLayer
	}
}

// toHash converts a digest to ggcr's form, validating it.
func toHash(d digest.Digest) (v1.Hash, error) {
	if err := d.Validate(); err != nil {
		return v1.Hash{}, fmt.Errorf("invalid digest %q: %w", d, err)
	}
	return v1.NewHash(string(d))
}

// fromHash converts a ggcr hash to a digest, validating it.
func fromHash(h v1.Hash) (digest.Digest, error) {
	d := digest.Digest(h.String())
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("invalid digest %q: %w", d, err)
	}
	return d, nil
}
