package exporter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
)

// maxIndexDepth bounds how deeply nested image indexes Load follows.
const maxIndexDepth = 4

// loadedImage is an image whose blobs are all stored, with the normalized
// names it should be tagged with.
type loadedImage struct {
	manifest digest.Digest
	id       digest.Digest
	names    []string
}

// Load reads a docker-archive or OCI layout tar (optionally gzip
// compressed), stores its images and tags them; returns the names loaded
// (or image IDs for untagged images).
//
// An archive with index.json is read as an OCI layout (this covers archives
// written by Save and by docker save since Docker 25); names come from the
// io.containerd.image.name annotation, the org.opencontainers.image.ref.name
// annotation when it is a full name, and the RepoTags of a manifest.json
// next to it. Otherwise manifest.json is read as a docker-archive and an OCI
// manifest is made for each image. Either way the config blob is stored as
// it is, so the image ID stays the one in the archive.
//
// Layer diff IDs are checked against the configs. Names are set only after
// every image of the archive is stored, so a bad or truncated archive tags
// nothing (its blobs stay until a prune). The
// returned names are in their familiar form ("busybox:latest"); untagged
// images are listed by ID ("sha256:...").
func Load(ctx context.Context, store *cache.Store, r io.Reader) ([]string, error) {
	dir, err := os.MkdirTemp("", "kiln-load-*")
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer os.RemoveAll(dir)

	arc, err := spoolArchive(ctx, r, dir)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	var images []loadedImage
	switch {
	case arc.has(ociIndexFile):
		images, err = loadLayout(ctx, store, arc)
	case arc.has(dockerManifest):
		images, err = loadDockerArchive(ctx, store, arc)
	default:
		return nil, fmt.Errorf("load: not an image archive: it has neither %s (OCI layout) nor %s (docker save)", ociIndexFile, dockerManifest)
	}
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}

	var out []string
	for _, img := range images {
		for _, n := range img.names {
			if err := store.Tag(ctx, n, img.manifest); err != nil {
				return out, fmt.Errorf("load: tag %s: %w", FamiliarName(n), err)
			}
			out = append(out, FamiliarName(n))
		}
		if len(img.names) == 0 {
			out = append(out, img.id.String())
		}
	}
	return out, nil
}

// loadLayout loads every image an OCI layout's index.json lists.
func loadLayout(ctx context.Context, store *cache.Store, arc *archive) ([]loadedImage, error) {
	raw, err := arc.readFile(ociIndexFile)
	if err != nil {
		return nil, err
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("%s is not a valid image index: %w", ociIndexFile, err)
	}
	if len(idx.Manifests) == 0 {
		return nil, fmt.Errorf("%s lists no images", ociIndexFile)
	}
	repoTags, err := dockerRepoTags(arc)
	if err != nil {
		return nil, err
	}

	var images []loadedImage
	for i, desc := range idx.Manifests {
		md, manifest, err := pickManifest(arc, desc, 0)
		if err != nil {
			return nil, fmt.Errorf("image %d of %s: %w", i+1, ociIndexFile, err)
		}
		img, err := storeManifest(ctx, store, arc, md, manifest)
		if err != nil {
			return nil, fmt.Errorf("image %d of %s: %w", i+1, ociIndexFile, err)
		}
		names, err := annotatedNames(desc.Annotations)
		if err != nil {
			return nil, fmt.Errorf("image %d of %s: %w", i+1, ociIndexFile, err)
		}
		img.names = append(names, repoTags[img.id]...)
		images = mergeLoaded(images, img)
	}
	return images, nil
}

// dockerRepoTags returns the normalized RepoTags of a manifest.json that
// sits next to index.json, by config digest (none when there is no
// manifest.json).
func dockerRepoTags(arc *archive) (map[digest.Digest][]string, error) {
	tags := map[digest.Digest][]string{}
	if !arc.has(dockerManifest) {
		return tags, nil
	}
	entries, err := readDockerManifest(arc)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		raw, err := arc.readFile(e.Config)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dockerManifest, err)
		}
		names, err := normalizeTags(e.RepoTags)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dockerManifest, err)
		}
		id := digest.FromBytes(raw)
		tags[id] = append(tags[id], names...)
	}
	return tags, nil
}

// annotatedNames returns the normalized names an index descriptor gives
// its image. A ref.name that is only a tag ("latest") names no repository
// and is ignored.
func annotatedNames(ann map[string]string) ([]string, error) {
	n := ann[annotationCtrName]
	if n == "" {
		if ref := ann[annotationRefName]; strings.ContainsAny(ref, ":/@") {
			n = ref
		}
	}
	if n == "" {
		return nil, nil
	}
	normalized, err := NormalizeName(n)
	if err != nil {
		return nil, err
	}
	return []string{normalized}, nil
}

// pickManifest follows desc to an image manifest: itself, or for an image
// index the linux/amd64 entry, else the first entry that is not an
// attestation. It returns the manifest's digest and bytes.
func pickManifest(arc *archive, desc v1.Descriptor, depth int) (digest.Digest, []byte, error) {
	d, err := fromHash(desc.Digest)
	if err != nil {
		return "", nil, fmt.Errorf("descriptor: %w", err)
	}
	raw, err := arc.readBlob(d, desc.Size)
	if err != nil {
		return "", nil, err
	}
	mt := desc.MediaType
	if mt == "" {
		var doc struct {
			MediaType types.MediaType `json:"mediaType"`
			Manifests json.RawMessage `json:"manifests"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			return "", nil, fmt.Errorf("manifest %s is not valid JSON: %w", d, err)
		}
		mt = doc.MediaType
		if mt == "" && doc.Manifests != nil {
			mt = types.OCIImageIndex
		}
	}
	switch mt {
	case types.OCIImageIndex, types.DockerManifestList:
	default:
		return d, raw, nil // parseManifest checks it is an image manifest
	}
	if depth >= maxIndexDepth {
		return "", nil, fmt.Errorf("image indexes are nested more than %d deep", maxIndexDepth)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return "", nil, fmt.Errorf("image index %s is not valid: %w", d, err)
	}
	child, ok := pickPlatform(idx.Manifests)
	if !ok {
		return "", nil, fmt.Errorf("image index %s lists no image", d)
	}
	return pickManifest(arc, child, depth+1)
}

// pickPlatform chooses from an index the linux/amd64 image, else the first
// that is not an attestation or other non-image entry.
func pickPlatform(descs []v1.Descriptor) (v1.Descriptor, bool) {
	want := v1.Platform{OS: defaultOS, Architecture: defaultArchitecture}
	var first *v1.Descriptor
	for i, d := range descs {
		if d.Platform != nil && d.Platform.OS == "unknown" {
			continue
		}
		if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			continue
		}
		if d.Platform != nil && d.Platform.Satisfies(want) {
			return d, true
		}
		if first == nil {
			first = &descs[i]
		}
	}
	if first == nil {
		return v1.Descriptor{}, false
	}
	return *first, true
}

// storeManifest stores the image of an OCI layout manifest: its layers
// (checked against the config's diff IDs), its config as it is, and the
// manifest bytes themselves when every layer blob was stored unchanged (else
// a new OCI manifest for the stored layers).
func storeManifest(ctx context.Context, store *cache.Store, arc *archive, md digest.Digest, raw []byte) (loadedImage, error) {
	m, err := parseManifest(raw)
	if err != nil {
		return loadedImage{}, fmt.Errorf("manifest %s: %w", md, err)
	}
	id, err := fromHash(m.Config.Digest)
	if err != nil {
		return loadedImage{}, err
	}
	cfgRaw, err := arc.readBlob(id, m.Config.Size)
	if err != nil {
		return loadedImage{}, fmt.Errorf("config: %w", err)
	}
	cfg, err := parseConfig(cfgRaw)
	if err != nil {
		return loadedImage{}, fmt.Errorf("config %s: %w", id, err)
	}
	if len(m.Layers) != len(cfg.RootFS.DiffIDs) {
		return loadedImage{}, fmt.Errorf("manifest %s lists %d layers but its config lists %d diff IDs",
			md, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	unchanged := true
	chain := make(cache.Chain, 0, len(m.Layers))
	for i, desc := range m.Layers {
		d, err := fromHash(desc.Digest)
		if err != nil {
			return loadedImage{}, fmt.Errorf("layer %d: %w", i+1, err)
		}
		mt, err := OCILayerMediaType(desc.MediaType)
		if err != nil {
			return loadedImage{}, fmt.Errorf("layer %d: %w", i+1, err)
		}
		l, err := importLayer(ctx, store, arc, blobPath(d), mt, d, cfg.RootFS.DiffIDs[i])
		if err != nil {
			return loadedImage{}, fmt.Errorf("layer %d: %w", i+1, err)
		}
		if l.Digest == d && l.Size != desc.Size {
			return loadedImage{}, fmt.Errorf("layer %d (%s) is %d bytes, but the manifest says %d", i+1, d, l.Size, desc.Size)
		}
		unchanged = unchanged && l.Digest == d
		chain = append(chain, l)
	}
	cfgSize, err := writeConfigBlob(ctx, store, cfgRaw, id)
	if err != nil {
		return loadedImage{}, err
	}
	if !unchanged {
		nm, err := ociManifest(ctx, store, chain, id, cfgSize)
		if err != nil {
			return loadedImage{}, err
		}
		md, err = writeManifest(ctx, store, nm)
		if err != nil {
			return loadedImage{}, err
		}
		return loadedImage{manifest: md, id: id}, nil
	}
	if _, _, err := store.WriteBlob(ctx, bytes.NewReader(raw), md); err != nil {
		return loadedImage{}, fmt.Errorf("write image manifest: %w", err)
	}
	return loadedImage{manifest: md, id: id}, nil
}

// loadDockerArchive loads every image of a docker-archive's manifest.json.
func loadDockerArchive(ctx context.Context, store *cache.Store, arc *archive) ([]loadedImage, error) {
	entries, err := readDockerManifest(arc)
	if err != nil {
		return nil, err
	}
	var images []loadedImage
	for i, e := range entries {
		img, err := storeDockerImage(ctx, store, arc, e)
		if err != nil {
			return nil, fmt.Errorf("image %d of %s: %w", i+1, dockerManifest, err)
		}
		images = mergeLoaded(images, img)
	}
	return images, nil
}

// readDockerManifest reads and checks manifest.json.
func readDockerManifest(arc *archive) ([]dockerManifestEntry, error) {
	raw, err := arc.readFile(dockerManifest)
	if err != nil {
		return nil, err
	}
	var entries []dockerManifestEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("%s is not a valid docker-archive manifest: %w", dockerManifest, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%s lists no images", dockerManifest)
	}
	for i, e := range entries {
		if e.Config == "" {
			return nil, fmt.Errorf("image %d of %s has no Config", i+1, dockerManifest)
		}
	}
	return entries, nil
}

// storeDockerImage stores one docker-archive image: layers (checked
// against the config's diff IDs), the config as it is, and a new OCI
// manifest.
func storeDockerImage(ctx context.Context, store *cache.Store, arc *archive, e dockerManifestEntry) (loadedImage, error) {
	names, err := normalizeTags(e.RepoTags)
	if err != nil {
		return loadedImage{}, err
	}
	cfgRaw, err := arc.readFile(e.Config)
	if err != nil {
		return loadedImage{}, err
	}
	cfg, err := parseConfig(cfgRaw)
	if err != nil {
		return loadedImage{}, fmt.Errorf("config %s: %w", e.Config, err)
	}
	if len(e.Layers) != len(cfg.RootFS.DiffIDs) {
		return loadedImage{}, fmt.Errorf("image lists %d layers but its config lists %d diff IDs",
			len(e.Layers), len(cfg.RootFS.DiffIDs))
	}
	chain := make(cache.Chain, 0, len(e.Layers))
	for i, p := range e.Layers {
		l, err := importLayer(ctx, store, arc, p, "", "", cfg.RootFS.DiffIDs[i])
		if err != nil {
			return loadedImage{}, fmt.Errorf("layer %d: %w", i+1, err)
		}
		chain = append(chain, l)
	}
	id := digest.FromBytes(cfgRaw)
	size, err := writeConfigBlob(ctx, store, cfgRaw, id)
	if err != nil {
		return loadedImage{}, err
	}
	m, err := ociManifest(ctx, store, chain, id, size)
	if err != nil {
		return loadedImage{}, err
	}
	md, err := writeManifest(ctx, store, m)
	if err != nil {
		return loadedImage{}, err
	}
	return loadedImage{manifest: md, id: id, names: names}, nil
}

// importLayer stores the layer file name of the archive and checks that its
// diff ID is the one the config expects.
func importLayer(ctx context.Context, store *cache.Store, arc *archive, name string, mt types.MediaType, expected digest.Digest, want v1.Hash) (cache.Layer, error) {
	wantID, err := fromHash(want)
	if err != nil {
		return cache.Layer{}, fmt.Errorf("diff ID in config: %w", err)
	}
	f, err := arc.open(name)
	if err != nil {
		return cache.Layer{}, err
	}
	defer f.Close()
	l, err := store.ImportLayer(ctx, f, string(mt), expected)
	if err != nil {
		return cache.Layer{}, fmt.Errorf("import %s: %w", name, err)
	}
	if l.DiffID != wantID {
		return cache.Layer{}, fmt.Errorf("%s has diff ID %s, but the image config expects %s; the archive is corrupt", name, l.DiffID, wantID)
	}
	return l, nil
}

// writeConfigBlob stores a config exactly as it is, so its digest (the
// image ID) does not change, and returns its size.
func writeConfigBlob(ctx context.Context, store *cache.Store, raw []byte, id digest.Digest) (int64, error) {
	_, size, err := store.WriteBlob(ctx, bytes.NewReader(raw), id)
	if err != nil {
		return 0, fmt.Errorf("write image config: %w", err)
	}
	return size, nil
}

// normalizeTags normalizes the RepoTags of a docker-archive.
func normalizeTags(tags []string) ([]string, error) {
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		n, err := NormalizeName(t)
		if err != nil {
			return nil, fmt.Errorf("RepoTags: %w", err)
		}
		out = append(out, n)
	}
	return out, nil
}

// mergeLoaded adds img to images, merging the names of an image that is
// already there, and keeps each image's names unique.
func mergeLoaded(images []loadedImage, img loadedImage) []loadedImage {
	for i := range images {
		if images[i].manifest == img.manifest {
			images[i].names = uniqueNames(append(images[i].names, img.names...))
			return images
		}
	}
	img.names = uniqueNames(img.names)
	return append(images, img)
}

// uniqueNames drops repeated names, keeping the first of each.
func uniqueNames(names []string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
