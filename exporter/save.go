package exporter

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
)

// File names and annotations of the two archive formats Save writes in one
// tar and Load reads.
const (
	ociLayoutFile     = "oci-layout"
	ociIndexFile      = "index.json"
	dockerManifest    = "manifest.json"
	dockerRepos       = "repositories"
	blobsDir          = "blobs"
	ociLayoutVersion  = "1.0.0"
	annotationRefName = "org.opencontainers.image.ref.name"
	annotationCtrName = "io.containerd.image.name"
)

// Tar header fields Save uses for every entry, so that saving the same
// images twice gives the same bytes.
const (
	fileMode = 0o444
	dirMode  = 0o755
)

// dockerManifestEntry is one image in a docker-archive's manifest.json.
type dockerManifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// ociLayout is the content of the oci-layout file.
type ociLayout struct {
	ImageLayoutVersion string `json:"imageLayoutVersion"`
}

// savedImage is one image to save with the names it is saved under.
type savedImage struct {
	img      *Image
	manifest []byte
	// tags are normalized tag names ("docker.io/library/busybox:latest").
	tags []string
}

// Save writes the named images as one tar that docker load accepts
// (manifest.json, repositories) and that is also an OCI image layout
// (oci-layout, index.json, blobs/sha256/...), sharing the blobs.
//
// names are looked up like Lookup. An image named by tag is saved with that
// tag; one named by ID or digest is saved untagged. Each blob is written
// once, streamed from the store and verified on the way; the tar is the
// same byte for byte whenever the same images are saved under the same
// names (fixed times, modes and owners, entries in a fixed order). On error
// w holds an incomplete tar.
func Save(ctx context.Context, store *cache.Store, w io.Writer, names []string) error {
	if len(names) == 0 {
		return errors.New("save: no images given")
	}
	images, err := collectImages(ctx, store, names)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return writeArchive(ctx, store, w, images)
}

// SaveImage is Save for one image value, which need not be tagged (a
// build's result), saved under the given names (normalized or not).
func SaveImage(ctx context.Context, store *cache.Store, w io.Writer, img *Image, names []string) error {
	raw, err := store.ReadBlob(ctx, img.ManifestDigest)
	if err != nil {
		return fmt.Errorf("save: read image manifest %s: %w", img.ManifestDigest, err)
	}
	s := &savedImage{img: img, manifest: raw}
	for _, n := range names {
		tag, err := NormalizeName(n)
		if err != nil {
			return fmt.Errorf("save: %w", err)
		}
		if !slices.Contains(s.tags, tag) {
			s.tags = append(s.tags, tag)
		}
	}
	return writeArchive(ctx, store, w, []*savedImage{s})
}

// writeArchive writes the images as the combined docker-archive and OCI
// layout tar.
func writeArchive(ctx context.Context, store *cache.Store, w io.Writer, images []*savedImage) error {
	blobs, err := blobList(images)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	index, manifest, repos, err := saveMetadata(images)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	layout, err := json.Marshal(ociLayout{ImageLayoutVersion: ociLayoutVersion})
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}

	tw := tar.NewWriter(w)
	if err := writeDir(tw, blobsDir+"/"); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := writeDir(tw, blobsDir+"/"+string(digest.SHA256)+"/"); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	for _, b := range blobs {
		if err := writeBlob(ctx, store, tw, b); err != nil {
			return fmt.Errorf("save: %w", err)
		}
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{ociIndexFile, index},
		{dockerManifest, manifest},
		{ociLayoutFile, layout},
		{dockerRepos, repos},
	} {
		if err := writeFile(tw, f.name, f.data); err != nil {
			return fmt.Errorf("save: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("save: finish archive: %w", err)
	}
	return nil
}

// collectImages looks up names and groups them by image, in the order they
// were first named.
func collectImages(ctx context.Context, store *cache.Store, names []string) ([]*savedImage, error) {
	var images []*savedImage
	byManifest := map[digest.Digest]*savedImage{}
	for _, n := range names {
		img, tag, err := lookup(ctx, store, n)
		if err != nil {
			return nil, err
		}
		s := byManifest[img.ManifestDigest]
		if s == nil {
			raw, err := store.ReadBlob(ctx, img.ManifestDigest)
			if err != nil {
				return nil, fmt.Errorf("read image manifest %s: %w", img.ManifestDigest, err)
			}
			s = &savedImage{img: img, manifest: raw}
			byManifest[img.ManifestDigest] = s
			images = append(images, s)
		}
		if tag != "" && !slices.Contains(s.tags, tag) {
			s.tags = append(s.tags, tag)
		}
	}
	return images, nil
}

// blobRef is a blob to copy into the archive.
type blobRef struct {
	digest digest.Digest
	size   int64
	// data is the blob itself when it is already in memory.
	data []byte
}

// blobList returns every blob the images need, each once: per image the
// config, the layers bottom first, then the manifest.
func blobList(images []*savedImage) ([]blobRef, error) {
	var out []blobRef
	seen := map[digest.Digest]bool{}
	add := func(b blobRef) {
		if !seen[b.digest] {
			seen[b.digest] = true
			out = append(out, b)
		}
	}
	for _, s := range images {
		m := s.img.Manifest
		cd, err := fromHash(m.Config.Digest)
		if err != nil {
			return nil, err
		}
		add(blobRef{digest: cd, size: m.Config.Size})
		for _, l := range s.img.Chain {
			add(blobRef{digest: l.Digest, size: l.Size})
		}
		add(blobRef{digest: s.img.ManifestDigest, size: int64(len(s.manifest)), data: s.manifest})
	}
	return out, nil
}

// saveMetadata builds index.json, manifest.json and repositories.
func saveMetadata(images []*savedImage) (index, manifest, repos []byte, err error) {
	idx := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests:     []v1.Descriptor{},
	}
	entries := make([]dockerManifestEntry, 0, len(images))
	repositories := map[string]map[string]string{}
	for _, s := range images {
		img := s.img
		md, err := toHash(img.ManifestDigest)
		if err != nil {
			return nil, nil, nil, err
		}
		mt := img.Manifest.MediaType
		if mt == "" {
			mt = types.OCIManifestSchema1
		}
		desc := v1.Descriptor{
			MediaType: mt,
			Size:      int64(len(s.manifest)),
			Digest:    md,
			Platform:  platformOf(&img.Config),
		}
		if len(s.tags) == 0 {
			idx.Manifests = append(idx.Manifests, desc)
		}
		entry := dockerManifestEntry{
			Config: blobPath(img.ID),
			Layers: make([]string, 0, len(img.Chain)),
		}
		for _, l := range img.Chain {
			entry.Layers = append(entry.Layers, blobPath(l.Digest))
		}
		// The legacy repositories file maps a tag to the top layer's ID.
		top := img.ID.Encoded()
		if len(img.Chain) > 0 {
			top = img.Chain[len(img.Chain)-1].Digest.Encoded()
		}
		for _, t := range s.tags {
			repo, tag := splitName(t)
			d := desc
			d.Annotations = map[string]string{annotationRefName: tag, annotationCtrName: t}
			idx.Manifests = append(idx.Manifests, d)

			entry.RepoTags = append(entry.RepoTags, FamiliarName(t))
			fr := FamiliarName(repo)
			if repositories[fr] == nil {
				repositories[fr] = map[string]string{}
			}
			repositories[fr][tag] = top
		}
		entries = append(entries, entry)
	}
	if index, err = json.Marshal(idx); err != nil {
		return nil, nil, nil, err
	}
	if manifest, err = json.Marshal(entries); err != nil {
		return nil, nil, nil, err
	}
	if repos, err = json.Marshal(repositories); err != nil {
		return nil, nil, nil, err
	}
	return index, manifest, repos, nil
}

// platformOf returns the platform an index descriptor should carry for an
// image config, or nil when the config names none.
func platformOf(cfg *v1.ConfigFile) *v1.Platform {
	if cfg.OS == "" && cfg.Architecture == "" {
		return nil
	}
	return &v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
}

// blobPath is where a blob goes in an OCI layout: "blobs/sha256/<hex>".
func blobPath(d digest.Digest) string {
	return blobsDir + "/" + string(d.Algorithm()) + "/" + d.Encoded()
}

// header returns the fixed tar header for an archive entry.
func header(name string, typ byte, mode, size int64) *tar.Header {
	return &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     mode,
		Size:     size,
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatUSTAR,
	}
}

func writeDir(tw *tar.Writer, name string) error {
	if err := tw.WriteHeader(header(name, tar.TypeDir, dirMode, 0)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

func writeFile(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(header(name, tar.TypeReg, fileMode, int64(len(data)))); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// writeBlob streams one blob from the store into the archive, checking its
// size and digest: a blob that changed in the store is an error, not a
// corrupt archive.
func writeBlob(ctx context.Context, store *cache.Store, tw *tar.Writer, b blobRef) error {
	if b.data != nil {
		return writeFile(tw, blobPath(b.digest), b.data)
	}
	size, err := store.StatBlob(ctx, b.digest)
	if err != nil {
		return fmt.Errorf("blob %s: %w", b.digest, err)
	}
	if size != b.size {
		return fmt.Errorf("blob %s is %d bytes in the store but %d in its manifest: %w", b.digest, size, b.size, cache.ErrCorrupt)
	}
	rc, err := store.OpenBlob(ctx, b.digest)
	if err != nil {
		return fmt.Errorf("blob %s: %w", b.digest, err)
	}
	defer rc.Close()
	name := blobPath(b.digest)
	if err := tw.WriteHeader(header(name, tar.TypeReg, fileMode, size)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	verifier := b.digest.Verifier()
	n, err := io.Copy(tw, io.TeeReader(withContext(ctx, rc), verifier))
	if err != nil {
		return fmt.Errorf("copy blob %s: %w", b.digest, err)
	}
	if n != size || !verifier.Verified() {
		return fmt.Errorf("blob %s: %w", b.digest, cache.ErrCorrupt)
	}
	return nil
}

// readerFunc adapts a function to io.Reader.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// withContext returns a reader that stops once ctx is done, so long copies
// can be cancelled.
func withContext(ctx context.Context, r io.Reader) io.Reader {
	return readerFunc(func(p []byte) (int, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		return r.Read(p)
	})
}
