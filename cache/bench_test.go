package cache

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

const (
	benchFiles    = 1000
	benchFileSize = 50 << 20 / benchFiles
)

// benchTree returns a function that writes 1000 files, 50 MB in all (half
// random, half repetitive text), into an upper dir. Every call writes the
// same tree with the same times, so it gives the same layer.
func benchTree(b *testing.B) func(upper string) {
	rng := rand.New(rand.NewChaCha8([32]byte{}))
	contents := make([][]byte, benchFiles)
	text := bytes.Repeat([]byte("RUN apt-get install -y build-essential # kiln\n"), benchFileSize/45+1)
	for i := range contents {
		c := make([]byte, benchFileSize)
		for j := 0; j < benchFileSize/2; j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8 && j+k < benchFileSize/2; k++ {
				c[j+k] = byte(v >> (8 * k))
			}
		}
		copy(c[benchFileSize/2:], text)
		contents[i] = c
	}
	mtime := time.Unix(1_700_000_000, 0)
	return func(upper string) {
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
}

// BenchmarkCommit commits an upper dir of 1000 files, 50 MB in all, onto an
// empty chain. Only Commit is timed: a diff hashed for the diff ID, no blob
// written (see BenchmarkCommitMaterialize for the first read of the blob).
//
// Each iteration adds a file holding its number, so every Commit makes a new
// layer and renames the upper dir into place, as a build step does. (The
// same layer again would instead remove the upper dir, which on this
// benchmark mostly measures the filesystem.)
func BenchmarkCommit(b *testing.B) {
	s := openStore(b, "")
	fill := benchTree(b)
	ctx := b.Context()
	b.ReportAllocs()
	b.SetBytes(benchFiles * benchFileSize)
	n := 0
	for b.Loop() {
		b.StopTimer()
		a, err := s.Prepare(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		fill(a.UpperDir)
		n++
		if err := os.WriteFile(filepath.Join(a.UpperDir, "iteration"), []byte(fmt.Sprint(n)), 0o644); err != nil {
			b.Fatal(err)
		}
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

// BenchmarkCommitMaterialize times what an export of the layer of
// BenchmarkCommit costs on top of Commit: the first read of its lazy blob,
// which writes the uncompressed tar (fsync'ed) into blobs/.
func BenchmarkCommitMaterialize(b *testing.B) {
	s := openStore(b, "")
	fill := benchTree(b)
	ctx := b.Context()
	a, err := s.Prepare(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	fill(a.UpperDir)
	chain, err := a.Commit(ctx)
	if err != nil {
		b.Fatal(err)
	}
	d := chain[0].Digest
	b.ReportAllocs()
	b.SetBytes(benchFiles * benchFileSize)
	for b.Loop() {
		b.StopTimer()
		if err := os.Remove(blobFile(s, d)); err != nil && !os.IsNotExist(err) {
			b.Fatal(err)
		}
		b.StartTimer()
		rc, err := s.OpenBlob(ctx, d)
		if err != nil {
			b.Fatal(err)
		}
		if err := rc.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecordLookupKey records a cache key and looks it up, as every
// executed build step does (each opens the index on its own, so that two
// kiln processes interleave).
func BenchmarkRecordLookupKey(b *testing.B) {
	s, err := Open(b.Context(), b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	a, err := s.Prepare(b.Context(), nil)
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(a.UpperDir, "f"), []byte("x"), 0o644)
	chain, err := a.Commit(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		k := digest.FromString(fmt.Sprint("key", i))
		if err := s.RecordKey(b.Context(), k, chain); err != nil {
			b.Fatal(err)
		}
		if _, err := s.LookupKey(b.Context(), k); err != nil {
			b.Fatal(err)
		}
	}
}
