package solver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
)

// memIndex is an in-memory Index.
type memIndex struct {
	mu sync.Mutex
	m  map[digest.Digest]cache.Chain
}

func newMemIndex() *memIndex { return &memIndex{m: map[digest.Digest]cache.Chain{}} }

func (x *memIndex) LookupKey(_ context.Context, k digest.Digest) (cache.Chain, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	c, ok := x.m[k]
	if !ok {
		return nil, cache.ErrNotFound
	}
	return c, nil
}

func (x *memIndex) RecordKey(_ context.Context, k digest.Digest, c cache.Chain) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.m[k] = c
	return nil
}

// addOp appends a layer named after its value on top of its first input's layers
// and counts its runs.
type addOp struct {
	val   string
	runs  *atomic.Int32
	delay time.Duration
	fail  error
	// running tracks concurrency.
	running, peak *atomic.Int32
}

func (o *addOp) Kind() string { return "add" }

func (o *addOp) CacheKey(context.Context) (digest.Digest, error) {
	return digest.FromString(o.val), nil
}

func (o *addOp) Run(ctx context.Context, rc *RunContext, in []Result) (Result, error) {
	o.runs.Add(1)
	if o.running != nil {
		n := o.running.Add(1)
		defer o.running.Add(-1)
		for {
			p := o.peak.Load()
			if n <= p || o.peak.CompareAndSwap(p, n) {
				break
			}
		}
	}
	fmt.Fprintf(rc.Stdout, "running %s\n", o.val)
	if o.delay > 0 {
		select {
		case <-time.After(o.delay):
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	if o.fail != nil {
		return Result{}, o.fail
	}
	var chain cache.Chain
	if len(in) > 0 {
		chain = in[0].Chain
	}
	d := digest.FromString(o.val)
	return Result{Chain: chain.Append(cache.Layer{DiffID: d, Digest: d})}, nil
}

func vtx(name string, op Op, inputs ...*Vertex) *Vertex {
	return &Vertex{Name: name, Op: op, Inputs: inputs}
}

func values(c cache.Chain) string {
	var parts []string
	for _, l := range c {
		parts = append(parts, l.DiffID.Encoded()[:4])
	}
	return strings.Join(parts, ",")
}

func TestSolveRunsOnceAndCaches(t *testing.T) {
	var runs atomic.Int32
	idx := newMemIndex()
	build := func() *Vertex {
		a := vtx("a", &addOp{val: "a", runs: &runs})
		b := vtx("b", &addOp{val: "b", runs: &runs}, a)
		c := vtx("c", &addOp{val: "c", runs: &runs}, a)
		// d and d2 are identical: same op, same inputs.
		d := vtx("d", &addOp{val: "d", runs: &runs}, b, c)
		d2 := vtx("d2", &addOp{val: "d", runs: &runs}, b, c)
		return vtx("top", &addOp{val: "top", runs: &runs}, d, d2)
	}
	sol, err := Solve(t.Context(), build(), Options{Index: idx})
	if err != nil {
		t.Fatal(err)
	}
	if got := runs.Load(); got != 5 {
		t.Errorf("first build ran %d ops, want 5 (a, b, c, d once, top)", got)
	}
	if len(sol.Result.Chain) != 4 {
		t.Errorf("chain has %d layers, want 4 (a, b, d, top)", len(sol.Result.Chain))
	}
	runs.Store(0)
	var cached int
	sol2, err := Solve(t.Context(), build(), Options{Index: idx, Events: func(e Event) {
		if e.Kind == EventCached {
			cached++
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if runs.Load() != 0 {
		t.Errorf("rebuild ran %d ops, want 0", runs.Load())
	}
	if cached != 6 {
		t.Errorf("rebuild reported %d cached steps, want 6", cached)
	}
	if values(sol2.Result.Chain) != values(sol.Result.Chain) {
		t.Errorf("rebuild result differs")
	}
	runs.Store(0)
	if _, err := Solve(t.Context(), build(), Options{Index: idx, NoCache: true}); err != nil {
		t.Fatal(err)
	}
	if runs.Load() != 5 {
		t.Errorf("--no-cache ran %d ops, want 5", runs.Load())
	}
}

func TestSolveChangedInputReruns(t *testing.T) {
	var runs atomic.Int32
	idx := newMemIndex()
	build := func(base string) *Vertex {
		a := vtx("a", &addOp{val: base, runs: &runs})
		return vtx("b", &addOp{val: "b", runs: &runs}, a)
	}
	if _, err := Solve(t.Context(), build("a1"), Options{Index: idx}); err != nil {
		t.Fatal(err)
	}
	runs.Store(0)
	if _, err := Solve(t.Context(), build("a2"), Options{Index: idx}); err != nil {
		t.Fatal(err)
	}
	if runs.Load() != 2 {
		t.Errorf("changed base ran %d ops, want 2", runs.Load())
	}
}

func TestSolveParallel(t *testing.T) {
	var runs, running, peak atomic.Int32
	var leaves []*Vertex
	for i := range 4 {
		leaves = append(leaves, vtx("leaf", &addOp{val: fmt.Sprint("leaf", i), runs: &runs, delay: 100 * time.Millisecond, running: &running, peak: &peak}))
	}
	top := vtx("top", &addOp{val: "top", runs: &runs}, leaves...)
	if _, err := Solve(t.Context(), top, Options{Index: newMemIndex(), Parallelism: 4}); err != nil {
		t.Fatal(err)
	}
	if peak.Load() < 2 {
		t.Errorf("independent steps never ran at the same time (peak %d)", peak.Load())
	}
	running.Store(0)
	peak.Store(0)
	for _, l := range leaves {
		l.Op.(*addOp).val += "x"
	}
	if _, err := Solve(t.Context(), top, Options{Index: newMemIndex(), Parallelism: 1}); err != nil {
		t.Fatal(err)
	}
	if peak.Load() != 1 {
		t.Errorf("Parallelism 1 ran %d steps at once", peak.Load())
	}
}

func TestSolveFailureCancelsAndWraps(t *testing.T) {
	var runs atomic.Int32
	boom := errors.New("boom")
	slow := vtx("slow", &addOp{val: "slow", runs: &runs, delay: 10 * time.Second})
	bad := vtx("bad", &addOp{val: "bad", runs: &runs, fail: boom})
	top := vtx("top", &addOp{val: "top", runs: &runs}, slow, bad)
	start := time.Now()
	_, err := Solve(t.Context(), top, Options{Index: newMemIndex(), Parallelism: 4})
	if time.Since(start) > 5*time.Second {
		t.Errorf("failure did not cancel the slow step")
	}
	var se *StepError
	if !errors.As(err, &se) || se.Vertex != bad || !errors.Is(err, boom) {
		t.Fatalf("err = %v, want a StepError of vertex bad wrapping boom", err)
	}
	var idx = newMemIndex()
	if _, err := idx.LookupKey(t.Context(), "x"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatal(err)
	}
}

func TestSolveLargeGraph(t *testing.T) {
	var runs atomic.Int32
	var prev []*Vertex
	for i := range 1000 {
		v := vtx("n", &addOp{val: fmt.Sprint(i), runs: &runs}, prev...)
		if len(prev) >= 2 {
			prev = prev[1:]
		}
		prev = append(prev, v)
	}
	if _, err := Solve(t.Context(), prev[len(prev)-1], Options{Index: newMemIndex()}); err != nil {
		t.Fatal(err)
	}
	if runs.Load() != 1000 {
		t.Errorf("ran %d ops, want 1000", runs.Load())
	}
}

func TestSolveOutputEvents(t *testing.T) {
	var runs atomic.Int32
	var mu sync.Mutex
	var out strings.Builder
	v := vtx("a", &addOp{val: "a", runs: &runs})
	_, err := Solve(t.Context(), v, Options{Index: newMemIndex(), Events: func(e Event) {
		if e.Kind == EventOutput {
			mu.Lock()
			out.Write(e.Data)
			mu.Unlock()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "running a\n" {
		t.Errorf("output = %q", out.String())
	}
}

func TestCacheKey(t *testing.T) {
	d := func(s string) digest.Digest { return digest.FromString(s) }
	base := CacheKey("run", d("op"), []digest.Digest{d("in1"), d("in2")})
	tests := []struct {
		name   string
		key    digest.Digest
		differ bool
	}{
		{"same inputs", CacheKey("run", d("op"), []digest.Digest{d("in1"), d("in2")}), false},
		{"other kind", CacheKey("file", d("op"), []digest.Digest{d("in1"), d("in2")}), true},
		{"other op", CacheKey("run", d("op2"), []digest.Digest{d("in1"), d("in2")}), true},
		{"input order", CacheKey("run", d("op"), []digest.Digest{d("in2"), d("in1")}), true},
		{"fewer inputs", CacheKey("run", d("op"), []digest.Digest{d("in1")}), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if (tc.key != base) != tc.differ {
				t.Errorf("key %s vs base %s: differ=%v, want %v", tc.key, base, tc.key != base, tc.differ)
			}
		})
	}
}

func BenchmarkCacheKey(b *testing.B) {
	in := []digest.Digest{digest.FromString("a"), digest.FromString("b")}
	op := digest.FromString("op")
	b.ReportAllocs()
	for b.Loop() {
		CacheKey("run", op, in)
	}
}

// TestSolveReportsFailureNotCancel: the cancellation a failure causes can
// reach the top through a sibling branch before the failure itself climbs
// its own (long) branch; Solve still reports the failure.
func TestSolveReportsFailureNotCancel(t *testing.T) {
	boom := errors.New("boom")
	for i := range 50 {
		var runs atomic.Int32
		failing := vtx("bad", &addOp{val: fmt.Sprintf("bad%d", i), runs: &runs, fail: boom})
		for j := range 30 {
			failing = vtx("mid", &addOp{val: fmt.Sprintf("mid%d-%d", i, j), runs: &runs}, failing)
		}
		slow := vtx("slow", &addOp{val: fmt.Sprintf("slow%d", i), runs: &runs, delay: 10 * time.Second})
		top := vtx("top", &addOp{val: fmt.Sprintf("top%d", i), runs: &runs}, slow, failing)
		_, err := Solve(t.Context(), top, Options{Index: newMemIndex(), Parallelism: 4})
		if !errors.Is(err, boom) {
			t.Fatalf("run %d: err = %v, want the failure (boom)", i, err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	var runs atomic.Int32
	slow := vtx("slow", &addOp{val: "slow-cancelled", runs: &runs, delay: 10 * time.Second})
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := Solve(ctx, slow, Options{Index: newMemIndex(), Parallelism: 4}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled solve: %v", err)
	}
}
