package frontend

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops"
	"github.com/kiln-build/kiln/solver/ops/fileop"
)

// mountSourceDir is where the layer made for a bind mount of the build
// context holds the mounted path.
const mountSourceDir = "/src"

// runMounts turns RUN --mount flags into the Run op's mounts and the
// vertices its bind mounts show, which become the op's inputs after the
// stage's own (RunMount.Input counts from 1).
func (c *converter) runMounts(ctx context.Context, s *stageState, cmd *instructions.RunCommand) ([]ops.RunMount, []*solver.Vertex, error) {
	wd := s.cfg.Config.WorkingDir
	if wd == "" {
		wd = "/"
	}
	// A relative target is below the working directory.
	abs := func(p string) string {
		if path.IsAbs(p) {
			return path.Clean(p)
		}
		return path.Join(wd, p)
	}
	var mounts []ops.RunMount
	var inputs []*solver.Vertex
	sshMounts := 0
	for _, m := range instructions.GetMounts(cmd) {
		target := m.Target
		if m.Type == instructions.MountTypeSSH {
			// The agent socket given with kiln build --ssh ID; without
			// one the step runs as under docker build without --ssh:
			// nothing is mounted, the socket's path is still in
			// SSH_AUTH_SOCK, and a required one fails the step when it
			// runs. The default target counts the step's SSH mounts; a
			// relative one is kept as written.
			if target == "" {
				target = fmt.Sprintf("/run/buildkit/ssh_agent.%d", sshMounts)
			}
			sshMounts++
			id := m.CacheID
			if id == "" {
				id = "default"
			}
			rm := ops.RunMount{Type: "ssh", Target: target, CacheID: id, Required: m.Required}
			setFileInfo(&rm, m, 0o600)
			mounts = append(mounts, rm)
			continue
		}
		if m.Type == instructions.MountTypeSecret {
			// As BuildKit: the id is id=, else source=, else the
			// target's name; the default target /run/secrets/<name>.
			id := m.CacheID
			if m.Source != "" {
				id = m.Source
			}
			if id == "" {
				if m.Target == "" {
					return nil, nil, fmt.Errorf("RUN --mount=type=secret needs an id, a source or a target")
				}
				id = path.Base(path.Clean("/" + m.Target))
			}
			if target == "" {
				target = "/run/secrets/" + path.Base(id)
			}
			rm := ops.RunMount{Type: "secret", Target: abs(target), Source: id, Required: m.Required, ReadOnly: true}
			setFileInfo(&rm, m, 0o400)
			mounts = append(mounts, rm)
			continue
		}
		if target == "" {
			return nil, nil, fmt.Errorf("RUN --mount=type=%s needs a target", m.Type)
		}
		target = abs(target)
		if target == "/" {
			return nil, nil, fmt.Errorf("RUN --mount=type=%s: cannot mount over /", m.Type)
		}
		switch m.Type {
		case instructions.MountTypeBind:
			src, err := c.bindSource(ctx, s, cmd, m)
			if err != nil {
				return nil, nil, err
			}
			inputs = append(inputs, src.vertex)
			mounts = append(mounts, ops.RunMount{Type: "bind", Target: target, ReadOnly: m.ReadOnly, Input: len(inputs), Source: src.path})
		case instructions.MountTypeCache:
			id := m.CacheID
			if id == "" {
				id = target
			}
			rm := ops.RunMount{Type: "cache", Target: target, ReadOnly: m.ReadOnly, CacheID: id, Sharing: string(m.CacheSharing)}
			setFileInfo(&rm, m, 0o755)
			if m.From != "" {
				// A new cache starts as a copy of source in the stage
				// or image (BuildKit bases it on that filesystem).
				v, err := c.stageOrImage(ctx, s, m.From, "RUN --mount from")
				if err != nil {
					return nil, nil, err
				}
				src := m.Source
				if src == "" {
					src = "/"
				}
				inputs = append(inputs, v)
				rm.Input, rm.Source = len(inputs), path.Clean("/"+src)
			}
			mounts = append(mounts, rm)
		case instructions.MountTypeTmpfs:
			mounts = append(mounts, ops.RunMount{Type: "tmpfs", Target: target})
		default:
			return nil, nil, fmt.Errorf("RUN --mount=type=%s is not supported", m.Type)
		}
	}
	return mounts, inputs, nil
}

// setFileInfo copies the mode, uid and gid of m into rm, with mode def
// when m has none.
func setFileInfo(rm *ops.RunMount, m *instructions.Mount, def fs.FileMode) {
	rm.Mode = def
	if m.Mode != nil {
		rm.Mode = fs.FileMode(*m.Mode).Perm()
	}
	if m.UID != nil {
		rm.UID = int(*m.UID)
	}
	if m.GID != nil {
		rm.GID = int(*m.GID)
	}
}

// mountSource is the filesystem a bind mount shows and the path in it.
type mountSource struct {
	vertex *solver.Vertex
	path   string
}

// bindSource resolves a bind mount's from= (a stage or an image) or, with
// none, the build context: its source path is copied, as COPY would
// (.dockerignore applies), into a layer of its own that only the mount
// uses.
func (c *converter) bindSource(ctx context.Context, s *stageState, cmd *instructions.RunCommand, m *instructions.Mount) (mountSource, error) {
	src := m.Source
	if src == "" {
		src = "/"
	}
	if m.From != "" {
		v, err := c.stageOrImage(ctx, s, m.From, "RUN --mount from")
		if err != nil {
			return mountSource{}, err
		}
		return mountSource{vertex: v, path: path.Clean("/" + src)}, nil
	}
	if c.opts.ContextDir == "" {
		return mountSource{}, fmt.Errorf("RUN --mount=type=bind needs a build context (or from=)")
	}
	if strings.ContainsAny(src, "*?[") {
		return mountSource{}, fmt.Errorf("RUN --mount=type=bind,source=%s: a mount source cannot have wildcards", src)
	}
	cp := &fileop.Copy{Sources: []string{src}, Dest: mountSourceDir, Excludes: c.opts.Excludes}
	v := &solver.Vertex{
		Name:     c.vertexName(s, "RUN --mount source "+src),
		Op:       &ops.File{Action: fileop.Action{Copy: cp}, ContextDir: c.opts.ContextDir, FileDigest: c.opts.FileDigest, FileLookup: c.opts.FileLookup},
		Inputs:   []*solver.Vertex{{Op: ops.Scratch{}}},
		Location: c.location(cmd.Location()),
	}
	return mountSource{vertex: v, path: mountSourceDir}, nil
}
