package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// unpacker holds the state of one Unpack call. All paths it touches are
// resolved relative to root with openat2(RESOLVE_IN_ROOT) or are single
// names relative to a directory fd resolved that way.
type unpacker struct {
	opts  UnpackOptions
	max   int64 // file content limit
	total int64 // file content so far
	root  int   // O_PATH fd of the unpack directory
	buf   []byte
	dent  []byte

	// The parent directory of the previous entry, kept open because tars
	// list siblings together. It is dropped whenever something is removed.
	cacheDir   string
	cacheFd    int
	cacheStale bool

	// dirs holds the mode and times of directory entries, applied at the
	// end so that writing their children does not change them.
	dirs map[string]dirMeta
	// written holds the paths created by this tar (only without Overlay,
	// for opaque markers).
	written map[string]struct{}
}

// dirMeta is the metadata of a directory applied after its children.
type dirMeta struct {
	mode  uint32
	times [2]unix.Timespec
}

func unpack(ctx context.Context, r io.Reader, dir string, opts UnpackOptions) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create unpack directory: %w", err)
	}
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open unpack directory: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	u := &unpacker{
		opts:    opts,
		max:     opts.MaxBytes,
		root:    root,
		buf:     make([]byte, copyBufSize),
		dent:    make([]byte, direntBufSize),
		cacheFd: -1,
		dirs:    make(map[string]dirMeta),
	}
	if u.max <= 0 {
		u.max = DefaultMaxBytes
	}
	if !opts.Overlay {
		u.written = make(map[string]struct{})
	}
	defer u.close()

	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("unpack layer: %w", err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		// Insecure names are fine: they are resolved inside root below.
		if err != nil && (hdr == nil || !errors.Is(err, tar.ErrInsecurePath)) {
			return fmt.Errorf("read layer tar: %w", err)
		}
		if err := u.entry(ctx, hdr, tr); err != nil {
			return fmt.Errorf("unpack layer entry %q: %w", hdr.Name, err)
		}
	}
	if err := u.finishDirs(); err != nil {
		return fmt.Errorf("unpack layer: %w", err)
	}
	return nil
}

func (u *unpacker) close() {
	if u.cacheFd >= 0 {
		unix.Close(u.cacheFd)
	}
	unix.Close(u.root)
}

// invalidate marks the cached parent directory stale; called whenever
// anything is removed, since that can change what a path resolves to. The
// fd stays open (the current entry may be using it) until the next parent
// call replaces it.
func (u *unpacker) invalidate() {
	u.cacheStale = true
}

// parent returns an O_PATH fd of the directory dirPath inside root, owned by
// the unpacker (callers must not close it). With create, missing
// directories are created.
func (u *unpacker) parent(dirPath string, create bool) (int, error) {
	if dirPath == "" {
		return u.root, nil
	}
	if u.cacheFd >= 0 && !u.cacheStale && u.cacheDir == dirPath {
		return u.cacheFd, nil
	}
	fd, err := openInRoot(u.root, dirPath, unix.O_PATH|unix.O_DIRECTORY)
	if err == unix.ENOENT && create {
		fd, err = u.mkdirAll(dirPath)
	}
	if err != nil {
		return -1, err
	}
	if u.cacheFd >= 0 {
		unix.Close(u.cacheFd)
	}
	u.cacheFd, u.cacheDir, u.cacheStale = fd, dirPath, false
	return fd, nil
}

// mkdirAll creates the missing directories of dirPath one component at a
// time, each resolved inside root, and returns an O_PATH fd of the last.
func (u *unpacker) mkdirAll(dirPath string) (int, error) {
	cur := u.root
	for i := 0; ; {
		end := len(dirPath)
		if j := strings.IndexByte(dirPath[i:], '/'); j >= 0 {
			end = i + j
		}
		prefix, comp := dirPath[:end], dirPath[i:end]
		fd, err := openInRoot(u.root, prefix, unix.O_PATH|unix.O_DIRECTORY)
		if err == unix.ENOENT {
			err = unix.Mkdirat(cur, comp, 0o755)
			if err == nil {
				// Undo the umask; the tar may set the mode later.
				err = chmodAt(cur, comp, 0o755)
				if u.written != nil {
					u.written[prefix] = struct{}{}
				}
			}
			if err == nil || err == unix.EEXIST {
				fd, err = openInRoot(u.root, prefix, unix.O_PATH|unix.O_DIRECTORY)
			}
		}
		if cur != u.root {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
		if end == len(dirPath) {
			return cur, nil
		}
		i = end + 1
	}
}

// entry applies one tar entry.
func (u *unpacker) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name := cleanPath(hdr.Name)
	if name == "" {
		if hdr.Typeflag != tar.TypeDir {
			return errors.New("refusing to replace the root directory")
		}
		return u.dirEntry(u.root, name, ".", hdr)
	}
	dirPath, base := splitPath(name)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(dirPath, base, hdr)
	}
	pfd, err := u.parent(dirPath, true)
	if err != nil {
		return fmt.Errorf("create parent directory: %w", err)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		err = u.dir(pfd, name, base, hdr)
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		err = u.file(ctx, pfd, base, hdr, r)
	case tar.TypeSymlink:
		err = u.symlink(pfd, base, hdr)
	case tar.TypeLink:
		err = u.hardlink(pfd, dirPath, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		err = u.node(pfd, base, hdr)
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	if err != nil {
		return err
	}
	if u.written != nil {
		u.written[name] = struct{}{}
	}
	return nil
}

// replace removes whatever is at base in pfd so an entry can take its place.
func (u *unpacker) replace(pfd int, base string) error {
	u.invalidate()
	if err := removeAllAt(pfd, base, u.dent); err != nil {
		return fmt.Errorf("remove existing path: %w", err)
	}
	return nil
}

// dir creates (or keeps) the directory base in pfd.
func (u *unpacker) dir(pfd int, name, base string, hdr *tar.Header) error {
	err := unix.Mkdirat(pfd, base, 0o700)
	if err == unix.EEXIST {
		var st unix.Stat_t
		if err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err = u.replace(pfd, base); err != nil {
				return err
			}
			err = unix.Mkdirat(pfd, base, 0o700)
		}
	}
	if err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	return u.dirEntry(pfd, name, base, hdr)
}

// dirEntry applies the owner and xattrs of a directory entry now and
// records its mode and times for finishDirs.
func (u *unpacker) dirEntry(pfd int, name, base string, hdr *tar.Header) error {
	if err := u.chown(pfd, base, hdr); err != nil {
		return err
	}
	if hasXattrs(hdr) {
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open directory: %w", err)
		}
		err = u.setXattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) })
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	u.dirs[name] = dirMeta{mode: perm(hdr), times: headerTimes(hdr)}
	return nil
}

// file writes a regular file.
func (u *unpacker) file(ctx context.Context, pfd int, base string, hdr *tar.Header, r io.Reader) error {
	if hdr.Size < 0 {
		return fmt.Errorf("invalid size %d", hdr.Size)
	}
	if hdr.Size > u.max-u.total {
		return fmt.Errorf("%w of %d bytes", ErrTooLarge, u.max)
	}
	u.total += hdr.Size
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, base, flags, 0o600)
	if err == unix.EEXIST {
		if err := u.replace(pfd, base); err != nil {
			return err
		}
		fd, err = unix.Openat(pfd, base, flags, 0o600)
	}
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	defer unix.Close(fd)
	if err := u.copy(ctx, fd, r, hdr.Size); err != nil {
		return err
	}
	if !u.opts.NoSameOwner {
		uid, gid, err := owner(hdr)
		if err != nil {
			return err
		}
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return fmt.Errorf("change owner: %w", err)
		}
	}
	// After chown, which clears setuid and setgid.
	if err := unix.Fchmod(fd, perm(hdr)); err != nil {
		return fmt.Errorf("change mode: %w", err)
	}
	// After chown and the content, which both clear security.capability.
	if err := u.setXattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) }); err != nil {
		return err
	}
	return u.setTimes(pfd, base, hdr)
}

// copy copies size bytes from r to fd through the unpacker's buffer,
// checking ctx between chunks.
func (u *unpacker) copy(ctx context.Context, fd int, r io.Reader, size int64) error {
	for size > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := u.buf
		if int64(len(chunk)) > size {
			chunk = chunk[:size]
		}
		n, err := io.ReadFull(r, chunk)
		if n > 0 {
			if werr := writeAll(fd, chunk[:n]); werr != nil {
				return fmt.Errorf("write file: %w", werr)
			}
			size -= int64(n)
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return fmt.Errorf("read layer tar: %w", err)
		}
	}
	return nil
}

// symlink creates a symbolic link. Its target is stored as is: it is only
// ever resolved inside root.
func (u *unpacker) symlink(pfd int, base string, hdr *tar.Header) error {
	err := unix.Symlinkat(hdr.Linkname, pfd, base)
	if err == unix.EEXIST {
		if err := u.replace(pfd, base); err != nil {
			return err
		}
		err = unix.Symlinkat(hdr.Linkname, pfd, base)
	}
	if err != nil {
		return fmt.Errorf("create symlink: %w", err)
	}
	if err := u.chown(pfd, base, hdr); err != nil {
		return err
	}
	if err := u.setXattrsAt(pfd, base, hdr); err != nil {
		return err
	}
	return u.setTimes(pfd, base, hdr)
}

// hardlink links base in pfd to the entry's link name resolved inside root.
// The link shares the target's inode, so the entry's metadata is not
// applied.
func (u *unpacker) hardlink(pfd int, dirPath, base string, hdr *tar.Header) error {
	target := cleanPath(hdr.Linkname)
	if target == "" {
		return errors.New("hard link to the root directory")
	}
	tdir, tbase := splitPath(target)
	tfd := pfd
	if tdir != dirPath {
		if tdir == "" {
			tfd = u.root
		} else {
			fd, err := openInRoot(u.root, tdir, unix.O_PATH|unix.O_DIRECTORY)
			if err != nil {
				return fmt.Errorf("resolve hard link target %q: %w", hdr.Linkname, err)
			}
			defer unix.Close(fd)
			tfd = fd
		}
	}
	err := unix.Linkat(tfd, tbase, pfd, base, 0)
	if err == unix.EEXIST {
		var a, b unix.Stat_t
		if unix.Fstatat(tfd, tbase, &a, unix.AT_SYMLINK_NOFOLLOW) == nil &&
			unix.Fstatat(pfd, base, &b, unix.AT_SYMLINK_NOFOLLOW) == nil && a.Dev == b.Dev && a.Ino == b.Ino {
			return nil // already linked
		}
		if err := u.replace(pfd, base); err != nil {
			return err
		}
		err = unix.Linkat(tfd, tbase, pfd, base, 0)
	}
	if err != nil {
		return fmt.Errorf("create hard link to %q: %w", hdr.Linkname, err)
	}
	return nil
}

// node creates a device node or fifo.
func (u *unpacker) node(pfd int, base string, hdr *tar.Header) error {
	mode := perm(hdr)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFIFO
	}
	if hdr.Devmajor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor < 0 || hdr.Devminor > math.MaxUint32 {
		return fmt.Errorf("invalid device number %d:%d", hdr.Devmajor, hdr.Devminor)
	}
	dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	err := unix.Mknodat(pfd, base, mode, dev)
	if err == unix.EEXIST {
		if err := u.replace(pfd, base); err != nil {
			return err
		}
		err = unix.Mknodat(pfd, base, mode, dev)
	}
	if err != nil {
		return fmt.Errorf("create device node: %w", err)
	}
	if err := u.chown(pfd, base, hdr); err != nil {
		return err
	}
	if err := chmodAt(pfd, base, perm(hdr)); err != nil {
		return fmt.Errorf("change mode: %w", err)
	}
	if err := u.setXattrsAt(pfd, base, hdr); err != nil {
		return err
	}
	return u.setTimes(pfd, base, hdr)
}

// whiteout applies a ".wh." entry: base in directory dirPath.
func (u *unpacker) whiteout(dirPath, base string, hdr *tar.Header) error {
	if base == opaqueWhiteout {
		return u.opaque(dirPath)
	}
	if strings.HasPrefix(base, whiteoutMetaPrefix) {
		return nil // AUFS metadata
	}
	target := base[len(whiteoutPrefix):]
	if target == "" || target == "." || target == ".." {
		return errors.New("invalid whiteout name")
	}
	if !u.opts.Overlay {
		pfd, err := u.parent(dirPath, false)
		if err == unix.ENOENT || err == unix.ENOTDIR {
			return nil // nothing to delete
		}
		if err != nil {
			return fmt.Errorf("resolve parent directory: %w", err)
		}
		u.invalidate()
		if err := removeAllAt(pfd, target, u.dent); err != nil {
			return fmt.Errorf("remove whited-out path: %w", err)
		}
		return nil
	}
	pfd, err := u.parent(dirPath, true)
	if err != nil {
		return fmt.Errorf("create parent directory: %w", err)
	}
	if err := u.replace(pfd, target); err != nil {
		return err
	}
	if err := unix.Mknodat(pfd, target, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("create whiteout: %w", err)
	}
	return u.setTimes(pfd, target, hdr)
}

// opaque applies a ".wh..wh..opq" entry in directory dirPath.
func (u *unpacker) opaque(dirPath string) error {
	pfd, err := u.parent(dirPath, true)
	if err != nil {
		return fmt.Errorf("create opaque directory: %w", err)
	}
	fd, err := unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open opaque directory: %w", err)
	}
	defer unix.Close(fd)
	if u.opts.Overlay {
		if err := unix.Fsetxattr(fd, opaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("mark directory opaque: %w", err)
		}
		return nil
	}
	names, err := readNames(fd, u.dent, nil)
	if err != nil {
		return fmt.Errorf("read opaque directory: %w", err)
	}
	u.invalidate()
	for _, n := range names {
		if _, ok := u.written[joinPath(dirPath, n)]; ok {
			continue
		}
		if err := removeAllAt(fd, n, u.dent); err != nil {
			return fmt.Errorf("empty opaque directory: %w", err)
		}
	}
	return nil
}

// finishDirs applies the recorded directory modes and times, children
// before parents so a read-only directory does not block its children.
func (u *unpacker) finishDirs() error {
	paths := make([]string, 0, len(u.dirs))
	for p := range u.dirs {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	slices.Reverse(paths)
	for _, p := range paths {
		m := u.dirs[p]
		pfd, base := u.root, "."
		if p != "" {
			dir, b := splitPath(p)
			fd, err := u.parent(dir, false)
			if err == unix.ENOENT || err == unix.ENOTDIR {
				continue // removed by a later entry
			}
			if err != nil {
				return fmt.Errorf("resolve directory %q: %w", p, err)
			}
			pfd, base = fd, b
		}
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue // removed or replaced by a later entry
		}
		if err := chmodAt(pfd, base, m.mode); err != nil {
			return fmt.Errorf("change mode of directory %q: %w", p, err)
		}
		if err := unix.UtimesNanoAt(pfd, base, m.times[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("change times of directory %q: %w", p, err)
		}
	}
	return nil
}

// chown sets the owner of base in pfd (not following symlinks) from hdr.
func (u *unpacker) chown(pfd int, base string, hdr *tar.Header) error {
	if u.opts.NoSameOwner {
		return nil
	}
	uid, gid, err := owner(hdr)
	if err != nil {
		return err
	}
	if err := unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("change owner: %w", err)
	}
	return nil
}

// setTimes sets the times of base in pfd (not following symlinks) from hdr.
func (u *unpacker) setTimes(pfd int, base string, hdr *tar.Header) error {
	ts := headerTimes(hdr)
	if err := unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("change times: %w", err)
	}
	return nil
}

// setXattrsAt sets the xattrs of hdr on base in pfd without following it,
// through the /proc magic link of pfd (there is no fd-relative lsetxattr).
func (u *unpacker) setXattrsAt(pfd int, base string, hdr *tar.Header) error {
	if !hasXattrs(hdr) {
		return nil
	}
	p := procPath(pfd, base)
	return u.setXattrs(hdr, func(k string, v []byte) error { return unix.Lsetxattr(p, k, v, 0) })
}

// setXattrs calls set for each xattr in hdr's PAX records, except
// overlayfs-internal ones. Xattrs the file system does not support or the
// caller may not set are skipped, as Docker does.
func (u *unpacker) setXattrs(hdr *tar.Header, set func(name string, value []byte) error) error {
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok || overlayXattr(name) {
			continue
		}
		err := set(name, []byte(v))
		if err == unix.ENOTSUP || err == unix.EPERM {
			continue
		}
		if err != nil {
			return fmt.Errorf("set xattr %q: %w", name, err)
		}
	}
	return nil
}

// hasXattrs reports whether hdr carries any xattr.
func hasXattrs(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, paxXattrPrefix) {
			return true
		}
	}
	return false
}

// owner returns the uid and gid of hdr, refusing values chown cannot take.
func owner(hdr *tar.Header) (uid, gid int, err error) {
	if hdr.Uid < 0 || hdr.Uid >= math.MaxUint32 || hdr.Gid < 0 || hdr.Gid >= math.MaxUint32 {
		return 0, 0, fmt.Errorf("invalid owner %d:%d", hdr.Uid, hdr.Gid)
	}
	return hdr.Uid, hdr.Gid, nil
}

// perm returns the permission bits of hdr, with setuid, setgid and sticky.
func perm(hdr *tar.Header) uint32 {
	return uint32(hdr.Mode & 0o7777)
}
