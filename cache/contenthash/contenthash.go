// Package contenthash remembers the content digests of build-context files,
// keyed by their path and the stat data that changes whenever the content
// does (size, mtime, ctime, inode, mode), so a rebuild re-reads only the
// files that changed. It is a cache: a lost or damaged file only costs a
// re-read.
package contenthash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
)

type entry struct {
	Size  int64
	Mtime int64
	Ctime int64
	Ino   uint64
	Mode  uint32
	// Sum is the raw sha256 content digest.
	Sum [sha256.Size]byte
}

// sameStat reports whether e and k describe the same stat data.
func (e *entry) sameStat(k *entry) bool {
	return e.Size == k.Size && e.Mtime == k.Mtime && e.Ctime == k.Ctime && e.Ino == k.Ino && e.Mode == k.Mode
}

// Cache maps file names to content digests for one directory tree.
type Cache struct {
	path string
	now  func() time.Time

	mu sync.RWMutex
	// index maps names to positions in entries; the names loaded from the
	// file share one string.
	index   map[string]int
	entries []entry
	// seen marks, per entry, that it was asked about since Open (set
	// under a read lock, hence atomic).
	seen  []atomic.Bool
	dirty bool
}

// Open loads the cache persisted at path (a missing or damaged file gives
// an empty cache).
func Open(path string) *Cache {
	c := &Cache{path: path, now: time.Now, index: map[string]int{}}
	b, err := os.ReadFile(path)
	if err != nil {
		return c
	}
	if index, entries, err := decode(b); err == nil {
		c.index, c.entries = index, entries
		c.seen = make([]atomic.Bool, len(entries))
	}
	return c
}

// The file format: a magic line, then per entry the name (uvarint length
// and bytes), size, mtime, ctime and inode (8 bytes each, little-endian),
// mode (4 bytes) and the raw 32-byte sha256 content digest. Binary and
// fixed-width, because loading 20,000 entries is paid by every build of
// such a context (JSON took a third of a no-op rebuild, varints a third
// of the load).
const magic = "kiln-contenthash-3\n"

// fixedSize is the size of an entry after its name.
const fixedSize = 4*8 + 4 + sha256.Size

func encode(index map[string]int, entries []entry, keep func(i int) bool) []byte {
	b := make([]byte, 0, len(magic)+len(index)*(fixedSize+40))
	b = append(b, magic...)
	le := binary.LittleEndian
	for name, i := range index {
		if !keep(i) {
			continue
		}
		e := &entries[i]
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
		b = le.AppendUint64(b, uint64(e.Size))
		b = le.AppendUint64(b, uint64(e.Mtime))
		b = le.AppendUint64(b, uint64(e.Ctime))
		b = le.AppendUint64(b, e.Ino)
		b = le.AppendUint32(b, e.Mode)
		b = append(b, e.Sum[:]...)
	}
	return b
}

var errDamaged = errors.New("damaged content hash cache")

func decode(raw []byte) (map[string]int, []entry, error) {
	if !bytes.HasPrefix(raw, []byte(magic)) {
		return nil, nil, errDamaged
	}
	b := raw[len(magic):]
	// One string for the whole file: names are slices of it.
	all := string(b)
	le := binary.LittleEndian
	// Count first: growing the map on the way rehashes it.
	count := 0
	for pos := 0; pos < len(b); count++ {
		l, n := binary.Uvarint(b[pos:])
		if n <= 0 || l > uint64(len(b)-pos-n) || uint64(len(b)-pos-n)-l < fixedSize {
			return nil, nil, errDamaged
		}
		pos += n + int(l) + fixedSize
	}
	index := make(map[string]int, count)
	entries := make([]entry, 0, count)
	for pos := 0; pos < len(b); {
		l, n := binary.Uvarint(b[pos:])
		if n <= 0 || l > uint64(len(b)-pos-n) || uint64(len(b)-pos-n)-l < fixedSize {
			return nil, nil, errDamaged
		}
		pos += n
		name := all[pos : pos+int(l)]
		pos += int(l)
		f := b[pos : pos+fixedSize]
		pos += fixedSize
		e := entry{
			Size:  int64(le.Uint64(f[0:])),
			Mtime: int64(le.Uint64(f[8:])),
			Ctime: int64(le.Uint64(f[16:])),
			Ino:   le.Uint64(f[24:]),
			Mode:  le.Uint32(f[32:]),
		}
		copy(e.Sum[:], f[36:])
		// A repeated name (never written, but possible in a damaged
		// file) leaves an orphan entry that Save drops.
		index[name] = len(entries)
		entries = append(entries, e)
	}
	return index, entries, nil
}

// LookupSum returns the remembered raw sha256 content digest of name when
// fi's stat data matches what was remembered, without reading anything.
// It may be called from several goroutines at once.
func (c *Cache) LookupSum(name string, fi fs.FileInfo) ([sha256.Size]byte, bool) {
	k, ok := key(fi)
	if !ok {
		return [sha256.Size]byte{}, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	i, hit := c.index[name]
	if !hit {
		return [sha256.Size]byte{}, false
	}
	c.seen[i].Store(true)
	e := &c.entries[i]
	if !e.sameStat(&k) {
		return [sha256.Size]byte{}, false
	}
	return e.Sum, true
}

// Digest returns the content digest of name (relative to the tree) whose
// stat data is fi: from the cache when the stat data matches, else from
// compute, which is then remembered. A file changed in the last two
// seconds is not remembered, since a change within the clock's granularity
// could keep its stat data ("racy" entries, as git calls them).
func (c *Cache) Digest(ctx context.Context, name string, fi fs.FileInfo, compute func() (digest.Digest, error)) (digest.Digest, error) {
	if sum, ok := c.LookupSum(name, fi); ok {
		return digest.Digest("sha256:" + hex.EncodeToString(sum[:])), nil
	}
	d, err := compute()
	if err != nil {
		return d, err
	}
	k, ok := key(fi)
	if !ok {
		return d, nil
	}
	raw, err := hex.DecodeString(d.Encoded())
	if d.Algorithm() != digest.SHA256 || err != nil || len(raw) != sha256.Size {
		return d, nil
	}
	copy(k.Sum[:], raw)
	racy := c.now().Add(-2 * time.Second).UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	i, had := c.index[name]
	if !had {
		i = len(c.entries)
		c.index[name] = i
		c.entries = append(c.entries, entry{})
		c.seen = append(c.seen, atomic.Bool{})
	}
	c.seen[i].Store(true)
	if k.Mtime < racy && k.Ctime < racy {
		c.entries[i] = k
		c.dirty = true
	} else if had {
		// Forget it: zero stat data never matches a real file's.
		c.entries[i] = entry{}
		c.dirty = true
	}
	return d, nil
}

// Save persists the cache atomically, dropping entries for files that were
// not asked about since Open when at least one was (files that went away).
func (c *Cache) Save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	anySeen := false
	for i := range c.seen {
		if c.seen[i].Load() {
			anySeen = true
			break
		}
	}
	keep := func(i int) bool { return c.entries[i].Mode != 0 && (!anySeen || c.seen[i].Load()) }
	if !c.dirty && anySeen {
		for i := range c.entries {
			if !keep(i) {
				c.dirty = true
				break
			}
		}
	}
	if !c.dirty {
		return nil
	}
	b := encode(c.index, c.entries, keep)
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("save content hashes: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".tmp-")
	if err != nil {
		return fmt.Errorf("save content hashes: %w", err)
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save content hashes: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save content hashes: %w", err)
	}
	c.dirty = false
	return nil
}
