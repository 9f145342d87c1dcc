package ops

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestFileCacheAdd copies a context file into the file cache and links it
// to a destination, with O_TMPFILE and with the named temporary file used
// where the filesystem has none: same content, root owner, mode and mtime,
// nothing else left in the cache, and a second link reuses the copy.
func TestFileCacheAdd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: cache files are chowned to root")
	}
	for _, noTmpfile := range []bool{false, true} {
		ctxDir, cacheDir, dstDir := t.TempDir(), t.TempDir(), t.TempDir()
		if err := os.MkdirAll(filepath.Join(ctxDir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		src := filepath.Join(ctxDir, "sub", "f")
		if err := os.WriteFile(src, []byte("content"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(src, 0o4751); err != nil {
			t.Fatal(err)
		}
		mt := time.Date(2021, 2, 3, 4, 5, 6, 7, time.UTC)
		if err := os.Chtimes(src, mt, mt); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(src)
		if err != nil {
			t.Fatal(err)
		}
		root, err := os.OpenRoot(ctxDir)
		if err != nil {
			t.Fatal(err)
		}
		c := &fileCache{dir: cacheDir, root: root, cacheFd: -1, dstFd: -1, ctxFd: -1, noTmpfile: noTmpfile}
		for _, dst := range []string{"a", "b"} {
			if err := c.link(t.Context(), "sub/f", fi, filepath.Join(dstDir, dst)); err != nil {
				t.Fatalf("noTmpfile %v: link %s: %v", noTmpfile, dst, err)
			}
		}
		c.close()
		root.Close()
		a, err := os.Stat(filepath.Join(dstDir, "a"))
		if err != nil {
			t.Fatal(err)
		}
		st := a.Sys().(*syscall.Stat_t)
		data, _ := os.ReadFile(filepath.Join(dstDir, "b"))
		if string(data) != "content" || st.Mode&0o7777 != 0o4751 || st.Uid != 0 || st.Gid != 0 || !a.ModTime().Equal(mt) || st.Nlink != 3 {
			t.Errorf("noTmpfile %v: %q mode %o owner %d:%d mtime %v links %d", noTmpfile, data, st.Mode&0o7777, st.Uid, st.Gid, a.ModTime(), st.Nlink)
		}
		var files []string
		filepath.WalkDir(cacheDir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, p)
			}
			return err
		})
		if len(files) != 1 {
			t.Errorf("noTmpfile %v: cache holds %q, want one file", noTmpfile, files)
		}
	}
}
