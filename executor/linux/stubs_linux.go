package linux

import (
	"errors"
	"io"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// removeStubs undoes the mount points the init created in the upper dir:
// a stub still an empty dir or empty file is removed, and a parent dir the
// init only copied up to add a stub is removed again (or, when it has to
// stay, gets its timestamps back). Stubs are in creation order, parents
// first. All paths are resolved inside upperDir and never through symlinks.
func removeStubs(upperDir string, stubs []stub) error {
	root, err := os.OpenRoot(upperDir)
	if err != nil {
		return err
	}
	defer root.Close()
	var errs []error
	for i := len(stubs) - 1; i >= 0; i-- {
		rel := relPath(stubs[i].Path)
		if stubs[i].Keep || rel == "" || !realDirs(root, path.Dir(rel)) {
			continue
		}
		fi, err := root.Lstat(rel)
		if err != nil {
			continue
		}
		if fi.IsDir() || (fi.Mode().IsRegular() && fi.Size() == 0) {
			// Remove fails on a dir that is not empty, which then stays.
			if err := root.Remove(rel); err != nil && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
				errs = append(errs, err)
			}
		}
	}
	done := map[string]bool{}
	for i := len(stubs) - 1; i >= 0; i-- {
		p := stubs[i].Parent
		if p == nil || done[p.Path] {
			continue
		}
		done[p.Path] = true
		rel := relPath(p.Path)
		if rel == "" || !realDirs(root, rel) {
			continue
		}
		if !p.InUpper && copyUpOnly(root, rel, p) {
			if err := root.Remove(rel); err == nil {
				continue
			}
		}
		if err := root.Chtimes(rel, time.Unix(0, p.Atime), time.Unix(0, p.Mtime)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// relPath turns a container path into one relative to the upper dir.
func relPath(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

// realDirs reports whether rel and each of its parents is a directory in
// root, not a symlink.
func realDirs(root *os.Root, rel string) bool {
	if rel == "." || rel == "" {
		return true
	}
	cur := ""
	for _, c := range strings.Split(rel, "/") {
		cur = path.Join(cur, c)
		fi, err := root.Lstat(cur)
		if err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// copyUpOnly reports whether the directory rel in the upper dir is empty,
// not opaque and has the owner and mode it had before the run, so it only
// exists because overlayfs copied it up when the init added a stub.
func copyUpOnly(root *os.Root, rel string, p *parentInfo) bool {
	f, err := root.Open(rel)
	if err != nil {
		return false
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	if st.Mode != p.Mode || st.Uid != p.UID || st.Gid != p.GID {
		return false
	}
	if _, err := f.Readdirnames(1); !errors.Is(err, io.EOF) {
		return false
	}
	for _, name := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		if _, err := unix.Fgetxattr(int(f.Fd()), name, make([]byte, 8)); err == nil {
			return false
		}
	}
	return true
}
