// Package contenthash remembers the content digests of build-context files,
// keyed by their path and the stat data that changes whenever the content
// does (size, mtime, ctime, inode, mode), so a rebuild re-reads only the
// files that changed. It is a cache: a lost or damaged file only costs a
// re-read.
package contenthash

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// formatVersion changes when the meaning of an entry changes.
const formatVersion = 1

type entry struct {
	Size   int64         `json:"s"`
	Mtime  int64         `json:"m"`
	Ctime  int64         `json:"c"`
	Ino    uint64        `json:"i"`
	Mode   uint32        `json:"o"`
	Digest digest.Digest `json:"d"`
}

type file struct {
	Version int              `json:"version"`
	Entries map[string]entry `json:"entries"`
}

// Cache maps file names to content digests for one directory tree.
type Cache struct {
	path string
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]entry
	seen    map[string]bool
	dirty   bool
}

// Open loads the cache persisted at path (a missing or damaged file gives
// an empty cache).
func Open(path string) *Cache {
	c := &Cache{path: path, now: time.Now, entries: map[string]entry{}, seen: map[string]bool{}}
	b, err := os.ReadFile(path)
	if err != nil {
		return c
	}
	var f file
	if json.Unmarshal(b, &f) == nil && f.Version == formatVersion && f.Entries != nil {
		c.entries = f.Entries
	}
	return c
}

// Digest returns the content digest of name (relative to the tree) whose
// stat data is fi: from the cache when the stat data matches, else from
// compute, which is then remembered. A file changed in the last two
// seconds is not remembered, since a change within the clock's granularity
// could keep its stat data ("racy" entries, as git calls them).
func (c *Cache) Digest(ctx context.Context, name string, fi fs.FileInfo, compute func() (digest.Digest, error)) (digest.Digest, error) {
	k, ok := key(fi)
	if ok {
		c.mu.Lock()
		c.seen[name] = true
		e, hit := c.entries[name]
		c.mu.Unlock()
		if hit && e.Size == k.Size && e.Mtime == k.Mtime && e.Ctime == k.Ctime && e.Ino == k.Ino && e.Mode == k.Mode {
			return e.Digest, nil
		}
	}
	d, err := compute()
	if err != nil || !ok {
		return d, err
	}
	racy := c.now().Add(-2 * time.Second).UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if k.Mtime < racy && k.Ctime < racy {
		k.Digest = d
		c.entries[name] = k
		c.dirty = true
	} else if _, had := c.entries[name]; had {
		delete(c.entries, name)
		c.dirty = true
	}
	return d, nil
}

// Save persists the cache atomically, dropping entries for files that were
// not asked about since Open when at least one was (files that went away).
func (c *Cache) Save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.seen) > 0 {
		for name := range c.entries {
			if !c.seen[name] {
				delete(c.entries, name)
				c.dirty = true
			}
		}
	}
	if !c.dirty {
		return nil
	}
	b, err := json.Marshal(file{Version: formatVersion, Entries: c.entries})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("save content hashes: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".tmp-")
	if err != nil {
		return fmt.Errorf("save content hashes: %w", err)
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save content hashes: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save content hashes: %w", err)
	}
	c.dirty = false
	return nil
}
