package fileop

import (
	"context"
	"io/fs"
	"os"
	"strings"
)

// WalkDirSource serves callers that build a COPY's result themselves (a
// hard-link fast path): when c copies exactly one source that resolves to a
// directory (no wildcard, no symlink on the way, no extraction, no --chown
// or --chmod), it calls fn for every entry below that directory that Apply
// would copy — the same resolution and .dockerignore rules, parents before
// children — with rel relative to the directory, and returns the
// directory's own info and ok. Otherwise it returns ok false and calls
// nothing.
func WalkDirSource(ctx context.Context, src *os.Root, c *Copy, fn func(rel, srcRel string, fi fs.FileInfo) error) (fs.FileInfo, bool, error) {
	if len(c.Sources) != 1 || c.Unpack || c.Chown != "" || c.Chmod != "" || c.PreserveOwner ||
		strings.ContainsAny(c.Sources[0], "*?[\\") {
		return nil, false, nil
	}
	t, err := newSrcTree(src, c.Excludes)
	if err != nil {
		return nil, false, err
	}
	matches, err := resolveSources(ctx, t, c)
	if err != nil || len(matches) != 1 {
		return nil, false, err
	}
	m := matches[0]
	if !m.fi.IsDir() || m.name != m.real {
		return nil, false, nil
	}
	prefix := ""
	if m.real != "." {
		prefix = m.real + "/"
	}
	err = t.walkDir(ctx, m.real, nil, func(e *entry) error {
		return fn(strings.TrimPrefix(e.rel, prefix), e.rel, e.fi)
	}, nil)
	if err != nil {
		return nil, false, err
	}
	return m.fi, true, nil
}
