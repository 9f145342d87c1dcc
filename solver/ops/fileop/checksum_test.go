//go:build unix

package fileop

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func checksumOf(t testing.TB, src string, c Copy) digest.Digest {
	t.Helper()
	d, err := Checksum(t.Context(), openRoot(t, src), &c)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestChecksum(t *testing.T) {
	src := []node{
		file("a.txt", "A", 0o644),
		dir("dir", 0o755),
		file("dir/x", "X", 0o644),
		file("dir/ignored.log", "L", 0o644),
		symlink("dir/l", "x"),
		file("other", "O", 0o644),
	}
	excl := []string{"*.log", "**/*.log"}
	cp := Copy{Sources: []string{"a.txt", "dir"}, Excludes: excl}
	cases := []struct {
		name   string
		change func(t *testing.T, root string)
		copy   *Copy // nil means cp
		same   bool
	}{
		{
			name: "mtime change",
			change: func(t *testing.T, root string) {
				later := time.Now()
				for _, p := range []string{"a.txt", "dir", "dir/x"} {
					if err := os.Chtimes(filepath.Join(root, p), later, later); err != nil {
						t.Fatal(err)
					}
				}
			},
			same: true,
		},
		{
			name:   "excluded file change",
			change: func(t *testing.T, root string) { write(t, root, "dir/ignored.log", "changed") },
			same:   true,
		},
		{
			name:   "file outside the sources",
			change: func(t *testing.T, root string) { write(t, root, "other", "changed") },
			same:   true,
		},
		{
			name: "owner change without PreserveOwner",
			change: func(t *testing.T, root string) {
				requireRoot(t)
				if err := os.Chown(filepath.Join(root, "dir/x"), 123, 456); err != nil {
					t.Fatal(err)
				}
			},
			same: true,
		},
		{
			name: "owner change with PreserveOwner",
			change: func(t *testing.T, root string) {
				requireRoot(t)
				if err := os.Chown(filepath.Join(root, "dir/x"), 123, 456); err != nil {
					t.Fatal(err)
				}
			},
			copy: &Copy{Sources: []string{"a.txt", "dir"}, Excludes: excl, PreserveOwner: true},
		},
		{
			name:   "content change",
			change: func(t *testing.T, root string) { write(t, root, "dir/x", "Y") },
		},
		{
			name:   "same size content change",
			change: func(t *testing.T, root string) { write(t, root, "a.txt", "B") },
		},
		{
			name: "mode change",
			change: func(t *testing.T, root string) {
				if err := os.Chmod(filepath.Join(root, "dir/x"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "dir mode change",
			change: func(t *testing.T, root string) {
				if err := os.Chmod(filepath.Join(root, "dir"), 0o700); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "symlink target change",
			change: func(t *testing.T, root string) {
				p := filepath.Join(root, "dir/l")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("y", p); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name:   "added file",
			change: func(t *testing.T, root string) { write(t, root, "dir/new", "") },
		},
		{
			name:   "added empty dir",
			change: func(t *testing.T, root string) { mkTree(t, root, dir("dir/newdir", 0o755)) },
		},
		{
			name: "renamed file",
			change: func(t *testing.T, root string) {
				if err := os.Rename(filepath.Join(root, "dir/x"), filepath.Join(root, "dir/z")); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			mkTree(t, root, src...)
			c := cp
			if tc.copy != nil {
				c = *tc.copy
			}
			before := checksumOf(t, root, c)
			tc.change(t, root)
			after := checksumOf(t, root, c)
			if (before == after) != tc.same {
				t.Errorf("digest before %s, after %s; want same=%v", before, after, tc.same)
			}
		})
	}
}

func write(t *testing.T, root, name, data string) {
	t.Helper()
	p := filepath.Join(root, name)
	fi, err := os.Lstat(p)
	mode := fs.FileMode(0o644)
	if err == nil {
		mode = fi.Mode()
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func TestChecksumCoversTheCopyItself(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, file("a.txt", "A", 0o644), file("b.txt", "A", 0o644), symlink("l", "a.txt"))
	seen := map[digest.Digest]string{}
	for _, c := range []Copy{
		{Sources: []string{"a.txt"}},
		{Sources: []string{"b.txt"}},
		{Sources: []string{"?.txt"}},
		{Sources: []string{"l"}},
		{Sources: []string{"a.txt"}, Unpack: true},
		{Sources: []string{"a.txt", "b.txt"}},
		{Sources: []string{"b.txt", "a.txt"}},
	} {
		d := checksumOf(t, root, c)
		if prev, ok := seen[d]; ok {
			t.Errorf("%+v and %s share digest %s", c, prev, d)
		}
		seen[d] = fmt.Sprintf("%+v", c)
	}
	// Fields Apply uses but that do not change what is read are the op
	// key's business, not the checksum's.
	a := checksumOf(t, root, Copy{Sources: []string{"a.txt"}, Dest: "/x"})
	b := checksumOf(t, root, Copy{Sources: []string{"a.txt"}, Dest: "/y", Chmod: "755"})
	if a != b {
		t.Errorf("Dest and Chmod changed the checksum")
	}
}

func TestChecksumMissingSource(t *testing.T) {
	root := t.TempDir()
	_, err := Checksum(t.Context(), openRoot(t, root), &Copy{Sources: []string{"foo"}})
	const want = "file not found in build context or excluded by .dockerignore: stat foo: file does not exist"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
}

func TestChecksumWithFileDigest(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, baseSrc...)
	c := Copy{Sources: []string{"a.txt", "dir"}}
	var mu sync.Mutex
	var names []string
	opts := ChecksumOptions{FileDigest: func(ctx context.Context, src *os.Root, name string, fi fs.FileInfo) (digest.Digest, error) {
		mu.Lock()
		names = append(names, name)
		mu.Unlock()
		return DigestFile(ctx, src, name, fi.Size())
	}}
	got, err := ChecksumWith(t.Context(), openRoot(t, root), &c, opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := checksumOf(t, root, c); got != want {
		t.Errorf("with DigestFile hook: %s, without: %s", got, want)
	}
	// The hook runs on several hashers at once: compare the set of calls.
	sort.Strings(names)
	if want := "a.txt dir/c.txt dir/sub/y dir/x"; strings.Join(names, " ") != want {
		t.Errorf("hook saw %q, want %q", strings.Join(names, " "), want)
	}
}

// TestChecksumWithLookup checks that digests from the Lookup hook give the
// same checksum as reading the files, whether it knows every file or some.
func TestChecksumWithLookup(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, baseSrc...)
	c := Copy{Sources: []string{"a.txt", "dir"}}
	want := checksumOf(t, root, c)
	src := openRoot(t, root)
	for _, skip := range []string{"", "dir/x"} {
		var mu sync.Mutex
		read := 0
		opts := ChecksumOptions{
			Lookup: func(name string, fi fs.FileInfo) ([32]byte, bool) {
				if name == skip {
					return [32]byte{}, false
				}
				b, err := src.ReadFile(name)
				if err != nil {
					t.Error(err)
				}
				return sha256.Sum256(b), true
			},
			FileDigest: func(ctx context.Context, src *os.Root, name string, fi fs.FileInfo) (digest.Digest, error) {
				mu.Lock()
				read++
				mu.Unlock()
				return DigestFile(ctx, src, name, fi.Size())
			},
		}
		got, err := ChecksumWith(t.Context(), src, &c, opts)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("lookup missing %q: %s, reading every file: %s", skip, got, want)
		}
		if wantRead := map[bool]int{true: 0, false: 1}[skip == ""]; read != wantRead {
			t.Errorf("lookup missing %q: FileDigest called %d times, want %d", skip, read, wantRead)
		}
	}
}

// FuzzCleanSource checks that no source string reaches outside the source
// root, whatever symlinks the root holds.
func FuzzCleanSource(f *testing.F) {
	for _, s := range []string{
		"", ".", "/", "..", "../..", "../secret.txt", "/../secret.txt", "a/../../secret.txt",
		"esc", "up/secret.txt", "absdir/../secret.txt", "*", "*/..", "u?/*", `\..`, "dir/[a-z]*", "loop/x",
	} {
		f.Add(s)
	}
	parent := f.TempDir()
	mkTree(f, parent, file("secret.txt", "DECOY", 0o644))
	rootDir := filepath.Join(parent, "ctx")
	mkTree(f, rootDir,
		file("a.txt", "A", 0o644),
		dir("dir", 0o755),
		file("dir/x", "X", 0o644),
		symlink("esc", "../secret.txt"),
		symlink("up", ".."),
		symlink("absdir", "/"),
		symlink("dir/deep", "../../../../.."),
		symlink("loop", "loop"),
	)
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { root.Close() })
	f.Fuzz(func(t *testing.T, s string) {
		p := cleanSource(s)
		if !isLocal(p) {
			t.Fatalf("cleanSource(%q) = %q, not a local path", s, p)
		}
		tree, err := newSrcTree(root, nil)
		if err != nil {
			t.Fatal(err)
		}
		matches, err := resolveSources(t.Context(), tree, &Copy{Sources: []string{s}})
		if err != nil {
			return
		}
		for _, m := range matches {
			if !isLocal(m.real) || !isLocal(m.name) {
				t.Fatalf("source %q resolved to %q, outside the root", s, m.real)
			}
			if m.fi.Mode().IsRegular() {
				b, err := root.ReadFile(m.real)
				if err != nil {
					t.Fatal(err)
				}
				if string(b) == "DECOY" {
					t.Fatalf("source %q read the decoy next to the root", s)
				}
			}
		}
	})
}

// isLocal reports whether p is "." or a clean relative path that stays
// below its root (file names need not be UTF-8, unlike fs.ValidPath).
func isLocal(p string) bool {
	if p == "." {
		return true
	}
	if p == "" || path.IsAbs(p) {
		return false
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}

// BenchmarkChecksum digests a context of 5,000 files, about 50 MB.
func BenchmarkChecksum(b *testing.B) {
	root := b.TempDir()
	const files, size = 5000, 10 << 10
	data := make([]byte, size)
	var total int64
	for i := range files {
		p := filepath.Join(root, fmt.Sprintf("d%02d/s%02d/f%04d", i%50, i%7, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		rand.Read(data)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		total += size
	}
	src, err := os.OpenRoot(root)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	c := &Copy{Sources: []string{"."}, Excludes: []string{"**/*.log"}}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Checksum(b.Context(), src, c); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCollectMatchesWalk checks that the parallel walk of ChecksumWith
// yields exactly the entries, in exactly the order, of the sequential walk
// that Apply uses, with .dockerignore exclusions and re-inclusions, over
// enough directories that several goroutines take part.
func TestCollectMatchesWalk(t *testing.T) {
	src := t.TempDir()
	for i := range 60 {
		for j := range 4 {
			os.MkdirAll(filepath.Join(src, fmt.Sprintf("d%02d/s%d", i, j)), 0o755)
			write(t, src, fmt.Sprintf("d%02d/s%d/f%d.txt", i, j, i*j), "x")
		}
		write(t, src, fmt.Sprintf("d%02d/top.log", i), "log")
		os.Symlink("top.log", filepath.Join(src, fmt.Sprintf("d%02d/link", i)))
	}
	for _, excludes := range [][]string{nil, {"*/s1", "**/*.log", "!d07/top.log", "d1*", "!d12/s2"}} {
		tree, err := newSrcTree(openRoot(t, src), excludes)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		err = tree.walkDir(t.Context(), ".", nil, func(e *entry) error {
			want = append(want, e.rel+" "+typeNames[fileType(e.fi.Mode())])
			return nil
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := summer{ctx: t.Context(), src: tree.root}
		pool := newHashPool(t.Context(), &s)
		recs, err := tree.collect(t.Context(), ".", pool)
		pool.close()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			got = append(got, r.rel+" "+typeNames[r.typ])
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("excludes %q: parallel walk differs from the sequential one:\n%s", excludes, diffLines(got, want))
		}
		if len(want) < 100 {
			t.Errorf("excludes %q: only %d entries walked", excludes, len(want))
		}
	}
}

// diffLines shows the first difference between two line lists.
func diffLines(got, want []string) string {
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return fmt.Sprintf("entry %d: got %q, want %q (%d vs %d entries)", i, g, w, len(got), len(want))
		}
	}
	return ""
}

// TestDigestFileSize: the size only sizes the buffer; a stale one still
// gives the file's digest.
func TestDigestFileSize(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("kiln"), 50000) // 200 KB, past one buffer
	if err := os.WriteFile(filepath.Join(dir, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := digest.FromBytes(data)
	root := openRoot(t, dir)
	for _, size := range []int64{0, 1, 600, int64(len(data)), 1 << 30} {
		if got, err := DigestFile(t.Context(), root, "f", size); err != nil || got != want {
			t.Errorf("size %d: %s %v, want %s", size, got, err, want)
		}
	}
}

// TestChecksumStable pins the checksum of a small tree: the digests are
// cache keys, so a change of their bytes must come with a new
// checksumVersion. (Owners are pinned when running as root, who can set
// them.)
func TestChecksumStable(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, file("a.txt", "A", 0o644), dir("d", 0o750), file("d/x", "xx", 0o600), symlink("d/l", "../a.txt"))
	if got, want := checksumOf(t, root, Copy{Sources: []string{"."}}), digest.Digest("sha256:216ce48985f7baa1f2057459a3e4631224d23b31d1147727757c732492ac90ca"); got != want {
		t.Errorf("checksum = %s, want %s", got, want)
	}
	if !isRoot() {
		return
	}
	for _, p := range []string{"a.txt", "d", "d/x", "d/l"} {
		if err := os.Lchown(filepath.Join(root, p), 1000, 2000); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := checksumOf(t, root, Copy{Sources: []string{"*.txt", "d"}, PreserveOwner: true}), digest.Digest("sha256:8c8b11093d066e951750bc2f58d2886da35e65e6608aa319453d53fe501b305b"); got != want {
		t.Errorf("checksum with owners = %s, want %s", got, want)
	}
}
