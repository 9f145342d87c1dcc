package main

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/cmd/internal/app"
)

// cli holds the global flags and streams.
type cli struct {
	root   string
	debug  bool
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// tail returns the last output lines of a failed step, for report.
	tail func(err error) []string
}

// rootCommand returns kiln's command tree for the command line args (the
// arguments after the program name).
//
// The whole tree defines some 1,500 flags (docker run's alone come four
// times: run and create, at the top and under container), which took 4-5 ms
// of every kiln process. Where args name build or run, the commands of the
// build-edit-rebuild loop, only that command is made (quickCommand).
func (c *cli) rootCommand(args []string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kiln",
		Short: "Build Dockerfiles into OCI images, fast, and run them",
		Long: `kiln turns a Dockerfile into an OCI image with a content-addressed layer
cache (RUN steps run in Linux namespaces on overlayfs), and runs images
with its bundled container runtime.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       "-",
	}
	cmd.SetVersionTemplate(versionLine() + "\n")
	cmd.PersistentFlags().StringVar(&c.root, "root", app.DefaultRoot(), "store root directory (env KILN_ROOT)")
	cmd.PersistentFlags().BoolVar(&c.debug, "debug", false, "print debug logs")
	if quick := c.quickCommand(args); quick != nil {
		cmd.AddCommand(quick())
		return cmd
	}
	cmd.AddCommand(
		c.buildCommand(),
		c.runCommand(),
		c.createCommand(),
		c.startCommand(),
		c.stopCommand(),
		c.restartCommand(),
		c.killCommand(),
		c.rmCommand(),
		c.pauseCommand(),
		c.unpauseCommand(),
		c.waitCommand(),
		c.renameCommand(),
		c.psCommand(),
		c.logsCommand(),
		c.execCommand(),
		c.portCommand(),
		c.topCommand(),
		c.cpCommand(),
		c.diffCommand(),
		c.exportCommand(),
		c.commitCommand(),
		c.volumeCommand(),
		c.networkCommand(),
		c.imagesCommand(),
		c.tagCommand(),
		c.rmiCommand(),
		c.inspectCommand(),
		c.historyCommand(),
		c.saveCommand(),
		c.loadCommand(),
		c.importCommand(),
		c.pruneCommand(),
		c.dfCommand(),
		c.pullCommand(),
		c.pushCommand(),
		c.loginCommand(),
		c.logoutCommand(),
		c.versionCommand(),
		c.infoCommand(),
		c.statsCommand(),
		c.attachCommand(),
		c.updateCommand(),
		c.containerCommand(),
		c.imageCommand(),
		c.builderCommand(),
		c.systemCommand(),
	)
	return cmd
}

// quickCommand returns the constructor of the command args run when that
// is build or run, nil for anything else (help, completion, other commands
// or flags before the command name need the whole tree). args are the
// arguments after the program name; the root's own --root and --debug may
// come first.
func (c *cli) quickCommand(args []string) func() *cobra.Command {
	for len(args) > 0 {
		switch a := args[0]; {
		case a == "build":
			return c.buildCommand
		case a == "run":
			return c.runCommand
		case a == "--debug" || strings.HasPrefix(a, "--debug=") || strings.HasPrefix(a, "--root="):
			args = args[1:]
		case a == "--root" && len(args) > 1:
			args = args[2:]
		default:
			return nil
		}
	}
	return nil
}

// open opens the store for a command.
func (c *cli) open(ctx context.Context) (*app.App, error) {
	var logger *slog.Logger
	if c.debug {
		logger = slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return app.Open(ctx, app.Options{Root: c.root, Logger: logger})
}

// withApp opens the store for a command, runs fn with the command's
// context, and closes the store.
func (c *cli) withApp(cmd *cobra.Command, fn func(ctx context.Context, a *app.App) error) error {
	ctx := cmd.Context()
	a, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	return fn(ctx, a)
}
