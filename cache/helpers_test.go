package cache

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
)

// openStore opens a store in a temp dir, closed when the test ends.
func openStore(t testing.TB, root string) *Store {
	t.Helper()
	if root == "" {
		root = t.TempDir()
	}
	s, err := Open(t.Context(), root, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// makeTar builds a tar holding the given regular files, in sorted order.
func makeTar(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// readTar lists a tar's regular files and their content.
func readTar(t testing.TB, b []byte) map[string]string {
	t.Helper()
	out := make(map[string]string)
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		if hdr.Typeflag != tar.TypeReg {
			out[hdr.Name] = "<" + string(hdr.Typeflag) + ">"
			continue
		}
		var content bytes.Buffer
		if _, err := content.ReadFrom(tr); err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = content.String()
	}
	return out
}

// flipByte damages a stored blob in place.
func flipByte(t testing.TB, s *Store, d digest.Digest, at int) {
	t.Helper()
	p := filepath.Join(s.Root(), blobsDir, d.Encoded())
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[at%len(b)] ^= 0xff
	if err := os.WriteFile(p, b, 0o444); err != nil {
		t.Fatal(err)
	}
}

// listDir returns the names in dir (nil when it does not exist).
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// tmpLeftovers lists what the Store left in its own temp dir besides the
// owner file.
func tmpLeftovers(t testing.TB, s *Store) []string {
	t.Helper()
	var out []string
	for _, n := range listDir(t, s.tmp) {
		if n != ownerFile {
			out = append(out, n)
		}
	}
	return out
}
