// Package fileop implements the file operations of a Dockerfile — COPY, ADD
// (with local archive extraction) and the directory WORKDIR creates — with
// Docker/BuildKit semantics. Apply runs inside the build container's mount
// namespace, chrooted to the root filesystem being changed; Checksum runs in
// kiln itself to key the cache on the content of exactly the files a COPY
// reads.
package fileop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	// into Dest instead of copying them (ADD). Dest is then a directory.
	// Extracted entries keep the archive's modes, owners and extended
	// attributes; Chown and Chmod do not apply to them (Chown owns the
	// directories made for Dest), as in Docker 20.10's builder. Other
	// files, and directories, are copied as without Unpack.
	Unpack bool `json:"unpack,omitempty"`
	// Excludes are .dockerignore patterns; matching source paths are
	// invisible (moby/patternmatcher semantics).
	Excludes []string `json:"excludes,omitempty"`
	// PreserveOwner keeps the source entries' uid and gid when Chown is
	// empty, and the extended attributes of regular files (such as file
	// capabilities; SELinux labels excepted) in any case. The frontend sets
	// it for COPY --from=<stage>, whose owners are meaningful; files from
	// the build context always become 0:0.
	PreserveOwner bool `json:"preserveOwner,omitempty"`
}

// Mkdir creates a directory and its missing parents (WORKDIR).
type Mkdir struct {
	// Path is the absolute directory to create.
	Path string `json:"path"`
	// Mode is the Unix permission bits (including setuid, setgid and
	// sticky) given to every directory Mkdir creates; 0 means 0755.
	// Directories that already exist are left alone.
	Mode uint32 `json:"mode"`
	// Chown is the owner of the created directories, in the same forms
	// as Copy.Chown; empty means 0:0.
	Chown string `json:"chown,omitempty"`
}

// Apply runs the JSON-encoded Action in payload. It runs chrooted to the
// destination root filesystem; src is the source tree (nil for Mkdir).
func Apply(ctx context.Context, src *os.Root, payload []byte) error {
	var a Action
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return fmt.Errorf("decode file operation: %w", err)
	}
	return applyAt(ctx, src, &a, applyOptions{destRoot: "/", chown: true, warn: os.Stderr})
}

// applyOptions are the knobs tests turn; Apply uses destRoot "/" (it runs
// chrooted) and chown true.
type applyOptions struct {
	// destRoot is the directory standing for "/" of the destination;
	// destination paths and symlinks are resolved inside it.
	destRoot string
	// chown changes owners of what is written; tests running without
	// root turn it off.
	chown bool
	// warn receives warnings (Apply: its stderr, the step's output).
	warn io.Writer
}

// applyAt runs a against the destination tree rooted at opts.destRoot.
func applyAt(ctx context.Context, src *os.Root, a *Action, opts applyOptions) error {
	switch {
	case a.Copy != nil && a.Mkdir != nil:
		return errors.New("invalid file operation: both copy and mkdir are set")
	case a.Copy != nil:
		if src == nil {
			return errors.New("invalid file operation: copy has no source tree")
		}
		d, err := newDestFS(opts)
		if err != nil {
			return err
		}
		return d.copy(ctx, src, a.Copy)
	case a.Mkdir != nil:
		d, err := newDestFS(opts)
		if err != nil {
			return err
		}
		return d.mkdir(ctx, a.Mkdir)
	default:
		return errors.New("invalid file operation: neither copy nor mkdir is set")
	}
}

// Checksum digests what c would read from src: for each matched path its
// relative path, type, mode, size, content and symlink target (and uid and
// gid when c.PreserveOwner, the only case where they reach the result),
// never mtimes, in a fixed order. Errors when a source matches nothing,
// with the same message Apply would give. See ChecksumWith.
func Checksum(ctx context.Context, src *os.Root, c *Copy) (digest.Digest, error) {
	return ChecksumWith(ctx, src, c, ChecksumOptions{})
}
