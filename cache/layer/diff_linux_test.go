package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tarEntry is what a test checks of a tar entry.
type tarEntry struct {
	Name     string
	Type     byte
	Mode     int64
	Size     int64
	Linkname string
	Xattrs   string
}

func (e tarEntry) String() string {
	return fmt.Sprintf("%s %c %o size=%d link=%q xattrs=%s", e.Name, e.Type, e.Mode, e.Size, e.Linkname, e.Xattrs)
}

// listTar returns the entries of a tar, failing t on malformed input.
func listTar(t testing.TB, b []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		if h.Uname != "" || h.Gname != "" || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() || h.ModTime.Nanosecond() != 0 {
			t.Errorf("%s: uname %q gname %q atime %v ctime %v mtime %v", h.Name, h.Uname, h.Gname, h.AccessTime, h.ChangeTime, h.ModTime)
		}
		var xs []string
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, paxXattrPrefix); ok {
				xs = append(xs, x+"="+v)
			}
		}
		slices.Sort(xs)
		out = append(out, tarEntry{h.Name, h.Typeflag, h.Mode, h.Size, h.Linkname, strings.Join(xs, ",")})
	}
}

// diffBytes runs Diff on dir and returns the tar and entry count.
func diffBytes(t testing.TB, dir string) ([]byte, int) {
	t.Helper()
	var buf bytes.Buffer
	n, err := Diff(t.Context(), dir, &buf)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	return buf.Bytes(), n
}

// must fails t on err.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// writeFile creates root/name with content and mode (unix bits).
func writeFile(t testing.TB, root, name, content string, mode uint32) {
	t.Helper()
	p := filepath.Join(root, name)
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(content), 0o600))
	must(t, unix.Chmod(p, mode))
}

// mknod creates root/name with mode and dev, ignoring the umask.
func mknod(t testing.TB, root, name string, mode uint32, dev uint64) {
	t.Helper()
	p := filepath.Join(root, name)
	must(t, unix.Mknod(p, mode, int(dev)))
	must(t, unix.Chmod(p, mode&0o7777))
}

// setTimes sets the mtime of everything below root, children first.
func setTimes(t testing.TB, root string) {
	t.Helper()
	var paths []string
	must(t, filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	slices.Reverse(paths)
	ts := []unix.Timespec{unix.NsecToTimespec(testTime.UnixNano() + 123), unix.NsecToTimespec(testTime.UnixNano() + 456)}
	for _, p := range paths {
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// plainTree builds a tree any user can build: files, dirs, symlinks, hard
// links, a fifo, a socket, user xattrs.
func plainTree(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, root, "a/b", "ab", 0o644)
	writeFile(t, root, "a-c", "ac", 0o600)
	writeFile(t, root, "a/z/deep", strings.Repeat("d", 3000), 0o755)
	writeFile(t, root, "bin/su", "su", 0o4755)
	writeFile(t, root, "hard1", "h", 0o640)
	must(t, os.Link(filepath.Join(root, "hard1"), filepath.Join(root, "a/hard2")))
	must(t, os.Link(filepath.Join(root, "hard1"), filepath.Join(root, "zhard3")))
	must(t, os.Symlink("/a/b", filepath.Join(root, "abs")))
	must(t, os.Symlink("../a-c", filepath.Join(root, "a/rel")))
	mknod(t, root, "fifo", unix.S_IFIFO|0o620, 0)
	must(t, os.Mkdir(filepath.Join(root, "empty"), 0o700))
	must(t, unix.Chmod(filepath.Join(root, "empty"), 0o1777))
	must(t, unix.Setxattr(filepath.Join(root, "a/b"), "user.kiln", []byte("value"), 0))
	must(t, unix.Setxattr(filepath.Join(root, "a"), "user.dir", []byte("d"), 0))
	must(t, unix.Setxattr(filepath.Join(root, "a"), "user.overlay.opaque", []byte("n"), 0))
	l, err := net.Listen("unix", filepath.Join(root, "sock"))
	must(t, err)
	l.Close()
	long := strings.Repeat("x", 150)
	writeFile(t, root, long, "long", 0o644)
	setTimes(t, root)
	return root
}

func TestDiffPlain(t *testing.T) {
	root := plainTree(t)
	b, n := diffBytes(t, root)
	got := listTar(t, b)
	long := strings.Repeat("x", 150)
	want := []tarEntry{
		{Name: "a/", Type: tar.TypeDir, Mode: 0o755, Xattrs: "user.dir=d"},
		{Name: "a/b", Type: tar.TypeReg, Mode: 0o644, Size: 2, Xattrs: "user.kiln=value"},
		{Name: "a/hard2", Type: tar.TypeReg, Mode: 0o640, Size: 1},
		{Name: "a/rel", Type: tar.TypeSymlink, Mode: 0o777, Linkname: "../a-c"},
		{Name: "a/z/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "a/z/deep", Type: tar.TypeReg, Mode: 0o755, Size: 3000},
		{Name: "a-c", Type: tar.TypeReg, Mode: 0o600, Size: 2},
		{Name: "abs", Type: tar.TypeSymlink, Mode: 0o777, Linkname: "/a/b"},
		{Name: "bin/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "bin/su", Type: tar.TypeReg, Mode: 0o4755, Size: 2},
		{Name: "empty/", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "fifo", Type: tar.TypeFifo, Mode: 0o620},
		{Name: "hard1", Type: tar.TypeLink, Mode: 0o640, Linkname: "a/hard2"},
		{Name: long, Type: tar.TypeReg, Mode: 0o644, Size: 4},
		{Name: "zhard3", Type: tar.TypeLink, Mode: 0o640, Linkname: "a/hard2"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Diff entries:\n%s\nwant:\n%s", fmtEntries(got), fmtEntries(want))
	}
	if n != len(want) {
		t.Errorf("Diff = %d, want %d", n, len(want))
	}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "a/z/deep" {
			body, _ := io.ReadAll(tr)
			if string(body) != strings.Repeat("d", 3000) || h.ModTime.Unix() != testTime.Unix() || h.Uid != os.Getuid() {
				t.Errorf("a/z/deep: body %d bytes, mtime %v, uid %d", len(body), h.ModTime, h.Uid)
			}
			break
		}
	}
}

func fmtEntries(es []tarEntry) string {
	var sb strings.Builder
	for _, e := range es {
		sb.WriteString("\t" + e.String() + "\n")
	}
	return sb.String()
}

func TestDiffDeterministic(t *testing.T) {
	root := plainTree(t)
	a, _ := diffBytes(t, root)
	b, _ := diffBytes(t, root)
	if !bytes.Equal(a, b) {
		t.Fatal("two Diffs of the same tree differ")
	}
	// Unpacking and diffing again gives the same bytes too.
	dst := t.TempDir()
	must(t, Unpack(t.Context(), bytes.NewReader(a), dst, UnpackOptions{NoSameOwner: true}))
	c, _ := diffBytes(t, dst)
	if !bytes.Equal(a, c) {
		t.Fatalf("Diff after Unpack differs:\n%s\nwant:\n%s", fmtEntries(listTar(t, c)), fmtEntries(listTar(t, a)))
	}
}

func TestDiffEmpty(t *testing.T) {
	b, n := diffBytes(t, t.TempDir())
	if n != 0 || !bytes.Equal(b, make([]byte, 1024)) {
		t.Errorf("Diff of an empty dir = %d entries, %d bytes; want 0 and 1024 zero bytes", n, len(b))
	}
}

func TestDiffErrors(t *testing.T) {
	if _, err := Diff(t.Context(), filepath.Join(t.TempDir(), "missing"), io.Discard); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Diff of a missing dir = %v, want ErrNotExist", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Diff(ctx, plainTree(t), io.Discard); !errors.Is(err, context.Canceled) {
		t.Errorf("Diff canceled = %v, want context.Canceled", err)
	}
	if _, err := Diff(t.Context(), plainTree(t), failWriter{}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Diff to a failing writer = %v", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// overlayTree builds an upper directory in overlay format: whiteouts
// (one pair hard-linked, as overlayfs does), an opaque directory, devices,
// setuid, owners, a file capability.
func overlayTree(t testing.TB) string {
	t.Helper()
	root := plainTree(t)
	writeFile(t, root, "etc/passwd", "root:x:0:0", 0o644)
	mknod(t, root, "etc/shadow", unix.S_IFCHR, 0)
	mknod(t, root, "etc/group", unix.S_IFCHR, 0)
	must(t, os.Link(filepath.Join(root, "etc/group"), filepath.Join(root, "a/group")))
	writeFile(t, root, "var/cache/apt/x", "x", 0o644)
	must(t, unix.Setxattr(filepath.Join(root, "var/cache"), opaqueXattr, []byte("y"), 0))
	must(t, unix.Setxattr(filepath.Join(root, "var"), "trusted.overlay.origin", []byte("zz"), 0))
	mknod(t, root, "dev-null", unix.S_IFCHR|0o666, unix.Mkdev(1, 3))
	mknod(t, root, "dev-loop", unix.S_IFBLK|0o660, unix.Mkdev(7, 300))
	writeFile(t, root, "bin/ping", "ping", 0o755)
	must(t, os.Lchown(filepath.Join(root, "bin/ping"), 0, 1))
	// VFS_CAP_REVISION_2 | effective, permitted CAP_NET_RAW.
	capability := []byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	must(t, unix.Setxattr(filepath.Join(root, "bin/ping"), "security.capability", capability, 0))
	writeFile(t, root, "bin/sg", "sg", 0o644)
	must(t, os.Lchown(filepath.Join(root, "bin/sg"), 1000, 2000))
	must(t, unix.Chmod(filepath.Join(root, "bin/sg"), 0o2755))
	must(t, os.Lchown(filepath.Join(root, "abs"), 5, 6))
	must(t, os.Lchown(filepath.Join(root, "var"), 7, 8))
	setTimes(t, root)
	return root
}

func TestDiffOverlayRoundTrip(t *testing.T) {
	requireRoot(t)
	upper := overlayTree(t)
	first, n := diffBytes(t, upper)
	got := listTar(t, first)
	if n != len(got) {
		t.Errorf("Diff = %d, tar has %d entries", n, len(got))
	}
	find := func(name string) (tarEntry, bool) {
		i := slices.IndexFunc(got, func(e tarEntry) bool { return e.Name == name })
		if i < 0 {
			return tarEntry{}, false
		}
		return got[i], true
	}
	for _, w := range []tarEntry{
		{Name: "etc/.wh.shadow", Type: tar.TypeReg},
		{Name: "etc/.wh.group", Type: tar.TypeReg},
		{Name: "a/.wh.group", Type: tar.TypeReg},
		{Name: "var/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "var/cache/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "var/cache/.wh..wh..opq", Type: tar.TypeReg},
		{Name: "dev-null", Type: tar.TypeChar, Mode: 0o666},
		{Name: "dev-loop", Type: tar.TypeBlock, Mode: 0o660},
		{Name: "bin/sg", Type: tar.TypeReg, Mode: 0o2755, Size: 2},
		{Name: "bin/ping", Type: tar.TypeReg, Mode: 0o755, Size: 4, Xattrs: "security.capability=" + "\x01\x00\x00\x02\x00\x20" + strings.Repeat("\x00", 14)},
	} {
		if e, ok := find(w.Name); !ok || e != w {
			t.Errorf("entry %v, want %v", e, w)
		}
	}
	for _, name := range []string{"etc/shadow", "etc/group", "sock"} {
		if _, ok := find(name); ok {
			t.Errorf("entry %q written", name)
		}
	}
	i := slices.IndexFunc(got, func(e tarEntry) bool { return e.Name == "var/cache/" })
	if i < 0 || i+1 >= len(got) || got[i+1].Name != "var/cache/.wh..wh..opq" {
		t.Error("opaque marker does not follow its directory")
	}

	dst := filepath.Join(t.TempDir(), "snapshot")
	must(t, Unpack(t.Context(), bytes.NewReader(first), dst, UnpackOptions{Overlay: true}))
	second, _ := diffBytes(t, dst)
	if !bytes.Equal(first, second) {
		t.Fatalf("round trip differs:\n%s\nwant:\n%s", fmtEntries(listTar(t, second)), fmtEntries(got))
	}
	st := lstat(t, dst, "bin/sg")
	if st.Uid != 1000 || st.Gid != 2000 || st.Mode&0o7777 != 0o2755 {
		t.Errorf("bin/sg: %d:%d %o", st.Uid, st.Gid, st.Mode&0o7777)
	}
	if st := lstat(t, dst, "var/cache"); st.Mtim.Sec != testTime.Unix() {
		t.Errorf("var/cache mtime %v", time.Unix(st.Mtim.Sec, 0))
	}
}
