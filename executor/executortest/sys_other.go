//go:build !linux

package executortest

import (
	"errors"
	"io/fs"
)

func syscallKill(pid, sig int) error { return errors.ErrUnsupported }

func rdev(fi fs.FileInfo) uint64 { return ^uint64(0) }

func mkfifo(p string) error { return errors.ErrUnsupported }

func mkWhiteout(p string) error { return errors.ErrUnsupported }

func setXattr(p, name, val string) error { return errors.ErrUnsupported }

func getXattr(p, name string) (string, error) { return "", errors.ErrUnsupported }

func owner(fi fs.FileInfo) string { return "?" }
