package layer

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireRoot skips t unless it runs as root.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root for mknod/chown; run as root: go test ./cache/layer/")
	}
}

// testTime is the mtime of generated entries.
var testTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// entry is one tar entry of a generated layer.
type entry struct {
	hdr  tar.Header
	body string
}

func hdr(typ byte, name string, mode int64) tar.Header {
	return tar.Header{Typeflag: typ, Name: name, Mode: mode, Uid: os.Getuid(), Gid: os.Getgid(), ModTime: testTime}
}

func reg(name, body string) entry {
	h := hdr(tar.TypeReg, name, 0o644)
	h.Size = int64(len(body))
	return entry{hdr: h, body: body}
}

func dir(name string) entry { return entry{hdr: hdr(tar.TypeDir, name, 0o755)} }

func symlink(name, target string) entry {
	h := hdr(tar.TypeSymlink, name, 0o777)
	h.Linkname = target
	return entry{hdr: h}
}

func hardlink(name, target string) entry {
	h := hdr(tar.TypeLink, name, 0o644)
	h.Linkname = target
	return entry{hdr: h}
}

func node(typ byte, name string, major, minor int64) entry {
	h := hdr(typ, name, 0o600)
	h.Devmajor, h.Devminor = major, minor
	return entry{hdr: h}
}

// with returns e with its header changed by fn.
func (e entry) with(fn func(h *tar.Header)) entry {
	fn(&e.hdr)
	return e
}

// makeTar returns the tar of entries.
func makeTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("write header %q: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("write body %q: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const sentinelBody = "host file, must not change"

// jail makes parent/root for unpacking, with a sentinel file and a sentinel
// directory next to root, and returns root and a check that nothing outside
// root changed.
func jail(t testing.TB) (root string, check func()) {
	t.Helper()
	return jailIn(t, t.TempDir())
}

// jailIn is jail in the empty directory parent.
func jailIn(t testing.TB, parent string) (root string, check func()) {
	t.Helper()
	root = filepath.Join(parent, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { makeRemovable(root) })
	sentinel := filepath.Join(parent, "sentinel")
	if err := os.WriteFile(sentinel, []byte(sentinelBody), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(parent, "sentineldir"), 0o755); err != nil {
		t.Fatal(err)
	}
	var before unix.Stat_t
	if err := unix.Lstat(sentinel, &before); err != nil {
		t.Fatal(err)
	}
	return root, func() {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(sentinel, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode != unix.S_IFREG|0o644 || st.Mtim != before.Mtim || st.Nlink != 1 || int(st.Uid) != os.Getuid() {
			t.Fatalf("sentinel metadata changed: mode %o nlink %d uid %d", st.Mode, st.Nlink, st.Uid)
		}
		got, err := os.ReadFile(sentinel)
		if err != nil || string(got) != sentinelBody {
			t.Fatalf("sentinel next to root changed: %q, %v", got, err)
		}
		names, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		var got2 []string
		for _, n := range names {
			got2 = append(got2, n.Name())
		}
		if want := []string{"root", "sentinel", "sentineldir"}; !slices.Equal(got2, want) {
			t.Fatalf("files next to root = %q, want %q", got2, want)
		}
		sub, err := os.ReadDir(filepath.Join(parent, "sentineldir"))
		if err != nil || len(sub) != 0 {
			t.Fatalf("sentinel directory changed: %v, %v", sub, err)
		}
		fi, err := os.Lstat(root)
		if err != nil || !fi.IsDir() {
			t.Fatalf("root is no longer a directory: %v, %v", fi, err)
		}
	}
}

// readFile returns the content of root/name, failing t if it is missing.
func readFile(t testing.TB, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lstat returns the stat of root/name, failing t if it is missing.
func lstat(t testing.TB, root, name string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, name), &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// missing fails t if root/name exists.
func missing(t testing.TB, root, name string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(root, name)); !os.IsNotExist(err) {
		t.Fatalf("%s exists (%v), want it missing", name, err)
	}
}

// makeRemovable makes every directory below root writable so the test's
// cleanup can remove a tree a layer made read-only.
func makeRemovable(root string) {
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}
