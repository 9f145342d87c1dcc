package layer

import (
	"context"
	"errors"
	"io"
)

// DefaultMaxBytes is the limit on file content Unpack accepts when
// UnpackOptions.MaxBytes is 0: 64 GiB.
const DefaultMaxBytes int64 = 64 << 30

// ErrTooLarge is returned (wrapped) by Unpack when a tar holds more file
// content than UnpackOptions.MaxBytes allows.
var ErrTooLarge = errors.New("layer expands beyond the size limit")

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
//
// dir is created if it does not exist. Entries replace existing
// non-directories at their path; a directory entry over an existing
// directory only updates its metadata. Directory modes and times are applied
// once the whole tar has been written. Nothing is fsynced: the caller syncs
// or renames the whole directory. On error, dir is left partially written.
func Unpack(ctx context.Context, r io.Reader, dir string, opts UnpackOptions) error {
	return unpack(ctx, r, dir, opts)
}

// Diff writes the overlay upper directory upper as an OCI layer tar to w:
// entries sorted by path, whiteouts as .wh. files, opaque dirs as
// .wh..wh..opq, trusted.overlay.* xattrs left out, hard links within the
// layer as tar links. It returns the number of entries written (0: no
// changes).
//
// Entries are ordered component by component (the order of
// filepath.WalkDir), parents before children. Modification times are
// truncated to seconds and access/change times are left out, so the same
// tree always gives the same bytes. The xattrs trusted.overlay.*,
// user.overlay.* and security.selinux are left out; sockets are skipped.
func Diff(ctx context.Context, upper string, w io.Writer) (int, error) {
	return diff(ctx, upper, w)
}
