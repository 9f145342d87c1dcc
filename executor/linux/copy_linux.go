package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"golang.org/x/sys/unix"
)

// Copy mode. Where overlayfs cannot be mounted (no overlay module, a
// container that forbids it, an upper dir on a filesystem overlayfs
// rejects), the init builds the root filesystem by copying instead:
//
//  1. copyRoot applies the lower dirs bottom to top, then the upper dir's
//     prepared content, to <WorkDir>/kiln-copy/root (the work dir is on
//     the upper dir's filesystem, so reflinks and renames work), records
//     the lower stack's tree and the identity (inode, ctime, ...) of every
//     copied entry in <WorkDir>/kiln-copy/record, and binds the copy onto
//     the root filesystem mount point;
//  2. the process or Func runs in it exactly as over an overlay;
//  3. the parent (writeChanges, copydiff_linux.go) compares the copy with
//     the record and replaces the upper dir's content with the changes, in
//     overlayfs' on-disk format, then removes the copy.
//
// The layers are in overlayfs' format too: a 0:0 character device is a
// deleted path and a directory with trusted.overlay.opaque=y (or
// user.overlay.opaque=y) hides the content below it.

const (
	// copyDirName is the scratch dir in the work dir that holds the copy.
	copyDirName = "kiln-copy"
	// copyRootName and copyRecordName are the copied tree and the JSON
	// copyRecord in the copy dir.
	copyRootName   = "root"
	copyRecordName = "record"
	// opaqueXattr marks an opaque directory in overlayfs' format, and
	// userOpaqueXattr the same for overlays mounted with userxattr.
	opaqueXattr     = "trusted.overlay.opaque"
	userOpaqueXattr = "user.overlay.opaque"
)

// copyRecord is what the parent needs to find the changes in a copied root
// filesystem. Paths are slash-separated and relative; "" is the root.
type copyRecord struct {
	// Lower is the tree of the lower stack alone.
	Lower map[string]lowerEntry
	// Copied is every entry of the copy as it was before the run.
	Copied map[string]copiedEntry
}

// lowerEntry is a path in the lower stack.
type lowerEntry struct {
	Dir  bool
	Kids []string // names in a directory
}

// copiedEntry identifies a copied entry: a run that changes it in any way
// changes its ctime (which cannot be set), and one that replaces it gives it
// another inode or, where an inode number is reused, another birth time.
type copiedEntry struct {
	Ino                 uint64
	Btime, Ctime, Mtime int64 // ns since the epoch; Btime 0 where unknown
	Size                int64
	Mode                uint32
	UID, GID            uint32
	Upper, Opaque       bool // set by the upper dir (and opaque there)
}

func newCopiedEntry(st *unix.Statx_t) copiedEntry {
	return copiedEntry{
		Ino: st.Ino, Btime: nsec(st.Btime), Ctime: nsec(st.Ctime), Mtime: nsec(st.Mtime),
		Size: int64(st.Size), Mode: uint32(st.Mode), UID: st.Uid, GID: st.Gid,
	}
}

// unchanged reports whether st is still the entry e recorded.
func (e copiedEntry) unchanged(st *unix.Statx_t) bool {
	now := newCopiedEntry(st)
	now.Upper, now.Opaque = e.Upper, e.Opaque
	return e == now
}

// sameInode reports whether st is the inode e recorded, changed or not.
func (e copiedEntry) sameInode(st *unix.Statx_t) bool {
	return e.Ino == st.Ino && e.Btime == nsec(st.Btime)
}

// lstatx is lstat with the birth time (zero where the filesystem has none).
func lstatx(p string, st *unix.Statx_t) error {
	err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_SYNC_AS_STAT,
		unix.STATX_BASIC_STATS|unix.STATX_BTIME, st)
	if err != nil {
		return &os.PathError{Op: "statx", Path: p, Err: err}
	}
	if st.Mask&unix.STATX_BTIME == 0 {
		st.Btime = unix.StatxTimestamp{}
	}
	return nil
}

func nsec(t unix.StatxTimestamp) int64 { return t.Sec*1e9 + int64(t.Nsec) }

// statFromStatx returns the owner, mode and times of st as a Stat_t.
func statFromStatx(st *unix.Statx_t) *unix.Stat_t {
	return &unix.Stat_t{
		Mode: uint32(st.Mode), Uid: st.Uid, Gid: st.Gid,
		Atim: unix.NsecToTimespec(nsec(st.Atime)), Mtim: unix.NsecToTimespec(nsec(st.Mtime)),
	}
}

// copyRoot builds the copied root filesystem for cfg and binds it onto
// rootfs.
func copyRoot(cfg *initConfig, rootfs string) error {
	// The init runs without a GC; copying a large tree makes garbage.
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	dir := filepath.Join(cfg.WorkDir, copyDirName)
	if err := buildCopy(dir, cfg.LowerDirs, cfg.UpperDir); err != nil {
		return err
	}
	root := filepath.Join(dir, copyRootName)
	if err := unix.Mount(root, rootfs, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", root, err)
	}
	// The work dir's filesystem may be mounted nosuid or nodev; an overlay
	// would not be. Best effort: where this fails, so would overlayfs.
	attr := unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	_ = unix.MountSetattr(unix.AT_FDCWD, rootfs, 0, &attr)
	return nil
}

// buildCopy creates the copy dir dir, copies lowers (bottom first) and then
// upper into dir/root and writes the copyRecord to dir/record.
func buildCopy(dir string, lowers []string, upper string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	root := filepath.Join(dir, copyRootName)
	if err := os.Mkdir(root, 0o700); err != nil {
		return err
	}
	m := newMerger(root)
	for _, l := range lowers {
		if err := m.apply(l); err != nil {
			return err
		}
	}
	rec := copyRecord{Lower: map[string]lowerEntry{}, Copied: map[string]copiedEntry{}}
	if err := walkTree(root, "", func(rel string, st *unix.Statx_t, kids []string) {
		rec.Lower[rel] = lowerEntry{Dir: kids != nil, Kids: kids}
	}); err != nil {
		return fmt.Errorf("list the lower layers: %w", err)
	}
	m.marks = map[string]bool{}
	if err := m.apply(upper); err != nil {
		return err
	}
	if err := walkTree(root, "", func(rel string, st *unix.Statx_t, kids []string) {
		e := newCopiedEntry(st)
		opaque, upper := m.marks[rel]
		e.Opaque, e.Upper = opaque, upper
		rec.Copied[rel] = e
	}); err != nil {
		return fmt.Errorf("list the copy: %w", err)
	}
	data, err := json.Marshal(&rec)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, copyRecordName), data, 0o600)
}

// mergeLayers copies the overlay stack lowers (bottom first) into dst, an
// existing empty directory.
func mergeLayers(dst string, lowers []string) error {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	m := newMerger(dst)
	for _, l := range lowers {
		if err := m.apply(l); err != nil {
			return err
		}
	}
	return nil
}

// walkTree calls fn for root/rel and everything below it, parents first,
// with the names in each directory (nil for anything else). It never
// follows symlinks.
func walkTree(root, rel string, fn func(rel string, st *unix.Statx_t, kids []string)) error {
	var st unix.Statx_t
	p := under(root, rel)
	if err := lstatx(p, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		fn(rel, &st, nil)
		return nil
	}
	kids, err := readDirNames(p)
	if err != nil {
		return err
	}
	if kids == nil {
		kids = []string{}
	}
	fn(rel, &st, kids)
	for _, k := range kids {
		if err := walkTree(root, join(rel, k), fn); err != nil {
			return err
		}
	}
	return nil
}

// merger applies overlay-format layers to a tree by copying.
type merger struct {
	dst string // root of the merged tree
	// links maps a regular file with several links in the layer being
	// applied to its first copy, so the other names become links to it.
	links map[[2]uint64]string
	// marks, when not nil, records every path a layer sets: path →
	// opaque directory.
	marks map[string]bool
	attrs attrCopier
}

func newMerger(dst string) *merger { return &merger{dst: dst} }

// apply copies layer onto the tree. Paths in the tree are joined from names
// read from the layer, and every parent is a directory the merger made
// itself, so nothing is resolved through a symlink.
func (m *merger) apply(layer string) error {
	m.links = map[[2]uint64]string{}
	var st unix.Stat_t
	if err := unix.Stat(layer, &st); err != nil {
		return &os.PathError{Op: "stat", Path: layer, Err: err}
	}
	if err := m.dir(layer, m.dst, "", &st); err != nil {
		return fmt.Errorf("copy layer %s: %w", layer, err)
	}
	return nil
}

// dir applies the layer directory src (st is its stat) onto the directory
// dst in the tree, which exists.
func (m *merger) dir(src, dst, rel string, st *unix.Stat_t) error {
	names, err := readDirNames(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		s, d, r := src+"/"+name, dst+"/"+name, join(rel, name)
		var sst, dstSt unix.Stat_t
		if err := unix.Lstat(s, &sst); err != nil {
			return &os.PathError{Op: "lstat", Path: s, Err: err}
		}
		derr := unix.Lstat(d, &dstSt)
		if derr != nil && derr != unix.ENOENT {
			return &os.PathError{Op: "lstat", Path: d, Err: derr}
		}
		exists, isDir := derr == nil, derr == nil && dstSt.Mode&unix.S_IFMT == unix.S_IFDIR
		typ := sst.Mode & unix.S_IFMT
		if typ == unix.S_IFCHR && sst.Rdev == 0 { // whiteout
			if exists {
				if err := os.RemoveAll(d); err != nil {
					return err
				}
			}
			continue
		}
		if typ == unix.S_IFDIR {
			opaque := m.attrs.opaque(s)
			switch {
			case isDir && opaque:
				if err := clearDir(d); err != nil {
					return err
				}
			case exists && !isDir:
				if err := os.RemoveAll(d); err != nil {
					return err
				}
				fallthrough
			case !exists:
				if err := unix.Mkdir(d, 0o700); err != nil {
					return &os.PathError{Op: "mkdir", Path: d, Err: err}
				}
			}
			if m.marks != nil {
				m.marks[r] = opaque
			}
			if err := m.dir(s, d, r, &sst); err != nil {
				return err
			}
			continue
		}
		if exists {
			if err := os.RemoveAll(d); err != nil {
				return err
			}
		}
		if m.marks != nil {
			m.marks[r] = false
		}
		if err := m.node(s, d, &sst); err != nil {
			return err
		}
	}
	// The directory's attributes are the top layer's, set after its
	// content so the times stick.
	return m.attrs.apply(src, dst, st, true)
}

// node copies the non-directory src to d, which does not exist.
func (m *merger) node(src, d string, st *unix.Stat_t) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		key := [2]uint64{st.Dev, st.Ino}
		if st.Nlink > 1 {
			if first, ok := m.links[key]; ok && unix.Link(first, d) == nil {
				return nil
			}
		}
		if err := copyFile(src, d, st.Size); err != nil {
			return err
		}
		if st.Nlink > 1 {
			m.links[key] = d
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, d); err != nil {
			return err
		}
	default: // devices, fifos, sockets
		if err := unix.Mknod(d, st.Mode, int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: d, Err: err}
		}
	}
	return m.attrs.apply(src, d, st, false)
}

// copyFile copies the content of the regular file src to a new file dst:
// a reflink where the filesystem can, else copy_file_range, else read and
// write.
func copyFile(src, dst string, size int64) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if size > 0 {
		err = copyContent(out, in)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

func copyContent(out, in *os.File) error {
	ofd, ifd := int(out.Fd()), int(in.Fd())
	if unix.IoctlFileClone(ofd, ifd) == nil {
		return nil
	}
	for {
		n, err := unix.CopyFileRange(ifd, nil, ofd, nil, 1<<30, 0)
		if err != nil {
			break // not supported here: copy what is left by hand
		}
		if n == 0 {
			return nil
		}
	}
	// Plain reads and writes, not os.File's copy_file_range again.
	_, err := io.Copy(struct{ io.Writer }{out}, struct{ io.Reader }{in})
	return err
}

// clearDir removes everything in dir.
func clearDir(dir string) error {
	names, err := readDirNames(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := os.RemoveAll(dir + "/" + n); err != nil {
			return err
		}
	}
	return nil
}

// readDirNames lists dir, unsorted.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// join joins a relative slash path ("" is the root) and a name.
func join(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

// under joins root and a relative slash path ("" is root itself).
func under(root, rel string) string {
	if rel == "" {
		return root
	}
	return root + "/" + rel
}

// attrCopier copies owner, mode, xattrs and times, reusing its buffers.
type attrCopier struct {
	names, val []byte
}

// apply gives dst the owner, mode and times of st and the xattrs of src
// (but not overlayfs' own). With replace, xattrs dst has and src has not
// are removed.
func (a *attrCopier) apply(src, dst string, st *unix.Stat_t, replace bool) error {
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return &os.PathError{Op: "lchown", Path: dst, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Fchmodat(unix.AT_FDCWD, dst, st.Mode&0o7777, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	if err := a.copyXattrs(src, dst, replace); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: dst, Err: err}
	}
	return nil
}

// skipXattr reports whether name is not copied: overlayfs' own xattrs and
// the SELinux label, which belongs to the host.
func skipXattr(name string) bool {
	return name == "" || name == "security.selinux" ||
		strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}

func (a *attrCopier) copyXattrs(src, dst string, replace bool) error {
	names, err := a.list(src)
	if err != nil {
		return err
	}
	var keep map[string]bool
	for _, name := range names {
		if skipXattr(name) {
			continue
		}
		val, err := a.get(src, name)
		if err == unix.ENODATA {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "getxattr " + name, Path: src, Err: err}
		}
		if err := unix.Lsetxattr(dst, name, val, 0); err != nil && !unsupported(err) {
			return &os.PathError{Op: "setxattr " + name, Path: dst, Err: err}
		}
		if replace {
			if keep == nil {
				keep = map[string]bool{}
			}
			keep[name] = true
		}
	}
	if !replace {
		return nil
	}
	have, err := a.list(dst)
	if err != nil {
		return err
	}
	for _, name := range have {
		if !keep[name] && !skipXattr(name) {
			if err := unix.Lremovexattr(dst, name); err != nil && err != unix.ENODATA {
				return &os.PathError{Op: "removexattr " + name, Path: dst, Err: err}
			}
		}
	}
	return nil
}

// opaque reports whether the directory p is opaque in overlayfs' format.
func (a *attrCopier) opaque(p string) bool {
	for _, name := range []string{opaqueXattr, userOpaqueXattr} {
		if v, err := a.get(p, name); err == nil && string(v) == "y" {
			return true
		}
	}
	return false
}

// list returns the xattr names of p (not following symlinks).
func (a *attrCopier) list(p string) ([]string, error) {
	if a.names == nil {
		a.names = make([]byte, 1024)
	}
	for {
		n, err := unix.Llistxattr(p, a.names)
		if err == unix.ERANGE {
			a.names = make([]byte, 2*len(a.names))
			continue
		}
		if unsupported(err) || n == 0 {
			return nil, nil
		}
		if err != nil {
			return nil, &os.PathError{Op: "listxattr", Path: p, Err: err}
		}
		return strings.Split(strings.TrimSuffix(string(a.names[:n]), "\x00"), "\x00"), nil
	}
}

// get returns the value of xattr name of p; it is valid until the next call.
func (a *attrCopier) get(p, name string) ([]byte, error) {
	if a.val == nil {
		a.val = make([]byte, 256)
	}
	for {
		n, err := unix.Lgetxattr(p, name, a.val)
		if err == unix.ERANGE {
			a.val = make([]byte, 2*len(a.val))
			continue
		}
		if err != nil {
			return nil, err
		}
		return a.val[:n], nil
	}
}

// unsupported reports whether err means the filesystem has no xattrs.
func unsupported(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP)
}
