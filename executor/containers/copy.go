package containers

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// A container's files are reached through /proc/PID/root while it runs
// (so volumes and other mounts are included) and through its layer stack
// (Layers) while it is stopped: nothing is mounted on the host.

// liveRoot returns the container's root as seen on the host while it
// runs, or "".
func liveRoot(r *Record) string {
	if r.Running() && r.State.Pid > 0 {
		return "/proc/" + strconv.Itoa(r.State.Pid) + "/root"
	}
	return ""
}

// StatPath returns the file info of container path p (symlinks followed).
func StatPath(r *Record, p string) (fs.FileInfo, error) {
	if root := liveRoot(r); root != "" {
		hp, err := securejoin.SecureJoin(root, p)
		if err != nil {
			return nil, err
		}
		return os.Stat(hp)
	}
	l := r.Layers()
	rel, err := l.Resolve(p, true)
	if err != nil {
		return nil, err
	}
	return l.Stat(rel)
}

// CopyFrom writes the tree at container path src as a tar to w, its top
// entry named name. A trailing symlink in src is not followed (docker cp).
func CopyFrom(ctx context.Context, r *Record, src, name string, w io.Writer) error {
	if root := liveRoot(r); root != "" {
		dir, err := securejoin.SecureJoin(root, path.Dir(path.Clean("/"+src)))
		if err != nil {
			return err
		}
		hp := filepath.Join(dir, path.Base(path.Clean("/"+src)))
		if path.Clean("/"+src) == "/" {
			hp = root
		}
		if err := WriteHostTar(ctx, hp, name, w); err != nil {
			return fmt.Errorf("copy %s out of %s: %w", src, r.Config.Name, err)
		}
		return nil
	}
	l := r.Layers()
	rel, err := l.Resolve(src, false)
	if err != nil {
		return err
	}
	if err := l.WriteTar(ctx, rel, name, w); err != nil {
		return fmt.Errorf("copy %s out of %s: %w", src, r.Config.Name, err)
	}
	return nil
}

// CopyTo extracts the tar stream tr into the container directory dst.
// Entry names are resolved inside the container's root. A stopped
// container's changes go to its upper dir.
func CopyTo(ctx context.Context, r *Record, dst string, tr io.Reader) error {
	var resolve func(name string) (string, error)
	if root := liveRoot(r); root != "" {
		resolve = func(name string) (string, error) {
			return securejoin.SecureJoin(root, path.Join(dst, name))
		}
	} else {
		l := r.Layers()
		upper := r.UpperDir()
		resolve = func(name string) (string, error) {
			rel, err := l.Resolve(path.Join(dst, name), false)
			if err != nil {
				return "", err
			}
			if err := copyUpParents(l, upper, rel); err != nil {
				return "", err
			}
			hp := filepath.Join(upper, rel)
			if fi, err := os.Lstat(hp); err == nil && isWhiteout(fi) {
				if err := os.Remove(hp); err != nil {
					return "", err
				}
			}
			return hp, nil
		}
	}
	if err := ExtractTar(ctx, tr, resolve); err != nil {
		return fmt.Errorf("copy into %s:%s: %w", r.Config.Name, dst, err)
	}
	return nil
}

// copyUpParents makes the parent directories of rel exist in upper, with
// the owner and mode they have in the merged view.
func copyUpParents(l Layers, upper, rel string) error {
	dir := path.Dir(rel)
	if dir == "." {
		return nil
	}
	cur := ""
	for _, c := range strings.Split(dir, "/") {
		cur = path.Join(cur, c)
		hp := filepath.Join(upper, cur)
		fi, err := os.Lstat(hp)
		if err == nil && fi.IsDir() {
			continue
		}
		if err == nil && !isWhiteout(fi) {
			return fmt.Errorf("/%s is not a directory", cur)
		}
		opaque := err == nil // a whiteout: the lower dir was deleted
		if opaque {
			if err := os.Remove(hp); err != nil {
				return err
			}
		}
		mode, uid, gid := fs.FileMode(0o755), 0, 0
		if !opaque {
			if mfi, err := l.Stat(cur); err == nil {
				if !mfi.IsDir() {
					return fmt.Errorf("/%s is not a directory", cur)
				}
				mode = mfi.Mode().Perm() | mfi.Mode()&(fs.ModeSticky|fs.ModeSetgid|fs.ModeSetuid)
				if st, ok := statOf(mfi); ok {
					uid, gid = int(st.Uid), int(st.Gid)
				}
			}
		}
		if err := os.Mkdir(hp, 0o755); err != nil {
			return err
		}
		_ = os.Lchown(hp, uid, gid)
		_ = os.Chmod(hp, mode)
		if opaque {
			_ = unix.Lsetxattr(hp, "trusted.overlay.opaque", []byte("y"), 0)
		}
	}
	return nil
}

// ExtractTar writes the entries of tar stream r to the host paths resolve
// gives for their names (resolve keeps them inside the destination).
// Owners, modes and modification times are kept.
func ExtractTar(ctx context.Context, r io.Reader, resolve func(name string) (string, error)) error {
	tr := tar.NewReader(r)
	type dirTime struct {
		p string
		t time.Time
	}
	var dirs []dirTime
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		name := path.Clean("/" + h.Name)
		p, err := resolve(name)
		if err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		if fi, err := os.Lstat(p); err == nil && !(fi.IsDir() && h.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
		mode := fs.FileMode(h.Mode).Perm() | modeBits(h.Mode)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, dirTime{p, h.ModTime})
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			target, err := resolve(path.Clean("/" + h.Linkname))
			if err != nil {
				return err
			}
			if err := os.Link(target, p); err != nil {
				return err
			}
			continue
		case tar.TypeFifo:
			if err := unix.Mkfifo(p, uint32(mode.Perm())); err != nil {
				return err
			}
		case tar.TypeChar, tar.TypeBlock:
			typ := uint32(unix.S_IFCHR)
			if h.Typeflag == tar.TypeBlock {
				typ = unix.S_IFBLK
			}
			if err := unix.Mknod(p, typ|uint32(mode.Perm()), int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))); err != nil {
				return err
			}
		default:
			continue
		}
		_ = os.Lchown(p, h.Uid, h.Gid)
		if h.Typeflag != tar.TypeSymlink {
			_ = os.Chmod(p, mode)
			_ = os.Chtimes(p, h.ModTime, h.ModTime)
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Chtimes(dirs[i].p, dirs[i].t, dirs[i].t)
	}
	return nil
}

func modeBits(m int64) fs.FileMode {
	var out fs.FileMode
	if m&unix.S_ISUID != 0 {
		out |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		out |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		out |= fs.ModeSticky
	}
	return out
}

// WriteHostTar writes the host tree at p as a tar to w, its top entry
// named name (symlinks are not followed).
func WriteHostTar(ctx context.Context, p, name string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(p, q)
		return writeEntry(tw, q, path.Join(name, filepath.ToSlash(rel)), fi)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
