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
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Layers is a read-only view of an overlay stack without mounting it:
// the upper dir and the lower dirs, top first, in overlayfs format
// (whiteouts are 0/0 character devices, opaque directories carry the
// trusted.overlay.opaque or user.overlay.opaque xattr).
type Layers struct {
	// Dirs are the layer directories, top (upper) first.
	Dirs []string
}

// Layers is the stack of the container's root filesystem: its upper dir,
// then its image's layers, top first.
func (r *Record) Layers() Layers {
	return Layers{Dirs: append([]string{r.UpperDir()}, ImageLayers(r.Config.LowerDirs).Dirs...)}
}

// ImageLayers is the read-only view of an image's layer directories,
// given bottom first (as Config.LowerDirs holds them).
func ImageLayers(lowerDirs []string) Layers {
	dirs := make([]string, 0, len(lowerDirs))
	for i := len(lowerDirs) - 1; i >= 0; i-- {
		dirs = append(dirs, lowerDirs[i])
	}
	return Layers{Dirs: dirs}
}

// node is a path of the merged view: the host paths that make it up, top
// first (several only for a directory merged from several layers).
type node struct {
	paths []string
	fi    fs.FileInfo
}

func isWhiteout(fi fs.FileInfo) bool {
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Rdev == 0
}

func isOpaque(p string) bool {
	buf := make([]byte, 4)
	for _, name := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		if n, err := unix.Lgetxattr(p, name, buf); err == nil && n == 1 && buf[0] == 'y' {
			return true
		}
	}
	return false
}

// lookup finds the clean, relative, symlink-free path rel in the view.
func (l Layers) lookup(rel string) (*node, error) {
	cur := &node{}
	for _, d := range l.Dirs {
		fi, err := os.Lstat(d)
		if err != nil {
			continue
		}
		cur.paths = append(cur.paths, d)
		if cur.fi == nil {
			cur.fi = fi
		}
		if isOpaque(d) {
			break
		}
	}
	if cur.fi == nil {
		return nil, fs.ErrNotExist
	}
	if rel == "" || rel == "." {
		return cur, nil
	}
	for _, c := range strings.Split(rel, "/") {
		if !cur.fi.IsDir() {
			return nil, syscall.ENOTDIR
		}
		next := &node{}
		for _, d := range cur.paths {
			p := filepath.Join(d, c)
			fi, err := os.Lstat(p)
			if err != nil {
				continue
			}
			if isWhiteout(fi) {
				break
			}
			if next.fi == nil {
				next.fi = fi
			} else if !fi.IsDir() {
				break // a lower non-dir under an upper dir is hidden
			}
			next.paths = append(next.paths, p)
			if !fi.IsDir() || isOpaque(p) {
				break
			}
		}
		if next.fi == nil {
			return nil, fs.ErrNotExist
		}
		cur = next
	}
	return cur, nil
}

// readDir lists the merged directory n, sorted.
func (l Layers) readDir(n *node) ([]string, error) {
	seen := map[string]bool{}
	var names []string
	for _, d := range n.paths {
		ents, err := os.ReadDir(d)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if seen[e.Name()] {
				continue
			}
			seen[e.Name()] = true
			fi, err := e.Info()
			if err != nil || isWhiteout(fi) {
				continue
			}
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// Resolve resolves the container path p in the view, following symlinks
// (the last one too when followLast) inside the root, and returns the
// clean relative path it names (which may not exist).
func (l Layers) Resolve(p string, followLast bool) (string, error) {
	rest := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	var done []string
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cand := path.Join(append(slices.Clone(done), c)...)
		n, err := l.lookup(cand)
		if err != nil || n.fi.Mode()&fs.ModeSymlink == 0 || (len(rest) == 0 && !followLast) {
			done = append(done, c)
			continue
		}
		links++
		if links > 40 {
			return "", fmt.Errorf("resolve %s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(n.paths[0])
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			done = nil
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return path.Join(done...), nil
}

// Stat returns the file info of the resolved relative path rel.
func (l Layers) Stat(rel string) (fs.FileInfo, error) {
	n, err := l.lookup(rel)
	if err != nil {
		return nil, err
	}
	return n.fi, nil
}

// WriteTar writes the tree at the resolved relative path rel as a tar to
// w, its entries named under name (name "" for a whole root filesystem:
// entries relative to it, no entry for the root itself).
func (l Layers) WriteTar(ctx context.Context, rel, name string, w io.Writer) error {
	tw := tar.NewWriter(w)
	n, err := l.lookup(rel)
	if err != nil {
		return err
	}
	if err := l.writeNode(ctx, tw, rel, name, n); err != nil {
		return err
	}
	return tw.Close()
}

func (l Layers) writeNode(ctx context.Context, tw *tar.Writer, rel, name string, n *node) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if name != "" {
		if err := writeEntry(tw, n.paths[0], name, n.fi); err != nil {
			return err
		}
	}
	if !n.fi.IsDir() {
		return nil
	}
	names, err := l.readDir(n)
	if err != nil {
		return err
	}
	for _, c := range names {
		crel := path.Join(rel, c)
		cn, err := l.lookup(crel)
		if err != nil {
			continue
		}
		if err := l.writeNode(ctx, tw, crel, path.Join(name, c), cn); err != nil {
			return err
		}
	}
	return nil
}

// writeEntry writes the host file p as entry name.
func writeEntry(tw *tar.Writer, p, name string, fi fs.FileInfo) error {
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	}
	if fi.Mode()&fs.ModeSocket != 0 {
		return nil
	}
	h, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	h.Name = name
	if fi.IsDir() {
		h.Name += "/"
	}
	h.Uname, h.Gname = "", ""
	h.Format = tar.FormatPAX
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}

// Change is an entry of kiln diff.
type Change struct {
	// Kind is "A" (added), "C" (changed) or "D" (deleted).
	Kind string
	Path string
}

// Changes lists the changes of the upper layer against the layers below,
// sorted by path.
func (l Layers) Changes() ([]Change, error) {
	if len(l.Dirs) == 0 {
		return nil, nil
	}
	upper := l.Dirs[0]
	lower := Layers{Dirs: l.Dirs[1:]}
	var out []Change
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(upper, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		cp := "/" + filepath.ToSlash(rel)
		if isWhiteout(fi) {
			out = append(out, Change{"D", cp})
			return nil
		}
		if _, err := lower.lookup(filepath.ToSlash(rel)); err == nil {
			out = append(out, Change{"C", cp})
		} else {
			out = append(out, Change{"A", cp})
		}
		return nil
	})
	return out, err
}

// ErrUnsafePath is a tar entry that would land outside its destination.
var ErrUnsafePath = errors.New("path escapes the destination")

func statOf(fi fs.FileInfo) (*syscall.Stat_t, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return st, ok
}
