package solver

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/cache"
)

// Options configures Solve.
type Options struct {
	// Deps are handed to every op.
	Deps *Deps
	// Parallelism bounds how many ops run at once; 0 means max(8, 2×CPUs).
	Parallelism int
	// NoCache runs every op even when its key is in the index.
	NoCache bool
	// Index is the cache-key index; nil means Deps.Store.
	Index Index
	// Materialize, when set, is called with each input chain before an
	// op runs on it, so results found in an imported cache can fetch
	// their layers first.
	Materialize func(ctx context.Context, chain cache.Chain) error
	// Events, when set, receives progress. It is called from several
	// goroutines, one event at a time.
	Events func(Event)
}

// Index maps cache keys to results (cache.Store implements it).
type Index interface {
	LookupKey(ctx context.Context, key digest.Digest) (cache.Chain, error)
	RecordKey(ctx context.Context, key digest.Digest, chain cache.Chain) error
}

// StepError is the error of a failed vertex.
type StepError struct {
	Vertex *Vertex
	Err    error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("%s: %v", e.Vertex.Name, e.Err)
}

// Unwrap returns the cause.
func (e *StepError) Unwrap() error { return e.Err }

// Solution is the outcome of Solve.
type Solution struct {
	// Result is the target's result.
	Result Result
	s      *solveState
}

// ResultOf returns the result of any vertex of the graph: the one Solve
// computed or found cached, or, for a vertex Solve never needed (a cached
// vertex above it made it unnecessary), its cache index entry. ok is false
// when the result is not known.
func (sol *Solution) ResultOf(ctx context.Context, v *Vertex) (Result, bool) {
	s := sol.s
	s.mu.Lock()
	kc := s.keys[v]
	s.mu.Unlock()
	if kc == nil || kc.err != nil {
		return Result{}, false
	}
	s.mu.Lock()
	rc := s.results[kc.key]
	s.mu.Unlock()
	if rc != nil {
		select {
		case <-rc.done:
			return rc.res, rc.err == nil
		default:
			return Result{}, false
		}
	}
	if u, ok := v.Op.(Uncacheable); ok && u.NoRecord() {
		r, err := v.Op.Run(ctx, &RunContext{Deps: s.opts.Deps}, nil)
		return r, err == nil
	}
	chain, err := s.opts.Index.LookupKey(ctx, kc.key)
	if err != nil {
		return Result{}, false
	}
	return Result{Chain: chain}, true
}

// Key returns the cache key of v, if Solve computed it.
func (sol *Solution) Key(v *Vertex) (digest.Digest, bool) {
	sol.s.mu.Lock()
	defer sol.s.mu.Unlock()
	kc := sol.s.keys[v]
	if kc == nil {
		return "", false
	}
	select {
	case <-kc.done:
		return kc.key, kc.err == nil
	default:
		return "", false
	}
}

// Vertices returns every vertex whose key Solve computed (the whole graph
// below the target).
func (sol *Solution) Vertices() []*Vertex {
	sol.s.mu.Lock()
	defer sol.s.mu.Unlock()
	out := make([]*Vertex, 0, len(sol.s.keys))
	for v := range sol.s.keys {
		out = append(out, v)
	}
	return out
}

// Solve builds target and returns its result.
func Solve(ctx context.Context, target *Vertex, opts Options) (*Solution, error) {
	if opts.Parallelism <= 0 {
		// Steps often wait (sleep, network, disk) rather than compute,
		// so run more of them than there are CPUs, as BuildKit does.
		opts.Parallelism = max(8, 2*runtime.NumCPU())
	}
	if opts.Deps == nil {
		opts.Deps = &Deps{}
	}
	if opts.Index == nil {
		if opts.Deps.Store == nil {
			return nil, errors.New("solve: no cache index")
		}
		opts.Index = opts.Deps.Store
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &solveState{
		opts:    opts,
		sem:     make(chan struct{}, opts.Parallelism),
		keys:    map[*Vertex]*keyCall{},
		results: map[digest.Digest]*resultCall{},
		index:   map[*Vertex]int{},
		cancel:  cancel,
	}
	defer s.cleanup()
	res, err := s.result(ctx, target)
	if err != nil {
		s.mu.Lock()
		failed := s.failed
		s.mu.Unlock()
		if failed != nil && errors.Is(err, context.Canceled) && parent.Err() == nil {
			err = failed
		}
		return nil, err
	}
	return &Solution{Result: res, s: s}, nil
}

type keyCall struct {
	done chan struct{}
	key  digest.Digest
	err  error
}

type resultCall struct {
	done chan struct{}
	res  Result
	err  error
}

type solveState struct {
	opts   Options
	sem    chan struct{}
	cancel context.CancelFunc

	mu      sync.Mutex
	keys    map[*Vertex]*keyCall
	results map[digest.Digest]*resultCall
	index   map[*Vertex]int
	// failed is the first step failure (not a cancellation); guarded by
	// mu. The cancellation it causes can reach the caller first through
	// a sibling branch, so Solve reports failed instead.
	failed error

	emitMu sync.Mutex
}

func (s *solveState) emit(e Event) {
	if s.opts.Events == nil || (e.Vertex != nil && e.Vertex.Name == "" && e.Kind != EventError) {
		return
	}
	s.emitMu.Lock()
	defer s.emitMu.Unlock()
	s.mu.Lock()
	i, ok := s.index[e.Vertex]
	if !ok {
		i = len(s.index) + 1
		s.index[e.Vertex] = i
	}
	s.mu.Unlock()
	e.Index = i
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	s.opts.Events(e)
}

func (s *solveState) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *solveState) release() { <-s.sem }

// fail records err as the build's failure if it is the first one that is
// not a cancellation.
func (s *solveState) fail(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	s.mu.Lock()
	if s.failed == nil {
		s.failed = err
	}
	s.mu.Unlock()
}

func stepError(v *Vertex, err error) error {
	var se *StepError
	if errors.As(err, &se) || errors.Is(err, context.Canceled) {
		return err
	}
	return &StepError{Vertex: v, Err: err}
}

// key computes the cache key of v once.
func (s *solveState) key(ctx context.Context, v *Vertex) (digest.Digest, error) {
	s.mu.Lock()
	c, ok := s.keys[v]
	if !ok {
		c = &keyCall{done: make(chan struct{})}
		s.keys[v] = c
	}
	s.mu.Unlock()
	if ok {
		select {
		case <-c.done:
			return c.key, c.err
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	c.key, c.err = s.computeKey(ctx, v)
	if c.err != nil {
		s.fail(c.err)
	}
	close(c.done)
	return c.key, c.err
}

func (s *solveState) computeKey(ctx context.Context, v *Vertex) (digest.Digest, error) {
	inKeys := make([]digest.Digest, len(v.Inputs))
	g, gctx := errgroup.WithContext(ctx)
	for i, in := range v.Inputs {
		g.Go(func() error {
			k, err := s.key(gctx, in)
			inKeys[i] = k
			return err
		})
	}
	var opKey digest.Digest
	g.Go(func() error {
		if err := s.acquire(gctx); err != nil {
			return err
		}
		defer s.release()
		k, err := v.Op.CacheKey(gctx)
		if err != nil {
			return stepError(v, err)
		}
		opKey = k
		return nil
	})
	if err := g.Wait(); err != nil {
		return "", err
	}
	return CacheKey(v.Op.Kind(), opKey, inKeys), nil
}

// result produces v's result once per cache key.
func (s *solveState) result(ctx context.Context, v *Vertex) (Result, error) {
	k, err := s.key(ctx, v)
	if err != nil {
		return Result{}, err
	}
	s.mu.Lock()
	c, ok := s.results[k]
	if !ok {
		c = &resultCall{done: make(chan struct{})}
		s.results[k] = c
	}
	s.mu.Unlock()
	if ok {
		select {
		case <-c.done:
			return c.res, c.err
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	c.res, c.err = s.compute(ctx, v, k)
	if c.err != nil {
		s.fail(c.err)
		s.cancel()
	}
	close(c.done)
	return c.res, c.err
}

func (s *solveState) compute(ctx context.Context, v *Vertex, k digest.Digest) (Result, error) {
	record := true
	if u, ok := v.Op.(Uncacheable); ok && u.NoRecord() {
		record = false
	}
	store := s.opts.Index
	if record && !s.opts.NoCache {
		chain, err := store.LookupKey(ctx, k)
		switch {
		case err == nil:
			s.emitCachedAncestors(v, map[*Vertex]bool{})
			s.emit(Event{Kind: EventCached, Vertex: v})
			return Result{Chain: chain}, nil
		case !errors.Is(err, cache.ErrNotFound):
			return Result{}, stepError(v, fmt.Errorf("look up cache: %w", err))
		}
	}
	if !record && len(v.Inputs) == 0 {
		// A source (an image already in the store, scratch): nothing runs.
		res, err := v.Op.Run(ctx, &RunContext{Deps: s.opts.Deps}, nil)
		if err != nil {
			return Result{}, stepError(v, err)
		}
		s.emit(Event{Kind: EventCached, Vertex: v})
		return res, nil
	}
	inputs := make([]Result, len(v.Inputs))
	g, gctx := errgroup.WithContext(ctx)
	for i, in := range v.Inputs {
		g.Go(func() error {
			r, err := s.result(gctx, in)
			inputs[i] = r
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return Result{}, err
	}
	if s.opts.Materialize != nil {
		for _, in := range inputs {
			if err := s.opts.Materialize(ctx, in.Chain); err != nil {
				return Result{}, stepError(v, err)
			}
		}
	}
	if err := s.acquire(ctx); err != nil {
		return Result{}, err
	}
	defer s.release()
	start := time.Now()
	s.emit(Event{Kind: EventStarted, Vertex: v, Time: start})
	rc := &RunContext{
		Deps:   s.opts.Deps,
		Stdout: &eventWriter{s: s, v: v, stream: 1},
		Stderr: &eventWriter{s: s, v: v, stream: 2},
	}
	res, err := v.Op.Run(ctx, rc, inputs)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return Result{}, err
		}
		s.emit(Event{Kind: EventError, Vertex: v, Err: err, Elapsed: time.Since(start)})
		return Result{}, stepError(v, err)
	}
	if record {
		if err := store.RecordKey(ctx, k, res.Chain); err != nil {
			return Result{}, stepError(v, fmt.Errorf("record cache: %w", err))
		}
	}
	s.emit(Event{Kind: EventDone, Vertex: v, Elapsed: time.Since(start)})
	return res, nil
}

// cleanup lets every op with temporary state release it.
func (s *solveState) cleanup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for v := range s.keys {
		if c, ok := v.Op.(Cleaner); ok {
			c.Cleanup()
		}
	}
}

// emitCachedAncestors reports the steps below a cache hit that Solve will
// not visit as cached too, inputs first, so a no-op rebuild lists every step.
func (s *solveState) emitCachedAncestors(v *Vertex, seen map[*Vertex]bool) {
	if s.opts.Events == nil {
		return
	}
	for _, in := range v.Inputs {
		if seen[in] {
			continue
		}
		seen[in] = true
		s.emitCachedAncestors(in, seen)
		s.mu.Lock()
		_, reported := s.index[in]
		started := false
		if kc := s.keys[in]; kc != nil {
			_, started = s.results[kc.key]
		}
		s.mu.Unlock()
		if !reported && !started {
			s.emit(Event{Kind: EventCached, Vertex: in})
		}
	}
}

// eventWriter turns writes into output events.
type eventWriter struct {
	s      *solveState
	v      *Vertex
	stream int
}

func (w *eventWriter) Write(p []byte) (int, error) {
	data := make([]byte, len(p))
	copy(data, p)
	w.s.emit(Event{Kind: EventOutput, Vertex: w.v, Data: data, Stream: w.stream})
	return len(p), nil
}
