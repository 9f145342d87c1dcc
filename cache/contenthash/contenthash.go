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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
//
// What Open reads is kept as read, sorted by name, and looked up by binary
// search: a no-op rebuild of a 20,000-file context asks about every file
// once, and building a map of them first cost more than the lookups.
// That part never changes after Open, so LookupSum takes no lock; digests
// computed since Open go to a separate, locked map.
type Cache struct {
	path string
	now  func() time.Time

	// buf is the file as read. names are its entries' names, sorted,
	// as strings that share buf's memory (buf is never written), and
	// fixed[i] the offset in buf of the stat data and digest of names[i].
	buf   []byte
	names []string
	fixed []int
	// dirs brackets, for each directory, the positions in names of the
	// entries directly in it: a lookup searches only its directory's.
	dirs map[string]span
	// seen marks, per loaded entry, that it was asked about since Open.
	seen []atomic.Bool

	mu sync.Mutex
	// added holds the digests computed since Open, by name; a zero
	// entry forgets the name.
	added map[string]entry
}

// Open loads the cache persisted at path (a missing or damaged file gives
// an empty cache).
func Open(path string) *Cache {
	c := &Cache{path: path, now: time.Now, added: map[string]entry{}}
	b, err := os.ReadFile(path)
	if err != nil {
		return c
	}
	if names, fixed, err := decode(b); err == nil {
		c.buf, c.names, c.fixed = b, names, fixed
		c.seen = make([]atomic.Bool, len(names))
		c.dirs = bracketDirs(names)
	}
	return c
}

// span is the positions [lo, hi) in a sorted list.
type span struct{ lo, hi int }

// parentOf is the directory part of a slash-separated name ("" at the top).
func parentOf(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[:i]
	}
	return ""
}

// bracketDirs maps each directory to the span of sorted names that holds
// its entries. They need not be contiguous (a subdirectory's entries sort
// between them), but the span is sorted, so a binary search in it finds
// any of them; a directory's entries come in runs, so the map is touched
// once per run, not per name.
func bracketDirs(names []string) map[string]span {
	dirs := map[string]span{}
	flush := func(dir string, run span) {
		if s, ok := dirs[dir]; ok {
			run.lo = min(run.lo, s.lo)
			run.hi = max(run.hi, s.hi)
		}
		dirs[dir] = run
	}
	var cur string
	var run span
	for i, n := range names {
		p := parentOf(n)
		if i > 0 && p == cur {
			run.hi = i + 1
			continue
		}
		if i > 0 {
			flush(cur, run)
		}
		cur, run = p, span{i, i + 1}
	}
	if len(names) > 0 {
		flush(cur, run)
	}
	return dirs
}

// The file format: a magic line, then per entry, sorted by name (as Go
// compares strings), the name (uvarint length and bytes), size, mtime,
// ctime and inode (8 bytes each, little-endian), mode (4 bytes) and the
// raw 32-byte sha256 content digest. Binary, fixed-width and sorted,
// because loading 20,000 entries is paid by every build of such a context
// (JSON took a third of a no-op rebuild, varints a third of the load, and
// a map of the names most of what was left).
const magic = "kiln-contenthash-4\n"

// fixedSize is the size of an entry after its name.
const fixedSize = 4*8 + 4 + sha256.Size

// appendEntry appends the encoding of name and e to b.
func appendEntry(b []byte, name string, e *entry) []byte {
	le := binary.LittleEndian
	b = binary.AppendUvarint(b, uint64(len(name)))
	b = append(b, name...)
	b = le.AppendUint64(b, uint64(e.Size))
	b = le.AppendUint64(b, uint64(e.Mtime))
	b = le.AppendUint64(b, uint64(e.Ctime))
	b = le.AppendUint64(b, e.Ino)
	b = le.AppendUint32(b, e.Mode)
	return append(b, e.Sum[:]...)
}

// entryAt decodes the fixed part of an entry at f.
func entryAt(f []byte) entry {
	le := binary.LittleEndian
	e := entry{
		Size:  int64(le.Uint64(f[0:])),
		Mtime: int64(le.Uint64(f[8:])),
		Ctime: int64(le.Uint64(f[16:])),
		Ino:   le.Uint64(f[24:]),
		Mode:  le.Uint32(f[32:]),
	}
	copy(e.Sum[:], f[36:fixedSize])
	return e
}

var errDamaged = errors.New("damaged content hash cache")

// decode indexes the entries of a cache file: their names (sharing raw's
// memory, which must not change afterwards) and the offsets of their fixed
// parts. Names out of order or repeated make the file damaged.
func decode(raw []byte) (names []string, fixed []int, err error) {
	if !bytes.HasPrefix(raw, []byte(magic)) {
		return nil, nil, errDamaged
	}
	count := 0
	for pos := len(magic); pos < len(raw); count++ {
		l, n := binary.Uvarint(raw[pos:])
		if n <= 0 || l > uint64(len(raw)-pos-n) || uint64(len(raw)-pos-n)-l < fixedSize {
			return nil, nil, errDamaged
		}
		pos += n + int(l) + fixedSize
	}
	names = make([]string, 0, count)
	fixed = make([]int, 0, count)
	for pos := len(magic); pos < len(raw); {
		l, n := binary.Uvarint(raw[pos:])
		pos += n
		name := unsafe.String(unsafe.SliceData(raw[pos:]), int(l))
		if len(names) > 0 && names[len(names)-1] >= name {
			return nil, nil, errDamaged
		}
		pos += int(l)
		names = append(names, name)
		fixed = append(fixed, pos)
		pos += fixedSize
	}
	return names, fixed, nil
}

// lookup returns the position of name among the loaded entries.
func (c *Cache) lookup(name string) (int, bool) {
	s, ok := c.dirs[parentOf(name)]
	if !ok {
		return 0, false
	}
	i, ok := slices.BinarySearch(c.names[s.lo:s.hi], name)
	return s.lo + i, ok
}

// LookupSum returns the remembered raw sha256 content digest of name when
// fi's stat data matches what Open loaded, without reading anything. It
// may be called from several goroutines at once.
func (c *Cache) LookupSum(name string, fi fs.FileInfo) ([sha256.Size]byte, bool) {
	k, ok := key(fi)
	if !ok {
		return [sha256.Size]byte{}, false
	}
	i, hit := c.lookup(name)
	if !hit {
		return [sha256.Size]byte{}, false
	}
	if !c.seen[i].Load() {
		c.seen[i].Store(true)
	}
	e := entryAt(c.buf[c.fixed[i]:])
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
	k, ok := key(fi)
	if ok {
		c.mu.Lock()
		e, had := c.added[name]
		c.mu.Unlock()
		if had && e.Mode != 0 && e.sameStat(&k) {
			return digest.Digest("sha256:" + hex.EncodeToString(e.Sum[:])), nil
		}
	}
	d, err := compute()
	if err != nil || !ok {
		return d, err
	}
	raw, err := hex.DecodeString(d.Encoded())
	if d.Algorithm() != digest.SHA256 || err != nil || len(raw) != sha256.Size {
		return d, nil
	}
	copy(k.Sum[:], raw)
	racy := c.now().Add(-2 * time.Second).UnixNano()
	if k.Mtime >= racy || k.Ctime >= racy {
		// Forget it: zero stat data never matches a real file's.
		k = entry{}
	}
	c.mu.Lock()
	c.added[name] = k
	c.mu.Unlock()
	return d, nil
}

// Save persists the cache atomically, dropping entries for files that were
// not asked about since Open when at least one was (files that went away).
// It must not run beside LookupSum or Digest.
func (c *Cache) Save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	anySeen := len(c.added) > 0
	for i := range c.seen {
		if anySeen {
			break
		}
		anySeen = c.seen[i].Load()
	}
	keep := func(i int) bool {
		if _, over := c.added[c.names[i]]; over {
			return false
		}
		return entryAt(c.buf[c.fixed[i]:]).Mode != 0 && (!anySeen || c.seen[i].Load())
	}
	// With nothing added, the file changes only if an entry is dropped.
	dirty := len(c.added) > 0
	for i := range c.names {
		if dirty {
			break
		}
		dirty = !keep(i)
	}
	if !dirty {
		return nil
	}
	added := make([]string, 0, len(c.added))
	for name, e := range c.added {
		if e.Mode != 0 {
			added = append(added, name)
		}
	}
	slices.Sort(added)
	b := make([]byte, 0, len(c.buf)+len(added)*(fixedSize+40))
	b = append(b, magic...)
	// Merge the kept loaded entries and the added ones, both sorted.
	i, j := 0, 0
	for i < len(c.names) || j < len(added) {
		if j == len(added) || i < len(c.names) && c.names[i] < added[j] {
			if keep(i) {
				start := c.fixed[i] - len(c.names[i])
				start -= uvarintLen(uint64(len(c.names[i])))
				b = append(b, c.buf[start:c.fixed[i]+fixedSize]...)
			}
			i++
			continue
		}
		e := c.added[added[j]]
		b = appendEntry(b, added[j], &e)
		j++
	}
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
	return nil
}

// uvarintLen is the length of the uvarint encoding of v.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
