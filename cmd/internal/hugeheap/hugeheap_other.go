//go:build !linux

package hugeheap

// Reserve does nothing here: only Linux is asked for huge pages.
func Reserve(n int) bool { return false }
