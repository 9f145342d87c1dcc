// Command kiln builds Dockerfiles into OCI images with a content-addressed
// layer cache, and runs them.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/kiln-build/kiln/cmd/internal/app"
	"github.com/kiln-build/kiln/cmd/internal/shim"
	"github.com/kiln-build/kiln/executor/containers"
	"github.com/kiln-build/kiln/executor/linux"
	"github.com/kiln-build/kiln/solver/ops/fileop"
)

func main() {
	if app.IsTrash() {
		// Deleting a discarded directory in the background.
		os.Exit(app.RunTrash())
	}
	if containers.IsShim() {
		// A container's monitor (kiln run, kiln start).
		os.Exit(shim.Main())
	}
	if linux.IsInit() {
		// The container side of a RUN or COPY step: never returns.
		linux.RunInit(map[string]linux.Handler{
			fileop.HandlerName: func(ctx context.Context, inputs []*os.Root, payload []byte) error {
				var src *os.Root
				if len(inputs) > 0 {
					src = inputs[0]
				}
				return fileop.Apply(ctx, src, payload)
			},
		})
		os.Exit(125)
	}
	if os.Getenv("GOGC") == "" {
		// A CLI run is short and its live heap small (tens of MB even
		// for a 20,000-file context): collecting at 5x the live heap
		// instead of 2x takes ~8% off a no-op rebuild of such a context.
		debug.SetGCPercent(400)
	}
	if p := os.Getenv("KILN_CPUPROFILE"); p != "" {
		// A debugging aid for speed work: go tool pprof kiln $KILN_CPUPROFILE.
		if f, err := os.Create(p); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cli := &cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	root := cli.rootCommand(os.Args[1:])
	err := root.ExecuteContext(ctx)
	if err != nil {
		os.Exit(cli.report(err))
	}
}
