package fileop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// destFS is the destination tree: destination paths are absolute, and
// every path and symlink is resolved inside root, as the chroot Apply runs
// in would.
type destFS struct {
	// root is a clean absolute host path ("/" inside the chroot).
	root string
	// chown is false when owners must be left alone (tests without root).
	chown bool
	// warn receives warnings for the build output; nil drops them.
	warn io.Writer
}

func newDestFS(opts applyOptions) (*destFS, error) {
	if !filepath.IsAbs(opts.destRoot) {
		return nil, fmt.Errorf("destination root %q is not absolute", opts.destRoot)
	}
	return &destFS{root: filepath.Clean(opts.destRoot), chown: opts.chown, warn: opts.warn}, nil
}

// warnf writes a warning line, if d has somewhere to write it.
func (d *destFS) warnf(format string, args ...any) {
	if d.warn != nil {
		fmt.Fprintf(d.warn, "WARNING: "+format+"\n", args...)
	}
}

// resolve returns the host path of the destination path p with every
// symlink in it resolved inside the root, including the last component.
func (d *destFS) resolve(p string) (string, error) {
	h, err := securejoin.SecureJoin(d.root, path.Clean("/"+p))
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", p, err)
	}
	return h, nil
}

// mkdirAll makes the destination directory p and its missing parents,
// giving each directory it creates mode and o, and returns p's host path
// and whether p itself was created. An existing non-directory on the way is
// an error.
func (d *destFS) mkdirAll(p string, mode fs.FileMode, o owner) (string, bool, error) {
	p = path.Clean("/" + p)
	host, err := d.resolve(p)
	if err != nil {
		return "", false, err
	}
	if fi, err := os.Stat(host); err == nil {
		if !fi.IsDir() {
			return "", false, fmt.Errorf("create directory %s: not a directory", p)
		}
		return host, false, nil
	}
	created := false
	comps := strings.Split(p[1:], "/")
	for i := range comps {
		logical := "/" + strings.Join(comps[:i+1], "/")
		h, err := d.resolve(logical)
		if err != nil {
			return "", false, err
		}
		fi, err := os.Lstat(h)
		switch {
		case err == nil && fi.IsDir():
			created = false
			continue
		case err == nil:
			return "", false, fmt.Errorf("create directory %s: %s is not a directory", p, logical)
		case !errors.Is(err, fs.ErrNotExist):
			return "", false, fmt.Errorf("create directory %s: %w", p, err)
		}
		// h is missing: the component, or what a symlink there points
		// to (inside the root), which is made, as Docker's copy does.
		if err := os.Mkdir(h, 0o700); err != nil {
			return "", false, fmt.Errorf("create directory %s: %w", p, err)
		}
		if err := d.setOwnerMode(h, o, mode); err != nil {
			return "", false, err
		}
		created = true
	}
	host, err = d.resolve(p)
	return host, created, err
}

// setOwnerMode chowns then chmods (chown clears setuid and setgid) the
// host path h, which is not a symlink.
func (d *destFS) setOwnerMode(h string, o owner, mode fs.FileMode) error {
	if d.chown {
		if err := os.Lchown(h, o.uid, o.gid); err != nil {
			return fmt.Errorf("change owner: %w", err)
		}
	}
	if err := os.Chmod(h, mode&permBits); err != nil {
		return fmt.Errorf("change mode: %w", err)
	}
	return nil
}

// mkdir runs a Mkdir action.
func (d *destFS) mkdir(ctx context.Context, m *Mkdir) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var o owner
	if m.Chown != "" {
		var err error
		if o, err = d.parseOwner(m.Chown); err != nil {
			return err
		}
	}
	mode := fileMode(m.Mode)
	if m.Mode == 0 {
		mode = 0o755
	}
	_, _, err := d.mkdirAll(m.Path, mode, o)
	return err
}

// copier runs one Copy action.
type copier struct {
	d *destFS
	t *srcTree
	c *Copy
	// chown is the --chown owner, nil without one.
	chown *owner
	// chmod is the --chmod mode, nil without one.
	chmod *fs.FileMode
	// parent owns the directories created on the way to Dest.
	parent owner
	buf    []byte
}

// copy runs a Copy action reading from src.
func (d *destFS) copy(ctx context.Context, src *os.Root, c *Copy) error {
	t, err := newSrcTree(src, c.Excludes)
	if err != nil {
		return err
	}
	matches, err := resolveSources(ctx, t, c)
	if err != nil {
		return err
	}
	cp := &copier{d: d, t: t, c: c}
	if c.Chown != "" {
		o, err := d.parseOwner(c.Chown)
		if err != nil {
			return err
		}
		cp.chown, cp.parent = &o, o
	}
	if c.Chmod != "" {
		m, err := parseChmod(c.Chmod)
		if err != nil {
			return err
		}
		cp.chmod = &m
	}
	dest := path.Clean("/" + c.Dest)
	// Several sources to a dest without a trailing slash are copied to it
	// one after the other (into it if it is a directory, else over each
	// other), as Docker 20.10's builder does; it makes no directory.
	destIsDir := dest == "/" || strings.HasSuffix(c.Dest, "/")
	for _, m := range matches {
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.Unpack && m.fi.Mode().IsRegular() {
			ok, err := cp.unpack(ctx, m, dest)
			if err != nil {
				return fmt.Errorf("extract %s to %s: %w", m.name, dest, err)
			}
			if ok {
				continue
			}
		}
		if m.fi.IsDir() {
			err = cp.copyDir(ctx, m, dest)
		} else {
			err = cp.copyFile(m, dest, destIsDir)
		}
		if err != nil {
			return fmt.Errorf("copy %s to %s: %w", m.name, dest, err)
		}
	}
	return nil
}

// ownerOf is the owner a copied entry gets.
func (cp *copier) ownerOf(fi fs.FileInfo) owner {
	switch {
	case cp.chown != nil:
		return *cp.chown
	case cp.c.PreserveOwner:
		return statOwner(fi)
	default:
		return owner{}
	}
}

// setMeta gives the host path h (written from a source entry fi) its
// owner, mode and modification time.
func (cp *copier) setMeta(h string, fi fs.FileInfo) error {
	if fi.Mode()&fs.ModeSymlink != 0 {
		if cp.d.chown {
			o := cp.ownerOf(fi)
			if err := os.Lchown(h, o.uid, o.gid); err != nil {
				return fmt.Errorf("change owner: %w", err)
			}
		}
	} else {
		mode := fi.Mode()
		if cp.chmod != nil {
			mode = *cp.chmod
		}
		if err := cp.d.setOwnerMode(h, cp.ownerOf(fi), mode); err != nil {
			return err
		}
	}
	return lutimes(h, fi.ModTime())
}

// copyDir copies the contents of the source directory m into the
// destination directory dest. A missing dest is made 0755 and owned by the
// --chown owner (else root), not given m's mode, owner or --chmod, and an
// existing one keeps its own, as in Docker's builder; a made one gets m's
// modification time, so the layer does not depend on when it was built.
func (cp *copier) copyDir(ctx context.Context, m match, dest string) error {
	host, created, err := cp.d.mkdirAll(dest, 0o755, cp.parent)
	if err != nil {
		return err
	}
	prefix := ""
	if m.real != "." {
		prefix = m.real + "/"
	}
	target := func(e *entry) string {
		return filepath.Join(host, filepath.FromSlash(strings.TrimPrefix(e.rel, prefix)))
	}
	enter := func(e *entry) error {
		switch {
		case e.fi.IsDir():
			return mkdirOver(target(e))
		case notCopied(e.fi):
			return nil
		}
		return cp.writeNode(target(e), e.fi, e.open, func() (string, error) { return e.dir.Readlink(e.name) })
	}
	leave := func(e *entry) error {
		if notCopied(e.fi) {
			return nil
		}
		return cp.setMeta(target(e), e.fi)
	}
	if err := cp.t.walkDir(ctx, m.real, nil, enter, leave); err != nil {
		return err
	}
	if created {
		return lutimes(host, m.fi.ModTime())
	}
	return nil
}

// mkdirOver makes sure the host path h is a directory: an existing one is
// kept, anything else there is an error.
func mkdirOver(h string) error {
	fi, err := os.Lstat(h)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("cannot copy a directory over non-directory %s", h)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	return os.Mkdir(h, 0o700)
}

// notCopied reports the file types COPY leaves out: FIFOs and sockets,
// which Docker 20.10's copy skips without a word.
func notCopied(fi fs.FileInfo) bool {
	return fi.Mode()&(fs.ModeNamedPipe|fs.ModeSocket) != 0
}

// copyFile copies the non-directory source m to dest: into it when it is
// (or must be) a directory, else to that path.
func (cp *copier) copyFile(m match, dest string, destIsDir bool) error {
	if notCopied(m.fi) {
		return nil
	}
	base := path.Base(m.name)
	var target string
	if destIsDir {
		host, _, err := cp.d.mkdirAll(dest, 0o755, cp.parent)
		if err != nil {
			return err
		}
		target = filepath.Join(host, base)
	} else {
		host, err := cp.d.resolve(dest)
		if err != nil {
			return err
		}
		if fi, err := os.Stat(host); err == nil && fi.IsDir() {
			target = filepath.Join(host, base)
		} else {
			parent, _, err := cp.d.mkdirAll(path.Dir(dest), 0o755, cp.parent)
			if err != nil {
				return err
			}
			target = filepath.Join(parent, path.Base(dest))
			// A symlink there is followed (inside the root), as Docker
			// copies: the file goes where it points, the link stays.
			if fi, err := os.Lstat(target); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
				target = host
				if _, err := os.Stat(filepath.Dir(target)); err != nil {
					return fmt.Errorf("copy to %s: it is a symlink into a directory that does not exist: %w", dest, err)
				}
			}
		}
	}
	open := func() (*os.File, error) { return cp.t.root.Open(m.real) }
	return cp.writeNode(target, m.fi, open, func() (string, error) { return cp.t.root.Readlink(m.real) })
}

// writeNode creates the non-directory fi at the host path h, replacing any
// non-directory already there, and gives it its metadata.
func (cp *copier) writeNode(h string, fi fs.FileInfo, open func() (*os.File, error), readlink func() (string, error)) error {
	if err := removeNonDir(h); err != nil {
		return err
	}
	var xattrs []xattr
	switch mode := fi.Mode(); {
	case mode.IsRegular():
		var err error
		if xattrs, err = cp.writeFile(h, open); err != nil {
			return err
		}
	case mode&fs.ModeSymlink != 0:
		link, err := readlink()
		if err != nil {
			return err
		}
		if err := os.Symlink(link, h); err != nil {
			return err
		}
	default:
		if err := mknod(h, mode, statRdev(fi)); err != nil {
			return err
		}
	}
	if err := cp.setMeta(h, fi); err != nil {
		return err
	}
	// After chown, which drops file capabilities.
	for _, x := range xattrs {
		if err := lsetxattr(h, x.key, x.value); err != nil && !isNotSupported(err) {
			return fmt.Errorf("set extended attribute %s on %s: %w", x.key, h, err)
		}
	}
	return nil
}

// removeNonDir removes what is at the host path h unless it is a
// directory, which is an error.
func removeNonDir(h string) error {
	fi, err := os.Lstat(h)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("cannot replace directory %s with a file", h)
	}
	return os.Remove(h)
}

// writeFile creates the host path h (which must not exist) with the content
// of the file open returns. With PreserveOwner it also returns the source's
// extended attributes, which the caller sets once owner and mode are final.
func (cp *copier) writeFile(h string, open func() (*os.File, error)) ([]xattr, error) {
	in, err := open()
	if err != nil {
		return nil, err
	}
	defer in.Close()
	out, err := os.OpenFile(h, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if cp.buf == nil {
		cp.buf = make([]byte, 256<<10)
	}
	if _, err := copyContent(out, in, cp.buf); err != nil {
		out.Close()
		return nil, fmt.Errorf("write %s: %w", h, err)
	}
	if err := out.Close(); err != nil {
		return nil, err
	}
	if !cp.c.PreserveOwner {
		return nil, nil
	}
	return readXattrs(in), nil
}
