package frontend

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops"
	"github.com/kiln-build/kiln/solver/ops/fileop"
)

type copyArgs struct {
	sources  []string
	contents []instructions.SourceContent
	dest     string
	from     string
	chown    string
	chmod    string
	excludes []string
	add      bool
	unpack   bool
	parents  bool
}

func (c *converter) dispatchCopy(ctx context.Context, s *stageState, cmd instructions.Command, a copyArgs) error {
	verb := "COPY"
	if a.add {
		verb = "ADD"
	}
	switch {
	case a.parents:
		return fmt.Errorf("COPY --parents is not supported by kiln yet")
	case len(a.excludes) > 0:
		return fmt.Errorf("%s --exclude is not supported by kiln yet", verb)
	}
	a.chmod = c.chmod20(cmd, verb, a.chmod)
	if len(a.contents) > 0 {
		return c.copyHeredocs(s, cmd, a, verb)
	}
	if a.add {
		var local []string
		for _, src := range a.sources {
			switch {
			case strings.HasPrefix(src, "git@") || strings.HasSuffix(src, ".git"):
				return fmt.Errorf("ADD %s: adding a git repository is not supported by kiln yet", src)
			case isURL(src):
				if err := c.addURL(s, cmd, a, src); err != nil {
					return err
				}
			default:
				local = append(local, src)
			}
		}
		if len(local) == 0 {
			return nil
		}
		if len(local) < len(a.sources) && !strings.HasSuffix(a.dest, "/") {
			return fmt.Errorf("ADD with several sources needs a destination directory ending in /")
		}
		a.sources = local
	}
	dest := c.destPath(s, a.dest)
	cp := &fileop.Copy{
		Sources: a.sources,
		Dest:    dest,
		Chown:   a.chown,
		Chmod:   a.chmod,
		Unpack:  a.add && a.unpack,
	}
	op := &ops.File{Action: fileop.Action{Copy: cp}}
	inputs := []*solver.Vertex{s.vertex}
	if a.from != "" {
		// As in Docker (20.10 and later): --from names a stage or image
		// as written, never through a variable.
		if from, err := c.expand(a.from, nil); err != nil || from != a.from {
			return fmt.Errorf("%s --from=%s: variable expansion is not supported for --from; define a stage with FROM using a global ARG instead", verb, a.from)
		}
		src, err := c.stageOrImage(ctx, s, a.from, "COPY --from")
		if err != nil {
			return err
		}
		inputs = append(inputs, src)
		preserveOwner(cp)
	} else {
		op.ContextDir = c.opts.ContextDir
		op.FileDigest = c.opts.FileDigest
		op.FileLookup = c.opts.FileLookup
		cp.Excludes = c.opts.Excludes
		if op.ContextDir == "" {
			return fmt.Errorf("%s needs a build context", verb)
		}
	}
	v := &solver.Vertex{
		Name:     c.vertexName(s, cmd.(fmt.Stringer).String()),
		Op:       op,
		Inputs:   inputs,
		Location: c.location(cmd.Location()),
	}
	s.vertex = v
	c.commit(s, fmt.Sprintf("%s %s %s # buildkit", verb, strings.Join(a.sources, " "), dest), v)
	return nil
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// addURL adds a step that downloads src and copies the file to the
// destination (root-owned, mode 0600, never extracted, as in Docker).
func (c *converter) addURL(s *stageState, cmd instructions.Command, a copyArgs, src string) error {
	dl := &solver.Vertex{
		Name:     "ADD " + src + " (download)",
		Op:       &ops.HTTP{URL: src},
		Location: c.location(cmd.Location()),
	}
	dest := c.destPath(s, a.dest)
	if len(a.sources) > 1 && !strings.HasSuffix(dest, "/") {
		dest += "/"
	}
	cp := &fileop.Copy{Sources: []string{"/*"}, Dest: dest, Chown: a.chown, Chmod: a.chmod}
	v := &solver.Vertex{
		Name:     c.vertexName(s, "ADD "+src+" "+a.dest),
		Op:       &ops.File{Action: fileop.Action{Copy: cp}},
		Inputs:   []*solver.Vertex{s.vertex, dl},
		Location: c.location(cmd.Location()),
	}
	s.vertex = v
	c.commit(s, fmt.Sprintf("ADD %s %s # buildkit", src, dest), v)
	return nil
}

// stageOrImage resolves COPY --from and RUN --mount from= (what names the
// flag in errors): a stage by index or name, else an image.
func (c *converter) stageOrImage(ctx context.Context, s *stageState, from, what string) (*solver.Vertex, error) {
	if dep := c.stageByRef(from, true); dep != nil {
		if dep == s {
			return nil, fmt.Errorf("%s=%s refers to the stage it is in", what, from)
		}
		if err := c.dispatchStage(ctx, dep); err != nil {
			return nil, err
		}
		return dep.vertex, nil
	}
	if c.opts.Resolver == nil {
		return nil, fmt.Errorf("%s=%s: no stage or image of that name", what, from)
	}
	img, err := c.opts.Resolver.ResolveImage(ctx, from)
	if err != nil {
		if errors.Is(err, cache.ErrNotFound) {
			return nil, fmt.Errorf("%s=%s: no stage of that name%s, and no image %q was found: %w", what, from, c.stageNamesHint(), from, err)
		}
		return nil, fmt.Errorf("%s=%s: %w", what, from, err)
	}
	return &solver.Vertex{
		Name: "FROM " + img.Ref,
		Op:   &ops.Image{Ref: img.Ref, Manifest: img.Manifest, Chain: img.Chain},
	}, nil
}

// destPath resolves a COPY destination against WORKDIR, keeping a trailing
// slash (which means "directory").
func (c *converter) destPath(s *stageState, dest string) string {
	// A directory when it ends with / or is "." (so "/d/." is the path /d,
	// a file if it does not exist yet), as in Docker.
	dir := strings.HasSuffix(dest, "/") || dest == "."
	if !path.IsAbs(dest) {
		wd := s.cfg.Config.WorkingDir
		if wd == "" {
			wd = "/"
		}
		dest = path.Join(wd, dest)
	}
	dest = path.Clean(dest)
	if dir && dest != "/" {
		dest += "/"
	}
	return dest
}

// chmod20 reads a --chmod value as Docker 20.10's builder does: an
// octal number whose permission bits (0777) are applied; setuid, setgid
// and sticky bits are dropped, and a value that is not an octal number is
// ignored (with a warning here, silently there). It returns the mode to
// apply, in octal, or "" for none.
func (c *converter) chmod20(cmd instructions.Command, verb, s string) string {
	if s == "" {
		return ""
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		c.warnAt(cmd.Location(), fmt.Sprintf("%s --chmod=%s is not an octal mode; it is ignored, as Docker 20.10 ignores it", verb, s))
		return ""
	}
	if m&^0o777 != 0 {
		c.warnAt(cmd.Location(), fmt.Sprintf("%s --chmod=%s: only the permission bits %04o are applied, as in Docker 20.10", verb, s, m&0o777))
	}
	return fmt.Sprintf("%04o", m&0o777)
}

// copyHeredocs copies COPY <<NAME documents: files named after their
// delimiters, 0644 and root-owned (before --chown and --chmod), made in a
// layer of their own and copied from it as from a stage.
func (c *converter) copyHeredocs(s *stageState, cmd instructions.Command, a copyArgs, verb string) error {
	if len(a.sources) > 0 {
		return fmt.Errorf("%s with both files and heredocs is not supported by kiln yet; use one %s for each", verb, verb)
	}
	if len(a.contents) > 1 && !strings.HasSuffix(a.dest, "/") {
		return fmt.Errorf("%s with several heredocs needs a destination directory ending in /", verb)
	}
	var files []ops.InlineFile
	var names, marks []string
	for _, h := range a.contents {
		name := strings.TrimLeft(path.Clean("/"+h.Path), "/")
		if name == "" {
			return fmt.Errorf("%s <<%s: the heredoc needs a name", verb, h.Path)
		}
		files = append(files, ops.InlineFile{Path: name, Data: h.Data, Mode: 0o644})
		names = append(names, name)
		marks = append(marks, "<<"+h.Path)
	}
	src := c.inlineVertex(cmd, files...)
	dest := c.destPath(s, a.dest)
	cp := &fileop.Copy{Sources: names, Dest: dest, Chown: a.chown, Chmod: a.chmod}
	v := &solver.Vertex{
		Name:     c.vertexName(s, cmd.(fmt.Stringer).String()),
		Op:       &ops.File{Action: fileop.Action{Copy: cp}},
		Inputs:   []*solver.Vertex{s.vertex, src},
		Location: c.location(cmd.Location()),
	}
	s.vertex = v
	c.commit(s, fmt.Sprintf("%s %s %s # buildkit", verb, strings.Join(marks, " "), dest), v)
	return nil
}

// inlineVertex is the step that makes the layer of files written in the
// Dockerfile (heredocs) for cmd.
func (c *converter) inlineVertex(cmd instructions.Command, files ...ops.InlineFile) *solver.Vertex {
	return &solver.Vertex{
		Name:     "[internal] preparing inline document",
		Op:       &ops.Inline{Files: files},
		Location: c.location(cmd.Location()),
	}
}
