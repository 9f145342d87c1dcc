package ops

import (
	"fmt"
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
