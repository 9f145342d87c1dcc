package cache

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestImportLayer(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	tarball := makeTar(t, map[string]string{"etc/hostname": "kiln\n", "bin/sh": "#!fake"})
	diffID := digest.FromBytes(tarball)
	gz := gzipBytes(t, tarball)
	zst := zstdBytes(t, tarball)
	tests := []struct {
		name      string
		blob      []byte
		mediaType string
		wantType  string
	}{
		{"plain detected", tarball, "", MediaTypeLayerTar},
		{"plain declared", tarball, MediaTypeLayerTar, MediaTypeLayerTar},
		{"gzip detected", gz, "", MediaTypeLayerGzip},
		{"gzip declared", gz, MediaTypeLayerGzip, MediaTypeLayerGzip},
		{"docker gzip", gz, "application/vnd.docker.image.rootfs.diff.tar.gzip", MediaTypeLayerGzip},
		{"gzip mislabelled", gz, MediaTypeLayerTar, MediaTypeLayerGzip},
		{"zstd detected", zst, "", MediaTypeLayerZstd},
		{"zstd declared", zst, MediaTypeLayerZstd, MediaTypeLayerZstd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, expected := range []digest.Digest{"", digest.FromBytes(tt.blob)} {
				l, err := s.ImportLayer(ctx, bytes.NewReader(tt.blob), tt.mediaType, expected)
				if err != nil {
					t.Fatalf("ImportLayer: %v", err)
				}
				want := Layer{DiffID: diffID, Digest: digest.FromBytes(tt.blob), Size: int64(len(tt.blob)), MediaType: tt.wantType}
				if l != want {
					t.Fatalf("ImportLayer = %+v, want %+v", l, want)
				}
				got, err := s.ReadBlob(ctx, l.Digest)
				if err != nil || !bytes.Equal(got, tt.blob) {
					t.Fatalf("stored blob differs (%v)", err)
				}
				if _, err := s.LayerByDiffID(ctx, diffID); err != nil {
					t.Fatalf("LayerByDiffID: %v", err)
				}
			}
		})
	}
}

func TestImportLayerErrors(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	tarball := makeTar(t, map[string]string{"a": "b"})
	gz := gzipBytes(t, tarball)
	truncated := gz[:len(gz)-10]
	tests := []struct {
		name      string
		blob      []byte
		mediaType string
		expected  digest.Digest
		corrupt   bool
	}{
		{"wrong expected", tarball, "", digest.FromString("other"), true},
		{"wrong expected gzip", gz, "", digest.FromString("other"), true},
		{"truncated gzip", truncated, "", "", false},
		{"unknown media type", tarball, "application/vnd.example.layer+lz4", "", false},
		{"not a tar", []byte("<html>rate limited</html>" + strings.Repeat(" ", 600)), "", "", false},
		{"not a tar, wrong expected", []byte("<html>rate limited</html>"), "", digest.FromBytes(tarball), true},
		{"gzip of not a tar", gzipBytes(t, bytes.Repeat([]byte("garbage!"), 200)), "", "", false},
		{"garbage after gzip magic", []byte{0x1f, 0x8b, 0x08, 1, 2, 3}, "", "", false},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00, 0, 0}, "", "", false},
		{"bzip2", []byte("BZh91AY&SY"), "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.ImportLayer(ctx, bytes.NewReader(tt.blob), tt.mediaType, tt.expected)
			if err == nil {
				t.Fatal("ImportLayer succeeded")
			}
			if tt.corrupt != errors.Is(err, ErrCorrupt) {
				t.Errorf("error %v: ErrCorrupt = %v, want %v", err, !tt.corrupt, tt.corrupt)
			}
		})
	}
	if got := listDir(t, s.Root()+"/"+blobsDir); len(got) != 0 {
		t.Errorf("blobs stored: %v", got)
	}
	if left := tmpLeftovers(t, s); len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func TestBombGuard(t *testing.T) {
	var compressed int64 = 100
	g := &bombGuard{r: io.LimitReader(zeroReader{}, bombFloor+1<<20), compressed: func() int64 { return compressed }}
	if _, err := io.Copy(io.Discard, g); !errors.Is(err, errBomb) {
		t.Errorf("4 GiB from 100 bytes: err = %v, want errBomb", err)
	}
	compressed = 1 << 30
	g = &bombGuard{r: io.LimitReader(zeroReader{}, bombFloor+1<<20), compressed: func() int64 { return compressed }}
	if _, err := io.Copy(io.Discard, g); err != nil {
		t.Errorf("4 GiB from 1 GiB refused: %v", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
