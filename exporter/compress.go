package exporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/kiln-build/kiln/cache"
)

// Compression algorithms for Compress.
const (
	CompressionNone = "none"
	CompressionGzip = "gzip"
	CompressionZstd = "zstd"
)

// Compress returns img with every layer in the given compression ("gzip",
// "zstd" or "none" to keep the layers as they are) at level (0: the
// algorithm's default). The config is the same blob, so the image ID does
// not change; the manifest does. Compressed blobs are stored, and a layer
// already stored in that compression is not compressed again.
func Compress(ctx context.Context, store *cache.Store, img *Image, algo string, level int) (*Image, error) {
	var mediaType string
	switch algo {
	case "", CompressionNone:
		return img, nil
	case CompressionGzip:
		mediaType = cache.MediaTypeLayerGzip
	case CompressionZstd:
		mediaType = cache.MediaTypeLayerZstd
	default:
		return nil, fmt.Errorf("compression %q: want gzip, zstd or none", algo)
	}
	chain := make(cache.Chain, len(img.Chain))
	changed := false
	for i, l := range img.Chain {
		if l.MediaType == mediaType {
			chain[i] = l
			continue
		}
		nl, err := compressLayer(ctx, store, l, algo, mediaType, level)
		if err != nil {
			return nil, fmt.Errorf("compress layer %d (%s): %w", i+1, l.DiffID, err)
		}
		chain[i] = nl
		changed = true
	}
	if !changed {
		return img, nil
	}
	size, err := store.StatBlob(ctx, img.ID)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	m, err := ociManifest(ctx, store, chain, img.ID, size)
	if err != nil {
		return nil, err
	}
	md, err := writeManifest(ctx, store, m)
	if err != nil {
		return nil, err
	}
	return &Image{ManifestDigest: md, ID: img.ID, Manifest: *m, Config: img.Config, Chain: chain}, nil
}

// compressLayer stores l's blob in the given compression, reusing an
// earlier result.
func compressLayer(ctx context.Context, store *cache.Store, l cache.Layer, algo, mediaType string, level int) (cache.Layer, error) {
	if prev, err := store.LayerByDiffID(ctx, l.DiffID); err == nil && prev.MediaType == mediaType {
		if _, err := store.StatBlob(ctx, prev.Digest); err == nil {
			return prev, nil
		}
	}
	src, err := store.OpenBlob(ctx, l.Digest)
	if err != nil {
		return cache.Layer{}, err
	}
	defer src.Close()
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(compressStream(ctx, pw, src, l.MediaType, algo, level))
	}()
	nl, err := store.ImportLayer(ctx, pr, mediaType, "")
	pr.CloseWithError(err)
	if err != nil {
		return cache.Layer{}, err
	}
	if nl.DiffID != l.DiffID {
		return cache.Layer{}, fmt.Errorf("compressed layer has diff ID %s, want %s", nl.DiffID, l.DiffID)
	}
	return nl, nil
}

// compressStream writes the uncompressed content of src (a blob of
// srcType) to w compressed with algo.
func compressStream(ctx context.Context, w io.Writer, src io.Reader, srcType, algo string, level int) error {
	if srcType != cache.MediaTypeLayerTar {
		return errors.New("only uncompressed layers are recompressed")
	}
	var zw io.WriteCloser
	switch algo {
	case CompressionGzip:
		if level == 0 {
			level = gzip.DefaultCompression
		}
		gw, err := gzip.NewWriterLevel(w, level)
		if err != nil {
			return err
		}
		zw = gw
	case CompressionZstd:
		lvl := zstd.SpeedDefault
		if level != 0 {
			lvl = zstd.EncoderLevelFromZstd(level)
		}
		enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(runtime.NumCPU()))
		if err != nil {
			return err
		}
		zw = enc
	}
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			zw.Close()
			return err
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := zw.Write(buf[:n]); werr != nil {
				zw.Close()
				return werr
			}
		}
		if err == io.EOF {
			return zw.Close()
		}
		if err != nil {
			zw.Close()
			return err
		}
	}
}
