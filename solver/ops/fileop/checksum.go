package fileop

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"runtime"
	"sync"

	"github.com/moby/patternmatcher"
	"github.com/opencontainers/go-digest"
)

// checksumVersion starts every digest; change it whenever the encoding
// below changes so old cache keys stop matching.
const checksumVersion = "kiln-fileop-checksum-v1"

// FileDigestFunc returns the sha256 digest of the content of the regular
// file name (slash-separated, relative to src) that fi describes. A cache of
// content digests keyed on (name, size, mtime, inode) plugs in here; on a
// miss it can call DigestFile.
type FileDigestFunc func(ctx context.Context, src *os.Root, name string, fi fs.FileInfo) (digest.Digest, error)

// ChecksumOptions tune ChecksumWith. The zero value reads every file.
type ChecksumOptions struct {
	// FileDigest, when set, is asked for the content digest of each
	// regular file instead of reading it. It is called from several
	// goroutines at once. It must return what DigestFile
	// would, or cache keys change meaning.
	FileDigest FileDigestFunc
	// Lookup, when set, is asked first, on the walking goroutine, for a
	// digest it can give without reading (a stat cache hit); only files
	// it does not know go to FileDigest.
	Lookup SumLookupFunc
}

// SumLookupFunc returns the raw sha256 content digest of the regular file
// name that fi describes when it knows it without reading the file. It is
// called from several goroutines at once.
type SumLookupFunc func(name string, fi fs.FileInfo) (sum [sha256.Size]byte, ok bool)

// ChecksumWith is Checksum with options.
//
// The digest covers the source patterns, Unpack and PreserveOwner, then for
// each matched path (in source order) the name it matched and the path it
// resolved to, and for it and everything below it, in lexical order: the
// path relative to the source root, the file type, the permission bits,
// the size and content digest of regular files, symlink targets and device
// numbers. Owners are included only with PreserveOwner, since otherwise
// Apply replaces them. Modification times never are.
func ChecksumWith(ctx context.Context, src *os.Root, c *Copy, opts ChecksumOptions) (digest.Digest, error) {
	if src == nil {
		return "", errors.New("checksum copy sources: no source tree")
	}
	t, err := newSrcTree(src, c.Excludes)
	if err != nil {
		return "", err
	}
	matches, err := resolveSources(ctx, t, c)
	if err != nil {
		return "", err
	}
	s := summer{
		ctx:        ctx,
		src:        src,
		h:          sha256.New(),
		fileDigest: opts.FileDigest,
		lookup:     opts.Lookup,
		owners:     c.PreserveOwner,
	}
	s.str(checksumVersion)
	s.num(uint64(len(c.Sources)))
	for _, p := range c.Sources {
		s.str(p)
	}
	s.flag(c.Unpack)
	s.flag(c.PreserveOwner)
	// The walk records every entry in order and hands regular files to a
	// pool of hashers; the records are then summed in order, so the result
	// does not depend on which hasher finishes first.
	pool := newHashPool(ctx, &s)
	var recs []*record
	walkErr := func() error {
		for _, m := range matches {
			recs = append(recs, &record{match: &sourceMatch{name: m.name, real: m.real}})
			r := new(record)
			err := pool.record(r, m.real, m.fi, func() (string, error) { return src.Readlink(m.real) })
			if err != nil {
				return err
			}
			recs = append(recs, r)
			if !m.fi.IsDir() {
				continue
			}
			sub, err := t.collect(ctx, m.real, pool)
			if err != nil {
				return fmt.Errorf("checksum %s: %w", m.name, err)
			}
			recs = append(recs, sub...)
		}
		return nil
	}()
	pool.close()
	if walkErr != nil {
		return "", walkErr
	}
	for _, r := range recs {
		if err := s.add(r); err != nil {
			return "", err
		}
	}
	s.flush()
	return digest.NewDigest(digest.SHA256, s.h), nil
}

// record is one entry of a checksum: a matched source, or a file, dir,
// symlink or device with its metadata. A no-op rebuild of a 20,000-file
// context holds one per file until the sum, so it is kept small: its
// fields are ordered to pack, and the type is an index into typeNames.
type record struct {
	// match is set on the record of a matched source, which has no
	// other fields.
	match *sourceMatch

	rel  string
	link string
	// pending is a regular file waiting in the hash pool; sum holds the
	// content digest the lookup found instead (hasSum).
	pending      *pending
	size         int64
	sum          [sha256.Size]byte
	perm         uint32
	uid, gid     uint32
	major, minor uint32
	typ          fileKind
	hasSum       bool
}

// sourceMatch is a source of the copy: the name it was given as and the
// path it resolved to.
type sourceMatch struct{ name, real string }

// fileKind is the type of a file, as the checksum names it (typeNames).
type fileKind uint8

const (
	kindFile fileKind = iota
	kindDir
	kindSymlink
	kindChar
	kindBlock
	kindFIFO
	kindSocket
	kindOther
)

// typeNames are the fileKinds' names in the checksum.
var typeNames = [...]string{kindFile: "file", kindDir: "dir", kindSymlink: "symlink", kindChar: "char", kindBlock: "block", kindFIFO: "fifo", kindSocket: "socket", kindOther: "other"}

// pending is a regular file queued for hashing: done is closed when
// digest (or err) is set.
type pending struct {
	info   fs.FileInfo
	done   chan struct{}
	digest digest.Digest
	err    error
}

// hashPool digests regular files concurrently.
type hashPool struct {
	ctx  context.Context
	s    *summer
	jobs chan *record
	wg   sync.WaitGroup
}

func newHashPool(ctx context.Context, s *summer) *hashPool {
	p := &hashPool{ctx: ctx, s: s, jobs: make(chan *record, 256)}
	n := max(2, 2*runtime.NumCPU())
	for range n {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			var fh hash.Hash
			var buf []byte
			for r := range p.jobs {
				if buf == nil { // a no-op rebuild hashes nothing
					fh, buf = sha256.New(), make([]byte, 256<<10)
				}
				pd := r.pending
				pd.digest, pd.err = p.s.content(r.rel, pd.info, fh, buf)
				close(pd.done)
			}
		}()
	}
	return p
}

func (p *hashPool) close() {
	close(p.jobs)
	p.wg.Wait()
}

// record describes one entry in r and queues its content for hashing.
func (p *hashPool) record(r *record, rel string, fi fs.FileInfo, readlink func() (string, error)) error {
	mode := fi.Mode()
	*r = record{rel: rel, typ: fileType(mode), perm: unixPerm(mode)}
	if p.s.owners {
		o := statOwner(fi)
		r.uid, r.gid = uint32(o.uid), uint32(o.gid)
	}
	switch r.typ {
	case kindFile:
		r.size = fi.Size()
		if p.s.lookup != nil {
			if r.sum, r.hasSum = p.s.lookup(rel, fi); r.hasSum {
				return nil
			}
		}
		r.pending = &pending{info: fi, done: make(chan struct{})}
		select {
		case p.jobs <- r:
		case <-p.ctx.Done():
			return p.ctx.Err()
		}
	case kindSymlink:
		link, err := readlink()
		if err != nil {
			return fmt.Errorf("read symlink %s: %w", rel, err)
		}
		r.link = link
	case kindChar, kindBlock:
		r.major, r.minor = devMajorMinor(statRdev(fi))
	}
	return nil
}

func fileType(mode fs.FileMode) fileKind {
	switch {
	case mode.IsRegular():
		return kindFile
	case mode.IsDir():
		return kindDir
	case mode&fs.ModeSymlink != 0:
		return kindSymlink
	case mode&fs.ModeCharDevice != 0:
		return kindChar
	case mode&fs.ModeDevice != 0:
		return kindBlock
	case mode&fs.ModeNamedPipe != 0:
		return kindFIFO
	case mode&fs.ModeSocket != 0:
		return kindSocket
	}
	return kindOther
}

// summer accumulates the checksum of a copy's sources.
type summer struct {
	ctx context.Context
	src *os.Root
	h   hash.Hash
	// buf collects small writes for h: a sha256 Write per field cost
	// more than the hashing for 20,000 records.
	buf        []byte
	fileDigest FileDigestFunc
	lookup     SumLookupFunc
	owners     bool
}

func (s *summer) num(n uint64) {
	s.buf = binary.AppendUvarint(s.buf, n)
	s.spill()
}

func (s *summer) str(v string) {
	s.buf = binary.AppendUvarint(s.buf, uint64(len(v)))
	s.buf = append(s.buf, v...)
	s.spill()
}

// spill hashes the collected bytes once there are enough of them.
func (s *summer) spill() {
	if len(s.buf) >= 32<<10 {
		s.flush()
	}
}

// flush hashes the collected bytes.
func (s *summer) flush() {
	s.h.Write(s.buf)
	s.buf = s.buf[:0]
}

func (s *summer) flag(b bool) {
	if b {
		s.num(1)
	} else {
		s.num(0)
	}
}

// add feeds one record into the checksum, waiting for its content digest.
func (s *summer) add(r *record) error {
	if m := r.match; m != nil {
		s.str("match")
		s.str(m.name)
		s.str(m.real)
		return nil
	}
	s.str(r.rel)
	s.str(typeNames[r.typ])
	s.num(uint64(r.perm))
	if s.owners {
		s.num(uint64(r.uid))
		s.num(uint64(r.gid))
	}
	switch r.typ {
	case kindFile:
		s.num(uint64(r.size))
		if r.hasSum {
			// The bytes of s.str(digest.String()), without the strings.
			var buf [len("sha256:") + 2*sha256.Size]byte
			copy(buf[:], "sha256:")
			hex.Encode(buf[len("sha256:"):], r.sum[:])
			s.num(uint64(len(buf)))
			s.buf = append(s.buf, buf[:]...)
			s.spill()
			return nil
		}
		<-r.pending.done
		if r.pending.err != nil {
			return r.pending.err
		}
		s.str(r.pending.digest.String())
	case kindSymlink:
		s.str(r.link)
	case kindChar, kindBlock:
		s.num(uint64(r.major))
		s.num(uint64(r.minor))
	}
	return nil
}

// content returns the content digest of the regular file rel, through the
// FileDigest hook when there is one.
func (s *summer) content(rel string, fi fs.FileInfo, fh hash.Hash, buf []byte) (digest.Digest, error) {
	if s.fileDigest != nil {
		d, err := s.fileDigest(s.ctx, s.src, rel, fi)
		if err != nil {
			return "", fmt.Errorf("checksum %s: %w", rel, err)
		}
		return d, nil
	}
	if err := s.ctx.Err(); err != nil {
		return "", err
	}
	d, err := hashFile(s.src, rel, fh, buf)
	if err != nil {
		return "", fmt.Errorf("checksum %s: %w", rel, err)
	}
	return d, nil
}

// hashFile returns the sha256 digest of the content of the regular file
// name, reading through fh (reset first) and buf.
func hashFile(src *os.Root, name string, fh hash.Hash, buf []byte) (digest.Digest, error) {
	f, err := src.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fh.Reset()
	if err := copyBuffer(fh, f, buf); err != nil {
		return "", err
	}
	return sha256Digest(fh), nil
}

// sha256Digest is digest.NewDigest(digest.SHA256, h) without its fmt call,
// which costs more than hashing a small file.
func sha256Digest(h hash.Hash) digest.Digest {
	var buf [sha256.Size]byte
	return digest.Digest("sha256:" + hex.EncodeToString(h.Sum(buf[:0])))
}

// DigestFile returns the sha256 digest of the content of the regular file
// name (relative to src), as ChecksumWith computes it when no FileDigest is
// set. size is the file's size as last seen, which sizes the read buffer
// (a first build of a 20,000-file context allocated 1.3 GB of 64 KiB
// buffers for files of a few KiB); any size gives the right digest.
func DigestFile(ctx context.Context, src *os.Root, name string, size int64) (digest.Digest, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	n := int64(64 << 10)
	if size < n {
		n = max(size, 512)
	}
	d, err := hashFile(src, name, sha256.New(), make([]byte, n))
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", name, err)
	}
	return d, nil
}

// collect walks the directory dir (relative to the tree) like walkDir and
// returns the records of everything below it in walk order. Directories
// are listed and stat'ed on several goroutines at once (a 20,000-file
// context spends most of a no-op rebuild in lstat); the records are put
// back in walk order, so the checksum does not depend on the schedule.
func (t *srcTree) collect(ctx context.Context, dir string, pool *hashPool) ([]*record, error) {
	var mi patternmatcher.MatchInfo
	if t.pm != nil && dir != "." {
		var err error
		if _, mi, err = t.match(dir, patternmatcher.MatchInfo{}); err != nil {
			return nil, fmt.Errorf("match .dockerignore patterns: %w", err)
		}
	}
	root, err := t.root.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	c := collector{t: t, ctx: ctx, pool: pool, slots: make(chan struct{}, max(4, 2*runtime.NumCPU()))}
	return c.dir(root, dir, mi)
}

type collector struct {
	t    *srcTree
	ctx  context.Context
	pool *hashPool
	// slots bounds the goroutines walking subdirectories (twice the
	// CPUs: one more per CPU took another 10% off a 20,000-file walk);
	// without a free slot a subdirectory is walked in place.
	slots chan struct{}
}

// subResult is the records of one subdirectory, filled in by its walker.
type subResult struct {
	at   int // position in the parent's records, after the dir's own
	recs []*record
	err  error
	done chan struct{}
}

func (c *collector) dir(root *os.Root, rel string, mi patternmatcher.MatchInfo) ([]*record, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	dirf, items, err := c.t.list(root, rel, mi)
	if err != nil {
		return nil, err
	}
	defer dirf.Close()
	recs := make([]*record, 0, len(items))
	slab := make([]record, len(items))
	var subs []*subResult
	wait := func() {
		for _, s := range subs {
			<-s.done
		}
	}
	for i := range items {
		e := &items[i].entry
		r := &slab[i]
		err := c.pool.record(r, e.rel, e.fi, func() (string, error) { return e.dir.Readlink(e.name) })
		recs = append(recs, r)
		if err != nil {
			wait()
			return nil, err
		}
		if !e.fi.IsDir() {
			continue
		}
		sub, err := root.OpenRoot(e.name)
		if err != nil {
			wait()
			return nil, fmt.Errorf("open directory %s: %w", e.rel, err)
		}
		s := &subResult{at: len(recs), done: make(chan struct{})}
		subs = append(subs, s)
		subMI := items[i].mi
		select {
		case c.slots <- struct{}{}:
			go func() {
				defer close(s.done)
				defer func() { <-c.slots }()
				defer sub.Close()
				s.recs, s.err = c.dir(sub, e.rel, subMI)
			}()
		default:
			s.recs, s.err = c.dir(sub, e.rel, subMI)
			sub.Close()
			close(s.done)
		}
	}
	wait()
	if len(subs) == 0 {
		return recs, nil
	}
	n := len(recs)
	for _, s := range subs {
		if s.err != nil {
			return nil, s.err
		}
		n += len(s.recs)
	}
	out := make([]*record, 0, n)
	prev := 0
	for _, s := range subs {
		out = append(out, recs[prev:s.at]...)
		out = append(out, s.recs...)
		prev = s.at
	}
	return append(out, recs[prev:]...), nil
}
