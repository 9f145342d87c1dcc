package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/solver"
)

// Run executes a command on top of its single input's filesystem and
// commits the changes as a new layer.
type Run struct {
	Args     []string         `json:"args"`
	Env      []string         `json:"env"`
	Cwd      string           `json:"cwd"`
	User     string           `json:"user,omitempty"`
	Network  executor.Network `json:"network,omitempty"`
	Hostname string           `json:"hostname,omitempty"`
}

// proxyVars never enter a cache key, as in Docker.
var proxyVars = map[string]bool{
	"HTTP_PROXY": true, "HTTPS_PROXY": true, "FTP_PROXY": true, "NO_PROXY": true, "ALL_PROXY": true,
	"http_proxy": true, "https_proxy": true, "ftp_proxy": true, "no_proxy": true, "all_proxy": true,
}

// Kind implements solver.Op.
func (o *Run) Kind() string { return "run" }

// CacheKey implements solver.Op.
func (o *Run) CacheKey(context.Context) (digest.Digest, error) {
	k := *o
	k.Env = nil
	for _, e := range o.Env {
		name, _, _ := strings.Cut(e, "=")
		if !proxyVars[name] {
			k.Env = append(k.Env, e)
		}
	}
	b, err := json.Marshal(k)
	if err != nil {
		return "", err
	}
	return digest.FromBytes(b), nil
}

// Run implements solver.Op.
func (o *Run) Run(ctx context.Context, rc *solver.RunContext, inputs []solver.Result) (solver.Result, error) {
	if len(inputs) != 1 {
		return solver.Result{}, fmt.Errorf("run: want 1 input, have %d", len(inputs))
	}
	active, err := rc.Store.Prepare(ctx, inputs[0].Chain)
	if err != nil {
		return solver.Result{}, err
	}
	defer active.Discard()
	spec := executor.Spec{
		Rootfs:   executor.Rootfs{LowerDirs: active.LowerDirs, UpperDir: active.UpperDir, WorkDir: active.WorkDir, Once: true},
		Hostname: o.Hostname,
		Network:  o.Network,
		Process: &executor.Process{
			Args:   o.Args,
			Env:    o.Env,
			Cwd:    o.Cwd,
			User:   o.User,
			Stdout: rc.Stdout,
			Stderr: rc.Stderr,
		},
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
