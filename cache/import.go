package cache

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache/layer"
)

// Magic numbers at the start of compressed layer blobs.
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// layerKind maps a layer media type (OCI or Docker) to one of the
// MediaTypeLayer constants; "" stays "" (detect).
func layerKind(mediaType string) (string, error) {
	switch mt := strings.ToLower(mediaType); {
	case mt == "":
		return "", nil
	case strings.HasSuffix(mt, "+gzip") || strings.HasSuffix(mt, ".tar.gzip") || strings.HasSuffix(mt, ".tar.gz"):
		return MediaTypeLayerGzip, nil
	case strings.HasSuffix(mt, "+zstd") || strings.HasSuffix(mt, ".tar.zstd"):
		return MediaTypeLayerZstd, nil
	case strings.HasSuffix(mt, ".tar") || strings.HasSuffix(mt, "layer.v1.tar"):
		return MediaTypeLayerTar, nil
	default:
		return "", fmt.Errorf("unsupported layer media type %q: want a tar, tar+gzip or tar+zstd layer", mediaType)
	}
}

// sniff returns the layer media type matching the first bytes of a blob.
func sniff(head []byte) string {
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return MediaTypeLayerGzip
	case bytes.HasPrefix(head, zstdMagic):
		return MediaTypeLayerZstd
	default:
		return MediaTypeLayerTar
	}
}

// ImportLayer stores a layer blob read from r (uncompressed tar, gzip or zstd
// as mediaType says; detected when mediaType is ""), verifying expected
// when not empty, computes its DiffID in the same pass and records it.
//
// The compression is always taken from the blob's first bytes; a mediaType
// that disagrees is logged and overridden. Docker layer media types are
// accepted and recorded as their OCI equivalents. An uncompressed layer has
// MediaTypeLayerTar and Digest == DiffID.
func (s *Store) ImportLayer(ctx context.Context, r io.Reader, mediaType string, expected digest.Digest) (Layer, error) {
	declared, err := layerKind(mediaType)
	if err != nil {
		return Layer{}, fmt.Errorf("import layer: %w", err)
	}
	if expected != "" {
		if err := checkDigest(expected); err != nil {
			return Layer{}, fmt.Errorf("import layer: %w", err)
		}
	}
	what := "import layer"
	if expected != "" {
		what = "import layer " + short(expected)
	}
	done, err := s.begin()
	if err != nil {
		return Layer{}, err
	}
	defer done()

	t, err := s.newIngest()
	if err != nil {
		return Layer{}, fmt.Errorf("%s: %w", what, err)
	}
	defer t.cleanup()
	br := bufio.NewReaderSize(ctxReader{ctx, r}, copyBufferSize)
	head, _ := br.Peek(len(zstdMagic)) // a short or failing read shows up below
	kind := sniff(head)
	if declared != "" && declared != kind {
		s.log.Debug("layer media type does not match its content", "declared", mediaType, "detected", kind)
	}
	// Everything read from tee lands in the blob file and its hash.
	tee := io.TeeReader(br, t)
	buf := make([]byte, copyBufferSize)
	var diffID digest.Digest
	if kind != MediaTypeLayerTar {
		dr, err := layer.Decompress(tee)
		if err != nil {
			return Layer{}, fmt.Errorf("%s: decompress: %w", what, err)
		}
		dh := sha256.New()
		_, err = io.CopyBuffer(dh, dr, buf)
		if cerr := dr.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return Layer{}, fmt.Errorf("%s: decompress: %w", what, err)
		}
		diffID = digest.NewDigest(digest.SHA256, dh)
	}
	// Whatever the decompressor left unread (or all of a plain tar).
	if _, err := io.CopyBuffer(io.Discard, tee, buf); err != nil {
		return Layer{}, fmt.Errorf("%s: %w", what, err)
	}
	d, err := t.commit(expected)
	if err != nil {
		return Layer{}, err
	}
	if diffID == "" {
		diffID = d
	}
	l := Layer{DiffID: diffID, Digest: d, Size: t.size, MediaType: kind}
	if err := s.putLayer(ctx, l); err != nil {
		return Layer{}, fmt.Errorf("%s: record layer: %w", what, err)
	}
	return l, nil
}
