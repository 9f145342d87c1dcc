package exporter

import (
	"archive/tar"
	"bytes"
	"math/rand/v2"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/cache"
)

func TestCompress(t *testing.T) {
	ctx := t.Context()
	store, err := cache.Open(ctx, t.TempDir(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	data := bytes.Repeat([]byte("kiln "), 10000)
	tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
	tw.Write(data)
	tw.Close()
	l, err := store.ImportLayer(ctx, bytes.NewReader(buf.Bytes()), cache.MediaTypeLayerTar, "")
	if err != nil {
		t.Fatal(err)
	}
	img, err := Write(ctx, store, cache.Chain{l}, v1.ConfigFile{})
	if err != nil {
		t.Fatal(err)
	}
	for _, algo := range []string{CompressionGzip, CompressionZstd} {
		t.Run(algo, func(t *testing.T) {
			c, err := Compress(ctx, store, img, algo, 0)
			if err != nil {
				t.Fatal(err)
			}
			if c.ID != img.ID {
				t.Errorf("image ID changed: %s -> %s", img.ID, c.ID)
			}
			if c.ManifestDigest == img.ManifestDigest {
				t.Errorf("manifest unchanged")
			}
			cl := c.Chain[0]
			if cl.DiffID != l.DiffID || cl.Size >= l.Size || cl.MediaType == l.MediaType {
				t.Errorf("compressed layer %+v from %+v", cl, l)
			}
			again, err := Compress(ctx, store, img, algo, 0)
			if err != nil || again.ManifestDigest != c.ManifestDigest {
				t.Errorf("second compression differs: %v", err)
			}
			if _, err := Read(ctx, store, c.ManifestDigest); err != nil {
				t.Errorf("compressed image does not read back: %v", err)
			}
		})
	}
	if _, err := Compress(ctx, store, img, "lz4", 0); err == nil {
		t.Error("unknown compression accepted")
	}
}

// BenchmarkCompress compares gzip and zstd for exporting a 64 MB layer
// (half random, half repetitive text), as push does.
func BenchmarkCompress(b *testing.B) {
	ctx := b.Context()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	rnd := make([]byte, 32<<20)
	rand.NewChaCha8([32]byte{1}).Read(rnd)
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), (32<<20)/44)
	for i, data := range [][]byte{rnd, text} {
		tw.WriteHeader(&tar.Header{Name: string(rune('a' + i)), Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.Close()
	for _, algo := range []string{CompressionGzip, CompressionZstd} {
		b.Run(algo, func(b *testing.B) {
			b.SetBytes(int64(buf.Len()))
			var size int64
			for b.Loop() {
				b.StopTimer()
				store, err := cache.Open(ctx, b.TempDir(), cache.Options{})
				if err != nil {
					b.Fatal(err)
				}
				l, err := store.ImportLayer(ctx, bytes.NewReader(buf.Bytes()), cache.MediaTypeLayerTar, "")
				if err != nil {
					b.Fatal(err)
				}
				img, err := Write(ctx, store, cache.Chain{l}, v1.ConfigFile{})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				c, err := Compress(ctx, store, img, algo, 0)
				if err != nil {
					b.Fatal(err)
				}
				size = c.Chain[0].Size
				b.StopTimer()
				store.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(size)/float64(buf.Len()), "ratio")
		})
	}
}
