// Package layer converts between OCI layer tars and the overlayfs on-disk
// format kiln keeps its snapshots in: Unpack writes a (hostile) tar into a
// directory, never outside it; Diff turns an overlay upper directory back into
// a deterministic OCI layer tar; Decompress detects a layer's compression.
//
// On disk, a deleted path is a 0:0 character device and an opaque directory
// carries the xattr trusted.overlay.opaque=y, exactly what overlayfs writes in
// an upper directory. In a tar, they are ".wh.NAME" files and a
// ".wh..wh..opq" entry.
//
// Unpack resolves every path with openat2(RESOLVE_IN_ROOT) from a descriptor
// of the target directory and works on single names with *at system calls,
// so no name, symlink or hard link in a layer can reach outside it. Unpack
// and Diff need Linux; elsewhere they return errors.ErrUnsupported.
// Creating device nodes and whiteouts, setting owners other than the
// caller's and trusted.* xattrs require root.
package layer
