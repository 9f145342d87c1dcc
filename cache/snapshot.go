package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache/layer"
)

// snapshotPath is the directory of the snapshot of a chain ID (already
// validated: chain IDs are computed from checked diff IDs).
func (s *Store) snapshotPath(chainID digest.Digest) string {
	return filepath.Join(s.root, snapshotsDir, chainID.Encoded())
}

// Snapshot makes sure every prefix of chain is unpacked and returns the
// layer directories, bottom first, for use as overlay lower dirs (overlayfs
// wants them top first in its lowerdir option).
//
// The directory of prefix i is snapshots/<ChainIDOf(prefix i)> and holds
// the content of layer i alone, in overlayfs format. A missing one is
// unpacked from its layer blob into a temp dir, verifying the blob digest
// and the diff ID while streaming, and renamed into place; a corrupt blob
// fails with ErrCorrupt and leaves nothing behind. Goroutines and processes
// asking for the same chain at the same time all succeed.
//
// The returned directories are shared and must not be modified. They may be
// removed by a Prune of this Store unless they are reachable from a cache
// key or image, or held by an Active or a Lease.
func (s *Store) Snapshot(ctx context.Context, chain Chain) ([]string, error) {
	if err := checkChain(chain); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", chain, err)
	}
	done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	return s.snapshot(ctx, chain)
}

func (s *Store) snapshot(ctx context.Context, chain Chain) ([]string, error) {
	ids := chain.DiffIDs()
	dirs := make([]string, len(chain))
	for i, l := range chain {
		id := ChainIDOf(ids[:i+1])
		dir := s.snapshotPath(id)
		if err := s.ensureSnapshot(ctx, id, l, dir); err != nil {
			return nil, fmt.Errorf("unpack layer %d of %d (%s): %w", i+1, len(chain), short(l.DiffID), err)
		}
		dirs[i] = dir
	}
	return dirs, nil
}

// flight is one run of a piece of work (an unpack, a blob write) in
// progress, shared by the goroutines of a Store that want the same result.
type flight struct {
	done chan struct{}
	err  error
}

// shareFlight runs fn once for key among the Store's goroutines: a caller
// that finds a run in progress waits for it and returns its error, unless
// again says that error is no answer for this caller, which then tries for
// itself.
func (s *Store) shareFlight(ctx context.Context, flights map[digest.Digest]*flight, key digest.Digest, again func(error) bool, fn func() error) error {
	for {
		s.mu.Lock()
		f, ok := flights[key]
		if !ok {
			f = &flight{done: make(chan struct{})}
			flights[key] = f
		}
		s.mu.Unlock()
		if !ok {
			f.err = fn()
			s.mu.Lock()
			delete(flights, key)
			s.mu.Unlock()
			close(f.done)
			return f.err
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if f.err == nil || !again(f.err) {
			return f.err
		}
	}
}

// ensureSnapshot unpacks l into dir unless it is there already.
func (s *Store) ensureSnapshot(ctx context.Context, id digest.Digest, l Layer, dir string) error {
	if exists(dir) {
		return nil
	}
	// The other caller failed, maybe only because its ctx ended: try for
	// ourselves.
	tryAgain := func(error) bool { return true }
	return s.shareFlight(ctx, s.inflight, id, tryAgain, func() error { return s.unpackSnapshot(ctx, l, dir) })
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// unpackSnapshot unpacks the blob of l into a temp dir and renames it to
// dir. Another process may win the rename; its copy is then kept.
func (s *Store) unpackSnapshot(ctx context.Context, l Layer, dir string) error {
	if exists(dir) {
		return nil
	}
	tmp, err := s.newTempDir("snapshot-")
	if err != nil {
		return err
	}
	defer removeAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := s.unpackBlob(ctx, l, tmp); err != nil {
		return err
	}
	if s.opts.Durable {
		if err := syncFS(tmp); err != nil {
			return err
		}
	}
	if err := renameNoReplace(tmp, dir); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil // someone else unpacked it first
		}
		return err
	}
	if !s.opts.Durable {
		return nil
	}
	return syncDir(filepath.Dir(dir))
}

// unpackBlob streams the blob of l through the decompressor into
// layer.Unpack, verifying the blob digest and the diff ID on the way.
func (s *Store) unpackBlob(ctx context.Context, l Layer, dir string) error {
	rc, err := s.openBlob(ctx, l.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	dr, err := layer.Decompress(rc)
	if err != nil {
		return blobError(rc, fmt.Errorf("decompress blob %s: %w", short(l.Digest), err))
	}
	defer dr.Close()
	dh := sha256.New()
	tr := io.TeeReader(dr, dh)
	if err := layer.Unpack(ctx, tr, dir, layer.UnpackOptions{Overlay: true}); err != nil {
		return blobError(rc, err)
	}
	// The tar reader stops at the end-of-archive marker: hash the rest of
	// the tar (padding) and read the blob to EOF so both get verified.
	buf := make([]byte, copyBufferSize)
	if _, err := io.CopyBuffer(io.Discard, tr, buf); err != nil {
		return blobError(rc, fmt.Errorf("decompress blob %s: %w", short(l.Digest), err))
	}
	if _, err := io.CopyBuffer(io.Discard, rc, buf); err != nil {
		return err
	}
	if got := digest.NewDigest(digest.SHA256, dh); got != l.DiffID {
		return fmt.Errorf("blob %s unpacks to a tar with diff ID %s instead of %s: %w",
			short(l.Digest), short(got), short(l.DiffID), ErrCorrupt)
	}
	return nil
}

// blobError reports a corrupt blob rather than the decompression or tar
// error it caused: it reads the rest of rc, whose verifier says whether the
// blob matches its digest.
func blobError(rc io.Reader, err error) error {
	if _, rerr := io.Copy(io.Discard, rc); errors.Is(rerr, ErrCorrupt) {
		return rerr
	}
	return err
}
