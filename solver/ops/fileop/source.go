package fileop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/patternmatcher"
)

// srcTree is the source of a copy as the copy sees it: the tree under an
// *os.Root with the .dockerignore exclusions applied as Docker 20.10's
// builder applies them. Excluded paths do not exist, and neither does
// anything below an excluded directory, except where an exception
// ("!pattern") is written below that directory: such a directory exists,
// even when nothing in it survives, with its visible contents (see
// reachable).
//
// A srcTree may be walked by several goroutines at once.
type srcTree struct {
	root *os.Root
	// pm is nil without exclusions. It compiles its patterns lazily, so
	// every use holds mu.
	pm *patternmatcher.PatternMatcher
	mu sync.Mutex
}

// match matches rel against the exclusion patterns (see
// patternmatcher.MatchesUsingParentResults).
func (t *srcTree) match(rel string, mi patternmatcher.MatchInfo) (bool, patternmatcher.MatchInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pm.MatchesUsingParentResults(rel, mi)
}

func newSrcTree(root *os.Root, excludes []string) (*srcTree, error) {
	t := &srcTree{root: root}
	if len(excludes) > 0 {
		pm, err := patternmatcher.New(excludes)
		if err != nil {
			return nil, fmt.Errorf("parse .dockerignore patterns: %w", err)
		}
		if len(pm.Patterns()) > 0 {
			t.pm = pm
		}
	}
	return t, nil
}

// cleanSource turns a source as written into a slash path relative to the
// source root: "." for the root itself, never starting with "/" or "..".
func cleanSource(s string) string {
	p := path.Clean("/" + s)
	if p == "/" {
		return "."
	}
	return p[1:]
}

// match is one path a source resolved to.
type match struct {
	// name is the path as matched, relative to the source root; its base
	// name names the copy in a destination directory.
	name string
	// real is name with every symlink resolved inside the root.
	real string
	// fi describes real (never a symlink).
	fi fs.FileInfo
}

// errSourceNotFound is the error for a source that names nothing visible.
func errSourceNotFound(src string) error {
	return fmt.Errorf("file not found in build context or excluded by .dockerignore: stat %s: %w", src, fs.ErrNotExist)
}

// resolveSources expands c.Sources, in order, into the paths they name.
// Apply and Checksum both use it, so they read exactly the same files. A
// wildcard that matches nothing names nothing, without an error, even when
// no source matched at all (the copy then does nothing), as in Docker
// 20.10's builder; a plain path that is missing is an error.
func resolveSources(ctx context.Context, t *srcTree, c *Copy) ([]match, error) {
	if len(c.Sources) == 0 {
		return nil, errors.New("no source files were specified")
	}
	var out []match
	for _, src := range c.Sources {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		names, wild, err := t.glob(cleanSource(src))
		if err != nil {
			return nil, fmt.Errorf("resolve source %s: %w", src, err)
		}
		for _, name := range names {
			real, fi, err := t.resolve(name)
			if errors.Is(err, fs.ErrNotExist) {
				if wild {
					// A wildcard match that is a dangling symlink: Docker
					// 20.10 follows it and fails.
					return nil, fmt.Errorf("source %s matches %s, a symbolic link to something that does not exist", src, name)
				}
				return nil, errSourceNotFound(src)
			}
			if err != nil {
				return nil, fmt.Errorf("resolve source %s: %w", src, err)
			}
			out = append(out, match{name: name, real: real, fi: fi})
		}
		if len(names) == 0 && !wild {
			return nil, errSourceNotFound(src)
		}
	}
	return out, nil
}

// hasWildcard reports whether a path component holds an unescaped *, ? or [.
func hasWildcard(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

// glob expands the cleaned source p. Components before the first one with
// a wildcard are taken literally (a backslash quotes the next character);
// from there on each component is a path.Match pattern matched against the
// visible entries of the directories matched so far, so wildcards never
// cross '/'. Without wildcards it returns p itself, whether or not it
// exists. Matches are sorted per directory.
func (t *srcTree) glob(p string) (names []string, wild bool, err error) {
	if p == "." {
		return []string{"."}, false, nil
	}
	comps := strings.Split(p, "/")
	i := slices.IndexFunc(comps, hasWildcard)
	if i < 0 {
		i = len(comps)
	}
	for j, c := range comps[:i] {
		comps[j] = unescape(c)
	}
	// Unquoting may have made "." or ".." components: clean again.
	prefix := cleanSource(strings.Join(comps[:i], "/"))
	if i == len(comps) {
		return []string{prefix}, false, nil
	}
	cur := []string{prefix}
	for j, pat := range comps[i:] {
		if _, err := path.Match(pat, ""); err != nil {
			return nil, true, fmt.Errorf("invalid pattern %q: %w", pat, err)
		}
		last := i+j == len(comps)-1
		var next []string
		for _, dir := range cur {
			real, fi, err := t.resolve(dir)
			if errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.IsDir()) {
				continue
			}
			if err != nil {
				return nil, true, err
			}
			ents, err := t.readDir(real)
			if err != nil {
				return nil, true, err
			}
			for _, e := range ents {
				if ok, _ := path.Match(pat, e.Name()); !ok {
					continue
				}
				if !last && !e.IsDir() && e.Type()&fs.ModeSymlink == 0 {
					continue
				}
				next = append(next, joinRel(dir, e.Name()))
			}
		}
		cur = next
	}
	return cur, true, nil
}

// unescape removes the backslashes that quote wildcard characters in a
// component without wildcards, as path.Match would read it.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// joinRel joins a relative directory ("." for the root) and a name.
func joinRel(dir, name string) string {
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}

// resolve follows every symlink in the relative path p inside the root
// (absolute targets and ".." are clamped to it, as a chroot would) and
// returns the resulting path and its description. It returns an error
// matching fs.ErrNotExist when the result does not exist or is excluded.
func (t *srcTree) resolve(p string) (string, fs.FileInfo, error) {
	if p == "." {
		fi, err := t.root.Stat(".")
		return ".", fi, err
	}
	abs, err := securejoin.SecureJoinVFS("/", p, treeVFS{t})
	if err != nil {
		return "", nil, err
	}
	real := strings.TrimPrefix(abs, "/")
	if real == "" {
		real = "."
	}
	fi, err := t.lstat(real)
	if err != nil {
		return "", nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		// Only a symlink loop leaves one behind.
		return "", nil, &fs.PathError{Op: "resolve", Path: p, Err: errors.New("too many levels of symbolic links")}
	}
	return real, fi, nil
}

// treeVFS lets securejoin walk the filtered tree with "/" as its root.
type treeVFS struct{ t *srcTree }

func (v treeVFS) rel(name string) string {
	p := strings.TrimLeft(path.Clean("/"+name), "/")
	if p == "" {
		return "."
	}
	return p
}

func (v treeVFS) Lstat(name string) (os.FileInfo, error) { return v.t.lstat(v.rel(name)) }

func (v treeVFS) Readlink(name string) (string, error) { return v.t.root.Readlink(v.rel(name)) }

// lstat describes the relative path p, failing with fs.ErrNotExist when p
// is excluded or below an excluded directory that is not walked.
func (t *srcTree) lstat(p string) (fs.FileInfo, error) {
	fi, err := t.root.Lstat(p)
	if errors.Is(err, syscall.ENOTDIR) {
		// A path through a file names nothing, as in a shell.
		return nil, &fs.PathError{Op: "lstat", Path: p, Err: fs.ErrNotExist}
	}
	if err != nil || t.pm == nil || p == "." {
		return fi, err
	}
	visible, err := t.visible(p, fi.IsDir())
	if err != nil {
		return nil, fmt.Errorf("match .dockerignore patterns: %w", err)
	}
	if !visible {
		return nil, &fs.PathError{Op: "lstat", Path: p, Err: fs.ErrNotExist}
	}
	return fi, nil
}

// visible reports whether the relative path p (a directory if dir) is
// seen through the exclusions: every directory above it is walked, and p
// is not excluded or is a directory that is walked.
func (t *srcTree) visible(p string, dir bool) (bool, error) {
	var mi patternmatcher.MatchInfo
	for i := 0; ; {
		j := strings.IndexByte(p[i:], '/')
		last := j < 0
		cur := p
		if !last {
			cur = p[:i+j]
		}
		excluded, next, err := t.match(cur, mi)
		if err != nil {
			return false, err
		}
		if excluded && !((dir || !last) && t.reachable(cur)) {
			return false, nil
		}
		if last {
			return true, nil
		}
		mi, i = next, i+j+1
	}
}

// reachable reports whether the excluded directory dir is walked anyway:
// Docker 20.10's builder (fsutil's walker, like the classic builder) walks
// into an excluded directory, and sends it, only when the text of an
// exception pattern starts with the directory's path and a slash; "!**/f"
// does not reach into an excluded "d", "!d/*/f" reaches into "d" but not
// into "d/sub".
func (t *srcTree) reachable(dir string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.pm.Exclusions() {
		return false
	}
	prefix := dir + "/"
	for _, pat := range t.pm.Patterns() {
		if pat.Exclusion() && strings.HasPrefix(pat.String()+"/", prefix) {
			return true
		}
	}
	return false
}

// openDir opens the directory dir is rooted at and lists it, sorted. The
// caller closes the returned file.
func openDir(dir *os.Root) (*os.File, []string, error) {
	f, err := dir.Open(".")
	if err != nil {
		return nil, nil, err
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	slices.Sort(names)
	return f, names, nil
}

// readDir lists the visible entries of the directory at the relative path
// dir (which must not pass through symlinks), sorted by name.
func (t *srcTree) readDir(dir string) ([]fs.DirEntry, error) {
	var out []fs.DirEntry
	err := t.walkDir(context.Background(), dir, nil, func(e *entry) error {
		out = append(out, fs.FileInfoToDirEntry(e.fi))
		return fs.SkipDir
	}, nil)
	return out, err
}

// entry is one path met by walkDir.
type entry struct {
	// rel is the path relative to the source root.
	rel string
	// name is the base name; dir is the directory holding it, and dirf
	// that directory open.
	name string
	dir  *os.Root
	dirf *os.File
	fi   fs.FileInfo
}

// open opens the regular file e describes.
func (e *entry) open() (*os.File, error) {
	return e.dir.Open(e.name)
}

// copyBuffer copies r to w through buf (io.CopyBuffer would let an
// *os.File pick its own buffer).
func copyBuffer(w io.Writer, r io.Reader, buf []byte) error {
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// walkDir visits the visible contents of the directory at the relative
// path dir, depth first in lexical order, calling enter for every entry and
// leave for every directory once its contents were visited. Symlinks are
// never followed. enter may return fs.SkipDir to skip a directory's
// contents (leave is then not called for it). mi is dir's own match state,
// nil to compute it.
func (t *srcTree) walkDir(ctx context.Context, dir string, mi *patternmatcher.MatchInfo, enter, leave func(*entry) error) error {
	var info patternmatcher.MatchInfo
	if t.pm != nil && dir != "." {
		if mi != nil {
			info = *mi
		} else {
			var err error
			if _, info, err = t.match(dir, patternmatcher.MatchInfo{}); err != nil {
				return fmt.Errorf("match .dockerignore patterns: %w", err)
			}
		}
	}
	sub, err := t.root.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer sub.Close()
	w := walker{t: t, ctx: ctx, enter: enter, leave: leave}
	return w.walk(sub, dir, info)
}

type walker struct {
	t            *srcTree
	ctx          context.Context
	enter, leave func(*entry) error
}

// item is a visible entry of a directory with its own match state.
type item struct {
	entry
	mi patternmatcher.MatchInfo
}

// list returns the visible entries of the directory dir (at rel), sorted,
// each with its stat info. The caller closes dirf.
func (t *srcTree) list(dir *os.Root, rel string, mi patternmatcher.MatchInfo) (dirf *os.File, items []item, err error) {
	dirf, names, err := openDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read directory %s: %w", rel, err)
	}
	items = make([]item, 0, len(names))
	for _, name := range names {
		it := item{entry: entry{rel: joinRel(rel, name), name: name, dir: dir, dirf: dirf}}
		excluded := false
		if t.pm != nil {
			excluded, it.mi, err = t.match(it.rel, mi)
			if err != nil {
				dirf.Close()
				return nil, nil, fmt.Errorf("match .dockerignore patterns: %w", err)
			}
		}
		if it.fi, err = lstatAt(dir, dirf, name); err != nil {
			dirf.Close()
			return nil, nil, fmt.Errorf("stat %s: %w", it.rel, err)
		}
		if excluded && !(it.fi.IsDir() && t.reachable(it.rel)) {
			continue
		}
		items = append(items, it)
	}
	return dirf, items, nil
}

func (w *walker) walk(dir *os.Root, rel string, mi patternmatcher.MatchInfo) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	dirf, items, err := w.t.list(dir, rel, mi)
	if err != nil {
		return err
	}
	defer dirf.Close()
	for i := range items {
		e := &items[i].entry
		err := w.enter(e)
		if errors.Is(err, fs.SkipDir) {
			continue
		}
		if err != nil {
			return err
		}
		if !e.fi.IsDir() {
			continue
		}
		sub, err := dir.OpenRoot(e.name)
		if err != nil {
			return fmt.Errorf("open directory %s: %w", e.rel, err)
		}
		err = w.walk(sub, e.rel, items[i].mi)
		sub.Close()
		if err != nil {
			return err
		}
		if w.leave != nil {
			if err := w.leave(e); err != nil {
				return err
			}
		}
	}
	return nil
}
