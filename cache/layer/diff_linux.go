package layer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// differ holds the state of one Diff call.
type differ struct {
	bw    *bufio.Writer
	tw    *tar.Writer
	n     int // entries written
	hdr   tar.Header
	buf   []byte // file content and symlink targets
	dent  []byte
	xlist []byte // xattr names
	xval  []byte // one xattr value
	links map[fileID]string
}

// fileID identifies an inode, to find hard links.
type fileID struct {
	dev, ino uint64
}

func diff(ctx context.Context, upper string, w io.Writer) (int, error) {
	fd, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open upper directory: %w", &os.PathError{Op: "open", Path: upper, Err: err})
	}
	defer unix.Close(fd)
	d := &differ{
		bw:    bufio.NewWriterSize(w, 64<<10),
		buf:   make([]byte, copyBufSize),
		dent:  make([]byte, direntBufSize),
		xlist: make([]byte, 4<<10),
		xval:  make([]byte, 4<<10),
	}
	d.tw = tar.NewWriter(d.bw)
	_, opaque, err := d.xattrs(fd, "")
	if err != nil {
		return 0, fmt.Errorf("diff %s: read xattrs: %w", upper, err)
	}
	if opaque {
		if err := d.marker(opaqueWhiteout, time.Unix(0, 0)); err != nil {
			return d.n, err
		}
	}
	if err := d.walk(ctx, fd, ""); err != nil {
		return d.n, err
	}
	if err := d.tw.Close(); err != nil {
		return d.n, fmt.Errorf("write layer tar: %w", err)
	}
	if err := d.bw.Flush(); err != nil {
		return d.n, fmt.Errorf("write layer tar: %w", err)
	}
	return d.n, nil
}

// walk writes the entries below the directory dirfd, whose path in the
// layer is rel ("" or ending in "/"), in name order.
func (d *differ) walk(ctx context.Context, dirfd int, rel string) error {
	names, err := readNames(dirfd, d.dent, nil)
	if err != nil {
		return fmt.Errorf("diff: read directory %q: %w", rel, err)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("diff layer: %w", err)
		}
		if err := d.entry(ctx, dirfd, rel, name); err != nil {
			return err
		}
	}
	return nil
}

// entry writes the entry for name in dirfd and, for a directory, its
// children.
func (d *differ) entry(ctx context.Context, dirfd int, rel, name string) error {
	p := rel + name
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("diff: stat %q: %w", p, err)
	}
	mtime := time.Unix(st.Mtim.Sec, 0)
	typ := st.Mode & unix.S_IFMT
	if typ == unix.S_IFCHR && st.Rdev == 0 {
		return d.marker(rel+whiteoutPrefix+name, mtime)
	}
	if typ == unix.S_IFSOCK {
		return nil // sockets cannot be stored in a tar
	}
	d.hdr = tar.Header{
		Name:    p,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: mtime,
	}
	if typ != unix.S_IFDIR && st.Nlink > 1 {
		id := fileID{dev: uint64(st.Dev), ino: st.Ino}
		if first, ok := d.links[id]; ok {
			d.hdr.Typeflag = tar.TypeLink
			d.hdr.Linkname = first
			return d.write()
		}
		if d.links == nil {
			d.links = make(map[fileID]string)
		}
		d.links[id] = p
	}
	switch typ {
	case unix.S_IFDIR:
		return d.dir(ctx, dirfd, p, name)
	case unix.S_IFREG:
		return d.file(ctx, dirfd, name, st.Size)
	case unix.S_IFLNK:
		n, err := unix.Readlinkat(dirfd, name, d.buf)
		if err != nil {
			return fmt.Errorf("diff: read symlink %q: %w", p, err)
		}
		d.hdr.Typeflag = tar.TypeSymlink
		d.hdr.Linkname = string(d.buf[:n])
	case unix.S_IFCHR, unix.S_IFBLK:
		d.hdr.Typeflag = tar.TypeChar
		if typ == unix.S_IFBLK {
			d.hdr.Typeflag = tar.TypeBlock
		}
		d.hdr.Devmajor = int64(unix.Major(uint64(st.Rdev)))
		d.hdr.Devminor = int64(unix.Minor(uint64(st.Rdev)))
	case unix.S_IFIFO:
		d.hdr.Typeflag = tar.TypeFifo
	default:
		return fmt.Errorf("diff: %q has unsupported file type %#o", p, typ)
	}
	recs, _, err := d.xattrs(-1, procPath(dirfd, name))
	if err != nil {
		return fmt.Errorf("diff: read xattrs of %q: %w", p, err)
	}
	d.hdr.PAXRecords = recs
	return d.write()
}

// dir writes the directory entry in d.hdr, its opaque marker if it has
// one, and its children.
func (d *differ) dir(ctx context.Context, dirfd int, p, name string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("diff: open directory %q: %w", p, err)
	}
	defer unix.Close(fd)
	recs, opaque, err := d.xattrs(fd, "")
	if err != nil {
		return fmt.Errorf("diff: read xattrs of %q: %w", p, err)
	}
	d.hdr.Name = p + "/"
	d.hdr.Typeflag = tar.TypeDir
	d.hdr.PAXRecords = recs
	mtime := d.hdr.ModTime
	if err := d.write(); err != nil {
		return err
	}
	if opaque {
		if err := d.marker(p+"/"+opaqueWhiteout, mtime); err != nil {
			return err
		}
	}
	return d.walk(ctx, fd, p+"/")
}

// file writes the regular file entry in d.hdr and size bytes of content.
func (d *differ) file(ctx context.Context, dirfd int, name string, size int64) error {
	p := d.hdr.Name
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("diff: open %q: %w", p, err)
	}
	defer unix.Close(fd)
	recs, _, err := d.xattrs(fd, "")
	if err != nil {
		return fmt.Errorf("diff: read xattrs of %q: %w", p, err)
	}
	d.hdr.Typeflag = tar.TypeReg
	d.hdr.Size = size
	d.hdr.PAXRecords = recs
	if err := d.write(); err != nil {
		return err
	}
	for size > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("diff layer: %w", err)
		}
		chunk := d.buf
		if int64(len(chunk)) > size {
			chunk = chunk[:size]
		}
		n, err := unix.Read(fd, chunk)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("diff: read %q: %w", p, err)
		}
		if n == 0 {
			return fmt.Errorf("diff: %q shrank while it was read", p)
		}
		if _, err := d.tw.Write(chunk[:n]); err != nil {
			return fmt.Errorf("write layer tar: %w", err)
		}
		size -= int64(n)
	}
	return nil
}

// marker writes an empty whiteout or opaque marker file.
func (d *differ) marker(name string, mtime time.Time) error {
	d.hdr = tar.Header{Name: name, Typeflag: tar.TypeReg, ModTime: mtime}
	return d.write()
}

// write writes d.hdr.
func (d *differ) write() error {
	if err := d.tw.WriteHeader(&d.hdr); err != nil {
		return fmt.Errorf("write layer tar: %q: %w", d.hdr.Name, err)
	}
	d.n++
	return nil
}

// xattrs returns the xattrs of fd (or, if fd < 0, of path without
// following it) as PAX records, leaving out overlayfs-internal ones and
// security.selinux, and reports whether the overlay opaque xattr is "y".
func (d *differ) xattrs(fd int, path string) (recs map[string]string, opaque bool, err error) {
	n, err := listXattrs(fd, path, &d.xlist)
	if err == unix.ENOTSUP || n == 0 {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	for names := d.xlist[:n]; len(names) > 0; {
		i := bytes.IndexByte(names, 0)
		if i < 0 {
			i = len(names)
		}
		name := string(names[:i])
		names = names[min(i+1, len(names)):]
		if name == "" || name == "security.selinux" {
			continue
		}
		if overlayXattr(name) && name != opaqueXattr && name != userOpaqueXattr {
			continue
		}
		vn, err := getXattr(fd, path, name, &d.xval)
		if err == unix.ENODATA {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, false, fmt.Errorf("read xattr %q: %w", name, err)
		}
		if overlayXattr(name) {
			opaque = opaque || string(d.xval[:vn]) == "y"
			continue
		}
		if recs == nil {
			recs = make(map[string]string)
		}
		recs[paxXattrPrefix+name] = string(d.xval[:vn])
	}
	return recs, opaque, nil
}

// listXattrs reads the xattr names of fd (or path, if fd < 0) into *buf,
// growing it as needed.
func listXattrs(fd int, path string, buf *[]byte) (int, error) {
	for {
		var n int
		var err error
		if fd >= 0 {
			n, err = unix.Flistxattr(fd, *buf)
		} else {
			n, err = unix.Llistxattr(path, *buf)
		}
		if err != unix.ERANGE {
			return n, err
		}
		*buf = make([]byte, 2*len(*buf))
	}
}

// getXattr reads the value of xattr name of fd (or path, if fd < 0) into
// *buf, growing it as needed.
func getXattr(fd int, path, name string, buf *[]byte) (int, error) {
	for {
		var n int
		var err error
		if fd >= 0 {
			n, err = unix.Fgetxattr(fd, name, *buf)
		} else {
			n, err = unix.Lgetxattr(path, name, *buf)
		}
		if err != unix.ERANGE {
			return n, err
		}
		if len(*buf) >= 1<<20 {
			return 0, err
		}
		*buf = make([]byte, 2*len(*buf))
	}
}
