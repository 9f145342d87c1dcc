// Package shim is main for a container's shim, the process that watches
// over one container for kiln run and kiln start (containers.RunShim). Both
// kiln and kiln-shim can be started as the shim; kiln starts kiln-shim
// when it was built with it, since the small binary starts in about half
// kiln's time (5 ms against 9.5 on a 2-core VM), which kiln run pays on
// every start.
package shim

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/kiln-build/kiln/cmd/internal/initbin"
	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/executor/containers"
	"github.com/kiln-build/kiln/executor/linux"
	"github.com/kiln-build/kiln/executor/network"
)

// Main runs the shim of a container, started as
// PROGRAM kiln-container-shim ROOT ID, and returns the exit status. Its
// stdout and stderr are the shim log; fd 3 is the pipe it reports
// readiness on.
func Main() int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) != 4 {
		logger.Error("usage: kiln " + containers.ShimArg + " ROOT ID")
		return 2
	}
	root, id := os.Args[2], os.Args[3]
	// The shim outlives the terminal that started kiln run -d.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	if err := run(context.Background(), root, id, logger); err != nil {
		logger.Error("shim", "container", containers.ShortID(id), "err", err)
		return 1
	}
	return 0
}

// Exe is the program to start as a container's shim: the kiln-shim beside
// this binary when it was built with it, "" (kiln itself) otherwise.
func Exe() string { return initbin.FindProgram(initbin.ShimName) }

func run(ctx context.Context, root, id string, logger *slog.Logger) error {
	cs, err := containers.Open(root)
	if err != nil {
		return err
	}
	ex, err := linux.New(linux.Options{StateDir: filepath.Join(root, "run"), InitPath: initbin.Find()})
	if err != nil {
		return err
	}
	starter, ok := any(ex).(executor.Starter)
	if !ok {
		return fmt.Errorf("this kiln's executor cannot start containers")
	}
	nm, err := network.New(network.Options{StateDir: filepath.Join(root, "network")})
	if err != nil {
		return err
	}
	return containers.RunShim(ctx, containers.ShimOptions{
		Store: cs, ID: id, Starter: starter, Network: nm,
		Ready: os.NewFile(3, "ready"), Logger: logger,
	})
}
