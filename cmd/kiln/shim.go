package main

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

// runShim is main for kiln started as a container's shim:
// kiln kiln-container-shim ROOT ID. Its stdout and stderr are the shim log;
// fd 3 is the pipe it reports readiness on.
func runShim() int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) != 4 {
		logger.Error("usage: kiln " + containers.ShimArg + " ROOT ID")
		return 2
	}
	root, id := os.Args[2], os.Args[3]
	// The shim outlives the terminal that started kiln run -d.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	ctx := context.Background()
	err := shimMain(ctx, root, id, logger)
	if err != nil {
		logger.Error("shim", "container", containers.ShortID(id), "err", err)
		return 1
	}
	return 0
}

func shimMain(ctx context.Context, root, id string, logger *slog.Logger) error {
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
