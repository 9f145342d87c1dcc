package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/solver"
)

// Inline makes a layer, on an empty filesystem, of files whose content is
// written in the Dockerfile: COPY heredocs and RUN heredoc scripts. Other
// steps copy or mount them from it.
type Inline struct {
	Files []InlineFile `json:"files"`
}

// InlineFile is one file of an Inline layer, root-owned.
type InlineFile struct {
	// Path is relative to the root; missing parents are made 0755.
	Path string      `json:"path"`
	Data string      `json:"data"`
	Mode fs.FileMode `json:"mode"`
}

// Kind implements solver.Op.
func (o *Inline) Kind() string { return "inline" }

// CacheKey implements solver.Op.
func (o *Inline) CacheKey(context.Context) (digest.Digest, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return "", err
	}
	return digest.FromBytes(b), nil
}

// Run implements solver.Op.
func (o *Inline) Run(ctx context.Context, rc *solver.RunContext, _ []solver.Result) (solver.Result, error) {
	active, err := rc.Store.Prepare(ctx, nil)
	if err != nil {
		return solver.Result{}, err
	}
	defer active.Discard()
	root, err := os.OpenRoot(active.UpperDir)
	if err != nil {
		return solver.Result{}, err
	}
	defer root.Close()
	for _, f := range o.Files {
		rel := strings.TrimLeft(path.Clean("/"+f.Path), "/")
		if rel == "" {
			return solver.Result{}, fmt.Errorf("inline file: empty name")
		}
		if dir := path.Dir(rel); dir != "." {
			if err := root.MkdirAll(filepath.FromSlash(dir), 0o755); err != nil {
				return solver.Result{}, fmt.Errorf("inline file %s: %w", rel, err)
			}
		}
		if err := root.WriteFile(filepath.FromSlash(rel), []byte(f.Data), f.Mode.Perm()); err != nil {
			return solver.Result{}, fmt.Errorf("inline file %s: %w", rel, err)
		}
		// WriteFile's mode is subject to the umask.
		if err := root.Chmod(filepath.FromSlash(rel), f.Mode.Perm()); err != nil {
			return solver.Result{}, fmt.Errorf("inline file %s: %w", rel, err)
		}
	}
	chain, err := active.Commit(ctx)
	if err != nil {
		return solver.Result{}, fmt.Errorf("commit layer: %w", err)
	}
	return solver.Result{Chain: chain}, nil
}
