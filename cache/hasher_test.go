package cache

import (
	"math/rand/v2"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestAsyncHasher(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, hashChunk - 1, hashChunk, hashChunk + 1, 3*hashChunks*hashChunk + 17} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rnd.IntN(256))
		}
		a := newAsyncHasher()
		// Writes of odd sizes, to cross chunk boundaries everywhere.
		for p := data; len(p) > 0; {
			k := min(len(p), 1+rnd.IntN(70000))
			if n, err := a.Write(p[:k]); n != k || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			p = p[k:]
		}
		d, n := a.Digest()
		if want := digest.FromBytes(data); d != want || n != int64(size) {
			t.Errorf("size %d: got %s (%d bytes), want %s", size, d, n, want)
		}
		a.end() // again: no effect
	}
}

func BenchmarkAsyncHasher(b *testing.B) {
	buf := make([]byte, 32<<10)
	b.SetBytes(64 << 20)
	for b.Loop() {
		a := newAsyncHasher()
		for range (64 << 20) / len(buf) {
			a.Write(buf)
		}
		a.Digest()
	}
}
