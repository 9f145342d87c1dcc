package executortest

import (
	"io/fs"
	"syscall"
)

func syscallKill(pid, sig int) error { return syscall.Kill(pid, syscall.Signal(sig)) }

func rdev(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Rdev
	}
	return ^uint64(0)
}
