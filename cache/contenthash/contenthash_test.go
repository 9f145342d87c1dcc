package contenthash

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestDigestCachesUntilStatChanges(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte("one"), 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(p, old, old)
	store := filepath.Join(t.TempDir(), "hashes.json")
	c := Open(store)
	reads := 0
	compute := func() (digest.Digest, error) {
		reads++
		b, err := os.ReadFile(p)
		return digest.FromBytes(b), err
	}
	stat := func() os.FileInfo {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	// ctime is "now" right after the write; pretend time has moved on.
	c.now = func() time.Time { return time.Now().Add(time.Minute) }
	ctx := context.Background()
	d1, _ := c.Digest(ctx, "f", stat(), compute)
	d2, _ := c.Digest(ctx, "f", stat(), compute)
	if d1 != d2 || reads != 1 {
		t.Fatalf("second lookup read the file (reads=%d)", reads)
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	c2 := Open(store)
	c2.now = c.now
	if _, err := c2.Digest(ctx, "f", stat(), compute); err != nil || reads != 1 {
		t.Fatalf("persisted cache not used (reads=%d, err=%v)", reads, err)
	}
	os.WriteFile(p, []byte("two"), 0o644)
	os.Chtimes(p, old, old) // same mtime, but size and ctime differ
	d3, _ := c2.Digest(ctx, "f", stat(), compute)
	if d3 == d1 || reads != 2 {
		t.Fatalf("changed file not re-read (reads=%d)", reads)
	}
}

func TestRacyEntriesNotRemembered(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("x"), 0o644)
	c := Open(filepath.Join(t.TempDir(), "h.json"))
	reads := 0
	fi, _ := os.Lstat(p)
	for range 2 {
		c.Digest(context.Background(), "f", fi, func() (digest.Digest, error) { reads++; return digest.FromString("x"), nil })
	}
	if reads != 2 {
		t.Errorf("a just-written file was served from the cache")
	}
}

func TestDamagedFileIgnored(t *testing.T) {
	store := filepath.Join(t.TempDir(), "h.json")
	os.WriteFile(store, []byte("{not json"), 0o644)
	if c := Open(store); len(c.index) != 0 {
		t.Errorf("damaged cache file loaded")
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	a := entry{Size: 5, Mtime: -3, Ctime: 1 << 40, Ino: 77, Mode: 0o100644}
	a.Sum[0], a.Sum[31] = 1, 2
	b := entry{Mode: 0o100600}
	b.Sum[5] = 9
	index := map[string]int{"a/b.txt": 0, "ü": 1}
	outIndex, out, err := decode(encode(index, []entry{a, b}, func(int) bool { return true }))
	if err != nil || len(out) != 2 || out[outIndex["a/b.txt"]] != a || out[outIndex["ü"]] != b {
		t.Errorf("round trip: %v %v %v", outIndex, out, err)
	}
}

// TestForgetsVanishedFiles checks that Save drops files not asked about
// when others were, and keeps everything when nothing was asked.
func TestForgetsVanishedFiles(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	for _, n := range []string{"a", "b"} {
		p := filepath.Join(dir, n)
		os.WriteFile(p, []byte(n), 0o644)
		os.Chtimes(p, old, old)
	}
	store := filepath.Join(t.TempDir(), "h")
	c := Open(store)
	c.now = func() time.Time { return time.Now().Add(time.Minute) }
	ctx := context.Background()
	for _, n := range []string{"a", "b"} {
		fi, _ := os.Lstat(filepath.Join(dir, n))
		c.Digest(ctx, n, fi, func() (digest.Digest, error) { return digest.FromString(n), nil })
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if c := Open(store); len(c.index) != 2 {
		t.Fatalf("saved %d entries, want 2", len(c.index))
	}
	Open(store).Save() // nothing asked: nothing dropped
	c = Open(store)
	fi, _ := os.Lstat(filepath.Join(dir, "a"))
	if sum, ok := c.LookupSum("a", fi); !ok || digest.NewDigestFromBytes(digest.SHA256, sum[:]) != digest.FromString("a") {
		t.Fatalf("LookupSum(a) = %x, %v", sum, ok)
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	c = Open(store)
	if _, ok := c.index["b"]; ok || len(c.index) != 1 {
		t.Fatalf("b was not asked about but is still cached: %v", c.index)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(map[string]int{"f": 0}, []entry{{Size: 1, Mode: 1}}, func(int) bool { return true }))
	f.Add([]byte(magic + "\x05abc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		decode(b) // must not panic
	})
}

// BenchmarkOpen measures loading the stat cache of a 20,000-file context,
// which every build of that context pays before its first COPY key.
func BenchmarkOpen(b *testing.B) {
	index := map[string]int{}
	entries := make([]entry, 20000)
	for i := range entries {
		index[fmt.Sprintf("src/dir%d/file%d.dat", i%200, i)] = i
		entries[i] = entry{Size: int64(i), Mtime: 1e18 + int64(i), Ctime: 1e18, Ino: uint64(i), Mode: 0o100644}
	}
	p := filepath.Join(b.TempDir(), "h")
	if err := os.WriteFile(p, encode(index, entries, func(int) bool { return true }), 0o600); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if c := Open(p); len(c.index) != 20000 {
			b.Fatal(len(c.index))
		}
	}
}
