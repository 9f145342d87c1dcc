package cache

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// PruneOptions says which cache keys Prune drops before it removes what
// nothing references any more.
type PruneOptions struct {
	// All drops every cache key and every RUN --mount=type=cache
	// directory. Tagged images always stay.
	All bool
	// KeepStorage, when All is false and it is positive, drops cache keys,
	// least recently used first, until the blobs and snapshots still
	// referenced take at most this many bytes (tagged images count but
	// are never dropped). With All false and KeepStorage 0, only keys whose
	// layers are gone are dropped.
	KeepStorage int64
}

// PruneReport says what Prune removed.
type PruneReport struct {
	RemovedKeys      int
	RemovedBlobs     int
	RemovedSnapshots int
	// RemovedCacheMounts counts the RUN --mount=type=cache directories
	// removed (their bytes are not in Reclaimed).
	RemovedCacheMounts int
	// Reclaimed is the size of the removed blobs and snapshots, in bytes.
	Reclaimed int64
}

// Usage is the disk usage of a store.
type Usage struct {
	// Blobs and Snapshots are sizes in bytes (file content; hard links
	// within a snapshot count once).
	Blobs     int64
	Snapshots int64
	// BlobCount and SnapshotCount count the entries.
	BlobCount     int
	SnapshotCount int
	// Keys and Images count the cache keys and image names.
	Keys   int
	Images int
	// Reclaimable is what a Prune with default options would free now:
	// the bytes no cache key, image, Active or Lease references.
	Reclaimable int64
}

// Prune drops cache keys as opts says, then removes every blob and
// snapshot not reachable from the remaining keys, the tagged images (their
// manifests, configs, layers and the snapshots of their diff ID chains) or
// this Store's Actives and Leases.
//
// Prune needs the store to itself: it waits, until ctx is done, for other
// processes to close the store (and for this Store's running operations to
// end) and holds the root lock exclusively while it runs. If this Store has
// no Active or Lease open, it gives up its shared lock while waiting, so two
// processes pruning at once do not block each other forever.
func (s *Store) Prune(ctx context.Context, opts PruneOptions) (PruneReport, error) {
	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	s.gc.Lock()
	defer s.gc.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return PruneReport{}, fmt.Errorf("prune: store %s is closed", s.root)
	}
	if err := s.lockForPrune(ctx); err != nil {
		return PruneReport{}, fmt.Errorf("prune: wait for other kiln processes using %s to finish: %w", s.root, err)
	}
	defer s.unlockAfterPrune()
	// Nothing else runs now: finish the trash in place.
	if entries, err := os.ReadDir(filepath.Join(s.root, trashDir)); err == nil {
		for _, e := range entries {
			if err := removeAll(filepath.Join(s.root, trashDir, e.Name())); err != nil {
				return PruneReport{}, fmt.Errorf("prune: empty trash: %w", err)
			}
		}
	}
	s.pruneFileCache()
	rep, err := s.prune(ctx, opts)
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	if opts.All {
		if rep.RemovedCacheMounts, err = s.removeCacheMounts(); err != nil {
			return rep, fmt.Errorf("prune: remove cache mounts: %w", err)
		}
	}
	return rep, nil
}

// lockForPrune converts the Store's shared root lock to an exclusive one.
func (s *Store) lockForPrune(ctx context.Context) error {
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	for {
		err := flockTry(s.lock, lockExclusive)
		if err == nil {
			return nil
		}
		// The failed conversion dropped our shared lock.
		if !errors.Is(err, errLocked) {
			s.unlockAfterPrune()
			return err
		}
		s.mu.Lock()
		pinned := len(s.pins) > 0
		s.mu.Unlock()
		if pinned {
			// Keep our Actives and Leases safe from other pruners.
			_ = flockTry(s.lock, lockShared)
		}
		select {
		case <-ctx.Done():
			s.unlockAfterPrune()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// unlockAfterPrune goes back to the shared lock, waiting for a Prune of
// another process if one slipped in.
func (s *Store) unlockAfterPrune() {
	if err := flockWait(context.Background(), s.lock, lockShared); err != nil {
		s.log.Debug("cannot retake the shared store lock", "err", err)
	}
}

// keyEntry is one cache key read from the index.
type keyEntry struct {
	key digest.Digest
	rec keyRecord
}

// inventory is what the store holds, read at the start of Prune.
type inventory struct {
	blobs     map[digest.Digest]int64 // blob files: digest → size
	snapshots map[digest.Digest]bool  // chain ID → present
	// lazy holds every lazy record (see lazy.go), usable or not: blob
	// digest → chain ID of its snapshot ("" for a damaged record).
	lazy   map[digest.Digest]digest.Digest
	keys   []keyEntry
	images map[string]digest.Digest
	pins   []Chain
}

// lazyOnly says whether blob d is stored only as a lazy blob: no file, and
// a lazy record whose snapshot exists.
func (inv *inventory) lazyOnly(d digest.Digest) bool {
	if _, ok := inv.blobs[d]; ok {
		return false
	}
	snap, ok := inv.lazy[d]
	return ok && inv.snapshots[snap]
}

// hasBlob says whether blob d is stored, as a file or a lazy blob.
func (inv *inventory) hasBlob(d digest.Digest) bool {
	_, ok := inv.blobs[d]
	return ok || inv.lazyOnly(d)
}

func (s *Store) readInventory(ctx context.Context) (*inventory, error) {
	inv := &inventory{
		blobs:     make(map[digest.Digest]int64),
		snapshots: make(map[digest.Digest]bool),
		lazy:      make(map[digest.Digest]digest.Digest),
		images:    make(map[string]digest.Digest),
	}
	entries, err := os.ReadDir(filepath.Join(s.root, blobsDir))
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		d := digest.Digest("sha256:" + e.Name())
		if checkDigest(d) != nil {
			continue // not ours
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		inv.blobs[d] = fi.Size()
	}
	entries, err = os.ReadDir(filepath.Join(s.root, snapshotsDir))
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if d := digest.Digest("sha256:" + e.Name()); checkDigest(d) == nil {
			inv.snapshots[d] = true
		}
	}
	err = s.view(ctx, func(tx *bolt.Tx) error {
		keys, err := bucket(tx, bucketKeys)
		if err != nil {
			return err
		}
		err = keys.ForEach(func(k, v []byte) error {
			var rec keyRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				rec = keyRecord{Chain: Chain{{}}} // unusable: dropped below
			}
			inv.keys = append(inv.keys, keyEntry{key: digest.Digest(k), rec: rec})
			return nil
		})
		if err != nil {
			return err
		}
		lazy, err := bucket(tx, bucketLazy)
		if err != nil {
			return err
		}
		err = lazy.ForEach(func(k, v []byte) error {
			rec, _ := decodeLazy(v) // a damaged one has no snapshot: dropped
			inv.lazy[digest.Digest(k)] = rec.Snapshot
			return nil
		})
		if err != nil {
			return err
		}
		images, err := bucket(tx, bucketImages)
		if err != nil {
			return err
		}
		return images.ForEach(func(k, v []byte) error {
			inv.images[string(k)] = digest.Digest(v)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	for _, p := range s.pins {
		inv.pins = append(inv.pins, p.chain)
	}
	s.mu.Unlock()
	return inv, nil
}

// graph holds the references between nodes and the roots by origin.
type graph struct {
	refs       map[Node][]Node
	fixedRoots []Node // images, Actives, Leases
}

// addChain adds the edges of chain's snapshots (each to its layer blob and
// to the snapshot below) and returns the node of the top snapshot.
func (g *graph) addChain(diffIDs, blobs []digest.Digest) Node {
	var below Node
	for i := range diffIDs {
		n := Node{NodeSnapshot, ChainIDOf(diffIDs[:i+1])}
		var out []Node
		if i < len(blobs) && blobs[i] != "" {
			out = append(out, Node{NodeBlob, blobs[i]})
		}
		if i > 0 {
			out = append(out, below)
		}
		g.refs[n] = appendNew(g.refs[n], out...)
		below = n
	}
	return below
}

// addLazy adds an edge from each lazy blob not yet written as a file to its
// snapshot: the blob is the layer.Diff of that directory, which must stay as
// long as the blob does. A blob file, once written, stands alone.
func (g *graph) addLazy(inv *inventory) {
	for d, snap := range inv.lazy {
		if inv.lazyOnly(d) {
			n := Node{NodeBlob, d}
			g.refs[n] = appendNew(g.refs[n], Node{NodeSnapshot, snap})
		}
	}
}

func appendNew(list []Node, add ...Node) []Node {
	for _, n := range add {
		if !slices.Contains(list, n) {
			list = append(list, n)
		}
	}
	return list
}

func (g *graph) chainRoot(c Chain) []Node {
	if len(c) == 0 {
		return nil
	}
	blobs := make([]digest.Digest, len(c))
	for i, l := range c {
		blobs[i] = l.Digest
	}
	return []Node{g.addChain(c.DiffIDs(), blobs)}
}

// imageJSON is the part of an image manifest or index Prune reads.
type imageJSON struct {
	Config *struct {
		Digest digest.Digest `json:"digest"`
	} `json:"config"`
	Layers []struct {
		Digest digest.Digest `json:"digest"`
	} `json:"layers"`
	Manifests []struct {
		Digest digest.Digest `json:"digest"`
	} `json:"manifests"`
}

// configJSON is the part of an image config Prune reads.
type configJSON struct {
	RootFS struct {
		DiffIDs []digest.Digest `json:"diff_ids"`
	} `json:"rootfs"`
}

// addImage adds the edges from a manifest (or index) blob to everything it
// needs. Unreadable blobs keep only themselves.
func (s *Store) addImage(ctx context.Context, g *graph, m digest.Digest, seen map[digest.Digest]bool) {
	if seen[m] || checkDigest(m) != nil {
		return
	}
	seen[m] = true
	node := Node{NodeBlob, m}
	raw, err := s.readFile(ctx, m)
	if err != nil {
		s.log.Debug("prune: cannot read manifest", "manifest", m, "err", err)
		return
	}
	var man imageJSON
	if err := json.Unmarshal(raw, &man); err != nil {
		s.log.Debug("prune: cannot parse manifest", "manifest", m, "err", err)
		return
	}
	for _, c := range man.Manifests {
		if checkDigest(c.Digest) == nil {
			g.refs[node] = appendNew(g.refs[node], Node{NodeBlob, c.Digest})
			s.addImage(ctx, g, c.Digest, seen)
		}
	}
	blobs := make([]digest.Digest, len(man.Layers))
	for i, l := range man.Layers {
		if checkDigest(l.Digest) == nil {
			blobs[i] = l.Digest
			g.refs[node] = appendNew(g.refs[node], Node{NodeBlob, l.Digest})
		}
	}
	if man.Config == nil || checkDigest(man.Config.Digest) != nil {
		return
	}
	g.refs[node] = appendNew(g.refs[node], Node{NodeBlob, man.Config.Digest})
	raw, err = s.readFile(ctx, man.Config.Digest)
	if err != nil {
		s.log.Debug("prune: cannot read image config", "config", man.Config.Digest, "err", err)
		return
	}
	var cfg configJSON
	if err := json.Unmarshal(raw, &cfg); err != nil {
		s.log.Debug("prune: cannot parse image config", "config", man.Config.Digest, "err", err)
		return
	}
	ids := cfg.RootFS.DiffIDs
	for i, id := range ids {
		if checkDigest(id) != nil {
			ids = ids[:i]
			break
		}
	}
	if len(ids) > 0 {
		g.refs[node] = appendNew(g.refs[node], g.addChain(ids, blobs))
	}
}

// sizer measures nodes, caching snapshot sizes (a directory walk).
type sizer struct {
	inv   *inventory
	root  string
	cache map[digest.Digest]int64
}

func (z *sizer) size(n Node) int64 {
	switch n.Kind {
	case NodeBlob:
		return z.inv.blobs[n.Digest]
	case NodeSnapshot:
		if !z.inv.snapshots[n.Digest] {
			return 0
		}
		if v, ok := z.cache[n.Digest]; ok {
			return v
		}
		v := dirSize(filepath.Join(z.root, snapshotsDir, n.Digest.Encoded()))
		z.cache[n.Digest] = v
		return v
	}
	return 0
}

func (z *sizer) total(nodes map[Node]bool) int64 {
	var sum int64
	for n := range nodes {
		sum += z.size(n)
	}
	return sum
}

// dirSize adds up the sizes of the regular files under dir, counting hard
// links once.
func dirSize(dir string) int64 {
	var sum int64
	seen := make(map[uint64]bool)
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && uint64(st.Nlink) > 1 {
			if seen[uint64(st.Ino)] {
				return nil
			}
			seen[uint64(st.Ino)] = true
		}
		sum += fi.Size()
		return nil
	})
	return sum
}

// plan is a prune decision: which keys go and which nodes stay.
type plan struct {
	drop   []keyEntry
	marked map[Node]bool
}

// planPrune decides which keys to drop and marks what stays.
func (s *Store) planPrune(ctx context.Context, inv *inventory, opts PruneOptions, z *sizer) plan {
	g := &graph{refs: make(map[Node][]Node)}
	g.addLazy(inv)
	seen := make(map[digest.Digest]bool)
	for _, m := range inv.images {
		s.addImage(ctx, g, m, seen)
		g.fixedRoots = append(g.fixedRoots, Node{NodeBlob, m})
	}
	for _, c := range inv.pins {
		g.fixedRoots = append(g.fixedRoots, g.chainRoot(c)...)
	}
	var p plan
	var live []keyEntry
	for _, k := range inv.keys {
		if opts.All || !chainPresent(k.rec.Chain, inv) {
			p.drop = append(p.drop, k)
		} else {
			live = append(live, k)
		}
	}
	// Oldest first.
	slices.SortFunc(live, func(a, b keyEntry) int {
		return cmp.Or(cmp.Compare(a.rec.LastUsed, b.rec.LastUsed), cmp.Compare(a.key, b.key))
	})
	keyRoots := make([][]Node, len(live))
	for i, k := range live {
		keyRoots[i] = g.chainRoot(k.rec.Chain)
	}
	markFrom := func(first int) map[Node]bool {
		roots := slices.Clone(g.fixedRoots)
		for _, r := range keyRoots[first:] {
			roots = append(roots, r...)
		}
		return Mark(roots, g.refs)
	}
	first := 0
	if !opts.All && opts.KeepStorage > 0 {
		// Usage only shrinks as more keys go: find the fewest oldest
		// keys to drop.
		first = sortSearch(len(live), func(i int) bool {
			return z.total(markFrom(i)) <= opts.KeepStorage
		})
	}
	p.drop = append(p.drop, live[:first]...)
	p.marked = markFrom(first)
	return p
}

// sortSearch is sort.Search: the smallest i in [0, n] for which f is
// true, n when there is none.
func sortSearch(n int, f func(int) bool) int {
	lo, hi := 0, n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if !f(mid) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// chainPresent says whether every layer blob of c is stored (as a file or
// a lazy blob).
func chainPresent(c Chain, inv *inventory) bool {
	for _, l := range c {
		if !inv.hasBlob(l.Digest) {
			return false
		}
	}
	return true
}

func (s *Store) prune(ctx context.Context, opts PruneOptions) (PruneReport, error) {
	var rep PruneReport
	inv, err := s.readInventory(ctx)
	if err != nil {
		return rep, err
	}
	z := &sizer{inv: inv, root: s.root, cache: make(map[digest.Digest]int64)}
	p := s.planPrune(ctx, inv, opts, z)
	if err := ctx.Err(); err != nil {
		return rep, err
	}

	// Lazy blobs go with their snapshot (or are gone with it already),
	// unless written out as a file.
	removed := make(map[digest.Digest]bool)
	var dropLazy []digest.Digest
	for d, snap := range inv.lazy {
		if inv.snapshots[snap] && p.marked[Node{NodeSnapshot, snap}] {
			continue
		}
		dropLazy = append(dropLazy, d)
		if inv.lazyOnly(d) {
			rep.RemovedBlobs++
		}
		if _, ok := inv.blobs[d]; !ok {
			removed[d] = true
		}
	}

	// Keys and lazy records first: a crash after this point leaves only
	// unreferenced content, which the next Prune removes.
	if len(p.drop)+len(dropLazy) > 0 {
		err := s.update(ctx, func(tx *bolt.Tx) error {
			b, err := bucket(tx, bucketKeys)
			if err != nil {
				return err
			}
			for _, k := range p.drop {
				if err := b.Delete([]byte(k.key)); err != nil {
					return err
				}
			}
			lb, err := bucket(tx, bucketLazy)
			if err != nil {
				return err
			}
			for _, d := range dropLazy {
				if err := lb.Delete([]byte(d)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("drop cache keys and lazy blobs: %w", err)
		}
		rep.RemovedKeys = len(p.drop)
	}

	// Snapshots before blobs, so a snapshot never outlives the blob it
	// could be rebuilt from.
	for id := range inv.snapshots {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		n := Node{NodeSnapshot, id}
		if p.marked[n] {
			continue
		}
		size := z.size(n)
		if err := removeAll(filepath.Join(s.root, snapshotsDir, id.Encoded())); err != nil {
			return rep, fmt.Errorf("remove snapshot %s: %w", short(id), err)
		}
		rep.RemovedSnapshots++
		rep.Reclaimed += size
	}
	for d, size := range inv.blobs {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if p.marked[Node{NodeBlob, d}] {
			continue
		}
		if err := os.Remove(filepath.Join(s.root, blobsDir, d.Encoded())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return rep, fmt.Errorf("remove blob %s: %w", short(d), err)
		}
		removed[d] = true
		rep.RemovedBlobs++
		rep.Reclaimed += size
	}
	if err := syncDir(filepath.Join(s.root, blobsDir)); err != nil {
		return rep, err
	}
	if len(removed) > 0 {
		if err := s.forgetLayers(ctx, removed); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// forgetLayers deletes the layer records whose blob was removed.
func (s *Store) forgetLayers(ctx context.Context, removed map[digest.Digest]bool) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketLayers)
		if err != nil {
			return err
		}
		var gone [][]byte
		err = b.ForEach(func(k, v []byte) error {
			var l Layer
			if json.Unmarshal(v, &l) != nil || removed[l.Digest] {
				gone = append(gone, slices.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range gone {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget removed layers: %w", err)
	}
	return nil
}

// DiskUsage measures the store: blob and snapshot sizes (a walk of every
// snapshot), counts of keys and images, and what a Prune with default
// options would reclaim.
func (s *Store) DiskUsage(ctx context.Context) (Usage, error) {
	done, err := s.begin()
	if err != nil {
		return Usage{}, err
	}
	defer done()
	inv, err := s.readInventory(ctx)
	if err != nil {
		return Usage{}, fmt.Errorf("disk usage: %w", err)
	}
	z := &sizer{inv: inv, root: s.root, cache: make(map[digest.Digest]int64)}
	u := Usage{
		BlobCount:     len(inv.blobs),
		SnapshotCount: len(inv.snapshots),
		Keys:          len(inv.keys),
		Images:        len(inv.images),
	}
	for _, size := range inv.blobs {
		u.Blobs += size
	}
	for id := range inv.snapshots {
		if err := ctx.Err(); err != nil {
			return Usage{}, err
		}
		u.Snapshots += z.size(Node{NodeSnapshot, id})
	}
	p := s.planPrune(ctx, inv, PruneOptions{}, z)
	u.Reclaimable = u.Blobs + u.Snapshots - z.total(p.marked)
	return u, nil
}

// pruneFileCache removes cached context files that no snapshot links to
// (link count 1).
func (s *Store) pruneFileCache() {
	_ = filepath.WalkDir(s.FileCacheDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) == nil && st.Nlink == 1 {
			_ = os.Remove(p)
		}
		return nil
	})
}
