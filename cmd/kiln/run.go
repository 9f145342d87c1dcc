package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/cmd/internal/app"
	"github.com/kiln-build/kiln/executor"
)

type runFlags struct {
	rm          bool
	env         []string
	workdir     string
	user        string
	entrypoint  string
	hostname    string
	network     string
	readOnly    bool
	interactive bool
	tty         bool
}

func (c *cli) runCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Run a command in a new container",
		Example: `  kiln run --rm hello
  kiln run --rm -e NAME=world busybox sh -c 'echo hello $NAME'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run(cmd, args, &f)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.BoolVar(&f.rm, "rm", false, "remove the container when it exits (kiln run always does for now)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable KEY=VALUE (KEY alone: from the environment)")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVarP(&f.user, "user", "u", "", "user name or uid[:gid]")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "override the image's entrypoint")
	fl.StringVar(&f.hostname, "hostname", "", "container host name")
	fl.StringVar(&f.network, "network", "host", "network: host or none")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount the root filesystem read-only")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "keep stdin open")
	fl.BoolVarP(&f.tty, "tty", "t", false, "allocate a pseudo terminal")
	return cmd
}

func (c *cli) run(cmd *cobra.Command, args []string, f *runFlags) error {
	ctx := cmd.Context()
	network := executor.NetworkHost
	switch f.network {
	case "host", "default", "":
	case "none":
		network = executor.NetworkNone
	default:
		return &exitCodeErr{code: 125, err: fmt.Errorf("--network=%s: kiln run supports host and none for now", f.network)}
	}
	var env []string
	for _, e := range f.env {
		if !strings.Contains(e, "=") {
			v, ok := os.LookupEnv(e)
			if !ok {
				continue
			}
			e += "=" + v
		}
		env = append(env, e)
	}
	req := app.RunRequest{
		Image: args[0], Args: args[1:], Env: env, Workdir: f.workdir, User: f.user,
		Hostname: f.hostname, Network: network, ReadOnly: f.readOnly, Tty: f.tty,
		Stdout: c.stdout, Stderr: c.stderr,
	}
	if f.entrypoint != "" {
		req.Entrypoint = []string{f.entrypoint}
	}
	if f.interactive {
		req.Stdin = c.stdin
	}
	a, err := c.open(ctx)
	if err != nil {
		return &exitCodeErr{code: 125, err: err}
	}
	defer a.Close()
	err = a.Run(ctx, req)
	var xe *executor.ExitError
	if errors.As(err, &xe) {
		return &exitError{Code: xe.Code}
	}
	if err != nil {
		return &exitCodeErr{code: 125, err: err}
	}
	return nil
}

// exitCodeErr is an error with a specific process exit code.
type exitCodeErr struct {
	code int
	err  error
}

func (e *exitCodeErr) Error() string { return e.err.Error() }
func (e *exitCodeErr) Unwrap() error { return e.err }
