package cache

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkCommit commits an upper dir of 1000 files, 50 MB in all (half
// random, half repetitive text, so gzip has work to do), onto an empty
// chain. Only Commit is timed; every iteration writes the same tree with
// the same times, so it gives the same layer.
func BenchmarkCommit(b *testing.B) {
	const (
		files    = 1000
		fileSize = 50 << 20 / files
	)
	s := openStore(b, "")
	rng := rand.New(rand.NewChaCha8([32]byte{}))
	contents := make([][]byte, files)
	text := bytes.Repeat([]byte("RUN apt-get install -y build-essential # kiln\n"), fileSize/45+1)
	for i := range contents {
		c := make([]byte, fileSize)
		for j := 0; j < fileSize/2; j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8 && j+k < fileSize/2; k++ {
				c[j+k] = byte(v >> (8 * k))
			}
		}
		copy(c[fileSize/2:], text)
		contents[i] = c
	}
	mtime := time.Unix(1_700_000_000, 0)
	fill := func(upper string) {
		for i, c := range contents {
			dir := filepath.Join(upper, fmt.Sprintf("d%02d", i%50))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			p := filepath.Join(dir, fmt.Sprintf("f%04d", i))
			if err := os.WriteFile(p, c, 0o644); err != nil {
				b.Fatal(err)
			}
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				b.Fatal(err)
			}
		}
		for i := range 50 {
			if err := os.Chtimes(filepath.Join(upper, fmt.Sprintf("d%02d", i)), mtime, mtime); err != nil {
				b.Fatal(err)
			}
		}
	}
	ctx := b.Context()
	b.ReportAllocs()
	b.SetBytes(files * fileSize)
	for b.Loop() {
		b.StopTimer()
		a, err := s.Prepare(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		fill(a.UpperDir)
		b.StartTimer()
		chain, err := a.Commit(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(chain) != 1 {
			b.Fatalf("Commit = %v", chain)
		}
	}
}
