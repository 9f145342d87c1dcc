package layer

import (
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"
)

// benchTree returns the entries of a generated layer: 40 directories of 50
// files each, 2000 files and about 50 MB of content in all.
func benchTree() (entries []entry, size int64) {
	rng := rand.New(rand.NewPCG(1, 2))
	block := make([]byte, 64<<10)
	for i := range block {
		block[i] = byte(rng.IntN(256))
	}
	for d := range 40 {
		name := fmt.Sprintf("usr/lib/pkg%02d/", d)
		entries = append(entries, dir(name))
		for f := range 50 {
			n := rng.IntN(50000)
			e := reg(fmt.Sprintf("%sfile%03d.so", name, f), string(block[:n]))
			entries = append(entries, e)
			size += int64(n)
		}
	}
	return entries, size
}

func BenchmarkUnpack(b *testing.B) {
	entries, _ := benchTree()
	layer := makeTar(b, append([]entry{dir("usr/"), dir("usr/lib/")}, entries...)...)
	// Trees are removed only at the end: on file systems mounted with
	// discard, freeing blocks slows down the next unpack a lot.
	base := b.TempDir()
	b.SetBytes(int64(len(layer)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		dst := filepath.Join(base, strconv.Itoa(i))
		i++
		if err := Unpack(b.Context(), bytesReader(layer), dst, UnpackOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDiff(b *testing.B) {
	entries, size := benchTree()
	upper := b.TempDir()
	if err := Unpack(b.Context(), bytesReader(makeTar(b, entries...)), upper, UnpackOptions{}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Diff(b.Context(), upper, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// bytesReader returns a reader of b that, like a pipe or decompressor,
// offers no WriteTo or Seek shortcuts.
func bytesReader(b []byte) io.Reader {
	return struct{ io.Reader }{&sliceReader{b: b}}
}

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}
