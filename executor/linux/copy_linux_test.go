package linux

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/executor/executortest"
	"golang.org/x/sys/unix"
)

// TestCopyAndDiff builds a copy of a layer stack, changes it like a run
// would and checks the changes written in overlayfs' format, without a
// container.
func TestCopyAndDiff(t *testing.T) {
	executortest.RequireRoot(t)
	l1, l2, upper := t.TempDir(), t.TempDir(), t.TempDir()
	executortest.WriteFiles(t, l1, map[string]string{
		"a/x": "x", "a/y": "y", "o/old": "old", "f1": "f1", "h1": "h", "gone": "g",
		"deldir/z": "z", "xd/k": "k", "t": "file", "keep/deep/file": "d",
	})
	must(t, os.Link(filepath.Join(l1, "h1"), filepath.Join(l1, "h2")))
	must(t, os.Symlink("f1", filepath.Join(l1, "s")))
	must(t, unix.Setxattr(filepath.Join(l1, "xd"), "user.a", []byte("1"), 0))
	must(t, unix.Setxattr(filepath.Join(l1, "xd"), "user.b", []byte("2"), 0))
	must(t, unix.Mkfifo(filepath.Join(l1, "fifo"), 0o600))

	executortest.WriteFiles(t, l2, map[string]string{"o/new": "new", "t/k": "k", "xd/k2": "k2"})
	must(t, unix.Mknod(filepath.Join(l2, "gone"), unix.S_IFCHR, 0))
	must(t, unix.Mknod(filepath.Join(l2, "deldir"), unix.S_IFCHR, 0))
	must(t, unix.Setxattr(filepath.Join(l2, "o"), opaqueXattr, []byte("y"), 0))
	must(t, unix.Setxattr(filepath.Join(l2, "xd"), "user.a", []byte("1"), 0))
	must(t, unix.Setxattr(filepath.Join(l2, "xd"), "trusted.overlay.origin", []byte("junk"), 0))

	// Prepared content in the upper dir.
	executortest.WriteFiles(t, upper, map[string]string{"prep": "p"})

	copyDir := filepath.Join(t.TempDir(), copyDirName)
	must(t, buildCopy(copyDir, []string{l1, l2}, upper))
	root := filepath.Join(copyDir, copyRootName)

	want := "a a/x a/y f1 fifo h1 h2 keep keep/deep keep/deep/file o o/new prep s t t/k xd xd/k xd/k2"
	if got := strings.Join(tree(t, root), " "); got != want {
		t.Fatalf("copy = %s\nwant   %s", got, want)
	}
	var h1, h2 unix.Stat_t
	must(t, unix.Lstat(filepath.Join(root, "h1"), &h1))
	must(t, unix.Lstat(filepath.Join(root, "h2"), &h2))
	if h1.Ino != h2.Ino {
		t.Error("h1 and h2 are no longer hard links")
	}
	if _, err := unix.Lgetxattr(filepath.Join(root, "xd"), "user.b", make([]byte, 8)); err != unix.ENODATA {
		t.Errorf("xd keeps user.b of the lower layer: %v", err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(root, "xd"), "trusted.overlay.origin", make([]byte, 8)); err != unix.ENODATA {
		t.Errorf("xd got overlayfs' xattr: %v", err)
	}

	// The "run".
	must(t, os.WriteFile(filepath.Join(root, "a", "x"), []byte("x2"), 0o644))
	must(t, os.Remove(filepath.Join(root, "a", "y")))
	must(t, os.RemoveAll(filepath.Join(root, "o")))
	must(t, os.Mkdir(filepath.Join(root, "o"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "n"), []byte("n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(root, "nd", "sub"), 0o755))
	must(t, os.Chmod(filepath.Join(root, "f1"), 0o600))
	must(t, os.WriteFile(filepath.Join(root, "h1"), []byte("h2"), 0o644))
	must(t, os.Remove(filepath.Join(root, "keep", "deep", "file")))

	must(t, writeChanges(copyDir, upper))
	want = "a a/x a/y f1 h1 h2 keep keep/deep keep/deep/file n nd nd/sub o prep"
	if got := strings.Join(tree(t, upper), " "); got != want {
		t.Fatalf("upper = %s\nwant    %s", got, want)
	}
	for _, p := range []string{"a/y", "keep/deep/file"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(upper, p), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s is not a whiteout: %v %o", p, err, st.Mode)
		}
	}
	if v, err := unix.Lgetxattr(filepath.Join(upper, "o"), opaqueXattr, make([]byte, 8)); err != nil || v != 1 {
		t.Errorf("o is not opaque: %v", err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(upper, "a"), opaqueXattr, make([]byte, 8)); err != unix.ENODATA {
		t.Errorf("a is opaque: %v", err)
	}
	must(t, unix.Lstat(filepath.Join(upper, "h1"), &h1))
	must(t, unix.Lstat(filepath.Join(upper, "h2"), &h2))
	if h1.Ino != h2.Ino {
		t.Error("h1 and h2 in the upper dir are not hard links")
	}
	fi, err := os.Stat(filepath.Join(upper, "f1"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("f1 in upper: %v, %v", fi, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// tree lists dir (relative slash paths), sorted.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	must(t, err)
	sort.Strings(out)
	return out
}
