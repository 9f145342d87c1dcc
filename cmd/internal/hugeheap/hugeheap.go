// Package hugeheap asks the kernel to back the Go heap of a short-lived
// kiln process with transparent huge pages before it allocates tens of
// megabytes, such as the no-op rebuild of a context of 20,000 files.
//
// The Go runtime leaves its heap to the kernel's default, which on most
// distributions (THP "madvise") is 4 KiB pages: every fresh page of heap is
// a page fault, and on virtual machines with shadow or nested paging a
// fault costs 10 µs or more. A walk that allocates 10 MB then spends tens
// of milliseconds faulting. Huge pages take one fault per 2 MiB.
package hugeheap
