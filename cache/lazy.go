package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/kiln-build/kiln/cache/layer"
)

// Lazy blobs.
//
// Active.Commit does not write a blob: it hashes the layer.Diff of the upper
// dir (the diff ID), renames the upper dir into place as the snapshot of the
// new chain and records the layer as an uncompressed tar whose digest is its
// diff ID. The index (bucket "lazy") records that this blob's bytes are the
// layer.Diff of that snapshot directory. Diff is deterministic (sorted
// entries, only stable header fields) and nothing modifies a snapshot (it is
// only ever an overlay lower dir), so the bytes can be produced again
// whenever they are asked for.
//
// A lazy blob is present while its snapshot is: StatBlob reports the
// recorded size, and OpenBlob materializes it on first use (Diff into a temp
// file, verified against the digest, fsynced and renamed into blobs/ like
// WriteBlob), after which it is an ordinary blob file. Prune keeps the
// snapshot of a reachable lazy blob that is not materialized; dropping the
// snapshot drops the blob.
//
// The lazy record is written only after the upper dir was renamed into place,
// by the Store whose upper dir it was, so a record never names a snapshot
// that was unpacked from some other blob.

// lazyRecord is the value stored in bucketLazy under a blob digest.
type lazyRecord struct {
	// Snapshot is the chain ID of the snapshot whose layer.Diff is the blob.
	Snapshot digest.Digest `json:"snapshot"`
	// Size is the size of the blob (the tar) in bytes.
	Size int64 `json:"size"`
}

// decodeLazy parses a lazy record, rejecting one that could not name a
// snapshot directory.
func decodeLazy(raw []byte) (lazyRecord, bool) {
	var rec lazyRecord
	if json.Unmarshal(raw, &rec) != nil || checkDigest(rec.Snapshot) != nil || rec.Size <= 0 {
		return lazyRecord{}, false
	}
	return rec, true
}

// lazyBlobs returns the lazy records of those of ds whose snapshot exists:
// the lazy blobs among ds that can be materialized.
func (s *Store) lazyBlobs(ctx context.Context, ds ...digest.Digest) (map[digest.Digest]lazyRecord, error) {
	found := make(map[digest.Digest]lazyRecord)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketLazy)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if v := b.Get([]byte(d)); v != nil {
				if rec, ok := decodeLazy(v); ok {
					found[d] = rec
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for d, rec := range found {
		if !exists(s.snapshotPath(rec.Snapshot)) {
			delete(found, d)
		}
	}
	return found, nil
}

// lazyBlob returns the lazy record of d; an error wrapping ErrNotFound when d
// is not a lazy blob or its snapshot is gone.
func (s *Store) lazyBlob(ctx context.Context, d digest.Digest) (lazyRecord, error) {
	recs, err := s.lazyBlobs(ctx, d)
	if err != nil {
		return lazyRecord{}, fmt.Errorf("blob %s: %w", short(d), err)
	}
	rec, ok := recs[d]
	if !ok {
		return lazyRecord{}, missingBlob(d)
	}
	return rec, nil
}

// materialize writes the lazy blob d into blobs/. Goroutines of this Store
// asking for the same blob share one run; other processes may run their own,
// and whichever renames last leaves identical, verified bytes. The caller
// holds s.gc (begin or Prune). An error wraps ErrNotFound when d is not a
// lazy blob or its snapshot is gone, ErrCorrupt when the snapshot no longer
// gives the recorded digest.
func (s *Store) materialize(ctx context.Context, d digest.Digest) error {
	// A caller that gave up says nothing about ours.
	cancelled := func(err error) bool {
		return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	}
	return s.shareFlight(ctx, s.blobFlights, d, cancelled, func() error { return s.materializeOnce(ctx, d) })
}

func (s *Store) materializeOnce(ctx context.Context, d digest.Digest) error {
	if p, err := s.blobPath(d); err == nil && exists(p) {
		return nil // materialized meanwhile, maybe by another process
	}
	rec, err := s.lazyBlob(ctx, d)
	if err != nil {
		return err
	}
	s.log.Debug("writing the blob of a committed layer", "blob", d, "snapshot", rec.Snapshot, "size", rec.Size)
	dir := s.snapshotPath(rec.Snapshot)
	switch err := s.writeDiff(ctx, dir, d); {
	case err == nil:
		return nil
	case !exists(dir):
		// Pruned by another Store of this root while we read it (only
		// possible for an unreachable blob).
		return missingBlob(d)
	case errors.Is(err, ErrCorrupt):
		return fmt.Errorf("blob %s from snapshot %s: %w", short(d), short(rec.Snapshot), err)
	default:
		return fmt.Errorf("write blob %s from snapshot %s: %w", short(d), short(rec.Snapshot), err)
	}
}

// writeDiff stores the layer.Diff of dir as blob d, which its bytes must
// match (else the error wraps ErrCorrupt and nothing is stored).
func (s *Store) writeDiff(ctx context.Context, dir string, d digest.Digest) error {
	t, err := s.newIngest()
	if err != nil {
		return err
	}
	defer t.cleanup()
	// Diff buffers its output in large writes: no bufio needed.
	if _, err := layer.Diff(ctx, dir, t); err != nil {
		return err
	}
	if got := t.digest(); got != d {
		return fmt.Errorf("the directory now gives a layer tar with digest %s: %w", short(got), ErrCorrupt)
	}
	_, err = t.commit(d)
	return err
}
