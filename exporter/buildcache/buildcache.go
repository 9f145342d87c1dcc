// Package buildcache moves kiln's build cache between machines: the cache
// keys a build computed, the layer chains they map to and the image configs
// of its results, exported as an OCI artifact (to a registry or a local OCI
// layout directory) or inline in an image config, and imported again as a
// read-only index whose layers are fetched only when a build needs them.
package buildcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
)

// Media types of the cache artifact.
const (
	// ConfigMediaType is the config blob of a cache export.
	ConfigMediaType = "application/vnd.kiln.buildcache.config.v1+json"
	// ArtifactType marks the manifest.
	ArtifactType = "application/vnd.kiln.buildcache.v1"
	// InlineLabel is the image label holding an inline cache.
	InlineLabel = "dev.kiln.buildcache.v1"
	// formatVersion is the version of Config.
	formatVersion = "kiln-buildcache-v1"
)

// Record maps a cache key to a layer chain, as indexes into Config.Layers.
type Record struct {
	Key    digest.Digest `json:"key"`
	Layers []int         `json:"layers"`
}

// ImageRecord keeps the config an image built from a cache key had, so a
// fully cached build elsewhere gives the same image digest.
type ImageRecord struct {
	Key    digest.Digest   `json:"key"`
	Config json.RawMessage `json:"config"`
}

// Config is the content of a cache export.
type Config struct {
	Version string        `json:"version"`
	Layers  []cache.Layer `json:"layers"`
	Records []Record      `json:"records"`
	Images  []ImageRecord `json:"images,omitempty"`
}

// NewConfig builds a Config from key → chain records and key → image config
// bytes, deterministically (sorted by key, layers listed once).
func NewConfig(records map[digest.Digest]cache.Chain, images map[digest.Digest][]byte) *Config {
	cfg := &Config{Version: formatVersion, Layers: []cache.Layer{}, Records: []Record{}}
	keys := make([]digest.Digest, 0, len(records))
	for k := range records {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	index := map[digest.Digest]int{}
	for _, k := range keys {
		rec := Record{Key: k, Layers: []int{}}
		for _, l := range records[k] {
			i, ok := index[l.Digest]
			if !ok {
				i = len(cfg.Layers)
				index[l.Digest] = i
				cfg.Layers = append(cfg.Layers, l)
			}
			rec.Layers = append(rec.Layers, i)
		}
		cfg.Records = append(cfg.Records, rec)
	}
	ikeys := make([]digest.Digest, 0, len(images))
	for k := range images {
		ikeys = append(ikeys, k)
	}
	sort.Slice(ikeys, func(i, j int) bool { return ikeys[i] < ikeys[j] })
	for _, k := range ikeys {
		cfg.Images = append(cfg.Images, ImageRecord{Key: k, Config: images[k]})
	}
	return cfg
}

// Parse reads a Config and checks it.
func Parse(b []byte) (*Config, error) {
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("build cache metadata is not valid: %w", err)
	}
	if cfg.Version != formatVersion {
		return nil, fmt.Errorf("build cache metadata has version %q; this kiln reads %q", cfg.Version, formatVersion)
	}
	for _, r := range cfg.Records {
		if err := r.Key.Validate(); err != nil {
			return nil, fmt.Errorf("build cache record: %w", err)
		}
		for _, i := range r.Layers {
			if i < 0 || i >= len(cfg.Layers) {
				return nil, fmt.Errorf("build cache record %s names layer %d of %d", r.Key, i, len(cfg.Layers))
			}
		}
	}
	for _, l := range cfg.Layers {
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("build cache layer: %w", err)
		}
		if err := l.DiffID.Validate(); err != nil {
			return nil, fmt.Errorf("build cache layer: %w", err)
		}
	}
	return &cfg, nil
}

// BlobFunc opens a blob of the cache source.
type BlobFunc func(ctx context.Context, d digest.Digest) (io.ReadCloser, error)

// Source is an imported cache: a read-only key index whose layers come
// from the source on demand.
type Source struct {
	name   string
	byKey  map[digest.Digest]cache.Chain
	images map[digest.Digest][]byte
	blob   BlobFunc

	// blobs maps a diff ID to the blob that carries it in the source,
	// when that differs from the records (an inline cache pushed with
	// compressed layers).
	blobs map[digest.Digest]cache.Layer
}

// WithBlobs tells the source where its layers are when the registry holds
// them in another compression than the records say: by diff ID.
func (s *Source) WithBlobs(layers []cache.Layer) *Source {
	s.blobs = map[digest.Digest]cache.Layer{}
	for _, l := range layers {
		s.blobs[l.DiffID] = l
	}
	return s
}

// NewSource makes a Source of cfg whose blobs blob opens; name is shown in
// errors ("cache 127.0.0.1:5000/cache:main").
func NewSource(name string, cfg *Config, blob BlobFunc) *Source {
	s := &Source{name: name, byKey: map[digest.Digest]cache.Chain{}, images: map[digest.Digest][]byte{}, blob: blob}
	for _, r := range cfg.Records {
		chain := make(cache.Chain, len(r.Layers))
		for i, li := range r.Layers {
			chain[i] = cfg.Layers[li]
		}
		s.byKey[r.Key] = chain
	}
	for _, im := range cfg.Images {
		s.images[im.Key] = im.Config
	}
	return s
}

// Len is the number of cache keys the source holds.
func (s *Source) Len() int { return len(s.byKey) }

// LookupKey returns the chain of key, or an error wrapping
// cache.ErrNotFound.
func (s *Source) LookupKey(_ context.Context, key digest.Digest) (cache.Chain, error) {
	c, ok := s.byKey[key]
	if !ok {
		return nil, fmt.Errorf("cache key %s: %w", key, cache.ErrNotFound)
	}
	if len(s.blobs) == 0 {
		return c, nil
	}
	// Name the layers as the source holds them.
	out := make(cache.Chain, len(c))
	for i, l := range c {
		if b, ok := s.blobs[l.DiffID]; ok {
			l = b
		}
		out[i] = l
	}
	return out, nil
}

// ImageConfig returns the image config recorded for a result key.
func (s *Source) ImageConfig(key digest.Digest) ([]byte, bool) {
	b, ok := s.images[key]
	return b, ok
}

// Has reports whether the source can supply layer l.
func (s *Source) Has(l cache.Layer) bool {
	if b, ok := s.blobs[l.DiffID]; ok && b.Digest == l.Digest {
		return true
	}
	for _, c := range s.byKey {
		for _, cl := range c {
			if cl.Digest == l.Digest {
				return true
			}
		}
	}
	return false
}

// Fetch stores layer l from the source (verified against its digest and
// diff ID).
func (s *Source) Fetch(ctx context.Context, store *cache.Store, l cache.Layer) error {
	blob := l
	rc, err := s.blob(ctx, blob.Digest)
	if err != nil {
		return fmt.Errorf("%s: layer %s: %w", s.name, blob.Digest, err)
	}
	defer rc.Close()
	got, err := store.ImportLayer(ctx, rc, blob.MediaType, blob.Digest)
	if err != nil {
		return fmt.Errorf("%s: layer %s: %w", s.name, blob.Digest, err)
	}
	if got.DiffID != l.DiffID {
		return fmt.Errorf("%s: layer %s has diff ID %s, not %s as the cache says", s.name, blob.Digest, got.DiffID, l.DiffID)
	}
	return nil
}

// Index is the local store's key index backed by imported sources: the
// store first, then each source in order. Results found in a source have
// their layers fetched by Materialize when a step needs them.
type Index struct {
	Store   *cache.Store
	Sources []*Source
}

// LookupKey implements solver.Index.
func (x *Index) LookupKey(ctx context.Context, key digest.Digest) (cache.Chain, error) {
	c, err := x.Store.LookupKey(ctx, key)
	if err == nil || !errors.Is(err, cache.ErrNotFound) {
		return c, err
	}
	for _, s := range x.Sources {
		if c, err := s.LookupKey(ctx, key); err == nil {
			return c, nil
		}
	}
	return nil, err
}

// RecordKey implements solver.Index (in the local store).
func (x *Index) RecordKey(ctx context.Context, key digest.Digest, chain cache.Chain) error {
	return x.Store.RecordKey(ctx, key, chain)
}

// ImageConfig returns the image config a source recorded for key.
func (x *Index) ImageConfig(key digest.Digest) ([]byte, bool) {
	for _, s := range x.Sources {
		if b, ok := s.ImageConfig(key); ok {
			return b, true
		}
	}
	return nil, false
}

// Materialize makes every layer of chain present in the store, fetching
// missing ones from the sources.
func (x *Index) Materialize(ctx context.Context, chain cache.Chain) error {
	for _, l := range chain {
		_, err := x.Store.StatBlob(ctx, l.Digest)
		if err == nil {
			continue
		}
		if !errors.Is(err, cache.ErrNotFound) {
			return err
		}
		var src *Source
		for _, s := range x.Sources {
			if s.Has(l) {
				src = s
				break
			}
		}
		if src == nil {
			return fmt.Errorf("layer %s is in no store or cache source: %w", l.Digest, err)
		}
		if err := src.Fetch(ctx, x.Store, l); err != nil {
			return err
		}
	}
	return nil
}
