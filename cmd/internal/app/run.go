package app

import (
	"context"
	"fmt"
	"io"

	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/exporter"
)

// RunRequest is a one-off container run (kiln run --rm).
type RunRequest struct {
	Image string
	// Args replace the image's Cmd (after Entrypoint).
	Args []string
	// Entrypoint, when not nil, replaces the image's entrypoint.
	Entrypoint []string
	Env        []string
	Workdir    string
	User       string
	Hostname   string
	Network    executor.Network
	ReadOnly   bool
	Tty        bool
	Stdin      io.Reader
	Stdout     io.Writer
	Stderr     io.Writer
}

// Run runs a container from an image and removes its writable layer when it
// exits. The error is *executor.ExitError for a non-zero exit.
func (a *App) Run(ctx context.Context, req RunRequest) error {
	img, err := exporter.Lookup(ctx, a.Store, req.Image)
	if err != nil {
		return err
	}
	cfg := img.Config.Config
	entry := cfg.Entrypoint
	if req.Entrypoint != nil {
		entry = req.Entrypoint
		if len(req.Args) == 0 {
			cfg.Cmd = nil
		}
	}
	cmd := cfg.Cmd
	if len(req.Args) > 0 {
		cmd = req.Args
	}
	argv := append(append([]string(nil), entry...), cmd...)
	if len(argv) == 0 {
		return fmt.Errorf("no command specified: the image has no Entrypoint or Cmd; give one after the image name")
	}
	env := append([]string(nil), cfg.Env...)
	for _, e := range req.Env {
		env = mergeEnv(env, e)
	}
	wd := cfg.WorkingDir
	if req.Workdir != "" {
		wd = req.Workdir
	}
	user := cfg.User
	if req.User != "" {
		user = req.User
	}
	active, err := a.Store.Prepare(ctx, img.Chain)
	if err != nil {
		return err
	}
	defer active.Discard()
	return a.Executor.Run(ctx, executor.Spec{
		Rootfs:   executor.Rootfs{LowerDirs: active.LowerDirs, UpperDir: active.UpperDir, WorkDir: active.WorkDir, ReadOnly: req.ReadOnly},
		Hostname: req.Hostname,
		Network:  req.Network,
		Process: &executor.Process{
			Args: argv, Env: env, Cwd: wd, User: user, Tty: req.Tty,
			Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr,
		},
	})
}

func mergeEnv(env []string, kv string) []string {
	key := kv
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			key = kv[:i]
			break
		}
	}
	for i, e := range env {
		if len(e) > len(key) && e[:len(key)] == key && e[len(key)] == '=' {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}
