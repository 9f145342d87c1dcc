package cache

import (
	"strings"

	"github.com/opencontainers/go-digest"
)

// Media types of layer blobs kept in the store.
const (
	MediaTypeLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypeLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
	MediaTypeLayerTar  = "application/vnd.oci.image.layer.v1.tar"
)

// Layer describes one filesystem layer: the digest of its uncompressed tar
// (DiffID) and the blob that carries it.
type Layer struct {
	DiffID    digest.Digest `json:"diffID"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"mediaType"`
}

// Chain is a stack of layers, bottom first.
type Chain []Layer

// DiffIDs returns the diff IDs of the chain, bottom first.
func (c Chain) DiffIDs() []digest.Digest {
	ids := make([]digest.Digest, len(c))
	for i, l := range c {
		ids[i] = l.DiffID
	}
	return ids
}

// ChainID returns the OCI chain ID of the stack: the diff ID for a single
// layer, sha256(parentChainID + " " + diffID) above it, "" for no layers.
func (c Chain) ChainID() digest.Digest {
	return ChainIDOf(c.DiffIDs())
}

// ChainIDOf computes the OCI chain ID of a list of diff IDs, bottom first.
func ChainIDOf(diffIDs []digest.Digest) digest.Digest {
	var id digest.Digest
	for i, d := range diffIDs {
		if i == 0 {
			id = d
			continue
		}
		id = digest.FromString(string(id) + " " + string(d))
	}
	return id
}

// Append returns a new chain with l on top; c is not changed.
func (c Chain) Append(l ...Layer) Chain {
	out := make(Chain, 0, len(c)+len(l))
	out = append(out, c...)
	return append(out, l...)
}

// String shows the chain as its short chain ID, for logs.
func (c Chain) String() string {
	id := c.ChainID()
	if id == "" {
		return "<empty>"
	}
	return strings.TrimPrefix(string(id), "sha256:")[:12]
}
