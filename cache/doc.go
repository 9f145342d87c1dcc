// Package cache is kiln's content-addressed store: compressed layer blobs by
// sha256, unpacked layer snapshots keyed by chain ID, the cache-key index and
// the local image names, all under one root directory.
//
// Every write is atomic (temp file or directory, fsync, rename), so a build
// that is interrupted at any point leaves a store the next build can use.
package cache
