package solver

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/opencontainers/go-digest"
)

// KeyVersion is mixed into every cache key; bump it when the meaning of a key
// changes so old index entries are never matched.
const KeyVersion = "kiln-cache-v1"

// CacheKey combines an op's kind and own key with its inputs' keys, in order.
// It is a pure function.
func CacheKey(kind string, opKey digest.Digest, inputs []digest.Digest) digest.Digest {
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(KeyVersion)
	field(kind)
	field(string(opKey))
	for _, in := range inputs {
		field(string(in))
	}
	return digest.NewDigest(digest.SHA256, h)
}
