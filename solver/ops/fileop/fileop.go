// Package fileop implements the file operations of a Dockerfile — COPY, ADD
// (with local archive extraction) and the directory WORKDIR creates — with
// Docker/BuildKit semantics. Apply runs inside the build container's mount
// namespace, chrooted to the root filesystem being changed; Checksum runs in
// kiln itself to key the cache on the content of exactly the files a COPY
// reads.
package fileop

import (
	"context"
	"errors"
	"os"

	"github.com/opencontainers/go-digest"
)

// HandlerName is the name Apply is registered under with the executor init.
const HandlerName = "fileop"

// Action is one file operation; exactly one field is set.
type Action struct {
	Copy  *Copy  `json:"copy,omitempty"`
	Mkdir *Mkdir `json:"mkdir,omitempty"`
}

// Copy is a COPY or ADD from the source tree (inputs[0]).
type Copy struct {
	// Sources as written in the Dockerfile after variable expansion,
	// relative to the source root (a leading / and any .. are clamped to
	// it); may hold *, ? and [..] wildcards, which never cross '/'.
	Sources []string `json:"sources"`
	// Dest is an absolute path in the root filesystem (the frontend has
	// already resolved it against WORKDIR); a trailing '/' is kept and
	// means "directory".
	Dest string `json:"dest"`
	// Chown is "", "user", "user:group", "uid" or "uid:gid"; names resolve
	// against the destination's /etc/passwd and /etc/group.
	Chown string `json:"chown,omitempty"`
	// Chmod is "" or an octal mode applied to every copied file and dir.
	Chmod string `json:"chmod,omitempty"`
	// Unpack extracts local tar archives (plain, gzip, bzip2, xz, zstd)
	// into Dest instead of copying them (ADD).
	Unpack bool `json:"unpack,omitempty"`
	// Excludes are .dockerignore patterns; matching source paths are
	// invisible (moby/patternmatcher semantics).
	Excludes []string `json:"excludes,omitempty"`
	// AllowEmptyWildcard: a wildcard source matching nothing is not an
	// error (BuildKit allows it when another source matched).
	AllowEmptyWildcard bool `json:"allowEmptyWildcard,omitempty"`
}

// Mkdir creates a directory and its missing parents (WORKDIR).
type Mkdir struct {
	Path  string `json:"path"`
	Mode  uint32 `json:"mode"`
	Chown string `json:"chown,omitempty"`
}

// Apply runs the JSON-encoded Action in payload. It runs chrooted to the
// destination root filesystem; src is the source tree (nil for Mkdir).
func Apply(ctx context.Context, src *os.Root, payload []byte) error {
	return errors.New("not implemented")
}

// Checksum digests what c would read from src: for each matched path its
// relative path, type, mode, uid, gid, size, content and symlink target,
// never mtimes, in a fixed order. Errors when a source matches nothing,
// with the same message Apply would give.
func Checksum(ctx context.Context, src *os.Root, c *Copy) (digest.Digest, error) {
	return "", errors.New("not implemented")
}
