package fileop

import (
	"bytes"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// xattr is one extended attribute.
type xattr struct {
	key   string
	value []byte
}

// readXattrs returns the extended attributes of the open file f worth
// copying: all but SELinux labels, which belong to the host. Errors reading
// them are ignored, as BuildKit does: attributes are best effort.
func readXattrs(f *os.File) []xattr {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	var out []xattr
	rc.Control(func(fd uintptr) {
		size, err := unix.Flistxattr(int(fd), nil)
		if err != nil || size <= 0 {
			return
		}
		names := make([]byte, size)
		size, err = unix.Flistxattr(int(fd), names)
		if err != nil {
			return
		}
		for _, name := range bytes.Split(names[:size], []byte{0}) {
			key := string(name)
			if key == "" || strings.HasPrefix(key, "security.selinux") {
				continue
			}
			n, err := unix.Fgetxattr(int(fd), key, nil)
			if err != nil || n < 0 {
				continue
			}
			v := make([]byte, n)
			if n, err = unix.Fgetxattr(int(fd), key, v); err != nil {
				continue
			}
			out = append(out, xattr{key: key, value: v[:n]})
		}
	})
	return out
}
