// Package layer converts between OCI layer tars and the overlayfs on-disk
// format kiln keeps its snapshots in: Unpack writes a (hostile) tar into a
// directory, never outside it; Diff turns an overlay upper directory back into
// a deterministic OCI layer tar.
//
// On disk, a deleted path is a 0:0 character device and an opaque directory
// carries the xattr trusted.overlay.opaque=y, exactly what overlayfs writes in
// an upper directory. In a tar, they are ".wh.NAME" files and a
// ".wh..wh..opq" entry.
package layer
