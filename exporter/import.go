package exporter

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/cache"
)

// Magic numbers of compression formats Import recognizes besides gzip and
// zstd.
var (
	bzip2Magic = []byte("BZh")
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
)

// importComment is the history comment of an imported layer.
const importComment = "imported from tarball"

// Import makes a one-layer image from a root filesystem tarball and cfg.
//
// The tarball may be plain, gzip or bzip2 compressed (zstd is stored as it
// is). A plain tar is checked to be a tar archive and stored gzip
// compressed; its diff ID is the digest of the tar exactly as given. A
// history entry for the layer is appended to cfg.History. The image is not
// tagged.
func Import(ctx context.Context, store *cache.Store, r io.Reader, cfg v1.ConfigFile) (*Image, error) {
	br := bufio.NewReader(withContext(ctx, r))
	head, _ := br.Peek(len(xzMagic))
	var (
		layer cache.Layer
		err   error
	)
	switch {
	case bytes.HasPrefix(head, zstdMagic):
		layer, err = store.ImportLayer(ctx, br, cache.MediaTypeLayerZstd, "")
		if err != nil {
			err = fmt.Errorf("store layer: %w", err)
		}
	case bytes.HasPrefix(head, xzMagic):
		return nil, errors.New("import: xz-compressed tarballs are not supported; decompress it first (xz -d)")
	case bytes.HasPrefix(head, gzipMagic):
		zr, zerr := gzip.NewReader(br)
		if zerr != nil {
			return nil, fmt.Errorf("import: read gzip-compressed tarball: %w", zerr)
		}
		defer zr.Close()
		layer, err = gzipLayer(ctx, store, zr)
	case bytes.HasPrefix(head, bzip2Magic):
		layer, err = gzipLayer(ctx, store, bzip2.NewReader(br))
	default:
		layer, err = gzipLayer(ctx, store, br)
	}
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	cfg.History = append(slices.Clone(cfg.History), v1.History{Created: cfg.Created, Comment: importComment})
	img, err := Write(ctx, store, cache.Chain{layer}, cfg)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return img, nil
}

// gzipLayer checks that src is a tar archive and stores it as a gzip
// compressed layer.
func gzipLayer(ctx context.Context, store *cache.Store, src io.Reader) (cache.Layer, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := compressTar(pw, src)
		pw.CloseWithError(err)
		done <- err
	}()
	l, err := store.ImportLayer(ctx, pr, cache.MediaTypeLayerGzip, "")
	// Unblock the compressor if the store stopped reading early.
	pr.Close()
	cerr := <-done
	if cerr != nil && !errors.Is(cerr, io.ErrClosedPipe) {
		return cache.Layer{}, cerr
	}
	if err != nil {
		return cache.Layer{}, fmt.Errorf("store layer: %w", err)
	}
	return l, nil
}

// compressTar gzips src into w, reading it as a tar archive on the way so
// that anything that is not a tar is refused. The uncompressed bytes are
// exactly those of src.
func compressTar(w io.Writer, src io.Reader) error {
	zw := gzip.NewWriter(w)
	cw := &countWriter{w: zw}
	tr := tar.NewReader(io.TeeReader(src, cw))
	for {
		_, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return archiveError("root filesystem tarball", err)
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return archiveError("root filesystem tarball", err)
		}
	}
	// Keep the padding after the end-of-archive marker so the layer's diff
	// ID is the digest of the tarball as given.
	if _, err := io.Copy(cw, src); err != nil {
		return fmt.Errorf("read root filesystem tarball: %w", err)
	}
	if cw.n == 0 {
		return errors.New("the root filesystem tarball is empty")
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compress layer: %w", err)
	}
	return nil
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
