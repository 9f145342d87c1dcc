package fileop

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestLstatAtMatchesOS compares lstatAt with os.Lstat for every file type
// and the special permission bits.
func TestLstatAtMatchesOS(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "file"), []byte("hello"), 0o640))
	must(os.Chmod(filepath.Join(dir, "file"), 0o4755|os.ModeSetuid))
	must(os.Mkdir(filepath.Join(dir, "dir"), 0o755))
	must(os.Chmod(filepath.Join(dir, "dir"), 0o1777|os.ModeSticky|os.ModeSetgid))
	must(os.Symlink("file", filepath.Join(dir, "link")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	old := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)
	must(os.Chtimes(filepath.Join(dir, "file"), old, old))
	root, err := os.OpenRoot(dir)
	must(err)
	defer root.Close()
	dirf, err := root.Open(".")
	must(err)
	defer dirf.Close()
	for _, name := range []string{"file", "dir", "link", "fifo"} {
		want, err := os.Lstat(filepath.Join(dir, name))
		must(err)
		got, err := lstatAt(root, dirf, name)
		must(err)
		if got.Name() != want.Name() || got.Mode() != want.Mode() || got.Size() != want.Size() ||
			!got.ModTime().Equal(want.ModTime()) || got.IsDir() != want.IsDir() ||
			*got.Sys().(*syscall.Stat_t) != *want.Sys().(*syscall.Stat_t) {
			t.Errorf("%s: lstatAt = %v %v %d %v, os.Lstat = %v %v %d %v", name,
				got.Mode(), got.ModTime(), got.Size(), got.IsDir(), want.Mode(), want.ModTime(), want.Size(), want.IsDir())
		}
	}
	if _, err := lstatAt(root, dirf, "missing"); !os.IsNotExist(err) {
		t.Errorf("missing file: %v, want not exist", err)
	}
}
