package exporter

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
)

func TestImport(t *testing.T) {
	rootfs := tarOf(t, map[string]string{"bin/sh": "shell", "etc/passwd": "root:x:0:0::/root:/bin/sh\n"})
	// GNU tar pads archives to 10 KiB records; the padding is part of the
	// diff ID.
	padded := append(bytes.Clone(rootfs), make([]byte, 10240-len(rootfs)%10240)...)
	tests := []struct {
		name  string
		input []byte
		tar   []byte // the uncompressed tar the diff ID is taken from
	}{
		{"plain tar", rootfs, rootfs},
		{"padded tar", padded, padded},
		{"gzip tar", gzipOf(t, rootfs), rootfs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			store := openStore(t)
			cfg := v1.ConfigFile{Config: v1.Config{Cmd: []string{"sh"}}}
			img, err := Import(ctx, store, bytes.NewReader(tt.input), cfg)
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			if len(img.Chain) != 1 || img.Chain[0].DiffID != digest.FromBytes(tt.tar) {
				t.Errorf("chain = %v, want one layer with diff ID %s", img.Chain, digest.FromBytes(tt.tar))
			}
			if img.Chain[0].MediaType != cache.MediaTypeLayerGzip {
				t.Errorf("layer media type = %s, want gzip", img.Chain[0].MediaType)
			}
			h := img.Config.History
			if len(h) != 1 || h[0].Comment != importComment || h[0].EmptyLayer {
				t.Errorf("history = %+v, want one import entry", h)
			}
			if img.Config.Config.Cmd[0] != "sh" || img.Config.OS != "linux" {
				t.Errorf("config = %+v", img.Config)
			}
			validateStored(t, store, img.ManifestDigest)

			rc, err := store.OpenBlob(ctx, img.Chain[0].Digest)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			zr, err := gzip.NewReader(rc)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.tar) {
				t.Error("the stored layer does not hold the tarball byte for byte")
			}

			again, err := Import(ctx, store, bytes.NewReader(tt.input), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if again.ManifestDigest != img.ManifestDigest {
				t.Errorf("importing the same tarball twice gave %s and %s", img.ManifestDigest, again.ManifestDigest)
			}
		})
	}
}

func TestImportErrors(t *testing.T) {
	rootfs := tarOf(t, map[string]string{"a": strings.Repeat("x", 5000)})
	tests := []struct {
		name  string
		input []byte
		want  string
	}{
		{"empty", nil, "empty"},
		{"not a tar", bytes.Repeat([]byte("hello "), 200), "not a tar archive"},
		{"truncated", rootfs[:2000], "truncated"},
		{"truncated gzip", gzipOf(t, rootfs)[:30], "truncated"},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00, 1, 2, 3}, "xz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := openStore(t)
			img, err := Import(t.Context(), store, bytes.NewReader(tt.input), v1.ConfigFile{})
			if err == nil {
				t.Fatalf("Import = %s, want an error", img.ID)
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Import error %q does not mention %q", err, tt.want)
			}
		})
	}
}
