package executortest

import (
	"io/fs"
	"strconv"
	"syscall"
)

func syscallKill(pid, sig int) error { return syscall.Kill(pid, syscall.Signal(sig)) }

func rdev(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Rdev
	}
	return ^uint64(0)
}

func mkfifo(p string) error { return syscall.Mkfifo(p, 0o640) }

// mkWhiteout makes p an overlayfs whiteout, a 0:0 character device.
func mkWhiteout(p string) error { return syscall.Mknod(p, syscall.S_IFCHR, 0) }

func setXattr(p, name, val string) error { return syscall.Setxattr(p, name, []byte(val), 0) }

func getXattr(p, name string) (string, error) {
	buf := make([]byte, 256)
	n, err := syscall.Getxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// owner returns "uid:gid" of fi.
func owner(fi fs.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return strconv.Itoa(int(st.Uid)) + ":" + strconv.Itoa(int(st.Gid))
	}
	return "?"
}
