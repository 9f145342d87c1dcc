package hugeheap

import (
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// arenaSize is the Go heap's arena size and alignment on 64-bit
	// Linux (the runtime's heapArenaBytes).
	arenaSize = 64 << 20
	hugePage  = 2 << 20
)

// Reserve makes the next n bytes the heap hands out come from huge pages,
// where the kernel gives them only when asked (THP "madvise").
// It grows the heap by one n-byte object, which the runtime maps without
// touching it, marks the heap's arena up to the object's end
// MADV_HUGEPAGE, and frees the object with a garbage collection: the page
// allocator hands out the lowest free addresses first, so the allocations
// that follow land in the marked range. The runtime maps new heap with
// mmap(MAP_FIXED), which drops the mark, so it cannot be set in advance.
//
// It costs a garbage collection (4-5 ms in a fresh kiln process on the
// VM that motivated it) and touches nothing: call it only where far more
// is about to be allocated. It reports whether it marked anything.
func Reserve(n int) bool {
	if n < hugePage || !advisable() {
		return false
	}
	old := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(old)
	b := make([]byte, n)
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start := p &^ (arenaSize - 1)
	end := (p + uintptr(n)) &^ (hugePage - 1)
	// Parts of the range that are not mapped (ENOMEM) are skipped by the
	// kernel; the mapped parts are marked all the same.
	_, _, errno := unix.Syscall(unix.SYS_MADVISE, start, end-start, unix.MADV_HUGEPAGE)
	runtime.KeepAlive(b)
	runtime.GC()
	return errno == 0 || errno == unix.ENOMEM
}

// advisable reports whether huge pages come only when asked for: THP in
// "madvise" mode. With "always" the heap gets them without asking and the
// collection would be wasted; with "never" asking does nothing.
func advisable() bool {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	return err == nil && bytes.Contains(b, []byte("[madvise]"))
}
