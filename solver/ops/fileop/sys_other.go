//go:build !unix

package fileop

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"time"
)

func statOwner(fs.FileInfo) owner { return owner{} }

func statRdev(fs.FileInfo) uint64 { return 0 }

func devMajorMinor(uint64) (uint32, uint32) { return 0, 0 }

func mknod(path string, _ fs.FileMode, _ uint64) error {
	return &fs.PathError{Op: "mknod", Path: path, Err: errors.ErrUnsupported}
}

func lutimes(string, time.Time) error { return nil }

func lsetxattr(path, _ string, _ []byte) error {
	return &fs.PathError{Op: "setxattr", Path: path, Err: errors.ErrUnsupported}
}

func isNotSupported(err error) bool { return errors.Is(err, errors.ErrUnsupported) }

func mkdev(int64, int64) uint64 { return 0 }
