package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// The index is a bbolt database. bbolt flocks the whole file for as long as
// it is open (exclusive for writers, shared for read-only opens), so a Store
// does not keep it open: every operation opens index.db, runs one
// transaction and closes it again. Two kiln processes therefore interleave
// at the granularity of single index operations, each of which takes
// milliseconds; one that finds the file locked retries until it gets it (up
// to Options.IndexTimeout, or until ctx is done). Within one Store, a
// RWMutex keeps goroutines from polling each other's flock.

// Buckets of the index.
var (
	bucketMeta   = []byte("meta")   // "version" → indexVersion
	bucketKeys   = []byte("keys")   // cache key → keyRecord JSON
	bucketLayers = []byte("layers") // diff ID → Layer JSON
	bucketImages = []byte("images") // name → manifest digest
	bucketLazy   = []byte("lazy")   // blob digest → lazyRecord JSON (see lazy.go)
)

// indexVersion is the format of the index; bump it when records change
// incompatibly. Version 2 added bucketLazy: a blob may be stored as a lazy
// record instead of a file, which a version 1 kiln would take for a missing
// blob. initIndex upgrades a version 1 index (only adding the bucket).
const indexVersion = "2"

// defaultIndexTimeout bounds one wait for the index lock.
const defaultIndexTimeout = 2 * time.Minute

// touchInterval is how stale a key's last-use time may get before
// LookupKey writes a new one (so most lookups stay read-only).
const touchInterval = time.Minute

// keyRecord is the value stored for a cache key.
type keyRecord struct {
	Chain Chain `json:"chain"`
	// LastUsed is the last time the key was recorded or looked up, in
	// Unix nanoseconds.
	LastUsed int64 `json:"lastUsed"`
}

func (s *Store) openIndex(ctx context.Context, readOnly bool) (*bolt.DB, error) {
	limit := s.opts.IndexTimeout
	if limit <= 0 {
		limit = defaultIndexTimeout
	}
	start := time.Now()
	path := filepath.Join(s.root, indexFile)
	for {
		// Without Durable the index is not fsynced: a killed kiln leaves
		// bbolt's last committed meta page in the page cache, so only a
		// power cut could lose recent entries (see Options.Durable).
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 4 * lockPoll, ReadOnly: readOnly, NoSync: !s.opts.Durable})
		if err == nil {
			return db, nil
		}
		if !errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open index %s: %w", path, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("wait for index %s: %w", path, err)
		}
		if time.Since(start) > limit {
			return nil, fmt.Errorf("open index %s: another kiln process has held it for more than %s", path, limit)
		}
	}
}

// view runs fn in a read-only transaction.
func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	s.idx.RLock()
	defer s.idx.RUnlock()
	db, err := s.openIndex(ctx, true)
	if err != nil {
		return err
	}
	err = db.View(fn)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close index: %w", cerr)
	}
	return err
}

// update runs fn in a read-write transaction.
func (s *Store) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	s.idx.Lock()
	defer s.idx.Unlock()
	db, err := s.openIndex(ctx, false)
	if err != nil {
		return err
	}
	err = db.Update(fn)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close index: %w", cerr)
	}
	return err
}

// initIndex creates the buckets and checks the format version. An index
// that is ready is only read, which avoids a write (and fsync) per Open.
func (s *Store) initIndex(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.root, indexFile)); err == nil {
		ready := false
		err := s.view(ctx, func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			ready = meta != nil && string(meta.Get([]byte("version"))) == indexVersion &&
				tx.Bucket(bucketKeys) != nil && tx.Bucket(bucketLayers) != nil && tx.Bucket(bucketImages) != nil &&
				tx.Bucket(bucketLazy) != nil
			return nil
		})
		if err != nil {
			return err
		}
		if ready {
			return nil
		}
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return fmt.Errorf("initialize index: %w", err)
		}
		switch v := string(meta.Get([]byte("version"))); v {
		case "", "1":
			if err := meta.Put([]byte("version"), []byte(indexVersion)); err != nil {
				return fmt.Errorf("initialize index: %w", err)
			}
		case indexVersion:
		default:
			return fmt.Errorf("index %s has format version %s, this kiln reads version %s: run a matching kiln or remove the store",
				filepath.Join(s.root, indexFile), v, indexVersion)
		}
		for _, b := range [][]byte{bucketKeys, bucketLayers, bucketImages, bucketLazy} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("initialize index: %w", err)
			}
		}
		return nil
	})
}

// bucket returns a bucket initIndex created.
func bucket(tx *bolt.Tx, name []byte) (*bolt.Bucket, error) {
	b := tx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("index has no %s bucket: the store is damaged", name)
	}
	return b, nil
}

// checkChain validates every digest of chain.
func checkChain(chain Chain) error {
	for i, l := range chain {
		if err := checkDigest(l.DiffID); err != nil {
			return fmt.Errorf("layer %d: diff ID: %w", i+1, err)
		}
		if err := checkDigest(l.Digest); err != nil {
			return fmt.Errorf("layer %d: blob: %w", i+1, err)
		}
	}
	return nil
}

// missingLayer returns an error for the first layer of chain whose blob is
// gone, nil when all are there. A lazy blob is there while its snapshot is
// (see StatBlob); the lazy ones are looked up in a single transaction.
func (s *Store) missingLayer(ctx context.Context, chain Chain) error {
	var lazy []Layer
	for _, l := range chain {
		_, err := s.statFile(l.Digest)
		switch {
		case errors.Is(err, ErrNotFound):
			lazy = append(lazy, l)
		case err != nil:
			return fmt.Errorf("layer %s: %w", short(l.DiffID), err)
		}
	}
	if len(lazy) == 0 {
		return nil
	}
	ds := make([]digest.Digest, len(lazy))
	for i, l := range lazy {
		ds[i] = l.Digest
	}
	recs, err := s.lazyBlobs(ctx, ds...)
	if err != nil {
		return fmt.Errorf("look up layer blobs: %w", err)
	}
	for _, l := range lazy {
		if _, ok := recs[l.Digest]; !ok {
			return fmt.Errorf("layer %s: %w", short(l.DiffID), missingBlob(l.Digest))
		}
	}
	return nil
}

// LookupKey returns the chain recorded for a cache key; ErrNotFound when
// there is none or when a layer it needs is gone. A hit refreshes the key's
// last-use time, which Prune uses to drop the oldest keys first.
func (s *Store) LookupKey(ctx context.Context, key digest.Digest) (Chain, error) {
	if err := key.Validate(); err != nil {
		return nil, fmt.Errorf("look up cache key %q: %w", key, err)
	}
	done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	var rec keyRecord
	err = s.view(ctx, func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketKeys)
		if err != nil {
			return err
		}
		v := b.Get([]byte(key))
		if v == nil {
			return fmt.Errorf("cache key %s: %w", short(key), ErrNotFound)
		}
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("cache key %s: damaged index record: %w", short(key), err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.missingLayer(ctx, rec.Chain); err != nil {
		return nil, fmt.Errorf("cache key %s: %w", short(key), err)
	}
	now := s.now()
	if now.Sub(time.Unix(0, rec.LastUsed)) > touchInterval {
		if err := s.touchKey(ctx, key, now); err != nil {
			s.log.Debug("cannot record the use of a cache key", "key", key, "err", err)
		}
	}
	return rec.Chain, nil
}

// touchKey sets the last-use time of key.
func (s *Store) touchKey(ctx context.Context, key digest.Digest, now time.Time) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketKeys)
		if err != nil {
			return err
		}
		v := b.Get([]byte(key))
		if v == nil {
			return nil // removed meanwhile
		}
		var rec keyRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return err
		}
		rec.LastUsed = now.UnixNano()
		raw, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put([]byte(key), raw)
	})
}

// RecordKey records the result of a cache key. Every layer's blob must be
// in the store.
func (s *Store) RecordKey(ctx context.Context, key digest.Digest, chain Chain) error {
	if err := key.Validate(); err != nil {
		return fmt.Errorf("record cache key %q: %w", key, err)
	}
	if err := checkChain(chain); err != nil {
		return fmt.Errorf("record cache key %s: %w", short(key), err)
	}
	done, err := s.begin()
	if err != nil {
		return err
	}
	defer done()
	if err := s.missingLayer(ctx, chain); err != nil {
		return fmt.Errorf("record cache key %s: %w", short(key), err)
	}
	raw, err := json.Marshal(keyRecord{Chain: chain, LastUsed: s.now().UnixNano()})
	if err != nil {
		return fmt.Errorf("record cache key %s: %w", short(key), err)
	}
	err = s.update(ctx, func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketKeys)
		if err != nil {
			return err
		}
		return b.Put([]byte(key), raw)
	})
	if err != nil {
		return fmt.Errorf("record cache key %s: %w", short(key), err)
	}
	return nil
}

// putLayer records l under its diff ID.
func (s *Store) putLayer(ctx context.Context, l Layer) error {
	return s.putLayerLazy(ctx, l, "")
}

// putLayerLazy records l under its diff ID and, when snapshot is not empty,
// records its blob as lazy: the layer.Diff of that snapshot (a chain ID).
func (s *Store) putLayerLazy(ctx context.Context, l Layer, snapshot digest.Digest) error {
	raw, err := json.Marshal(l)
	if err != nil {
		return err
	}
	var lazyRaw []byte
	if snapshot != "" {
		lazyRaw, err = json.Marshal(lazyRecord{Snapshot: snapshot, Size: l.Size})
		if err != nil {
			return err
		}
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketLayers)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(l.DiffID), raw); err != nil {
			return err
		}
		if lazyRaw == nil {
			return nil
		}
		lb, err := bucket(tx, bucketLazy)
		if err != nil {
			return err
		}
		return lb.Put([]byte(l.Digest), lazyRaw)
	})
}

// LayerByDiffID returns the stored layer whose uncompressed tar has the
// given diff ID, or ErrNotFound (also when its blob is gone).
func (s *Store) LayerByDiffID(ctx context.Context, diffID digest.Digest) (Layer, error) {
	if err := checkDigest(diffID); err != nil {
		return Layer{}, fmt.Errorf("look up layer: %w", err)
	}
	var l Layer
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketLayers)
		if err != nil {
			return err
		}
		v := b.Get([]byte(diffID))
		if v == nil {
			return fmt.Errorf("layer %s: %w", short(diffID), ErrNotFound)
		}
		return json.Unmarshal(v, &l)
	})
	if err != nil {
		return Layer{}, err
	}
	if _, err := s.StatBlob(ctx, l.Digest); err != nil {
		return Layer{}, fmt.Errorf("layer %s: %w", short(diffID), err)
	}
	return l, nil
}

// checkName validates an image name.
func checkName(name string) error {
	if name == "" {
		return errors.New("image name is empty")
	}
	if len(name) > 4096 || strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return fmt.Errorf("invalid image name %q", name)
	}
	return nil
}

// Tag points name (a normalized reference such as "docker.io/library/app:1")
// at an image manifest blob, which must be in the store. A name already
// tagged is moved.
func (s *Store) Tag(ctx context.Context, name string, manifest digest.Digest) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("tag: %w", err)
	}
	if err := checkDigest(manifest); err != nil {
		return fmt.Errorf("tag %s: %w", name, err)
	}
	done, err := s.begin()
	if err != nil {
		return err
	}
	defer done()
	if _, err := s.StatBlob(ctx, manifest); err != nil {
		return fmt.Errorf("tag %s: manifest %w", name, err)
	}
	err = s.update(ctx, func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketImages)
		if err != nil {
			return err
		}
		return b.Put([]byte(name), []byte(manifest))
	})
	if err != nil {
		return fmt.Errorf("tag %s: %w", name, err)
	}
	return nil
}

// Resolve returns the manifest digest of name, or ErrNotFound.
func (s *Store) Resolve(ctx context.Context, name string) (digest.Digest, error) {
	var d digest.Digest
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketImages)
		if err != nil {
			return err
		}
		v := b.Get([]byte(name))
		if v == nil {
			return fmt.Errorf("image %s: %w", name, ErrNotFound)
		}
		d = digest.Digest(v)
		return nil
	})
	return d, err
}

// Untag removes name; ErrNotFound when it does not exist. The image's
// blobs stay until a Prune finds nothing else uses them.
func (s *Store) Untag(ctx context.Context, name string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketImages)
		if err != nil {
			return err
		}
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("untag %s: %w", name, ErrNotFound)
		}
		return b.Delete([]byte(name))
	})
}

// Images lists every name and its manifest digest.
func (s *Store) Images(ctx context.Context) (map[string]digest.Digest, error) {
	out := make(map[string]digest.Digest)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketImages)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = digest.Digest(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return out, nil
}
