package fileop

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"

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
	// regular file instead of reading it. It must return what DigestFile
	// would, or cache keys change meaning.
	FileDigest FileDigestFunc
}

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
		fh:         sha256.New(),
		fileDigest: opts.FileDigest,
		owners:     c.PreserveOwner,
	}
	s.str(checksumVersion)
	s.num(uint64(len(c.Sources)))
	for _, p := range c.Sources {
		s.str(p)
	}
	s.flag(c.Unpack)
	s.flag(c.PreserveOwner)
	for _, m := range matches {
		s.str("match")
		s.str(m.name)
		s.str(m.real)
		read := func(w io.Writer, buf []byte) error {
			f, err := src.Open(m.real)
			if err != nil {
				return err
			}
			defer f.Close()
			return copyBuffer(w, f, buf)
		}
		if err := s.entry(m.real, m.fi, read, func() (string, error) { return src.Readlink(m.real) }); err != nil {
			return "", err
		}
		if !m.fi.IsDir() {
			continue
		}
		err := t.walkDir(ctx, m.real, nil, func(e *entry) error {
			return s.entry(e.rel, e.fi, e.readTo, func() (string, error) { return e.dir.Readlink(e.name) })
		}, nil)
		if err != nil {
			return "", fmt.Errorf("checksum %s: %w", m.name, err)
		}
	}
	return digest.NewDigest(digest.SHA256, s.h), nil
}

// summer accumulates the checksum of a copy's sources.
type summer struct {
	ctx        context.Context
	src        *os.Root
	h          hash.Hash
	fh         hash.Hash // reused for file contents
	buf        []byte    // reused for file contents
	scratch    [binary.MaxVarintLen64]byte
	fileDigest FileDigestFunc
	owners     bool
}

func (s *summer) num(n uint64) {
	s.h.Write(binary.AppendUvarint(s.scratch[:0], n))
}

func (s *summer) str(v string) {
	s.num(uint64(len(v)))
	io.WriteString(s.h, v)
}

func (s *summer) flag(b bool) {
	if b {
		s.num(1)
	} else {
		s.num(0)
	}
}

// entry adds one file, directory, symlink or device to the checksum.
func (s *summer) entry(rel string, fi fs.FileInfo, read func(io.Writer, []byte) error, readlink func() (string, error)) error {
	mode := fi.Mode()
	s.str(rel)
	var typ string
	switch {
	case mode.IsRegular():
		typ = "file"
	case mode.IsDir():
		typ = "dir"
	case mode&fs.ModeSymlink != 0:
		typ = "symlink"
	case mode&fs.ModeCharDevice != 0:
		typ = "char"
	case mode&fs.ModeDevice != 0:
		typ = "block"
	case mode&fs.ModeNamedPipe != 0:
		typ = "fifo"
	case mode&fs.ModeSocket != 0:
		typ = "socket"
	default:
		typ = "other"
	}
	s.str(typ)
	s.num(uint64(unixPerm(mode)))
	if s.owners {
		o := statOwner(fi)
		s.num(uint64(o.uid))
		s.num(uint64(o.gid))
	}
	switch typ {
	case "file":
		s.num(uint64(fi.Size()))
		d, err := s.content(rel, fi, read)
		if err != nil {
			return err
		}
		s.str(d.String())
	case "symlink":
		link, err := readlink()
		if err != nil {
			return fmt.Errorf("read symlink %s: %w", rel, err)
		}
		s.str(link)
	case "char", "block":
		major, minor := devMajorMinor(statRdev(fi))
		s.num(uint64(major))
		s.num(uint64(minor))
	}
	return nil
}

// content returns the content digest of the regular file rel.
func (s *summer) content(rel string, fi fs.FileInfo, read func(io.Writer, []byte) error) (digest.Digest, error) {
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
	if s.buf == nil {
		s.buf = make([]byte, 256<<10)
	}
	s.fh.Reset()
	if err := read(s.fh, s.buf); err != nil {
		return "", fmt.Errorf("checksum %s: %w", rel, err)
	}
	return digest.NewDigest(digest.SHA256, s.fh), nil
}

// DigestFile returns the sha256 digest of the content of the regular file
// name (relative to src), as ChecksumWith computes it when no FileDigest is
// set.
func DigestFile(ctx context.Context, src *os.Root, name string) (digest.Digest, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	f, err := src.Open(name)
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", name, err)
	}
	defer f.Close()
	h := sha256.New()
	if err := copyBuffer(h, f, make([]byte, 64<<10)); err != nil {
		return "", fmt.Errorf("digest %s: %w", name, err)
	}
	return digest.NewDigest(digest.SHA256, h), nil
}
