package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// cacheMountsDir holds the directories of RUN --mount=type=cache.
const cacheMountsDir = "cachemounts"

// Sharing modes of a cache mount, as in Docker's RUN --mount=type=cache.
const (
	// SharingShared lets any number of steps use a cache mount at once.
	SharingShared = "shared"
	// SharingLocked makes steps take turns: one at a time.
	SharingLocked = "locked"
	// SharingPrivate gives a step that finds the cache mount busy another
	// instance of it.
	SharingPrivate = "private"
)

// CacheMountOptions says how to create and share a cache mount.
type CacheMountOptions struct {
	// Sharing is SharingShared (the default), SharingLocked or
	// SharingPrivate.
	Sharing string
	// Mode, UID and GID are the directory's when it is created.
	Mode     fs.FileMode
	UID, GID int
	// Seed, when set, fills a new cache's directory dir before it is
	// put in place (RUN --mount=type=cache,from=); work is an empty
	// directory on the same filesystem it may use meanwhile.
	Seed func(ctx context.Context, dir, work string) error
}

// CacheMount returns the directory of the cache mount id, creating it (with
// opts' mode and owner) the first time, and a release func to call when the
// step that mounts it ends. The directory outlives builds; Prune with All
// removes it. A locked cache mount waits, until ctx is done, for the step
// using it; a private one busy elsewhere gives another instance.
func (s *Store) CacheMount(ctx context.Context, id string, opts CacheMountOptions) (string, func(), error) {
	done, err := s.begin()
	if err != nil {
		return "", nil, err
	}
	defer done()
	sum := sha256.Sum256([]byte(id))
	base := filepath.Join(s.root, cacheMountsDir, hex.EncodeToString(sum[:16]))
	if err := os.MkdirAll(filepath.Dir(base), 0o700); err != nil {
		return "", nil, fmt.Errorf("cache mount %s: %w", id, err)
	}
	for i := 0; ; i++ {
		dir := base
		if i > 0 {
			dir += "-" + strconv.Itoa(i)
		}
		lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return "", nil, fmt.Errorf("cache mount %s: %w", id, err)
		}
		busy, err := lockCacheMount(ctx, lock, opts.Sharing)
		if err != nil {
			lock.Close()
			return "", nil, fmt.Errorf("cache mount %s: %w", id, err)
		}
		if busy { // private, in use: try the next instance
			lock.Close()
			continue
		}
		if err := s.makeCacheMountDir(ctx, dir, opts); err != nil {
			lock.Close()
			return "", nil, fmt.Errorf("cache mount %s: %w", id, err)
		}
		return dir, func() { lock.Close() }, nil // closing drops the flock
	}
}

// lockCacheMount takes the lock of a cache mount instance for sharing:
// shared for SharingShared (steps run together; only Prune, which has the
// store to itself anyway, would wait), exclusive otherwise. A private
// instance held elsewhere reports busy instead of waiting.
func lockCacheMount(ctx context.Context, f *os.File, sharing string) (busy bool, err error) {
	switch sharing {
	case "", SharingShared:
		return false, flockWait(ctx, f, lockShared)
	case SharingLocked:
		return false, flockWait(ctx, f, lockExclusive)
	case SharingPrivate:
		err := flockTry(f, lockExclusive)
		if errors.Is(err, errLocked) {
			return true, nil
		}
		return false, err
	}
	return false, fmt.Errorf("unknown sharing mode %q (want shared, private or locked)", sharing)
}

// makeCacheMountDir creates dir with opts' mode and owner (and content,
// with Seed) unless it exists: made aside and renamed into place, so a step
// never sees it half made.
func (s *Store) makeCacheMountDir(ctx context.Context, dir string, opts CacheMountOptions) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	tmp, err := s.newTempDir("cachemount-")
	if err != nil {
		return err
	}
	if opts.Seed != nil {
		work, err := s.newTempDir("cachemount-work-")
		if err != nil {
			_ = os.Remove(tmp)
			return err
		}
		err = opts.Seed(ctx, tmp, work)
		_ = removeAll(work)
		if err != nil {
			_ = removeAll(tmp)
			return err
		}
	}
	mode := opts.Mode.Perm()
	if opts.Mode == 0 {
		mode = 0o755
	}
	if err := os.Chown(tmp, opts.UID, opts.GID); err != nil {
		_ = removeAll(tmp)
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		_ = removeAll(tmp)
		return err
	}
	if err := renameNoReplace(tmp, dir); err != nil {
		_ = removeAll(tmp)
		if errors.Is(err, os.ErrExist) {
			return nil // made by another step meanwhile
		}
		return err
	}
	return nil
}

// removeCacheMounts deletes every cache mount (Prune with All, which has
// the store to itself) and returns how many there were.
func (s *Store) removeCacheMounts() (int, error) {
	dir := filepath.Join(s.root, cacheMountsDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if e.IsDir() {
			n++
		}
	}
	return n, removeAll(dir)
}
