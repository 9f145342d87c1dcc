package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"

	"github.com/opencontainers/go-digest"
)

// Chunks handed to the hashing goroutine, and how many may be in flight.
const (
	hashChunk  = 256 << 10
	hashChunks = 8
)

// asyncHasher computes the sha256 of what is written to it on another
// goroutine, so reading a layer's files and hashing its tar overlap on two
// cores (a 200 MB COPY layer spent a third of its commit in each). Writes
// are copied into chunks; Digest waits for the last one. The zero value is
// not usable: see newAsyncHasher.
type asyncHasher struct {
	h     hash.Hash
	n     int64
	cur   []byte
	made  int
	work  chan []byte
	free  chan []byte
	done  chan struct{}
	ended bool
}

func newAsyncHasher() *asyncHasher {
	a := &asyncHasher{
		h:    sha256.New(),
		work: make(chan []byte, hashChunks),
		free: make(chan []byte, hashChunks),
		done: make(chan struct{}),
	}
	go func() {
		defer close(a.done)
		for b := range a.work {
			a.h.Write(b)
			a.free <- b[:0]
		}
	}()
	return a
}

// Write implements io.Writer; it never fails.
func (a *asyncHasher) Write(p []byte) (int, error) {
	n := len(p)
	a.n += int64(n)
	for len(p) > 0 {
		if a.cur == nil {
			a.cur = a.chunk()
		}
		k := copy(a.cur[len(a.cur):cap(a.cur)], p)
		a.cur = a.cur[:len(a.cur)+k]
		p = p[k:]
		if len(a.cur) == cap(a.cur) {
			a.work <- a.cur
			a.cur = nil
		}
	}
	return n, nil
}

// chunk returns an empty chunk: a recycled one, or a new one while fewer
// than hashChunks exist (small layers allocate only what they fill).
func (a *asyncHasher) chunk() []byte {
	select {
	case b := <-a.free:
		return b
	default:
	}
	if a.made < hashChunks {
		a.made++
		return make([]byte, 0, hashChunk)
	}
	return <-a.free
}

// Digest waits for everything written to be hashed and returns the digest
// and the number of bytes. The hasher is finished afterwards.
func (a *asyncHasher) Digest() (digest.Digest, int64) {
	a.end()
	return digest.Digest("sha256:" + hex.EncodeToString(a.h.Sum(nil))), a.n
}

// end stops the hashing goroutine; safe to call more than once.
func (a *asyncHasher) end() {
	if a.ended {
		return
	}
	a.ended = true
	if len(a.cur) > 0 {
		a.work <- a.cur
		a.cur = nil
	}
	close(a.work)
	<-a.done
}
