package cache

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/opencontainers/go-digest"
)

// Errors callers check with errors.Is.
var (
	// ErrNotFound: no such blob, layer, cache key or image name.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: stored bytes no longer match their digest.
	ErrCorrupt = errors.New("content does not match its digest")
)

// Options configures Open.
type Options struct {
	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger
}

// Store is an open store root. One Store per process; several processes may
// share a root (a shared flock is held while open; Prune takes it
// exclusively).
type Store struct {
	root string
	opts Options
}

// Open opens (creating if needed) the store at root, takes the shared lock
// and removes leftovers of interrupted processes (temp files and dirs whose
// owner is gone).
func Open(ctx context.Context, root string, opts Options) (*Store, error) {
	return nil, errors.New("cache.Open: not implemented")
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

// Close releases the lock.
func (s *Store) Close() error { return nil }

// WriteBlob stores r as a blob; when expected is not empty the bytes must
// match it or nothing is stored. Returns digest and size.
func (s *Store) WriteBlob(ctx context.Context, r io.Reader, expected digest.Digest) (digest.Digest, int64, error) {
	return "", 0, errors.New("not implemented")
}

// OpenBlob opens a stored blob. Reading it to EOF verifies the digest and
// returns an error wrapping ErrCorrupt on mismatch.
func (s *Store) OpenBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	return nil, errors.New("not implemented")
}

// ReadBlob reads a whole (small) blob, verified.
func (s *Store) ReadBlob(ctx context.Context, d digest.Digest) ([]byte, error) {
	return nil, errors.New("not implemented")
}

// StatBlob returns the size of a stored blob or ErrNotFound.
func (s *Store) StatBlob(ctx context.Context, d digest.Digest) (int64, error) {
	return 0, errors.New("not implemented")
}

// ImportLayer stores a layer blob read from r (uncompressed tar, gzip or zstd
// as mediaType says; detected when mediaType is ""), verifying expected
// when not empty, computes its DiffID in the same pass and records it.
func (s *Store) ImportLayer(ctx context.Context, r io.Reader, mediaType string, expected digest.Digest) (Layer, error) {
	return Layer{}, errors.New("not implemented")
}

// Snapshot makes sure every prefix of chain is unpacked and returns the
// layer directories, bottom first, for use as overlay lower dirs.
func (s *Store) Snapshot(ctx context.Context, chain Chain) ([]string, error) {
	return nil, errors.New("not implemented")
}

// Active is a writable layer on top of a chain, ready to be mounted as an
// overlay: LowerDirs (bottom first), UpperDir, WorkDir. It must end with
// Commit or Discard.
type Active struct {
	Parent    Chain
	LowerDirs []string
	UpperDir  string
	WorkDir   string
}

// Prepare creates an Active layer on top of chain.
func (s *Store) Prepare(ctx context.Context, chain Chain) (*Active, error) {
	return nil, errors.New("not implemented")
}

// Commit turns the upper dir into a layer (deterministic tar, compressed
// blob, diff ID), moves it into place as the snapshot of the new chain and
// returns that chain. An upper dir with no changes returns Parent unchanged.
// The Active is finished afterwards.
func (a *Active) Commit(ctx context.Context) (Chain, error) {
	return nil, errors.New("not implemented")
}

// Discard removes the upper and work dirs.
func (a *Active) Discard() error { return nil }

// LookupKey returns the chain recorded for a cache key; ErrNotFound when
// there is none or when a layer it needs is gone.
func (s *Store) LookupKey(ctx context.Context, key digest.Digest) (Chain, error) {
	return nil, errors.New("not implemented")
}

// RecordKey records the result of a cache key.
func (s *Store) RecordKey(ctx context.Context, key digest.Digest, chain Chain) error {
	return errors.New("not implemented")
}

// Tag points name (a normalized reference such as "docker.io/library/app:1")
// at an image manifest blob.
func (s *Store) Tag(ctx context.Context, name string, manifest digest.Digest) error {
	return errors.New("not implemented")
}

// Resolve returns the manifest digest of name, or ErrNotFound.
func (s *Store) Resolve(ctx context.Context, name string) (digest.Digest, error) {
	return "", errors.New("not implemented")
}

// Untag removes name.
func (s *Store) Untag(ctx context.Context, name string) error {
	return errors.New("not implemented")
}

// Images lists every name and its manifest digest.
func (s *Store) Images(ctx context.Context) (map[string]digest.Digest, error) {
	return nil, errors.New("not implemented")
}
