package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

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
	// Now returns the current time, used for the last-use time of cache
	// keys (see Prune); nil means time.Now.
	Now func() time.Time
	// IndexTimeout bounds how long one index operation waits for another
	// process that holds index.db; 0 means two minutes.
	IndexTimeout time.Duration
	// Trash, when set, deletes a directory the store no longer needs
	// (the upper dir of a layer that turned out to exist already, a
	// discarded one) in the background, typically in a detached process,
	// so a build does not wait for tens of thousands of unlinks. The store
	// first moves the directory under <root>/trash, where a later Open or
	// Prune finishes what the background deletion did not. Nil deletes in
	// place.
	Trash func(dir string)
	// Durable makes the store survive a power cut: it flushes the
	// filesystem (syncfs) before a snapshot is renamed into place, fsyncs
	// blob files and the directories that get new snapshots and blobs,
	// and fsyncs every index transaction. Without it a crash of kiln
	// (kill -9, Ctrl-C) still leaves a consistent store, since every blob
	// and snapshot appears by an atomic rename after it is complete; only
	// a power cut could leave recent files unflushed (a blob then fails
	// its digest check with ErrCorrupt, and the index may lose recent
	// entries). On a busy disk each flush can cost milliseconds, once per
	// build step.
	Durable bool
}

// Names of the entries under a store root.
const (
	blobsDir     = "blobs/sha256"
	snapshotsDir = "snapshots"
	tmpDir       = "tmp"
	trashDir     = "trash"
	filesDir     = "files"
	indexFile    = "index.db"
	lockFile     = "lock"
	ownerFile    = "owner"
)

// staleAge is how old a temp dir without an owner file must be before Open
// removes it (a live process creates the owner file right after the dir).
const staleAge = time.Minute

// Store is an open store root. One Store per process; several processes may
// share a root (a shared flock is held while open; Prune takes it
// exclusively).
//
// On disk, under the root:
//
//	blobs/sha256/<hex>       read-only blob files (layers, configs, manifests)
//	snapshots/<chainID-hex>/ the top layer of each chain, unpacked in overlayfs format;
//	                         for a layer made by Active.Commit, also the source of
//	                         its blob until that is first read (see Active.Commit)
//	tmp/<pid>-<random>/      one per open Store: ingest files, snapshots being
//	                         unpacked, active upper and work dirs
//	index.db                 bbolt: cache keys, layers by diff ID, image names
//	lock                     flock: shared while a Store is open, exclusive in Prune
//
// tmp/ lives under the root so every rename into blobs/ or snapshots/ stays
// on one filesystem and is atomic. Each tmp/<pid>-<random>/ holds an "owner"
// file that its Store keeps flock'ed; Open removes the dirs whose owner lock
// it can take, that is, whose process died (even by kill -9).
//
// A Store is safe for concurrent use by several goroutines.
type Store struct {
	root string
	opts Options
	log  *slog.Logger

	lock  *os.File // root/lock, flock'ed shared (exclusive during Prune)
	owner *os.File // our tmp dir's owner file, flock'ed exclusive
	tmp   string   // our own temp dir under root/tmp

	// gc is held for reading by every operation that creates or relies on
	// stored content and for writing by Prune, so a Prune in this process
	// never sweeps something half-written.
	gc sync.RWMutex
	// pruneMu serializes Prune calls of this Store.
	pruneMu sync.Mutex
	// idx orders this Store's own access to index.db (bbolt's flock
	// handles other processes and other Stores).
	idx sync.RWMutex

	mu       sync.Mutex
	closed   bool
	pins     map[digest.Digest]*pin    // chains Prune must keep (Actives, Leases), by chain ID
	inflight map[digest.Digest]*flight // snapshots being unpacked, by chain ID
	// blobFlights are lazy blobs being materialized, by digest.
	blobFlights map[digest.Digest]*flight
}

// Open opens (creating if needed) the store at root, takes the shared lock
// and removes leftovers of interrupted processes (temp files and dirs whose
// owner is gone).
//
// Open waits while another process prunes the store, until ctx is done.
func Open(ctx context.Context, root string, opts Options) (*Store, error) {
	if root == "" {
		return nil, errors.New("open store: no root directory given")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", root, err)
	}
	s := &Store{
		root:     abs,
		opts:     opts,
		log:      opts.Logger,
		pins:     make(map[digest.Digest]*pin),
		inflight: make(map[digest.Digest]*flight),

		blobFlights: make(map[digest.Digest]*flight),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.open(ctx); err != nil {
		if s.tmp != "" {
			_ = removeAll(s.tmp)
		}
		s.release()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	return s, nil
}

func (s *Store) open(ctx context.Context) error {
	// The root holds unpacked images (setuid binaries included): keep it
	// private when we create it.
	if err := os.MkdirAll(s.root, 0o700); err != nil {
		return err
	}
	for _, d := range []string{blobsDir, snapshotsDir, tmpDir, trashDir} {
		if err := os.MkdirAll(filepath.Join(s.root, d), 0o700); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(filepath.Join(s.root, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	s.lock = f
	if err := flockWait(ctx, s.lock, lockShared); err != nil {
		return fmt.Errorf("wait for a prune by another kiln process: %w", err)
	}
	if err := s.makeTmp(); err != nil {
		return fmt.Errorf("create temp dir: %w", err)
	}
	if err := s.cleanTmp(ctx); err != nil {
		return fmt.Errorf("remove leftovers of interrupted builds: %w", err)
	}
	s.emptyTrash()
	if err := s.initIndex(ctx); err != nil {
		return err
	}
	return nil
}

// makeTmp creates tmp/<pid>-<random>/ with a locked owner file. The owner
// file gets its final name only once it is locked, so cleanTmp never takes
// a live Store's dir for a dead one.
func (s *Store) makeTmp() error {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	dir := filepath.Join(s.root, tmpDir, strconv.Itoa(os.Getpid())+"-"+hex.EncodeToString(b[:]))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	s.tmp = dir
	f, err := os.OpenFile(filepath.Join(dir, ownerFile+".new"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	s.owner = f
	if err := flockTry(f, lockExclusive); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, ownerFile))
}

// cleanTmp removes every other tmp/* entry whose owner is gone.
func (s *Store) cleanTmp(ctx context.Context) error {
	base := filepath.Join(s.root, tmpDir)
	entries, err := os.ReadDir(base)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(base, e.Name())
		if p == s.tmp {
			continue
		}
		if !e.IsDir() {
			// Only dirs are ever created here; anything else is debris.
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			continue
		}
		if err := s.cleanTmpDir(p); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) cleanTmpDir(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, ownerFile), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		// No owner yet: a Store being opened right now, or one killed
		// between creating its dir and its owner file.
		fi, err := os.Lstat(dir)
		if err != nil || time.Since(fi.ModTime()) < staleAge {
			return nil
		}
		s.log.Debug("removing abandoned temp dir", "dir", dir)
		return removeAll(dir)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := flockTry(f, lockExclusive); err != nil {
		if errors.Is(err, errLocked) {
			return nil // its Store is alive
		}
		return err
	}
	s.log.Debug("removing temp dir of a dead process", "dir", dir)
	return removeAll(dir)
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

// Close removes the Store's temp dir (including the dirs of Actives not yet
// committed or discarded) and releases its locks. Close is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	// Wait for running operations.
	s.gc.Lock()
	defer s.gc.Unlock()
	var err error
	if s.tmp != "" {
		if rerr := removeAll(s.tmp); rerr != nil {
			err = fmt.Errorf("close store %s: remove temp dir: %w", s.root, rerr)
		}
	}
	s.release()
	return err
}

// release closes the lock files (which drops their flocks).
func (s *Store) release() {
	if s.owner != nil {
		_ = s.owner.Close()
		s.owner = nil
	}
	if s.lock != nil {
		_ = s.lock.Close()
		s.lock = nil
	}
}

// begin starts an operation that must not overlap a Prune of this Store.
// The caller must call the returned function when done.
func (s *Store) begin() (func(), error) {
	s.gc.RLock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.gc.RUnlock()
		return nil, fmt.Errorf("store %s is closed", s.root)
	}
	return s.gc.RUnlock, nil
}

func (s *Store) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}

// newTempDir creates a fresh directory inside the Store's temp dir.
func (s *Store) newTempDir(prefix string) (string, error) {
	return os.MkdirTemp(s.tmp, prefix)
}

// FileCacheDir is where the COPY fast path keeps build-context files, one
// root-owned inode per (content, mode, mtime), hard-linked into layers. The
// store owns it only for pruning: Prune removes the files no layer links.
func (s *Store) FileCacheDir() string { return filepath.Join(s.root, filesDir) }

// discardDir gets rid of dir, a directory on the store's filesystem that
// nothing refers to any more, through Options.Trash when set.
func (s *Store) discardDir(dir string) error {
	if s.opts.Trash == nil {
		return removeAll(dir)
	}
	dst := filepath.Join(s.root, trashDir, filepath.Base(dir)+"-"+randomHex(6))
	if err := os.Rename(dir, dst); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return removeAll(dir)
	}
	s.opts.Trash(dst)
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return strconv.FormatInt(time.Now().UnixNano(), 16)
	}
	return hex.EncodeToString(b)
}

// emptyTrash hands leftovers in <root>/trash to Options.Trash.
func (s *Store) emptyTrash() {
	if s.opts.Trash == nil {
		return
	}
	entries, err := os.ReadDir(filepath.Join(s.root, trashDir))
	if err != nil {
		return
	}
	for _, e := range entries {
		s.opts.Trash(filepath.Join(s.root, trashDir, e.Name()))
	}
}

// removeAll is os.RemoveAll that also copes with read-only directories
// (unpacked layers may contain them) when not running as root.
func removeAll(p string) error {
	err := os.RemoveAll(p)
	if err == nil || !errors.Is(err, os.ErrPermission) {
		return err
	}
	_ = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}

// short shows a digest the way error messages do: algorithm and the first
// 12 hex digits.
func short(d digest.Digest) string {
	alg, hexPart, ok := strings.Cut(string(d), ":")
	switch {
	case ok && len(hexPart) > 12:
		return alg + ":" + hexPart[:12] + "…"
	case len(d) > 80:
		return strconv.Quote(string(d[:80])) + "…"
	default:
		return string(d)
	}
}

// ctxReader returns a reader of r that fails once ctx is done, so a long
// copy stops.
func ctxReader(ctx context.Context, r io.Reader) io.Reader {
	return readerFunc(func(p []byte) (int, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		return r.Read(p)
	})
}

// readerFunc is a function that is an io.Reader.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
