// Package app holds kiln's use cases — build, run, save, load, prune — on
// top of the store, the executor and the exporter. The CLI (and a future
// daemon) are thin layers over it.
package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/cmd/internal/initbin"
	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/executor/linux"
)

// Options configures Open.
type Options struct {
	// Root is the store root directory.
	Root string
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// App is an open store plus the executor.
type App struct {
	Store    *cache.Store
	Executor executor.Executor
	Logger   *slog.Logger
}

// DefaultRoot is the store root when neither --root nor KILN_ROOT is set:
// /var/lib/kiln for root, $XDG_DATA_HOME/kiln otherwise.
func DefaultRoot() string {
	if r := os.Getenv("KILN_ROOT"); r != "" {
		return r
	}
	if os.Geteuid() == 0 {
		return "/var/lib/kiln"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "kiln")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "kiln")
}

// Open opens the store and the executor.
func Open(ctx context.Context, opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, err
	}
	// KILN_DURABLE=1 trades a disk flush per step for surviving power cuts.
	durable := os.Getenv("KILN_DURABLE") == "1"
	store, err := cache.Open(ctx, root, cache.Options{Logger: opts.Logger, Trash: spawnTrash, Durable: durable})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", root, err)
	}
	ex, err := linux.New(linux.Options{StateDir: filepath.Join(root, "run"), InitPath: initbin.Find()})
	if err != nil {
		store.Close()
		return nil, err
	}
	return &App{Store: store, Executor: ex, Logger: opts.Logger}, nil
}

// Close releases the store.
func (a *App) Close() error {
	if c, ok := a.Executor.(io.Closer); ok {
		c.Close()
	}
	return a.Store.Close()
}
