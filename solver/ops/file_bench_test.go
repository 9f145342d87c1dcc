package ops

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/solver/ops/fileop"
)

// BenchmarkContextKey measures the cache key of COPY . / over a context of
// 5,000 files (about 40 MB) — what every build pays before it can decide a
// COPY is cached.
func BenchmarkContextKey(b *testing.B) {
	dir := b.TempDir()
	var total int64
	data := make([]byte, 8192)
	for i := range 5000 {
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", i%50))
		os.MkdirAll(sub, 0o755)
		data[0] = byte(i)
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%d", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(len(data))
	}
	op := &File{Action: fileop.Action{Copy: &fileop.Copy{Sources: []string{"."}, Dest: "/app/"}}, ContextDir: dir}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := op.CacheKey(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkContextKeyDir hashes the context directory named by
// KILN_BENCH_CONTEXT (skipped without it) as a COPY . cache key with no
// stat cache: the issue-5 figure "hashing a 1 GB context", to set against
// one sha256sum over the same files (bench/hash-context runs both).
func BenchmarkContextKeyDir(b *testing.B) {
	dir := os.Getenv("KILN_BENCH_CONTEXT")
	if dir == "" {
		b.Skip("set KILN_BENCH_CONTEXT to a context directory")
	}
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			total += fi.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	op := &File{Action: fileop.Action{Copy: &fileop.Copy{Sources: []string{"."}, Dest: "/app/"}}, ContextDir: dir}
	b.SetBytes(total)
	for b.Loop() {
		if _, err := op.CacheKey(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}
