package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/exporter"
)

// Limits on what Pull accepts from a registry.
const (
	// maxIndexDepth bounds how deeply nested image indexes Pull follows.
	maxIndexDepth = 4
	// maxConfigSize bounds an image config blob, which is read into memory.
	maxConfigSize = 32 << 20
)

// ErrTruncated: the registry sent fewer bytes than the manifest declares.
var ErrTruncated = errors.New("truncated blob")

// Pull fetches the image ref from its registry into store and tags it under
// its normalized name ("busybox" is docker.io/library/busybox:latest).
//
// An image index picks the Options.Platform image (linux/amd64 by default).
// Up to Options.Jobs layers download at once; each is verified against its
// digest and size while it streams into the store, and its diff ID against
// the image config. Layers already in the store are not downloaded again.
// The config and manifest blobs are stored byte for byte, so the image ID
// and the manifest digest are the registry's. The name is tagged only after
// everything is stored: a failed pull leaves the previous image under that
// name (and at most some verified blobs, which a prune removes).
func Pull(ctx context.Context, store *cache.Store, ref string, opts Options) (*exporter.Image, error) {
	normalized, err := exporter.NormalizeName(ref)
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	r, err := parseReference(normalized, opts)
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	reg := registryName(r.Context().Registry)
	shown := exporter.FamiliarName(normalized)
	puller, err := remote.NewPuller(opts.remoteOptions()...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", shown, err)
	}
	p := &pull{store: store, puller: puller, repo: r.Context(), reg: reg, shown: shown, opts: opts}
	img, err := p.run(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("pull %s from %s: %w", shown, reg, err)
	}
	if err := store.Tag(ctx, normalized, img.ManifestDigest); err != nil {
		return nil, fmt.Errorf("pull %s: %w", shown, err)
	}
	return img, nil
}

// pull is one Pull.
type pull struct {
	store  *cache.Store
	puller *remote.Puller
	repo   name.Repository
	reg    string // registry as shown to users
	shown  string // image as shown to users
	opts   Options
}

func (p *pull) run(ctx context.Context, r name.Reference) (*exporter.Image, error) {
	raw, err := p.manifest(ctx, r)
	if err != nil {
		return nil, err
	}
	md := digest.FromBytes(raw)
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest %s is not valid: %w", md, err)
	}
	switch m.Config.MediaType {
	case types.DockerConfigJSON, types.OCIConfigJSON:
	default:
		return nil, fmt.Errorf("manifest %s is not a container image: its config has media type %q (an artifact such as a signature or a Helm chart?)",
			md, m.Config.MediaType)
	}
	mediaTypes := make([]string, len(m.Layers))
	for i, l := range m.Layers {
		mt, err := exporter.OCILayerMediaType(l.MediaType)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: layer %d: %w", md, i+1, err)
		}
		mediaTypes[i] = string(mt)
	}
	cfgRaw, err := p.config(ctx, m.Config)
	if err != nil {
		return nil, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cfgRaw))
	if err != nil {
		return nil, fmt.Errorf("image config %s is not valid: %w", m.Config.Digest, err)
	}
	if cfg.RootFS.Type != "layers" {
		return nil, fmt.Errorf("image config %s has rootfs type %q, want \"layers\"", m.Config.Digest, cfg.RootFS.Type)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("manifest %s lists %d layers but its config lists %d diff IDs: the image in the registry is inconsistent",
			md, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	if err := p.layers(ctx, m.Layers, mediaTypes, cfg.RootFS.DiffIDs); err != nil {
		return nil, err
	}
	if _, _, err := p.store.WriteBlob(ctx, bytes.NewReader(cfgRaw), digest.Digest(m.Config.Digest.String())); err != nil {
		return nil, fmt.Errorf("store image config: %w", err)
	}
	if _, _, err := p.store.WriteBlob(ctx, bytes.NewReader(raw), md); err != nil {
		return nil, fmt.Errorf("store image manifest: %w", err)
	}
	img, err := exporter.Read(ctx, p.store, md)
	if err != nil {
		return nil, err
	}
	return img, nil
}

// manifest fetches the image manifest of r, following image indexes to
// the image for the wanted platform, and returns its bytes.
func (p *pull) manifest(ctx context.Context, r name.Reference) ([]byte, error) {
	want := p.opts.platform()
	for depth := 0; ; depth++ {
		desc, err := p.puller.Get(ctx, r)
		if err != nil {
			return nil, explain(err, p.reg, "image "+p.shown)
		}
		raw := desc.Manifest
		kind, err := manifestKind(raw, desc.MediaType)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
		}
		switch kind {
		case types.OCIManifestSchema1, types.DockerManifestSchema2:
			return raw, nil
		case types.OCIImageIndex, types.DockerManifestList:
		case types.DockerManifestSchema1, types.DockerManifestSchema1Signed:
			return nil, fmt.Errorf("the registry has only a Docker schema 1 manifest for it, which kiln does not support: push the image again with a current Docker, skopeo or kiln")
		default:
			return nil, fmt.Errorf("manifest %s has unknown media type %q: it is not a container image", desc.Digest, kind)
		}
		if depth >= maxIndexDepth {
			return nil, fmt.Errorf("image indexes are nested more than %d deep", maxIndexDepth)
		}
		var idx v1.IndexManifest
		if err := json.Unmarshal(raw, &idx); err != nil {
			return nil, fmt.Errorf("image index %s is not valid: %w", desc.Digest, err)
		}
		child, ok := pickPlatform(idx.Manifests, want)
		if !ok {
			return nil, fmt.Errorf("no image for platform %s in image index %s (it has %s)", want, desc.Digest, platforms(idx.Manifests))
		}
		r = p.repo.Digest(child.Digest.String())
	}
}

// manifestKind returns the media type of a manifest: the one in the
// document, else the Content-Type the registry sent, else a guess from the
// fields.
func manifestKind(raw []byte, header types.MediaType) (types.MediaType, error) {
	var doc struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     types.MediaType `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Config        json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return "", fmt.Errorf("the manifest is not valid JSON: %w", err)
	}
	switch {
	case doc.SchemaVersion == 1:
		return types.DockerManifestSchema1, nil
	case doc.MediaType != "":
		return doc.MediaType, nil
	case doc.Manifests != nil:
		return types.OCIImageIndex, nil
	case doc.Config != nil:
		return types.OCIManifestSchema1, nil
	}
	return header, nil
}

// pickPlatform chooses the index entry for platform want, skipping
// attestations.
func pickPlatform(descs []v1.Descriptor, want v1.Platform) (v1.Descriptor, bool) {
	for _, d := range descs {
		if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			continue
		}
		if d.Platform != nil && d.Platform.Satisfies(want) {
			return d, true
		}
	}
	return v1.Descriptor{}, false
}

// platforms lists the platforms of an index for an error message.
func platforms(descs []v1.Descriptor) string {
	var out []byte
	for _, d := range descs {
		if d.Platform == nil || d.Platform.OS == "unknown" {
			continue
		}
		if len(out) > 0 {
			out = append(out, ", "...)
		}
		out = append(out, d.Platform.String()...)
	}
	if len(out) == 0 {
		return "no platform"
	}
	return string(out)
}

// config downloads the config blob.
func (p *pull) config(ctx context.Context, desc v1.Descriptor) ([]byte, error) {
	d, err := toDigest(desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("config descriptor: %w", err)
	}
	if desc.Size > maxConfigSize {
		return nil, fmt.Errorf("the image config is %d bytes, more than the %d kiln accepts", desc.Size, maxConfigSize)
	}
	rc, err := p.blob(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("image config %s: %w", short(d), err)
	}
	defer rc.Close()
	br := newBlobReader(rc, d, desc.Size)
	raw, err := io.ReadAll(br)
	if err != nil {
		return nil, fmt.Errorf("image config %s: %w", short(d), p.readError(br, err))
	}
	return raw, nil
}

// layers stores every layer of the manifest, up to Options.Jobs at once.
func (p *pull) layers(ctx context.Context, descs []v1.Descriptor, mediaTypes []string, diffIDs []v1.Hash) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.opts.jobs())
	for i, desc := range descs {
		g.Go(func() error {
			if err := p.layer(gctx, desc, mediaTypes[i], diffIDs[i]); err != nil {
				return fmt.Errorf("layer %d of %d (%s): %w", i+1, len(descs), short(digest.Digest(desc.Digest.String())), err)
			}
			return nil
		})
	}
	return g.Wait()
}

// layer stores one layer unless the store already has it.
func (p *pull) layer(ctx context.Context, desc v1.Descriptor, mediaType string, diffID v1.Hash) error {
	d, err := toDigest(desc.Digest)
	if err != nil {
		return err
	}
	want, err := toDigest(diffID)
	if err != nil {
		return fmt.Errorf("diff ID in the image config: %w", err)
	}
	if l, err := p.store.LayerByDiffID(ctx, want); err == nil && l.Digest == d {
		return nil
	}
	var l cache.Layer
	if _, err := p.store.StatBlob(ctx, d); err == nil {
		// The blob is here but not recorded under this diff ID: check it
		// without downloading it again.
		rc, err := p.store.OpenBlob(ctx, d)
		if err != nil {
			return err
		}
		defer rc.Close()
		if l, err = p.store.ImportLayer(ctx, rc, mediaType, d); err != nil {
			return err
		}
	} else {
		rc, err := p.blob(ctx, d)
		if err != nil {
			return err
		}
		defer rc.Close()
		br := newBlobReader(rc, d, desc.Size)
		if l, err = p.store.ImportLayer(ctx, br, mediaType, d); err != nil {
			return p.readError(br, err)
		}
	}
	if l.DiffID != want {
		return fmt.Errorf("the layer has diff ID %s, but the image config says %s: the image in the registry is inconsistent", l.DiffID, want)
	}
	return nil
}

// blob starts the download of blob d.
func (p *pull) blob(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	l, err := p.puller.Layer(ctx, p.repo.Digest(d.String()))
	if err != nil {
		return nil, explain(err, p.reg, "blob "+short(d))
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, explain(err, p.reg, "blob "+short(d))
	}
	return rc, nil
}

// readError prefers what the blob reader found out (truncated, other
// bytes) to the error of whoever consumed it.
func (p *pull) readError(br *blobReader, err error) error {
	if br.err != nil {
		return br.err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return explain(err, p.reg, "blob "+short(br.d))
}

// blobReader checks the size of a blob download and explains a failure:
// too long, truncated, or other bytes. The digest itself is checked by the
// reader it wraps (ggcr fails at EOF when the bytes do not match) and again
// by the store. Its error is sticky.
type blobReader struct {
	r    io.Reader
	d    digest.Digest
	size int64
	n    int64
	err  error
}

func newBlobReader(r io.Reader, d digest.Digest, size int64) *blobReader {
	return &blobReader{r: r, d: d, size: size}
}

func (b *blobReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	switch {
	case b.n > b.size:
		b.err = fmt.Errorf("the registry sent more than the %d bytes the manifest declares for blob %s: %w", b.size, b.d, ErrDigestMismatch)
		return n, b.err
	case err == nil || err == io.EOF && b.n == b.size:
		return n, err
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return n, err
	case b.n < b.size:
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.err = fmt.Errorf("the registry sent only %d of the %d bytes of blob %s; try again (%w): %w", b.n, b.size, b.d, ErrTruncated, err)
		return n, b.err
	default:
		// All the bytes arrived, and the verifying reader refused them.
		b.err = fmt.Errorf("the registry sent other bytes for blob %s: the registry or a proxy on the way is broken (%w): %w", b.d, ErrDigestMismatch, err)
		return n, b.err
	}
}

// toDigest converts a ggcr hash to a digest, accepting only sha256 (the
// only algorithm the store keeps).
func toDigest(h v1.Hash) (digest.Digest, error) {
	d := digest.Digest(h.String())
	if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("unsupported digest %q: kiln stores sha256 blobs only", d)
	}
	return d, nil
}

// short shows a digest as its algorithm and first 12 hex digits.
func short(d digest.Digest) string {
	if len(d.Encoded()) > 12 {
		return d.Algorithm().String() + ":" + d.Encoded()[:12]
	}
	return d.String()
}
