package cache

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache/layer"
)

// Magic numbers at the start of compressed layer blobs (those of
// layer.Decompress).
var (
	gzipMagic  = []byte{0x1f, 0x8b, 0x08}
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	bzip2Magic = []byte{'B', 'Z', 'h'}
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
	case strings.HasSuffix(mt, ".tar"):
		return MediaTypeLayerTar, nil
	default:
		return "", fmt.Errorf("unsupported layer media type %q: want a tar, tar+gzip or tar+zstd layer", mediaType)
	}
}

// sniff returns the layer media type matching the first bytes of a blob.
func sniff(head []byte) (string, error) {
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return MediaTypeLayerGzip, nil
	case bytes.HasPrefix(head, zstdMagic):
		return MediaTypeLayerZstd, nil
	case bytes.HasPrefix(head, xzMagic):
		return "", errors.New("the layer is xz-compressed: kiln stores plain, gzip and zstd layers only")
	case bytes.HasPrefix(head, bzip2Magic) && len(head) > 3 && head[3] >= '1' && head[3] <= '9':
		return "", errors.New("the layer is bzip2-compressed: kiln stores plain, gzip and zstd layers only")
	default:
		return MediaTypeLayerTar, nil
	}
}

// checkTar reads a tar stream up to its end-of-archive marker and fails
// when it is not a tar.
func checkTar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		_, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("the layer is not a valid tar archive: %w", err)
		}
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
	br := bufio.NewReaderSize(ctxReader(ctx, r), copyBufferSize)
	head, _ := br.Peek(len(xzMagic)) // a short or failing read shows up below
	kind, err := sniff(head)
	if err != nil {
		return Layer{}, fmt.Errorf("%s: %w", what, err)
	}
	if declared != "" && declared != kind {
		s.log.Debug("layer media type does not match its content", "declared", mediaType, "detected", kind)
	}
	// Everything read from tee lands in the blob file and its hash; the
	// tar goes on through the diff ID hash (compressed layers only: a
	// plain tar's diff ID is its digest) and a check that it is a tar.
	tee := io.TeeReader(br, t)
	buf := make([]byte, copyBufferSize)
	tarStream := io.Reader(tee)
	var dh hash.Hash
	if kind != MediaTypeLayerTar {
		dr, err := layer.Decompress(tee)
		if err != nil {
			return Layer{}, fmt.Errorf("%s: %w", what, err)
		}
		defer dr.Close()
		dh = sha256.New()
		tarStream = io.TeeReader(&bombGuard{r: dr, compressed: func() int64 { return t.size }}, dh)
	}
	if err := checkTar(tarStream); err != nil {
		// Bytes other than the expected ones explain it better.
		if _, cerr := io.CopyBuffer(io.Discard, tee, buf); cerr == nil && expected != "" && t.digest() != expected {
			_, err = t.commit(expected)
			return Layer{}, err
		}
		return Layer{}, fmt.Errorf("%s: %w", what, err)
	}
	// The rest: tar padding, then whatever the decompressor left unread.
	if _, err := io.CopyBuffer(io.Discard, tarStream, buf); err != nil {
		return Layer{}, fmt.Errorf("%s: decompress: %w", what, err)
	}
	if _, err := io.CopyBuffer(io.Discard, tee, buf); err != nil {
		return Layer{}, fmt.Errorf("%s: %w", what, err)
	}
	var diffID digest.Digest
	if dh != nil {
		diffID = digest.NewDigest(digest.SHA256, dh)
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

// Limits on what a compressed layer may expand to: beyond maxLayerBytes, or
// beyond bombFloor at more than bombRatio times the compressed bytes read so
// far, it is refused as a decompression bomb.
const (
	maxLayerBytes = 64 << 30
	bombFloor     = 4 << 30
	bombRatio     = 10000
)

// errBomb is the error of a layer that expands too far.
var errBomb = errors.New("the layer expands beyond kiln's limits (64 GiB, or 10000 times its compressed size above 4 GiB): refusing a likely decompression bomb")

// bombGuard counts decompressed bytes against the limits.
type bombGuard struct {
	r          io.Reader
	n          int64
	compressed func() int64
}

func (g *bombGuard) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	g.n += int64(n)
	if g.n > maxLayerBytes || (g.n > bombFloor && g.n > bombRatio*max(g.compressed(), 1)) {
		return n, errBomb
	}
	return n, err
}
