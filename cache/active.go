package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache/layer"
)

// Active is a writable layer on top of a chain, ready to be mounted as an
// overlay: LowerDirs (bottom first), UpperDir, WorkDir. It must end with
// Commit or Discard.
//
// The upper and work dirs live in the Store's temp dir, so they vanish with
// Store.Close or, after a crash, with the next Open. While the Active is
// open its parent chain is safe from Prune. The overlay must be unmounted
// before Commit. An Active is not safe for concurrent use.
type Active struct {
	Parent    Chain
	LowerDirs []string
	UpperDir  string
	WorkDir   string

	s       *Store
	dir     string // holds UpperDir and WorkDir
	release func() // unpins Parent
	done    bool
}

// Prepare creates an Active layer on top of chain, unpacking the chain
// first if needed (see Snapshot). The upper dir's root gets the owner and
// mode of the chain's top layer root (0755 root-owned for an empty chain),
// since overlayfs shows the upper dir's root as "/".
func (s *Store) Prepare(ctx context.Context, chain Chain) (*Active, error) {
	if err := checkChain(chain); err != nil {
		return nil, fmt.Errorf("prepare layer on %s: %w", chain, err)
	}
	done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	lowers, err := s.snapshot(ctx, chain)
	if err != nil {
		return nil, fmt.Errorf("prepare layer on %s: %w", chain, err)
	}
	dir, err := s.newTempDir("active-")
	if err != nil {
		return nil, fmt.Errorf("prepare layer on %s: %w", chain, err)
	}
	a := &Active{
		Parent:    append(Chain(nil), chain...),
		LowerDirs: lowers,
		UpperDir:  filepath.Join(dir, "upper"),
		WorkDir:   filepath.Join(dir, "work"),
		s:         s,
		dir:       dir,
	}
	if err := a.makeDirs(); err != nil {
		_ = removeAll(dir)
		return nil, fmt.Errorf("prepare layer on %s: %w", chain, err)
	}
	a.release = s.pin(chain)
	return a, nil
}

func (a *Active) makeDirs() error {
	if err := os.Mkdir(a.UpperDir, 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(a.WorkDir, 0o700); err != nil {
		return err
	}
	if len(a.LowerDirs) == 0 {
		return nil
	}
	fi, err := os.Stat(a.LowerDirs[len(a.LowerDirs)-1])
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err := os.Lchown(a.UpperDir, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, os.ErrPermission) {
			return err
		}
	}
	return os.Chmod(a.UpperDir, fi.Mode().Perm()|fi.Mode()&(os.ModeSticky|os.ModeSetgid|os.ModeSetuid))
}

// Commit turns the upper dir into a layer, moves it into place as the
// snapshot of the new chain and returns that chain. An upper dir with no
// changes returns Parent unchanged. The Active is finished afterwards,
// whether Commit succeeds or not.
//
// The layer is stored lazily and uncompressed: Commit streams the tar made
// by layer.Diff through sha256 only, so the new layer has MediaTypeLayerTar,
// Digest == DiffID and the tar's Size, and no blob file is written. Its
// blob is the layer.Diff of the new snapshot directory, which gives the
// same bytes every time (Diff is deterministic and snapshots are never
// modified): StatBlob reports it, and OpenBlob writes it into blobs/ on
// first use. Prune keeps the snapshot while the blob is reachable and not
// yet written, since it is the only copy.
//
// When the snapshot of the new chain exists already (the same change on the
// same parent, committed by another build or unpacked from a pulled
// layer), it is kept; if it is not known to be the source of the layer's
// blob, the blob is written now from the upper dir.
//
// The new chain is not a GC root until it is recorded (RecordKey) or
// tagged; hold a Lease on it if a Prune of this Store may run in between.
func (a *Active) Commit(ctx context.Context) (Chain, error) {
	if a.s == nil || a.done {
		return nil, errors.New("commit layer: the layer was already committed or discarded")
	}
	defer a.finish()
	s := a.s
	done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()

	dh := newAsyncHasher()
	n, err := layer.Diff(ctx, a.UpperDir, dh)
	d, size := dh.Digest()
	if err != nil {
		return nil, fmt.Errorf("commit layer: %w", err)
	}
	if n == 0 {
		return append(Chain(nil), a.Parent...), nil
	}
	l := Layer{DiffID: d, Digest: d, Size: size, MediaType: MediaTypeLayerTar}
	chain := a.Parent.Append(l)
	id := chain.ChainID()
	dst := s.snapshotPath(id)
	if s.opts.Durable {
		if err := syncFS(a.UpperDir); err != nil {
			return nil, fmt.Errorf("commit layer %s: %w", short(d), err)
		}
	}
	lazy := id // the snapshot the blob comes from; "" when it is a file
	switch err := renameNoReplace(a.UpperDir, dst); {
	case errors.Is(err, os.ErrExist):
		// The same layer on the same parent exists already; keep it.
		lazy = ""
		if err := s.ensureCommittedBlob(ctx, a.UpperDir, d); err != nil {
			return nil, fmt.Errorf("commit layer %s: %w", short(d), err)
		}
	case err != nil:
		return nil, fmt.Errorf("commit layer %s: %w", short(d), err)
	default:
		if s.opts.Durable {
			if err := syncDir(filepath.Dir(dst)); err != nil {
				return nil, fmt.Errorf("commit layer %s: %w", short(d), err)
			}
		}
	}
	// Recorded only once the snapshot is in place: a crash in between
	// leaves an unreferenced snapshot, which Prune removes.
	if err := s.putLayerLazy(ctx, l, lazy); err != nil {
		return nil, fmt.Errorf("commit layer %s: record layer: %w", short(d), err)
	}
	return chain, nil
}

// ensureCommittedBlob makes sure blob d is stored, as a file or a lazy blob,
// writing it from upper (whose layer.Diff it is) if not. It is for a Commit
// whose snapshot existed already: that directory may have been unpacked from
// another blob with the same diff ID, whose Diff need not give d again, so it
// cannot become the source of d.
func (s *Store) ensureCommittedBlob(ctx context.Context, upper string, d digest.Digest) error {
	if _, err := s.StatBlob(ctx, d); err == nil {
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	if err := s.writeDiff(ctx, upper, d); err != nil {
		return fmt.Errorf("write blob: %w", err)
	}
	return nil
}

// Discard removes the upper and work dirs. Discarding a finished Active
// does nothing.
func (a *Active) Discard() error {
	if a.s == nil || a.done {
		return nil
	}
	if err := a.finish(); err != nil {
		return fmt.Errorf("discard layer: %w", err)
	}
	return nil
}

func (a *Active) finish() error {
	a.done = true
	if a.release != nil {
		a.release()
	}
	// After a commit only the (empty) work dir is left, and a discarded
	// layer is often a few files: delete those here, since spawning a
	// background deletion costs more. Big trees go to the trash.
	if fewEntries(a.UpperDir, 64) {
		return removeAll(a.dir)
	}
	return a.s.discardDir(a.dir)
}

// fewEntries reports whether the tree at dir holds at most limit entries
// (or cannot be read, which removeAll then reports).
func fewEntries(dir string, limit int) bool {
	budget := limit
	var walk func(string) bool
	walk = func(d string) bool {
		entries, err := os.ReadDir(d)
		if err != nil {
			return true
		}
		budget -= len(entries)
		if budget < 0 {
			return false
		}
		for _, e := range entries {
			if e.IsDir() && !walk(filepath.Join(d, e.Name())) {
				return false
			}
		}
		return true
	}
	return walk(dir)
}

// pin is a chain held by Actives and Leases.
type pin struct {
	chain Chain
	n     int
}

// pin keeps chain from Prune until the returned function is called.
func (s *Store) pin(chain Chain) func() {
	if len(chain) == 0 {
		return func() {}
	}
	id := chain.ChainID()
	s.mu.Lock()
	p := s.pins[id]
	if p == nil {
		p = &pin{chain: append(Chain(nil), chain...)}
		s.pins[id] = p
	}
	p.n++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if p.n--; p.n == 0 {
				delete(s.pins, id)
			}
		})
	}
}

// Lease keeps chain (its blobs and snapshots) safe from Prune by this Store
// until release is called; releasing twice is harmless. Use it for results
// that are not yet recorded with RecordKey or tagged. Other processes
// cannot prune while this Store is open, so a Lease only matters within the
// process.
func (s *Store) Lease(chain Chain) (release func()) {
	return s.pin(chain)
}
