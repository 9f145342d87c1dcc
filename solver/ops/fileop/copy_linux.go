package fileop

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// copyContent copies in to out: a large file in the kernel with
// copy_file_range (a reflink or in-kernel copy where the filesystem can),
// anything else through buf (reused: a COPY of many files must not allocate
// a buffer per file, and small files copy faster through user space).
func copyContent(out, in *os.File, buf []byte) (int64, error) {
	if fi, err := in.Stat(); err != nil || fi.Size() < 1<<20 {
		return io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, buf)
	}
	var total int64
	for {
		n, err := unix.CopyFileRange(int(in.Fd()), nil, int(out.Fd()), nil, 1<<30, 0)
		if err != nil {
			if total == 0 && (err == unix.EXDEV || err == unix.EINVAL || err == unix.ENOSYS || err == unix.EOPNOTSUPP || err == unix.EBADF) {
				return io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, buf)
			}
			return total, err
		}
		if n == 0 {
			return total, nil
		}
		total += int64(n)
	}
}
