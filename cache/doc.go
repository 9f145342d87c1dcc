// Package cache is kiln's content-addressed store: blobs by sha256 (pulled
// and loaded layers as given, configs, manifests), unpacked layer snapshots
// keyed by chain ID, the cache-key index and the local image names, all under
// one root directory. Layers made by a build are stored lazily: their
// uncompressed tar is written from their snapshot only when first read (see
// Active.Commit).
//
// Every write is atomic (temp file or directory, fsync, rename), so a build
// that is interrupted at any point leaves a store the next build can use.
package cache
