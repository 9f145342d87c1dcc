//go:build unix

package fileop

import (
	"io/fs"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// statOwner returns the owner of the file fi describes.
func statOwner(fi fs.FileInfo) owner {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return owner{uid: int(st.Uid), gid: int(st.Gid)}
	}
	return owner{}
}

// statRdev returns the device number of the device file fi describes.
func statRdev(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Rdev) //nolint:unconvert // int32 on darwin
	}
	return 0
}

// devMajorMinor splits a device number.
func devMajorMinor(dev uint64) (uint32, uint32) {
	return unix.Major(dev), unix.Minor(dev)
}

// mknod creates the device, fifo or socket file at path with the type of
// mode, permissions 0600 and device number dev.
func mknod(path string, mode fs.FileMode, dev uint64) error {
	var typ uint32
	switch {
	case mode&fs.ModeNamedPipe != 0:
		typ = unix.S_IFIFO
	case mode&fs.ModeSocket != 0:
		typ = unix.S_IFSOCK
	case mode&fs.ModeCharDevice != 0:
		typ = unix.S_IFCHR
	case mode&fs.ModeDevice != 0:
		typ = unix.S_IFBLK
	default:
		return &fs.PathError{Op: "mknod", Path: path, Err: syscall.EINVAL}
	}
	if err := unix.Mknod(path, typ|0o600, int(dev)); err != nil {
		return &fs.PathError{Op: "mknod", Path: path, Err: err}
	}
	return nil
}

// lutimes sets the access and modification times of path to mtime without
// following a symlink at path.
func lutimes(path string, mtime time.Time) error {
	ts := unix.NsecToTimespec(mtime.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "utimes", Path: path, Err: err}
	}
	return nil
}

// lsetxattr sets an extended attribute without following a symlink.
func lsetxattr(path, key string, value []byte) error {
	return unix.Lsetxattr(path, key, value, 0)
}

// isNotSupported reports errors that mean "this filesystem or user cannot
// do that", which best-effort operations ignore.
func isNotSupported(err error) bool {
	return err == unix.ENOTSUP || err == unix.EPERM || err == unix.EOPNOTSUPP
}

// mkdev joins a device number from a tar header's major and minor.
func mkdev(major, minor int64) uint64 {
	return unix.Mkdev(uint32(major), uint32(minor))
}
