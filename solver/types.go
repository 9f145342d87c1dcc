package solver

import (
	"context"
	"io"
	"log/slog"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/executor"
)

// Location is where a vertex comes from in the Dockerfile.
type Location struct {
	File      string
	StartLine int
	EndLine   int
}

// Vertex is one step of a build graph.
type Vertex struct {
	// Name is shown in progress, e.g. "[build 2/4] RUN make"; a vertex
	// without one is internal (an empty base) and only shown if it fails.
	Name string
	// Op does the work.
	Op Op
	// Inputs are the vertices whose results Op consumes, in order.
	Inputs []*Vertex
	// Location is the Dockerfile position, if any.
	Location Location
}

// Op is the work of one vertex.
type Op interface {
	// Kind names the op type ("run", "file", "image", ...); it is part of
	// the cache key.
	Kind() string
	// CacheKey digests everything about the op itself that changes its
	// result, including the content of files it reads from outside the
	// graph (the build context), and nothing else (no mtimes, no proxy
	// variables). Input keys are added by the solver.
	CacheKey(ctx context.Context) (digest.Digest, error)
	// Run produces the result from the inputs' results.
	Run(ctx context.Context, rc *RunContext, inputs []Result) (Result, error)
}

// Uncacheable is implemented by ops whose results are not recorded in the
// cache index (their key already names their result, e.g. images).
type Uncacheable interface {
	NoRecord() bool
}

// Cleaner is implemented by ops that hold temporary files between
// CacheKey and Run; Solve calls Cleanup on every such op when it returns.
type Cleaner interface {
	Cleanup()
}

// Result is what a vertex produces: a layer chain.
type Result struct {
	Chain cache.Chain
}

// Deps is what ops need from the outside world.
type Deps struct {
	Store    *cache.Store
	Executor executor.Executor
	Logger   *slog.Logger
	// Secrets are the contents of RUN --mount=type=secret, by id. They
	// are never part of a cache key.
	Secrets map[string][]byte
	// SSH are the SSH agent sockets RUN --mount=type=ssh forwards, by
	// id. They are never part of a cache key.
	SSH map[string]string
}

// RunContext is handed to Op.Run.
type RunContext struct {
	*Deps
	// Stdout and Stderr receive the step's output (shown in progress).
	Stdout, Stderr io.Writer
}
