package contenthash

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"syscall"
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
	good := encodeAll(map[string]entry{"a": {Mode: 1}, "b": {Mode: 1}})
	unsorted := append([]byte(magic), good[len(magic)+1+1+fixedSize:]...)
	unsorted = append(unsorted, good[len(magic):len(magic)+1+1+fixedSize]...)
	for name, b := range map[string][]byte{
		"not ours":  []byte("{not json"),
		"old":       []byte("kiln-contenthash-3\n"),
		"truncated": good[:len(good)-1],
		"unsorted":  unsorted,
	} {
		store := filepath.Join(t.TempDir(), "h")
		os.WriteFile(store, b, 0o644)
		if c := Open(store); len(c.names) != 0 {
			t.Errorf("%s: damaged cache file loaded: %q", name, c.names)
		}
	}
	store := filepath.Join(t.TempDir(), "h")
	os.WriteFile(store, good, 0o644)
	if c := Open(store); !slices.Equal(c.names, []string{"a", "b"}) {
		t.Errorf("good file: names %q", c.names)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	a := entry{Size: 5, Mtime: -3, Ctime: 1 << 40, Ino: 77, Mode: 0o100644}
	a.Sum[0], a.Sum[31] = 1, 2
	b := entry{Mode: 0o100600}
	b.Sum[5] = 9
	raw := encodeAll(map[string]entry{"a/b.txt": a, "ü": b})
	names, fixed, err := decode(raw)
	if err != nil || !slices.Equal(names, []string{"a/b.txt", "ü"}) ||
		entryAt(raw[fixed[0]:]) != a || entryAt(raw[fixed[1]:]) != b {
		t.Errorf("round trip: %q %v %v", names, fixed, err)
	}
}

// encodeAll is a cache file holding entries.
func encodeAll(entries map[string]entry) []byte {
	names := slices.Sorted(maps.Keys(entries))
	b := []byte(magic)
	for _, n := range names {
		e := entries[n]
		b = appendEntry(b, n, &e)
	}
	return b
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
	if c := Open(store); len(c.names) != 2 {
		t.Fatalf("saved %d entries, want 2", len(c.names))
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
	if !slices.Equal(c.names, []string{"a"}) {
		t.Fatalf("b was not asked about but is still cached: %q", c.names)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encodeAll(map[string]entry{"f": {Size: 1, Mode: 1}, "g": {}}))
	f.Add([]byte(magic + "\x05abc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		names, fixed, err := decode(b) // must not panic
		if err == nil {
			for i := range names {
				entryAt(b[fixed[i]:])
			}
		}
	})
}

// benchCache writes the stat cache of a 20,000-file context and returns
// its path and names.
func benchCache(b *testing.B) (string, []string) {
	entries := map[string]entry{}
	var names []string
	for i := range 20000 {
		n := fmt.Sprintf("src/dir%d/file%d.dat", i%200, i)
		entries[n] = entry{Size: int64(i), Mtime: 1e18 + int64(i), Ctime: 1e18, Ino: uint64(i), Mode: 0o100644}
		names = append(names, n)
	}
	p := filepath.Join(b.TempDir(), "h")
	if err := os.WriteFile(p, encodeAll(entries), 0o600); err != nil {
		b.Fatal(err)
	}
	return p, names
}

// BenchmarkOpen measures loading the stat cache of a 20,000-file context,
// which every build of that context pays before its first COPY key.
func BenchmarkOpen(b *testing.B) {
	p, _ := benchCache(b)
	b.ReportAllocs()
	for b.Loop() {
		if c := Open(p); len(c.names) != 20000 {
			b.Fatal(len(c.names))
		}
	}
}

// BenchmarkLookupAll asks about every file of that context once, as a
// no-op rebuild does.
func BenchmarkLookupAll(b *testing.B) {
	p, names := benchCache(b)
	c := Open(p)
	fi := fakeInfo{st: &syscall.Stat_t{Size: 1, Mode: syscall.S_IFREG | 0o644}}
	b.ReportAllocs()
	for b.Loop() {
		for _, n := range names {
			c.LookupSum(n, fi)
		}
	}
}

// fakeInfo is a regular file's stat data.
type fakeInfo struct{ st *syscall.Stat_t }

func (f fakeInfo) Name() string       { return "f" }
func (f fakeInfo) Size() int64        { return f.st.Size }
func (f fakeInfo) Mode() fs.FileMode  { return 0o644 }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return false }
func (f fakeInfo) Sys() any           { return f.st }

// TestLookupFindsEveryName checks the directory brackets on a tree whose
// directories' entries are interleaved with their subdirectories'.
func TestLookupFindsEveryName(t *testing.T) {
	entries := map[string]entry{}
	for _, n := range []string{"a", "a/b", "a/b/c", "a/b0", "a/c", "a/b/d", "a-b/x", "b", "b/a/a/a", "b/z", "z", "a/b/c/e"} {
		entries[n] = entry{Mode: 1, Ino: uint64(len(entries) + 1)}
	}
	p := filepath.Join(t.TempDir(), "h")
	os.WriteFile(p, encodeAll(entries), 0o600)
	c := Open(p)
	if len(c.names) != len(entries) {
		t.Fatalf("loaded %d of %d", len(c.names), len(entries))
	}
	for n, e := range entries {
		i, ok := c.lookup(n)
		if !ok || c.names[i] != n || entryAt(c.buf[c.fixed[i]:]) != e {
			t.Errorf("lookup(%q) = %d, %v", n, i, ok)
		}
	}
	for _, n := range []string{"", "a/", "a/a", "a/b/e", "b/a", "c/x", "a/b/c/f"} {
		if i, ok := c.lookup(n); ok {
			t.Errorf("lookup(%q) found %q", n, c.names[i])
		}
	}
}
