package fileop

import (
	"crypto/sha256"
	"io/fs"
	"os"
	"testing"
)

// BenchmarkChecksumAllHits is the no-op rebuild's COPY key: the context in
// KILN_BENCH_CONTEXT (skipped without it) walked with every file a
// stat-cache hit.
func BenchmarkChecksumAllHits(b *testing.B) {
	dir := os.Getenv("KILN_BENCH_CONTEXT")
	if dir == "" {
		b.Skip("set KILN_BENCH_CONTEXT to a context directory")
	}
	src, err := os.OpenRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	c := &Copy{Sources: []string{"."}}
	opts := ChecksumOptions{Lookup: func(string, fs.FileInfo) ([sha256.Size]byte, bool) { return [sha256.Size]byte{1}, true }}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ChecksumWith(b.Context(), src, c, opts); err != nil {
			b.Fatal(err)
		}
	}
}
