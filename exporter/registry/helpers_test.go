package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/exporter"
)

// testOptions are Options that never read the Docker config of the user
// running the tests.
func testOptions() Options {
	return Options{Keychain: authn.NewMultiKeychain()}
}

// newStore opens a store in a temp dir.
func newStore(t testing.TB) *cache.Store {
	t.Helper()
	s, err := cache.Open(context.Background(), t.TempDir(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newRegistry starts ggcr's in-process registry, with wrap (if not nil)
// in front of it, and returns its host:port.
func newRegistry(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// checkStore fails the test when the store has a tag or a blob whose
// name does not match its content.
func checkStore(t *testing.T, store *cache.Store, wantTags int) {
	t.Helper()
	imgs, err := store.Images(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != wantTags {
		t.Errorf("store has %d tags, want %d: %v", len(imgs), wantTags, imgs)
	}
	dir := filepath.Join(store.Root(), "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != e.Name() {
			t.Errorf("blob %s has content with digest %s", e.Name(), got)
		}
	}
}

// layerBlob returns a gzip layer with one file of size random bytes.
func layerBlob(t testing.TB, seed uint64, size int, level int) []byte {
	t.Helper()
	data := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	rng.Read(data)
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	if err := tw.WriteHeader(&tar.Header{Name: "file", Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	tw.Close()
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, level)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(tarBuf.Bytes())
	zw.Close()
	return gz.Bytes()
}

// storedImage writes an image with the given layer blobs into store, the
// way a build does (OCI manifest), and returns it.
func writeImage(t testing.TB, store *cache.Store, blobs ...[]byte) *exporter.Image {
	t.Helper()
	ctx := context.Background()
	var chain cache.Chain
	for _, b := range blobs {
		l, err := store.ImportLayer(ctx, bytes.NewReader(b), cache.MediaTypeLayerGzip, digest.FromBytes(b))
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, l)
	}
	img, err := exporter.Write(ctx, store, chain, v1.ConfigFile{Config: v1.Config{Cmd: []string{"sh"}}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}
