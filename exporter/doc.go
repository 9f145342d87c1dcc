// Package exporter turns a layer chain and an image config into a stored OCI
// image (config and manifest blobs), and moves images in and out of the
// store: save as one tar that is both a docker-archive and an OCI layout,
// load either form, import a root filesystem tarball.
//
// Images live in a cache.Store as three kinds of blobs: layers (recorded
// with their diff IDs by cache.Store.ImportLayer or a build), a config blob
// whose digest is the image ID, and a manifest blob that names both. Names
// ("docker.io/library/busybox:latest") point at manifest digests through
// cache.Store.Tag. Every name handed to the store is normalized with
// NormalizeName first; FamiliarName turns it back into the short form users
// type.
package exporter
