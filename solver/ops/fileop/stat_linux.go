package fileop

import (
	"io/fs"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// lstatAt returns the stat info of name, an entry of the directory open as
// dirf (which root is rooted at), without following a symlink. It calls
// fstatat directly: a walk of a 20,000-file context spends most of its
// time here, and os.Root.Lstat adds path handling and an allocation the
// plain entry name does not need.
func lstatAt(root *os.Root, dirf *os.File, name string) (fs.FileInfo, error) {
	var u unix.Stat_t
	for {
		err := unix.Fstatat(int(dirf.Fd()), name, &u, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "lstat", Path: name, Err: err}
		}
		break
	}
	// Sys gives a *syscall.Stat_t, as os's FileInfo does, for the code
	// that reads owners, devices and inodes from it.
	return &statInfo{name: name, st: syscall.Stat_t{
		Dev: u.Dev, Ino: u.Ino, Nlink: u.Nlink, Mode: u.Mode, Uid: u.Uid, Gid: u.Gid, Rdev: u.Rdev,
		Size: u.Size, Blksize: u.Blksize, Blocks: u.Blocks,
		Atim: syscall.Timespec(u.Atim), Mtim: syscall.Timespec(u.Mtim), Ctim: syscall.Timespec(u.Ctim),
	}}, nil
}

// statInfo is an fs.FileInfo from a stat(2) result; Sys returns the
// *syscall.Stat_t as os's FileInfo does.
type statInfo struct {
	name string
	st   syscall.Stat_t
}

func (s *statInfo) Name() string       { return s.name }
func (s *statInfo) Size() int64        { return s.st.Size }
func (s *statInfo) ModTime() time.Time { return time.Unix(s.st.Mtim.Unix()) }
func (s *statInfo) IsDir() bool        { return s.st.Mode&syscall.S_IFMT == syscall.S_IFDIR }
func (s *statInfo) Sys() any           { return &s.st }

// Mode converts the stat mode as os does: the type from S_IFMT, the
// permission and special bits through fileMode.
func (s *statInfo) Mode() fs.FileMode {
	m := fileMode(s.st.Mode & 0o7777)
	switch s.st.Mode & syscall.S_IFMT {
	case syscall.S_IFBLK:
		m |= fs.ModeDevice
	case syscall.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFDIR:
		m |= fs.ModeDir
	case syscall.S_IFIFO:
		m |= fs.ModeNamedPipe
	case syscall.S_IFLNK:
		m |= fs.ModeSymlink
	case syscall.S_IFSOCK:
		m |= fs.ModeSocket
	}
	return m
}
