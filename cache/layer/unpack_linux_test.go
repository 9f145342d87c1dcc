package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// errWant says what Unpack must return.
type errWant int

const (
	noErr   errWant = iota // must succeed
	wantErr                // must fail
	anyErr                 // either, as long as nothing escapes
)

func TestUnpack(t *testing.T) {
	long := strings.Repeat("d", 120) + "/" + strings.Repeat("f", 150)
	tests := []struct {
		name    string
		entries []entry
		opts    UnpackOptions
		setup   func(t *testing.T, root string)
		err     errWant
		root    bool // needs root
		check   func(t *testing.T, root string)
	}{
		{
			name:    "dotdot",
			entries: []entry{reg("../sentinel", "evil"), reg("a/../../../sentinel2", "evil")},
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "sentinel"); got != "evil" {
					t.Errorf("sentinel = %q", got)
				}
				readFile(t, root, "sentinel2")
			},
		},
		{
			name:    "slash dotdot",
			entries: []entry{reg("/../../sentinel", "evil"), dir("/../../sentineldir/"), reg("/../sentineldir/x", "x")},
			check: func(t *testing.T, root string) {
				readFile(t, root, "sentinel")
				readFile(t, root, "sentineldir/x")
			},
		},
		{
			name:    "absolute names",
			entries: []entry{reg("/etc/kiln-abs", "abs"), dir("/abs/dir/"), reg("//abs//dir/./f", "f")},
			check: func(t *testing.T, root string) {
				readFile(t, root, "etc/kiln-abs")
				readFile(t, root, "abs/dir/f")
			},
		},
		{
			name:    "symlink to slash then file",
			entries: []entry{symlink("l", "/"), reg("l/sentinel", "evil"), symlink("m", "/.."), dir("m/sentineldir/"), reg("m/sentineldir/x", "x")},
			check: func(t *testing.T, root string) {
				readFile(t, root, "sentinel")
				readFile(t, root, "sentineldir/x")
			},
		},
		{
			name:    "symlink to dotdot then file",
			entries: []entry{symlink("l", "../.."), reg("l/sentinel", "evil"), dir("d/"), symlink("d/up", "../../../../"), reg("d/up/sentinel2", "evil")},
			check: func(t *testing.T, root string) {
				readFile(t, root, "sentinel")
				readFile(t, root, "sentinel2")
			},
		},
		{
			name:    "symlink chain out",
			entries: []entry{symlink("a", "b"), symlink("b", "c/../.."), symlink("c", "/../../.."), reg("a/sentinel", "evil")},
			check:   func(t *testing.T, root string) { readFile(t, root, "sentinel") },
		},
		{
			name: "absolute symlink to host path",
			// The target is the real parent directory of root: inside root it
			// does not exist, so either an error or a file inside root.
			entries: nil, // filled in below
			err:     anyErr,
		},
		{
			name:    "hardlink to outside",
			entries: []entry{hardlink("h", "../sentinel")},
			err:     wantErr,
		},
		{
			name:    "hardlink to outside through symlink",
			entries: []entry{symlink("l", "../../.."), hardlink("h", "l/sentinel")},
			err:     wantErr,
		},
		{
			name:    "hardlink to dotdot resolves inside",
			entries: []entry{reg("sentinel", "inside"), hardlink("h", "../../sentinel"), symlink("l", ".."), hardlink("h2", "l/sentinel")},
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "h"); got != "inside" {
					t.Errorf("h = %q", got)
				}
				if st := lstat(t, root, "sentinel"); st.Nlink != 3 {
					t.Errorf("nlink = %d, want 3", st.Nlink)
				}
			},
		},
		{
			name:    "hardlink to symlink links the symlink",
			entries: []entry{symlink("l", "/../sentinel"), hardlink("h", "l"), reg("h2", "x")},
			check: func(t *testing.T, root string) {
				if st := lstat(t, root, "h"); st.Mode&unix.S_IFMT != unix.S_IFLNK || st.Nlink != 2 {
					t.Errorf("h mode %o nlink %d, want a symlink with 2 links", st.Mode, st.Nlink)
				}
			},
		},
		{
			name:    "symlink named like a parent",
			entries: []entry{symlink("etc", "/"), reg("etc/passwd", "root"), symlink("usr", "../"), dir("usr/lib/"), reg("usr/lib/x", "x")},
			check: func(t *testing.T, root string) {
				readFile(t, root, "passwd")
				readFile(t, root, "lib/x")
			},
		},
		{
			name:    "dir entry replaces symlink",
			entries: []entry{symlink("d", "/.."), dir("d/"), reg("d/sentinel", "x")},
			check: func(t *testing.T, root string) {
				if st := lstat(t, root, "d"); st.Mode&unix.S_IFMT != unix.S_IFDIR {
					t.Errorf("d mode %o, want a directory", st.Mode)
				}
				readFile(t, root, "d/sentinel")
			},
		},
		{
			name:    "whiteout dotdot name",
			entries: []entry{reg("../.wh.sentinel", "")},
			setup:   func(t *testing.T, root string) { os.WriteFile(filepath.Join(root, "sentinel"), nil, 0o644) },
			check:   func(t *testing.T, root string) { missing(t, root, "sentinel") },
		},
		{
			name:    "whiteout of dotdot refused",
			entries: []entry{reg("a/.wh..", "")},
			err:     wantErr,
		},
		{
			name:    "replace dir with file",
			entries: []entry{dir("d/"), reg("d/x", "x"), dir("d/sub/"), reg("d", "file")},
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, "d"); got != "file" {
					t.Errorf("d = %q", got)
				}
			},
		},
		{
			name:    "replace file with dir and symlink with file",
			entries: []entry{reg("d", "file"), dir("d/"), reg("d/x", "x"), symlink("s", "/../sentinel"), reg("s", "mine")},
			check: func(t *testing.T, root string) {
				readFile(t, root, "d/x")
				if got := readFile(t, root, "s"); got != "mine" {
					t.Errorf("s = %q", got)
				}
			},
		},
		{
			name:    "dir over dir keeps content and updates mode",
			entries: []entry{dir("d/").with(func(h *tar.Header) { h.Mode = 0o711 })},
			setup: func(t *testing.T, root string) {
				os.Mkdir(filepath.Join(root, "d"), 0o700)
				os.WriteFile(filepath.Join(root, "d/old"), nil, 0o644)
			},
			check: func(t *testing.T, root string) {
				readFile(t, root, "d/old")
				if st := lstat(t, root, "d"); st.Mode&0o7777 != 0o711 {
					t.Errorf("d mode %o, want 711", st.Mode&0o7777)
				}
			},
		},
		{
			name:    "whiteouts delete without overlay",
			entries: []entry{reg(".wh.gone", ""), reg("d/.wh.sub", ""), reg("nope/.wh.x", ""), dir("keep/")},
			setup: func(t *testing.T, root string) {
				os.WriteFile(filepath.Join(root, "gone"), nil, 0o644)
				os.MkdirAll(filepath.Join(root, "d/sub/deep"), 0o755)
				os.WriteFile(filepath.Join(root, "d/stay"), nil, 0o644)
			},
			check: func(t *testing.T, root string) {
				missing(t, root, "gone")
				missing(t, root, "d/sub")
				missing(t, root, ".wh.gone")
				missing(t, root, "nope")
				readFile(t, root, "d/stay")
			},
		},
		{
			name: "opaque without overlay",
			entries: []entry{
				dir("d/"), reg("d/new", "new"), reg("d/.wh..wh..opq", ""), reg("d/after", "after"),
				reg("e/.wh..wh..opq", ""),
			},
			setup: func(t *testing.T, root string) {
				os.MkdirAll(filepath.Join(root, "d/olddir/x"), 0o755)
				os.WriteFile(filepath.Join(root, "d/old"), nil, 0o644)
				os.WriteFile(filepath.Join(root, "d/new"), []byte("old"), 0o644)
			},
			check: func(t *testing.T, root string) {
				missing(t, root, "d/old")
				missing(t, root, "d/olddir")
				missing(t, root, "d/.wh..wh..opq")
				if got := readFile(t, root, "d/new"); got != "new" {
					t.Errorf("d/new = %q", got)
				}
				readFile(t, root, "d/after")
				if st := lstat(t, root, "e"); st.Mode&unix.S_IFMT != unix.S_IFDIR {
					t.Errorf("e is not a directory")
				}
			},
		},
		{
			name:    "whiteouts in overlay format",
			entries: []entry{reg(".wh.gone", ""), reg("d/.wh.sub", ""), reg("x", "x"), reg(".wh.x", "")},
			opts:    UnpackOptions{Overlay: true},
			root:    true,
			check: func(t *testing.T, root string) {
				for _, n := range []string{"gone", "d/sub", "x"} {
					st := lstat(t, root, n)
					if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 || st.Mode&0o7777 != 0 {
						t.Errorf("%s: mode %o rdev %d, want a 0:0 character device", n, st.Mode, st.Rdev)
					}
					if st.Mtim.Sec != testTime.Unix() {
						t.Errorf("%s: mtime %d", n, st.Mtim.Sec)
					}
				}
				missing(t, root, ".wh.gone")
			},
		},
		{
			name:    "opaque in overlay format",
			entries: []entry{dir("d/"), reg("d/.wh..wh..opq", ""), reg("d/f", "f"), reg("e/f/.wh..wh..opq", "")},
			opts:    UnpackOptions{Overlay: true},
			root:    true,
			check: func(t *testing.T, root string) {
				for _, n := range []string{"d", "e/f"} {
					buf := make([]byte, 8)
					sz, err := unix.Lgetxattr(filepath.Join(root, n), opaqueXattr, buf)
					if err != nil || string(buf[:sz]) != "y" {
						t.Errorf("%s: opaque xattr %q, %v", n, buf[:max(sz, 0)], err)
					}
				}
				missing(t, root, "d/.wh..wh..opq")
				readFile(t, root, "d/f")
			},
		},
		{
			name: "overlay xattrs from the tar are ignored",
			entries: []entry{
				dir("d/").with(func(h *tar.Header) {
					h.PAXRecords = map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.overlay.redirect": "/x", "SCHILY.xattr.user.kiln": "v"}
				}),
			},
			check: func(t *testing.T, root string) {
				buf := make([]byte, 64)
				if _, err := unix.Lgetxattr(filepath.Join(root, "d"), opaqueXattr, buf); err == nil {
					t.Error("trusted.overlay.opaque applied from the tar")
				}
				if _, err := unix.Lgetxattr(filepath.Join(root, "d"), "user.overlay.redirect", buf); err == nil {
					t.Error("user.overlay.redirect applied from the tar")
				}
				if n, err := unix.Lgetxattr(filepath.Join(root, "d"), "user.kiln", buf); err != nil || string(buf[:n]) != "v" {
					t.Errorf("user.kiln = %q, %v", buf[:max(n, 0)], err)
				}
			},
		},
		{
			name: "device nodes",
			entries: []entry{
				node(tar.TypeChar, "dev/null", 1, 3), node(tar.TypeBlock, "dev/loop9", 7, 9),
				node(tar.TypeFifo, "fifo", 0, 0).with(func(h *tar.Header) { h.Mode = 0o640 }),
			},
			root: true,
			check: func(t *testing.T, root string) {
				if st := lstat(t, root, "dev/null"); st.Mode != unix.S_IFCHR|0o600 || st.Rdev != unix.Mkdev(1, 3) {
					t.Errorf("dev/null mode %o rdev %x", st.Mode, st.Rdev)
				}
				if st := lstat(t, root, "dev/loop9"); st.Mode != unix.S_IFBLK|0o600 || st.Rdev != unix.Mkdev(7, 9) {
					t.Errorf("dev/loop9 mode %o rdev %x", st.Mode, st.Rdev)
				}
				if st := lstat(t, root, "fifo"); st.Mode != unix.S_IFIFO|0o640 {
					t.Errorf("fifo mode %o", st.Mode)
				}
			},
		},
		{
			name: "fifo",
			entries: []entry{
				node(tar.TypeFifo, "fifo", 0, 0).with(func(h *tar.Header) { h.Mode = 0o640 }),
			},
			check: func(t *testing.T, root string) {
				if st := lstat(t, root, "fifo"); st.Mode != unix.S_IFIFO|0o640 {
					t.Errorf("fifo mode %o", st.Mode)
				}
			},
		},
		{
			name: "long and utf-8 names",
			entries: []entry{
				reg(long, "long"), reg("ünïcødé/日本語.txt", "utf8"),
				reg(strings.Repeat("n", 255), "max"),
				symlink("longlink", strings.Repeat("t", 200)),
				hardlink("ll", long),
			},
			check: func(t *testing.T, root string) {
				if got := readFile(t, root, long); got != "long" {
					t.Errorf("long = %q", got)
				}
				readFile(t, root, "ünïcødé/日本語.txt")
				readFile(t, root, strings.Repeat("n", 255))
				readFile(t, root, "ll")
				if got, _ := os.Readlink(filepath.Join(root, "longlink")); got != strings.Repeat("t", 200) {
					t.Errorf("longlink -> %q", got)
				}
			},
		},
		{
			name: "gnu long names",
			entries: []entry{
				reg(long, "gnu").with(func(h *tar.Header) { h.Format = tar.FormatGNU }),
			},
			check: func(t *testing.T, root string) { readFile(t, root, long) },
		},
		{
			name: "setuid setgid sticky and owner",
			entries: []entry{
				reg("bin/su", "x").with(func(h *tar.Header) { h.Mode = 0o4755; h.Uid, h.Gid = 1234, 5678 }),
				reg("bin/sg", "x").with(func(h *tar.Header) { h.Mode = 0o2711; h.Uid, h.Gid = 0, 42 }),
				dir("tmp/").with(func(h *tar.Header) { h.Mode = 0o1777; h.Uid = 99 }),
				dir("shared/").with(func(h *tar.Header) { h.Mode = 0o2775; h.Gid = 100 }),
				symlink("lnk", "bin/su").with(func(h *tar.Header) { h.Uid, h.Gid = 7, 8 }),
			},
			root: true,
			check: func(t *testing.T, root string) {
				for _, c := range []struct {
					name     string
					mode     uint32
					uid, gid uint32
				}{
					{"bin/su", 0o4755, 1234, 5678}, {"bin/sg", 0o2711, 0, 42},
					{"tmp", 0o1777, 99, uint32(os.Getgid())}, {"shared", 0o2775, uint32(os.Getuid()), 100},
				} {
					st := lstat(t, root, c.name)
					if st.Mode&0o7777 != c.mode || st.Uid != c.uid || st.Gid != c.gid {
						t.Errorf("%s: mode %o owner %d:%d, want %o %d:%d", c.name, st.Mode&0o7777, st.Uid, st.Gid, c.mode, c.uid, c.gid)
					}
				}
				if st := lstat(t, root, "lnk"); st.Uid != 7 || st.Gid != 8 {
					t.Errorf("lnk owner %d:%d", st.Uid, st.Gid)
				}
			},
		},
		{
			name: "setuid without chown",
			entries: []entry{
				reg("su", "x").with(func(h *tar.Header) { h.Mode = 0o4755; h.Uid = 4321 }),
			},
			opts: UnpackOptions{NoSameOwner: true},
			check: func(t *testing.T, root string) {
				if st := lstat(t, root, "su"); st.Mode&0o7777 != 0o4755 || int(st.Uid) != os.Getuid() {
					t.Errorf("su mode %o uid %d", st.Mode&0o7777, st.Uid)
				}
			},
		},
		{
			name: "times and directory mtime after children",
			entries: []entry{
				dir("d/"), reg("d/f", "f").with(func(h *tar.Header) { h.ModTime = testTime.Add(-3600e9) }),
				symlink("d/l", "f"), dir("d/e/"), reg("d/e/g", ""),
				dir("ro/").with(func(h *tar.Header) { h.Mode = 0o555 }), reg("ro/f", "f"),
			},
			check: func(t *testing.T, root string) {
				for n, want := range map[string]int64{"d": testTime.Unix(), "d/e": testTime.Unix(), "d/f": testTime.Unix() - 3600, "d/l": testTime.Unix(), "ro": testTime.Unix()} {
					if st := lstat(t, root, n); st.Mtim.Sec != want {
						t.Errorf("%s: mtime %d, want %d", n, st.Mtim.Sec, want)
					}
				}
				if st := lstat(t, root, "ro"); st.Mode&0o7777 != 0o555 {
					t.Errorf("ro mode %o", st.Mode&0o7777)
				}
			},
		},
		{
			name:    "root entry",
			entries: []entry{dir("./").with(func(h *tar.Header) { h.Mode = 0o750 }), reg("./f", "f")},
			check: func(t *testing.T, root string) {
				if st := lstat(t, root, "."); st.Mode&0o7777 != 0o750 {
					t.Errorf("root mode %o", st.Mode&0o7777)
				}
			},
		},
		{
			name:    "root replaced by file refused",
			entries: []entry{reg(".", "x"), symlink("/..", "/")},
			err:     wantErr,
		},
		{
			name:    "file through a file refused",
			entries: []entry{reg("f", "x"), reg("f/g", "y")},
			err:     wantErr,
		},
		{
			name:    "max bytes",
			entries: []entry{reg("a", "12345"), reg("b", "678901")},
			opts:    UnpackOptions{MaxBytes: 10},
			err:     wantErr,
		},
		{
			name:    "invalid owner",
			entries: []entry{reg("a", "").with(func(h *tar.Header) { h.Uid = -1 })},
			err:     wantErr,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root {
				requireRoot(t)
			}
			root, check := jail(t)
			entries := tt.entries
			if tt.name == "absolute symlink to host path" {
				parent := filepath.Dir(root)
				entries = []entry{symlink("l", parent), reg("l/sentinel", "evil"), symlink("m", parent+"/sentinel"), reg("m", "replaced")}
			}
			if tt.setup != nil {
				tt.setup(t, root)
			}
			err := Unpack(t.Context(), bytes.NewReader(makeTar(t, entries...)), root, tt.opts)
			check()
			if err != nil {
				t.Logf("Unpack: %v", err)
			}
			switch {
			case tt.err == noErr && err != nil:
				t.Fatalf("Unpack: %v", err)
			case tt.err == wantErr && err == nil:
				t.Fatal("Unpack succeeded, want an error")
			}
			if err == nil && tt.check != nil {
				tt.check(t, root)
			}
		})
	}
}

func TestUnpackErrors(t *testing.T) {
	good := makeTar(t, reg("a", strings.Repeat("x", 2000)), reg("b", "y"))
	tests := []struct {
		name  string
		input []byte
		opts  UnpackOptions
		is    error
		text  string
	}{
		{name: "garbage", input: bytes.Repeat([]byte("not a tar "), 100), text: "read layer tar"},
		{name: "truncated content", input: good[:1024], text: "unexpected EOF"},
		{name: "truncated header", input: good[:100], text: "read layer tar"},
		{name: "too large", input: good, opts: UnpackOptions{MaxBytes: 1000}, is: ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, check := jail(t)
			err := Unpack(t.Context(), bytes.NewReader(tt.input), root, tt.opts)
			check()
			if err == nil {
				t.Fatal("Unpack succeeded, want an error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q does not mention %q", err, tt.text)
			}
		})
	}
}

func TestUnpackEmpty(t *testing.T) {
	root := filepath.Join(t.TempDir(), "new", "dir")
	for _, in := range [][]byte{nil, makeTar(t)} {
		if err := Unpack(t.Context(), bytes.NewReader(in), root, UnpackOptions{}); err != nil {
			t.Fatalf("Unpack(%d bytes): %v", len(in), err)
		}
	}
	if names, _ := os.ReadDir(root); len(names) != 0 {
		t.Errorf("root has %d entries, want none", len(names))
	}
}

func TestUnpackCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := Unpack(ctx, bytes.NewReader(makeTar(t, reg("a", "a"))), t.TempDir(), UnpackOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Unpack = %v, want context.Canceled", err)
	}
}
