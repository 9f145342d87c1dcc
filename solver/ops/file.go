package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops/fileop"
)

// File applies a file operation (COPY, ADD, mkdir) to its first input's
// filesystem. The source is the build context directory ContextDir, or, when
// ContextDir is empty and the op has a second input, that input's
// filesystem (COPY --from).
type File struct {
	Action     fileop.Action
	ContextDir string
	// FileDigest, when set, supplies content digests of context files
	// (a stat cache); nil reads every file.
	FileDigest fileop.FileDigestFunc
	// FileLookup, when set, gives digests FileDigest would without
	// reading (stat cache hits).
	FileLookup fileop.SumLookupFunc
}

// Kind implements solver.Op.
func (o *File) Kind() string { return "file" }

// CacheKey implements solver.Op.
func (o *File) CacheKey(ctx context.Context) (digest.Digest, error) {
	b, err := json.Marshal(o.Action)
	if err != nil {
		return "", err
	}
	if o.ContextDir == "" || o.Action.Copy == nil {
		return digest.FromBytes(b), nil
	}
	root, err := os.OpenRoot(o.ContextDir)
	if err != nil {
		return "", fmt.Errorf("open build context: %w", err)
	}
	defer root.Close()
	sum, err := fileop.ChecksumWith(ctx, root, o.Action.Copy, fileop.ChecksumOptions{FileDigest: o.FileDigest, Lookup: o.FileLookup})
	if err != nil {
		return "", err
	}
	return digest.FromString(string(digest.FromBytes(b)) + " context " + string(sum)), nil
}

// Run implements solver.Op.
func (o *File) Run(ctx context.Context, rc *solver.RunContext, inputs []solver.Result) (solver.Result, error) {
	if len(inputs) < 1 {
		return solver.Result{}, fmt.Errorf("file: no input")
	}
	payload, err := json.Marshal(o.Action)
	if err != nil {
		return solver.Result{}, err
	}
	active, err := rc.Store.Prepare(ctx, inputs[0].Chain)
	if err != nil {
		return solver.Result{}, err
	}
	defer active.Discard()
	fast, err := o.fastCopy(ctx, rc.Store, active)
	if err == nil && !fast && len(inputs) > 1 {
		fast, err = o.fastLinkFromStage(ctx, rc.Store, active, inputs[1].Chain)
	}
	if err != nil {
		return solver.Result{}, err
	} else if fast {
		chain, err := active.Commit(ctx)
		if err != nil {
			return solver.Result{}, fmt.Errorf("commit layer: %w", err)
		}
		return solver.Result{Chain: chain}, nil
	}
	spec := executor.Spec{
		Rootfs: executor.Rootfs{LowerDirs: active.LowerDirs, UpperDir: active.UpperDir, WorkDir: active.WorkDir, Once: true},
		Func:   &executor.Func{Name: fileop.HandlerName, Payload: payload, Stdout: rc.Stdout, Stderr: rc.Stderr},
	}
	switch {
	case o.ContextDir != "":
		spec.Inputs = []executor.Input{{Dir: o.ContextDir}}
	case len(inputs) > 1:
		dirs, err := rc.Store.Snapshot(ctx, inputs[1].Chain)
		if err != nil {
			return solver.Result{}, err
		}
		spec.Inputs = []executor.Input{{LowerDirs: dirs}}
	}
	if err := rc.Executor.Run(ctx, spec); err != nil {
		return solver.Result{}, err
	}
	chain, err := active.Commit(ctx)
	if err != nil {
		return solver.Result{}, fmt.Errorf("commit layer: %w", err)
	}
	return solver.Result{Chain: chain}, nil
}
