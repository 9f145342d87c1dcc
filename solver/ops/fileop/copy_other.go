//go:build !linux

package fileop

import (
	"io"
	"os"
)

// copyContent copies in to out through buf.
func copyContent(out, in *os.File, buf []byte) (int64, error) {
	return io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, buf)
}
