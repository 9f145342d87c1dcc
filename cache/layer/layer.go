package layer

import (
	"context"
	"errors"
	"io"
)

// UnpackOptions configures Unpack.
type UnpackOptions struct {
	// Overlay writes whiteouts in overlayfs format (for snapshots). When
	// false, whiteouts delete the named paths instead and opaque markers
	// empty the directory (applying a tar to a live tree, e.g. ADD).
	Overlay bool
	// MaxBytes refuses a tar that expands beyond this many bytes of file
	// content (0: 64 GiB).
	MaxBytes int64
	// NoSameOwner keeps the caller's uid/gid instead of the tar's.
	NoSameOwner bool
}

// Unpack writes the uncompressed tar stream r into dir. Every name is
// resolved inside dir (.., absolute names and symlinks pointing out are
// clamped to dir); hard links must point inside dir.
func Unpack(ctx context.Context, r io.Reader, dir string, opts UnpackOptions) error {
	return errors.New("not implemented")
}

// Diff writes the overlay upper directory upper as an OCI layer tar to w:
// entries sorted by path, whiteouts as .wh. files, opaque dirs as
// .wh..wh..opq, trusted.overlay.* xattrs left out, hard links within the
// layer as tar links. It returns the number of entries written (0: no
// changes).
func Diff(ctx context.Context, upper string, w io.Writer) (int, error) {
	return 0, errors.New("not implemented")
}

// Decompress returns a reader of the uncompressed tar from r, detecting
// gzip, zstd or plain tar by the magic bytes.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	return nil, errors.New("not implemented")
}
