package fileop

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Magic numbers of the compressions ADD understands.
var (
	magicGzip  = []byte{0x1f, 0x8b, 0x08}
	magicBzip2 = []byte{'B', 'Z', 'h'}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// decompress returns the decompressed stream of r, detected by its magic
// number (an uncompressed stream is returned as is), and a function that
// releases the decompressor.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(6)
	nop := func() {}
	switch {
	case bytes.HasPrefix(magic, magicGzip):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nop, err
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(magic, magicBzip2):
		return bzip2.NewReader(br), nop, nil
	case bytes.HasPrefix(magic, magicXz):
		xr, err := xz.NewReader(br)
		if err != nil {
			return nil, nop, err
		}
		return xr, nop, nil
	case bytes.HasPrefix(magic, magicZstd):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, nop, err
		}
		return zr, zr.Close, nil
	default:
		return br, nop, nil
	}
}

// isArchive reports whether r holds a tar archive, possibly compressed,
// with at least one entry — the test Docker applies before ADD extracts.
func isArchive(r io.Reader) bool {
	dr, done, err := decompress(r)
	defer done()
	if err != nil {
		return false
	}
	_, err = tar.NewReader(dr).Next()
	return err == nil
}

// unpack extracts the source file m into the destination directory dest
// when it is a tar archive, and reports whether it was one.
func (cp *copier) unpack(ctx context.Context, m match, dest string) (bool, error) {
	f, err := cp.t.root.Open(m.real)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if !isArchive(f) {
		return false, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	r, done, err := decompress(f)
	defer done()
	if err != nil {
		return false, err
	}
	host, _, err := cp.d.mkdirAll(dest, 0o755, cp.parent)
	if err != nil {
		return false, err
	}
	x := extractor{
		cp:  cp,
		dst: &destFS{root: host, chown: cp.d.chown},
	}
	return true, x.extract(ctx, tar.NewReader(r))
}

// extractor writes tar entries below a directory, treating it as the root
// of the archive: names and symlinks on the way are resolved inside it and
// ".." or absolute names are clamped to it.
type extractor struct {
	cp  *copier
	dst *destFS
	// dirs are the directories extracted, whose mode and mtime are set
	// last so that writing their contents does not disturb them.
	dirs []extracted
}

type extracted struct {
	host  string
	mode  fs.FileMode
	mtime time.Time
}

func (x *extractor) extract(ctx context.Context, tr *tar.Reader) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		// A later entry may have replaced the dir (with a symlink, say):
		// chmod would follow it, so only a dir still there is touched.
		if fi, err := os.Lstat(d.host); err != nil || !fi.IsDir() {
			continue
		}
		if err := os.Chmod(d.host, d.mode); err != nil {
			return err
		}
		if err := lutimes(d.host, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	name := path.Clean("/" + hdr.Name)
	if name == "/" {
		// The archive's root is the destination directory, which is kept.
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink,
		tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	case tar.TypeXGlobalHeader:
		return nil // nothing to write, as in Docker
	default:
		// Docker's extractor refuses what it cannot write (GNU sparse
		// files, volume headers, ...); skipping them would lose files.
		return fmt.Errorf("unhandled tar header type %d (%q)", hdr.Typeflag, hdr.Typeflag)
	}
	if err := x.checkParentLink(path.Dir(name)); err != nil {
		return err
	}
	// Missing parents are made root-owned, whatever --chown says.
	parent, _, err := x.dst.mkdirAll(path.Dir(name), 0o755, owner{})
	if err != nil {
		return err
	}
	h := filepath.Join(parent, path.Base(name))
	if fi, err := os.Lstat(h); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
		if err := os.RemoveAll(h); err != nil {
			return err
		}
	}
	mode := fileMode(uint32(hdr.Mode) & 0o7777)
	linksSymlink := false // a hard link to a symlink
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := mkdirOver(h); err != nil {
			return err
		}
	case tar.TypeReg:
		f, err := os.OpenFile(h, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if x.cp.buf == nil {
			x.cp.buf = make([]byte, 256<<10)
		}
		_, err = io.CopyBuffer(struct{ io.Writer }{f}, r, x.cp.buf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, h); err != nil {
			return err
		}
	case tar.TypeLink:
		target, err := x.linkTarget(hdr.Linkname)
		if err != nil {
			return err
		}
		if err := os.Link(target, h); err != nil {
			return err
		}
		// The link's header then sets the owner, mode and times of the
		// inode it shares, as Docker's extractor does; of a link to a
		// symlink only the owner (there is no lchmod).
		if fi, err := os.Lstat(target); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			linksSymlink = true
		}
	default:
		fm := fs.ModeDevice
		switch hdr.Typeflag {
		case tar.TypeChar:
			fm |= fs.ModeCharDevice
		case tar.TypeFifo:
			fm = fs.ModeNamedPipe
		}
		if err := mknod(h, fm, mkdev(hdr.Devmajor, hdr.Devminor)); err != nil {
			return err
		}
	}
	// The archive's owners, even with --chown (which only owns the
	// directories made for the destination), as Docker 20.10's builder
	// extracts.
	o := owner{uid: hdr.Uid, gid: hdr.Gid}
	if x.dst.chown {
		if err := os.Lchown(h, o.uid, o.gid); err != nil {
			return fmt.Errorf("change owner: %w", err)
		}
	}
	for k, v := range hdr.PAXRecords {
		if key, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if err := lsetxattr(h, key, []byte(v)); err != nil && !isNotSupported(err) {
				return fmt.Errorf("set xattr %s: %w", key, err)
			}
		}
	}
	switch {
	case hdr.Typeflag == tar.TypeDir:
		x.dirs = append(x.dirs, extracted{host: h, mode: mode, mtime: hdr.ModTime})
		return nil
	case linksSymlink:
		return nil
	case hdr.Typeflag == tar.TypeSymlink:
	default:
		if err := os.Chmod(h, mode); err != nil {
			return err
		}
	}
	return lutimes(h, hdr.ModTime)
}

// checkParentLink refuses an entry below a symlink (one the archive made,
// say) to a directory that does not exist, at any depth, as Docker's
// extractor does, instead of making that directory.
func (x *extractor) checkParentLink(dir string) error {
	if dir == "/" {
		return nil
	}
	// The usual case, for every entry: the parent is there already.
	if h, err := x.dst.resolve(dir); err == nil {
		if fi, err := os.Stat(h); err == nil && fi.IsDir() {
			return nil
		}
	}
	comps := strings.Split(strings.TrimPrefix(dir, "/"), "/")
	for i := range comps {
		p := "/" + strings.Join(comps[:i+1], "/")
		parent, err := x.dst.resolve(path.Dir(p))
		if err != nil {
			return err
		}
		fi, err := os.Lstat(filepath.Join(parent, comps[i]))
		if err != nil {
			return nil // missing from here on: made as directories
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		target, err := x.dst.resolve(p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(target); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s is a symlink to a directory that does not exist: %w", p, err)
		}
	}
	return nil
}

// linkTarget resolves the target of a hard link entry inside the
// destination directory, without following a final symlink.
func (x *extractor) linkTarget(name string) (string, error) {
	name = path.Clean("/" + name)
	if name == "/" {
		return "", errors.New("hard link to the archive root")
	}
	dir, err := x.dst.resolve(path.Dir(name))
	if err != nil {
		return "", err
	}
	h := filepath.Join(dir, path.Base(name))
	fi, err := os.Lstat(h)
	if err != nil {
		return "", fmt.Errorf("hard link target: %w", err)
	}
	if fi.IsDir() {
		return "", fmt.Errorf("hard link target %s is a directory", name)
	}
	return h, nil
}
