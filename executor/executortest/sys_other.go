//go:build !linux

package executortest

import (
	"errors"
	"io/fs"
)

func syscallKill(pid, sig int) error { return errors.ErrUnsupported }

func rdev(fi fs.FileInfo) uint64 { return ^uint64(0) }
