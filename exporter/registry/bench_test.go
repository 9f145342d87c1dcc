package registry

import (
	"compress/gzip"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/kiln-build/kiln/cache"
)

// BenchmarkPushPull pushes and pulls a 200 MB image (4 layers of 50 MB of
// random, incompressible data) through ggcr's in-process registry on
// loopback; MB/s is the image size over the time of one push or pull.
func BenchmarkPushPull(b *testing.B) {
	const layers, layerSize = 4, 50 << 20
	ctx := context.Background()
	store := newStore(b)
	blobs := make([][]byte, layers)
	var total int64
	for i := range blobs {
		blobs[i] = layerBlob(b, uint64(i+100), layerSize, gzip.BestSpeed)
		total += int64(len(blobs[i]))
	}
	img := writeImage(b, store, blobs...)
	blobs = nil

	startRegistry := func() (string, func()) {
		srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
		return strings.TrimPrefix(srv.URL, "http://"), srv.Close
	}

	b.Run("push", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			b.StopTimer()
			reg, stop := startRegistry()
			b.StartTimer()
			if _, err := Push(ctx, store, img, reg+"/bench/img:1", testOptions()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			stop()
			b.StartTimer()
		}
	})

	b.Run("pull", func(b *testing.B) {
		reg, stop := startRegistry()
		defer stop()
		if _, err := Push(ctx, store, img, reg+"/bench/img:1", testOptions()); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(total)
		for b.Loop() {
			b.StopTimer()
			dir, err := os.MkdirTemp("", "kiln-bench-")
			if err != nil {
				b.Fatal(err)
			}
			s, err := cache.Open(ctx, dir, cache.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := Pull(ctx, s, reg+"/bench/img:1", testOptions()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			s.Close()
			os.RemoveAll(dir)
			b.StartTimer()
		}
	})
}
