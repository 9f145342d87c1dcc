package hugeheap

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// TestReserveGivesHugePages checks that memory the heap hands out after
// Reserve is backed by huge pages once touched: the smaps entry of the
// mapping holding a fresh 8 MiB allocation counts AnonHugePages.
func TestReserveGivesHugePages(t *testing.T) {
	if !advisable() {
		t.Skip("transparent huge pages are not in madvise mode here (always: the heap gets them unasked; never: none)")
	}
	if !Reserve(32 << 20) {
		t.Fatal("Reserve marked nothing")
	}
	b := make([]byte, 8<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	addr := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	huge, err := anonHugeKB(addr)
	if err != nil {
		t.Fatal(err)
	}
	// At least one whole 2 MiB page lies inside the 8 MiB allocation.
	if huge < 2048 {
		t.Errorf("the mapping holding the allocation has %d kB of huge pages, want at least 2048", huge)
	}
}

// anonHugeKB returns the AnonHugePages of the mapping containing addr.
func anonHugeKB(addr uint64) (int, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if lo, hi, ok := mappingRange(line); ok {
			in = lo <= addr && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "AnonHugePages:") {
			return strconv.Atoi(strings.Fields(line)[1])
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no mapping holds %#x", addr)
}

// mappingRange parses the address range of a smaps mapping header line.
func mappingRange(line string) (lo, hi uint64, ok bool) {
	r, _, found := strings.Cut(line, " ")
	a, b, dash := strings.Cut(r, "-")
	if !found || !dash || bytes.ContainsAny([]byte(r), ":") {
		return 0, 0, false
	}
	lo, err1 := strconv.ParseUint(a, 16, 64)
	hi, err2 := strconv.ParseUint(b, 16, 64)
	return lo, hi, err1 == nil && err2 == nil
}
