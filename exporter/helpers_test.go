package exporter

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
)

// openStore opens an empty store in a temporary directory.
func openStore(t *testing.T) *cache.Store {
	t.Helper()
	s, err := cache.Open(t.Context(), t.TempDir(), cache.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

// tarOf returns a deterministic tar holding the given files (name ->
// content), in name order.
func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), ModTime: time.Unix(1, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, files[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gzipOf compresses data.
func gzipOf(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// addLayer stores a gzip layer holding files and returns it.
func addLayer(t *testing.T, store *cache.Store, files map[string]string) cache.Layer {
	t.Helper()
	l, err := store.ImportLayer(t.Context(), bytes.NewReader(gzipOf(t, tarOf(t, files))), cache.MediaTypeLayerGzip, "")
	if err != nil {
		t.Fatalf("import layer: %v", err)
	}
	return l
}

// writeImage writes a small image with the given layers' files and tags it.
func writeImage(t *testing.T, store *cache.Store, name string, cfg v1.ConfigFile, layers ...map[string]string) *Image {
	t.Helper()
	var chain cache.Chain
	for _, files := range layers {
		chain = append(chain, addLayer(t, store, files))
	}
	img, err := Write(t.Context(), store, chain, cfg)
	if err != nil {
		t.Fatalf("write image: %v", err)
	}
	if name != "" {
		n, err := NormalizeName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Tag(t.Context(), n, img.ManifestDigest); err != nil {
			t.Fatalf("tag %s: %v", n, err)
		}
	}
	return img
}

// testConfig is an image config with something in every commonly used field.
func testConfig() v1.ConfigFile {
	created := v1.Time{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
	return v1.ConfigFile{
		Created: created,
		Config: v1.Config{
			Env:    []string{"PATH=/bin", "A=1"},
			Cmd:    []string{"sh"},
			Labels: map[string]string{"z": "1", "a": "2"},
		},
		History: []v1.History{
			{Created: created, CreatedBy: "ADD a /"},
			{Created: created, CreatedBy: "ENV A=1", EmptyLayer: true},
		},
	}
}

// storedImage is a ggcr view of an image in the store, for validate.Image.
// It keeps a context only because ggcr's interfaces take none; it lives no
// longer than the test.
type storedImage struct {
	ctx   context.Context
	store *cache.Store
	md    digest.Digest
}

// v1Image returns the ggcr v1.Image of the stored manifest md.
func v1Image(t *testing.T, store *cache.Store, md digest.Digest) v1.Image {
	t.Helper()
	img, err := partial.CompressedToImage(storedImage{ctx: t.Context(), store: store, md: md})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func (s storedImage) RawManifest() ([]byte, error) { return s.store.ReadBlob(s.ctx, s.md) }

func (s storedImage) manifest() (*v1.Manifest, error) {
	raw, err := s.RawManifest()
	if err != nil {
		return nil, err
	}
	return v1.ParseManifest(bytes.NewReader(raw))
}

func (s storedImage) MediaType() (types.MediaType, error) {
	m, err := s.manifest()
	if err != nil {
		return "", err
	}
	return m.MediaType, nil
}

func (s storedImage) RawConfigFile() ([]byte, error) {
	m, err := s.manifest()
	if err != nil {
		return nil, err
	}
	return s.store.ReadBlob(s.ctx, digest.Digest(m.Config.Digest.String()))
}

func (s storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	m, err := s.manifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Layers {
		if d.Digest == h {
			return storedLayer{ctx: s.ctx, store: s.store, desc: d}, nil
		}
	}
	return nil, cache.ErrNotFound
}

// storedLayer is a ggcr view of a stored layer blob.
type storedLayer struct {
	ctx   context.Context
	store *cache.Store
	desc  v1.Descriptor
}

func (l storedLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l storedLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l storedLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l storedLayer) Compressed() (io.ReadCloser, error) {
	return l.store.OpenBlob(l.ctx, digest.Digest(l.desc.Digest.String()))
}

// readArchive returns the entries of a tar in order, with their contents.
func readArchive(t *testing.T, data []byte) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	var hdrs []*tar.Header
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read saved archive: %v", err)
		}
		hdrs = append(hdrs, hdr)
		if hdr.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[hdr.Name] = b
		}
	}
	return hdrs, files
}

// archiveEntry is one file of a hand-made test archive.
type archiveEntry struct {
	name string
	data []byte
}

// archiveOf builds a tar from entries in the order given.
func archiveOf(t *testing.T, entries ...archiveEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// mustJSON marshals v.
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// busyboxTar returns the path of the conformance suite's busybox docker
// save archive, or skips the test when it is not there.
func busyboxTar(t *testing.T) string {
	t.Helper()
	p := os.Getenv("KILN_BUSYBOX_TAR")
	if p == "" {
		p = filepath.Join("..", "..", "shared", "conformance", "busybox.tar")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("busybox docker-save archive not found at %s (set KILN_BUSYBOX_TAR): %v", p, err)
	}
	return p
}

// validateStored checks a stored image with ggcr's validate.Image. ggcr's
// layer check can only read gzip layers, so images with an uncompressed
// layer get the fast check (manifest, config and that every layer exists);
// the store itself verified their digests (== diff IDs) when they came in.
func validateStored(t *testing.T, store *cache.Store, md digest.Digest) {
	t.Helper()
	img := v1Image(t, store, md)
	m, err := img.Manifest()
	if err != nil {
		t.Fatalf("read manifest: %v", err)
	}
	var opts []validate.Option
	for _, l := range m.Layers {
		if l.MediaType == types.OCIUncompressedLayer || l.MediaType == types.DockerUncompressedLayer {
			opts = append(opts, validate.Fast)
			break
		}
	}
	if err := validate.Image(img, opts...); err != nil {
		t.Errorf("validate.Image: %v", err)
	}
}
