package layer

import (
	"archive/tar"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	// whiteoutPrefix marks a deleted path in a layer tar: ".wh.NAME".
	whiteoutPrefix = ".wh."
	// whiteoutMetaPrefix marks AUFS metadata entries, which are skipped.
	whiteoutMetaPrefix = ".wh..wh."
	// opaqueWhiteout in directory D means D hides all lower content.
	opaqueWhiteout = ".wh..wh..opq"
	// paxXattrPrefix prefixes xattrs in PAX records.
	paxXattrPrefix = "SCHILY.xattr."
	// opaqueXattr is the xattr overlayfs uses for opaque directories.
	opaqueXattr = "trusted.overlay.opaque"
	// userOpaqueXattr is the same xattr for overlays mounted with userxattr.
	userOpaqueXattr = "user.overlay.opaque"
	// copyBufSize is the size of the buffer file content is copied through.
	copyBufSize = 1 << 20
	// direntBufSize is the size of the buffer directories are read with.
	direntBufSize = 32 << 10
)

// cleanPath turns a tar entry name into a path relative to the root with no
// "." or ".." components, no leading or trailing slash; "" is the root.
func cleanPath(name string) string {
	return path.Clean("/" + name)[1:]
}

// splitPath splits a cleaned path into its parent directory ("" for the
// root) and its last component.
func splitPath(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// joinPath joins a cleaned directory path and a name.
func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// overlayXattr reports whether name is an overlayfs-internal xattr, which
// never travels in a layer tar.
func overlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}

// openInRoot opens p relative to the directory root, resolving every
// component (symlinks and ".." included) as if root were "/": nothing it
// returns is outside root.
func openInRoot(root int, p string, flags uint64) (int, error) {
	how := unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for range 32 {
		fd, err := unix.Openat2(root, p, &how)
		if err == unix.EAGAIN || err == unix.EINTR {
			// openat2 asks for a retry when a rename raced the lookup.
			continue
		}
		return fd, err
	}
	return -1, unix.EAGAIN
}

// readNames appends the names in the open directory fd (without "." and
// "..") to names, reading through buf.
func readNames(fd int, buf []byte, names []string) ([]string, error) {
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return names, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// removeAllAt removes name in the directory dirfd and, if it is a
// directory, everything below it, without following symlinks. A missing
// name is not an error.
func removeAllAt(dirfd int, name string, buf []byte) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR {
		return err
	}
	for attempt := 0; ; attempt++ {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT {
			return nil
		}
		if err != nil {
			return err
		}
		names, err := readNames(fd, buf, nil)
		for _, n := range names {
			if err == nil {
				err = removeAllAt(fd, n, buf)
			}
		}
		unix.Close(fd)
		if err != nil {
			return err
		}
		err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.ENOTEMPTY || attempt >= 3 {
			return err
		}
	}
}

// writeAll writes all of p to fd.
func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.EIO
		}
		p = p[n:]
	}
	return nil
}

// headerTimes returns the access and modification times of hdr as
// utimensat wants them; a missing access time is the modification time.
func headerTimes(hdr *tar.Header) [2]unix.Timespec {
	m := unix.Timespec{Sec: hdr.ModTime.Unix(), Nsec: int64(hdr.ModTime.Nanosecond())}
	a := m
	if !hdr.AccessTime.IsZero() {
		a = unix.Timespec{Sec: hdr.AccessTime.Unix(), Nsec: int64(hdr.AccessTime.Nanosecond())}
	}
	return [2]unix.Timespec{a, m}
}

// chmodAt sets the mode of name in dirfd without following a symlink
// (fchmodat2, Linux 6.6); older kernels fall back to fchmodat, which is safe
// because callers only pass names they have just checked or created.
func chmodAt(dirfd int, name string, mode uint32) error {
	err := unix.Fchmodat(dirfd, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.EOPNOTSUPP || err == unix.ENOSYS {
		err = unix.Fchmodat(dirfd, name, mode, 0)
	}
	return err
}

// procPath returns a path to name in the directory dirfd that is resolved
// from dirfd, for the calls that have no *at form (lsetxattr, llistxattr).
func procPath(dirfd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}
