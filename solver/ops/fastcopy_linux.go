package ops

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/solver/ops/fileop"
)

// errNoFastPath makes fastCopy give up; the container path runs instead.
var errNoFastPath = errors.New("no fast path")

// fastCopy builds the layer of a COPY of one build-context directory to a
// destination the image does not have yet, without a container: every
// regular file is hard-linked from the store's file cache (<root>/files,
// content-addressed by digest, mode and mtime, root-owned — the metadata
// COPY gives it), so a context of 20,000 files costs 20,000 links instead
// of 20,000 file writes once the cache has them. Anything unusual (an
// existing destination, --chown/--chmod, wildcards, special files, a file
// changing while it is read) returns false and leaves the upper dir empty.
func (o *File) fastCopy(ctx context.Context, store *cache.Store, active *cache.Active) (bool, error) {
	cp := o.Action.Copy
	if cp == nil || o.ContextDir == "" || os.Getenv("KILN_NO_FASTCOPY") != "" {
		return false, nil
	}
	dest := path.Clean(cp.Dest)
	if dest == "/" || !path.IsAbs(dest) {
		return false, nil
	}
	parents, ok := lowerParents(active.LowerDirs, dest)
	if !ok {
		return false, nil
	}
	root, err := os.OpenRoot(o.ContextDir)
	if err != nil {
		return false, nil
	}
	defer root.Close()
	links := newLinker(ctx, &fileCache{dir: store.FileCacheDir(), root: root, digest: o.FileDigest})
	defer links.wait()
	target := filepath.Join(active.UpperDir, filepath.FromSlash(dest))
	// Parents: copied up from the image (as overlayfs would) or new.
	for _, p := range parents {
		if err := makeDir(filepath.Join(active.UpperDir, filepath.FromSlash(p.path)), p.mode, p.uid, p.gid); err != nil {
			return false, fmt.Errorf("copy: %w", err)
		}
	}
	if err := os.Mkdir(target, 0o700); err != nil {
		return false, fmt.Errorf("copy: %w", err)
	}
	var dirs []dirTime
	srcInfo, ok, err := fileop.WalkDirSource(ctx, root, cp, func(rel, srcRel string, fi fs.FileInfo) error {
		p := filepath.Join(target, filepath.FromSlash(rel))
		mode := fi.Mode()
		switch {
		case mode.IsDir():
			dirs = append(dirs, dirTime{p, fi.ModTime()})
			return makeDir(p, unixMode(fi), 0, 0)
		case mode.IsRegular():
			return links.add(linkJob{srcRel, fi, p})
		case mode&fs.ModeSymlink != 0:
			link, err := root.Readlink(srcRel)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, p); err != nil {
				return err
			}
			if err := os.Lchown(p, 0, 0); err != nil {
				return err
			}
			ts := []unix.Timespec{unix.NsecToTimespec(fi.ModTime().UnixNano()), unix.NsecToTimespec(fi.ModTime().UnixNano())}
			return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		default:
			return errNoFastPath
		}
	})
	if werr := links.wait(); err == nil {
		err = werr
	}
	if err == nil && !ok {
		err = errNoFastPath
	}
	if err == nil {
		// The destination dir is made 0755 and root-owned, as Docker's
		// builder does (the source dir's mode is not copied to it).
		dirs = append(dirs, dirTime{target, srcInfo.ModTime()})
		err = setDir(target, 0o755)
	}
	if err == nil {
		// Deepest first, so setting a child does not touch its parent.
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i].path) > len(dirs[j].path) })
		for _, d := range dirs {
			if err = os.Chtimes(d.path, d.mtime, d.mtime); err != nil {
				break
			}
		}
	}
	if err != nil {
		if cerr := emptyDir(active.UpperDir); cerr != nil {
			return false, cerr
		}
		if errors.Is(err, errNoFastPath) || errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("copy: %w", err)
	}
	return true, nil
}

// linker hard-links files from the file cache on a few goroutines: the
// link itself is most of a rebuilt COPY layer (ext4 spends ~12 µs on each),
// and links into different directories proceed in parallel. Directories
// are made by the walk before their files are queued.
type linker struct {
	jobs chan linkJob
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	mu   sync.Mutex
	err  error
}

type linkJob struct {
	srcRel string
	fi     fs.FileInfo
	dst    string
}

func newLinker(ctx context.Context, proto *fileCache) *linker {
	l := &linker{jobs: make(chan linkJob, 256), stop: make(chan struct{})}
	for range max(2, runtime.NumCPU()) {
		c := &fileCache{dir: proto.dir, root: proto.root, digest: proto.digest, cacheFd: -1, dstFd: -1, ctxFd: -1}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer c.close()
			for j := range l.jobs {
				if l.failed() {
					continue
				}
				if err := c.link(ctx, j.srcRel, j.fi, j.dst); err != nil {
					l.fail(err)
				}
			}
		}()
	}
	return l
}

func (l *linker) failed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err != nil
}

func (l *linker) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
		close(l.stop)
	}
}

// add queues a link; it returns the first failure of any link so far.
func (l *linker) add(j linkJob) error {
	select {
	case l.jobs <- j:
		return nil
	case <-l.stop:
		return l.wait()
	}
}

// wait waits for the queued links and returns the first failure; safe to
// call more than once.
func (l *linker) wait() error {
	l.once.Do(func() {
		close(l.jobs)
		l.wg.Wait()
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

type dirTime struct {
	path  string
	mtime time.Time
}

type parentDir struct {
	path     string
	mode     uint32
	uid, gid int
}

// lowerParents looks dest up in the layer stack (overlay format, bottom
// first). It succeeds when dest does not exist and every existing parent is
// a plain directory (no whiteouts, opaque dirs or symlinks on the way), and
// returns the parents to create in the upper dir: existing ones with their
// metadata, missing ones 0755 root-owned.
func lowerParents(lowers []string, dest string) ([]parentDir, bool) {
	parts := strings.Split(strings.TrimPrefix(dest, "/"), "/")
	var out []parentDir
	missing := false
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		last := i == len(parts)-1
		if missing {
			if !last {
				out = append(out, parentDir{path: p, mode: 0o755})
			}
			continue
		}
		var found *syscall.Stat_t
		for j := len(lowers) - 1; j >= 0; j-- {
			var st syscall.Stat_t
			err := syscall.Lstat(filepath.Join(lowers[j], p), &st)
			if err != nil {
				if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ENOTDIR) {
					return nil, false
				}
				continue
			}
			if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
				return nil, false // a file, symlink or whiteout
			}
			if v, err := unix.Lgetxattr(filepath.Join(lowers[j], p), "trusted.overlay.opaque", make([]byte, 1)); err == nil && v > 0 {
				return nil, false
			}
			found = &st
			break
		}
		switch {
		case found == nil:
			missing = true
			if !last {
				out = append(out, parentDir{path: p, mode: 0o755})
			}
		case last:
			return nil, false // the destination exists: merge semantics, use the container path
		default:
			out = append(out, parentDir{path: p, mode: found.Mode & 0o7777, uid: int(found.Uid), gid: int(found.Gid)})
		}
	}
	return out, true
}

// fileCache is the store's cache of build-context files, keyed by content
// digest, mode and mtime, root-owned: one inode per distinct file, shared
// by hard links with every layer that copied it. Files are never changed in
// place.
type fileCache struct {
	dir    string
	root   *os.Root
	digest fileop.FileDigestFunc

	// cacheFd is dir open (-1 until needed); dstFd is the destination
	// directory dstDir open, the one the last link went to. Links go
	// through them: a path-based link of a 20,000-file context walked
	// both long paths 20,000 times.
	cacheFd int
	dstDir  string
	dstFd   int
	// ctxFd is the context directory open (-1 until needed), which
	// add opens files beneath; buf is add's copy buffer.
	ctxFd int
	buf   []byte
	// noTmpfile makes add use a named temporary file, as it does where
	// the filesystem has no O_TMPFILE (for tests).
	noTmpfile bool
}

func (c *fileCache) close() {
	if c.cacheFd >= 0 {
		unix.Close(c.cacheFd)
	}
	if c.dstFd >= 0 {
		unix.Close(c.dstFd)
	}
	if c.ctxFd >= 0 {
		unix.Close(c.ctxFd)
	}
}

// link hard-links the cached copy of the context file srcRel (described by
// fi) to dst, adding it to the cache first when missing.
func (c *fileCache) link(ctx context.Context, srcRel string, fi fs.FileInfo, dst string) error {
	d, name, err := c.name(ctx, srcRel, fi)
	if err != nil {
		return err
	}
	if c.cacheFd < 0 {
		if err := os.MkdirAll(c.dir, 0o700); err != nil {
			return err
		}
		if c.cacheFd, err = unix.Open(c.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return &fs.PathError{Op: "open", Path: c.dir, Err: err}
		}
	}
	if dir := filepath.Dir(dst); dir != c.dstDir {
		if c.dstFd >= 0 {
			unix.Close(c.dstFd)
			c.dstFd, c.dstDir = -1, ""
		}
		if c.dstFd, err = unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
			return &fs.PathError{Op: "open", Path: dir, Err: err}
		}
		c.dstDir = dir
	}
	rel := name[:2] + "/" + name
	err = unix.Linkat(c.cacheFd, rel, c.dstFd, filepath.Base(dst), 0)
	if !errors.Is(err, unix.ENOENT) {
		if err != nil {
			return &os.LinkError{Op: "link", Old: filepath.Join(c.dir, rel), New: dst, Err: err}
		}
		return nil
	}
	// Not cached yet (or the destination dir vanished: linking again
	// reports that).
	if err := c.add(srcRel, fi, d, name); err != nil {
		return err
	}
	if err := unix.Linkat(c.cacheFd, rel, c.dstFd, filepath.Base(dst), 0); err != nil {
		return &os.LinkError{Op: "link", Old: filepath.Join(c.dir, rel), New: dst, Err: err}
	}
	return nil
}

// name returns the content digest of the context file srcRel and its
// cache file name.
func (c *fileCache) name(ctx context.Context, srcRel string, fi fs.FileInfo) (digest.Digest, string, error) {
	d, err := c.digestOf(ctx, srcRel, fi)
	if err != nil {
		return "", "", err
	}
	h := sha256.Sum256(fmt.Appendf(nil, "%s %o %d", d, unixMode(fi), fi.ModTime().UnixNano()))
	return d, hex.EncodeToString(h[:]), nil
}

// add copies the context file srcRel, whose content digest is d (checked
// on the way), into the cache as name. The copy is an unnamed file
// (O_TMPFILE) given its owner, mode and times through its descriptor and
// linked into place once complete, so a crash leaves nothing and readers
// never see a partial file; all of it goes through raw descriptors (os.File
// spent ~35 syscalls per file, and a first build of a 20,000-file context
// most of its time in them).
func (c *fileCache) add(srcRel string, fi fs.FileInfo, d digest.Digest, name string) error {
	sub := name[:2]
	if err := unix.Mkdirat(c.cacheFd, sub, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return &fs.PathError{Op: "mkdir", Path: filepath.Join(c.dir, sub), Err: err}
	}
	if c.ctxFd < 0 {
		fd, err := unix.Open(c.root.Name(), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: c.root.Name(), Err: err}
		}
		c.ctxFd = fd
	}
	// srcRel has its symlinks resolved already: one met now means the
	// context changed under the build.
	in, err := unix.Openat2(c.ctxFd, srcRel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			return errNoFastPath
		}
		return &fs.PathError{Op: "open", Path: srcRel, Err: err}
	}
	defer unix.Close(in)
	subPath := filepath.Join(c.dir, sub)
	tmpName := "" // the temporary name, where O_TMPFILE is not supported
	tmp, err := -1, unix.EOPNOTSUPP
	if !c.noTmpfile {
		tmp, err = unix.Open(subPath, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	}
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
		var b [8]byte
		_, _ = rand.Read(b[:])
		tmpName = sub + "/.tmp-" + hex.EncodeToString(b[:])
		tmp, err = unix.Openat(c.cacheFd, tmpName, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if err == nil {
			defer unix.Unlinkat(c.cacheFd, tmpName, 0) // fails once renamed
		}
	}
	if err != nil {
		return &fs.PathError{Op: "create", Path: subPath, Err: err}
	}
	defer unix.Close(tmp)
	sum := sha256.New()
	if c.buf == nil {
		c.buf = make([]byte, 256<<10)
	}
	for {
		n, err := unix.Read(in, c.buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "read", Path: srcRel, Err: err}
		}
		if n == 0 {
			break
		}
		sum.Write(c.buf[:n])
		for b := c.buf[:n]; len(b) > 0; {
			w, err := unix.Write(tmp, b)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return &fs.PathError{Op: "write", Path: subPath, Err: err}
			}
			b = b[w:]
		}
	}
	if digest.NewDigest(digest.SHA256, sum) != d {
		return errNoFastPath // changed while we read it
	}
	if err := unix.Fchown(tmp, 0, 0); err != nil {
		return &fs.PathError{Op: "chown", Path: subPath, Err: err}
	}
	if err := unix.Fchmod(tmp, unixMode(fi)); err != nil {
		return &fs.PathError{Op: "chmod", Path: subPath, Err: err}
	}
	mt := unix.NsecToTimespec(fi.ModTime().UnixNano())
	if err := unix.UtimesNanoAt(tmp, "", []unix.Timespec{mt, mt}, unix.AT_EMPTY_PATH); err != nil {
		return &fs.PathError{Op: "utimes", Path: subPath, Err: err}
	}
	if tmpName != "" {
		if err := unix.Renameat(c.cacheFd, tmpName, c.cacheFd, sub+"/"+name); err != nil {
			return &os.LinkError{Op: "rename", Old: filepath.Join(c.dir, tmpName), New: filepath.Join(subPath, name), Err: err}
		}
		return nil
	}
	// Linking through /proc needs no CAP_DAC_READ_SEARCH (AT_EMPTY_PATH
	// does). The same file added meanwhile by another build is as good.
	err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(tmp), c.cacheFd, sub+"/"+name, unix.AT_SYMLINK_FOLLOW)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return &os.LinkError{Op: "link", Old: subPath, New: filepath.Join(subPath, name), Err: err}
	}
	return nil
}

// digestOf returns the content digest of the context file srcRel.
func (c *fileCache) digestOf(ctx context.Context, srcRel string, fi fs.FileInfo) (digest.Digest, error) {
	if c.digest != nil {
		return c.digest(ctx, c.root, srcRel, fi)
	}
	return fileop.DigestFile(ctx, c.root, srcRel, fi.Size())
}

// unixMode is the permission bits of fi with setuid, setgid and sticky.
func unixMode(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Mode & 0o7777
	}
	return uint32(fi.Mode().Perm())
}

// makeDir creates dir with exactly mode, uid and gid.
func makeDir(dir string, mode uint32, uid, gid int) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if err := os.Lchown(dir, uid, gid); err != nil {
		return err
	}
	return unix.Chmod(dir, mode)
}

// setDir gives an existing dir mode, owned by root.
func setDir(dir string, mode uint32) error {
	if err := os.Lchown(dir, 0, 0); err != nil {
		return err
	}
	return unix.Chmod(dir, mode)
}

// emptyDir removes everything inside dir.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// fastLinkFromStage builds the layer of a COPY --from of one regular file
// to a destination the image does not have yet by hard-linking the file
// from the source stage's snapshot (snapshots never change, and a hard link
// keeps mode, owner, mtime and xattrs, as COPY --from does). Anything else
// returns false and leaves the upper dir empty.
func (o *File) fastLinkFromStage(ctx context.Context, store *cache.Store, active *cache.Active, src cache.Chain) (bool, error) {
	cp := o.Action.Copy
	if cp == nil || o.ContextDir != "" || !cp.PreserveOwner || cp.Chown != "" || cp.Chmod != "" || cp.Unpack ||
		len(cp.Sources) != 1 || strings.ContainsAny(cp.Sources[0], "*?[\\") || os.Getenv("KILN_NO_FASTCOPY") != "" {
		return false, nil
	}
	srcPath := path.Clean("/" + cp.Sources[0])
	if srcPath == "/" {
		return false, nil
	}
	dirs, err := store.Snapshot(ctx, src)
	if err != nil {
		return false, nil
	}
	file, ok := lowerFile(dirs, srcPath)
	if !ok {
		return false, nil
	}
	dest := cp.Dest
	if strings.HasSuffix(dest, "/") {
		dest = path.Join(dest, path.Base(srcPath))
	}
	dest = path.Clean(dest)
	if dest == "/" || !path.IsAbs(dest) {
		return false, nil
	}
	parents, ok := lowerParents(active.LowerDirs, dest)
	if !ok {
		return false, nil
	}
	err = func() error {
		for _, p := range parents {
			if err := makeDir(filepath.Join(active.UpperDir, filepath.FromSlash(p.path)), p.mode, p.uid, p.gid); err != nil {
				return err
			}
		}
		return os.Link(file, filepath.Join(active.UpperDir, filepath.FromSlash(dest)))
	}()
	if err != nil {
		if cerr := emptyDir(active.UpperDir); cerr != nil {
			return false, cerr
		}
		return false, nil
	}
	return true, nil
}

// lowerFile finds the regular file p in a layer stack (overlay format,
// bottom first) and returns its path in the layer that provides it; false
// when p is missing, not a regular file, or anything on the way is a
// whiteout, an opaque dir or not a directory.
func lowerFile(lowers []string, p string) (string, bool) {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i := range parts {
		prefix := strings.Join(parts[:i+1], "/")
		last := i == len(parts)-1
		found := false
		for j := len(lowers) - 1; j >= 0; j-- {
			full := filepath.Join(lowers[j], prefix)
			var st syscall.Stat_t
			if err := syscall.Lstat(full, &st); err != nil {
				if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ENOTDIR) {
					return "", false
				}
				continue
			}
			kind := st.Mode & syscall.S_IFMT
			if last {
				if kind != syscall.S_IFREG {
					return "", false
				}
				return full, true
			}
			if kind != syscall.S_IFDIR {
				return "", false
			}
			if v, err := unix.Lgetxattr(full, "trusted.overlay.opaque", make([]byte, 1)); err == nil && v > 0 {
				return "", false
			}
			found = true
			break
		}
		if !found {
			return "", false
		}
	}
	return "", false
}
