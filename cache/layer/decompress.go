package layer

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Magic bytes of the compressions Decompress recognizes.
var (
	magicGzip  = []byte{0x1f, 0x8b, 0x08}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicBzip2 = []byte{'B', 'Z', 'h'}
	// bzip2 streams continue with a block header (pi) or, when empty, the
	// end-of-stream marker (sqrt(pi)).
	bzip2Block = []byte{0x31, 0x41, 0x59, 0x26, 0x53, 0x59}
	bzip2End   = []byte{0x17, 0x72, 0x45, 0x38, 0x50, 0x90}
)

// Decompress returns a reader of the uncompressed tar from r, detecting
// gzip, zstd, xz or bzip2 by their magic bytes; anything else is returned
// as is (a plain tar). Closing the result releases the decoder; it does not
// close r.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(10)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return nil, fmt.Errorf("read layer header: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, magicGzip):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open gzip layer: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(head, magicZstd):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open zstd layer: %w", err)
		}
		return zr.IOReadCloser(), nil
	case bytes.HasPrefix(head, magicXz):
		xr, err := xz.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open xz layer: %w", err)
		}
		return io.NopCloser(xr), nil
	case isBzip2(head):
		return io.NopCloser(bzip2.NewReader(br)), nil
	}
	return io.NopCloser(br), nil
}

// Compressed reports whether head (the first bytes of a stream, 10 or
// more) starts one of the compressions Decompress recognizes.
func Compressed(head []byte) bool {
	return bytes.HasPrefix(head, magicGzip) || bytes.HasPrefix(head, magicZstd) || bytes.HasPrefix(head, magicXz) || isBzip2(head)
}

// isBzip2 reports whether head starts a bzip2 stream: "BZh", a block size
// digit and then a block or end-of-stream magic.
func isBzip2(head []byte) bool {
	if len(head) < 10 || !bytes.HasPrefix(head, magicBzip2) || head[3] < '1' || head[3] > '9' {
		return false
	}
	return bytes.Equal(head[4:10], bzip2Block) || bytes.Equal(head[4:10], bzip2End)
}
