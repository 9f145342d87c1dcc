package layer

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// helloTar is the plain tar compressed in testdata/hello.tar.bz2.
func helloTar(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: 6, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("hello\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecompress(t *testing.T) {
	plain := helloTar(t)
	compress := func(newW func(w io.Writer) (io.WriteCloser, error)) []byte {
		var buf bytes.Buffer
		w, err := newW(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(plain); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	bz2, err := os.ReadFile(filepath.Join("testdata", "hello.tar.bz2"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		input []byte
		want  []byte
	}{
		{"plain", plain, plain},
		{"gzip", compress(func(w io.Writer) (io.WriteCloser, error) { return gzip.NewWriter(w), nil }), plain},
		{"zstd", compress(func(w io.Writer) (io.WriteCloser, error) { return zstd.NewWriter(w) }), plain},
		{"xz", compress(func(w io.Writer) (io.WriteCloser, error) { return xz.NewWriter(w) }), plain},
		{"bzip2", bz2, plain},
		{"empty", nil, nil},
		{"short", []byte{0x1f}, []byte{0x1f}},
		{"BZh but not bzip2", []byte("BZh9 is a file name"), []byte("BZh9 is a file name")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, err := Decompress(bytes.NewReader(tt.input))
			if err != nil {
				t.Fatalf("Decompress: %v", err)
			}
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if err := rc.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got %d bytes, want %d", len(got), len(tt.want))
			}
		})
	}
}

func TestDecompressCorrupt(t *testing.T) {
	for name, input := range map[string][]byte{
		"gzip": {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff, 1, 2, 3},
		"zstd": {0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff},
		"xz":   {0xfd, '7', 'z', 'X', 'Z', 0x00, 1, 2, 3, 4, 5, 6},
	} {
		t.Run(name, func(t *testing.T) {
			rc, err := Decompress(bytes.NewReader(input))
			if err != nil {
				return
			}
			defer rc.Close()
			if _, err := io.ReadAll(rc); err == nil {
				t.Error("corrupt stream read without error")
			}
		})
	}
}

func FuzzDecompress(f *testing.F) {
	f.Add([]byte{0x1f, 0x8b, 0x08, 0})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0})
	f.Add([]byte("BZh91AY&SY"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rc, err := Decompress(bytes.NewReader(data))
		if err != nil {
			return
		}
		io.Copy(io.Discard, io.LimitReader(rc, 1<<20))
		rc.Close()
	})
}

func TestCompressed(t *testing.T) {
	for _, tc := range []struct {
		name string
		head []byte
		want bool
	}{
		{"gzip", []byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0}, true},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0, 0, 0}, true},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 0, 0, 0}, true},
		{"bzip2", append([]byte("BZh9"), 0x31, 0x41, 0x59, 0x26, 0x53, 0x59), true},
		{"Dockerfile", []byte("FROM busybox\nRUN true\n"), false},
		{"BZh text", []byte("BZh9 is not bzip2"), false},
		{"short", []byte{0x1f}, false},
	} {
		if got := Compressed(tc.head); got != tc.want {
			t.Errorf("%s: Compressed = %v, want %v", tc.name, got, tc.want)
		}
	}
}
