package frontend

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops"
)

// dispatchStage converts a stage (and, first, the stages it depends on).
func (c *converter) dispatchStage(ctx context.Context, s *stageState) error {
	if s.done {
		return nil
	}
	if s.busy {
		return c.errAt(s.stage.Location, fmt.Errorf("stage %q depends on itself (circular FROM or COPY --from)", s.label()))
	}
	s.busy = true
	defer func() { s.busy = false }()

	if err := c.from(ctx, s); err != nil {
		return err
	}
	// ONBUILD triggers of the base run first, and are consumed.
	triggers := s.cfg.Config.OnBuild
	s.cfg.Config.OnBuild = nil
	if s.step == 0 {
		// A stage or scratch base is no step of its own; from counted
		// the steps after an image base.
		s.total = len(triggers) + countSteps(s.stage.Commands)
	}
	for _, t := range triggers {
		cmd, err := parseTrigger(t)
		if err != nil {
			return c.errAt(s.stage.Location, fmt.Errorf("ONBUILD trigger %q of the base image: %w", t, err))
		}
		if err := c.dispatch(ctx, s, cmd); err != nil {
			return err
		}
	}
	for _, cmd := range s.stage.Commands {
		if err := c.dispatch(ctx, s, cmd); err != nil {
			return err
		}
	}
	s.done = true
	return nil
}

// countSteps counts the instructions that make a step of their own, which
// progress output numbers as BuildKit does ([2/5] RUN ...): RUN, COPY,
// ADD and WORKDIR. ONBUILD triggers of the base count whatever they are,
// and a base image counts as step 1.
func countSteps(cmds []instructions.Command) int {
	n := 0
	for _, cmd := range cmds {
		if isStep(cmd) {
			n++
		}
	}
	return n
}

func isStep(cmd instructions.Command) bool {
	switch cmd.(type) {
	case *instructions.RunCommand, *instructions.CopyCommand, *instructions.AddCommand, *instructions.WorkdirCommand:
		return true
	}
	return false
}

func parseTrigger(expr string) (instructions.Command, error) {
	res, err := parser.Parse(strings.NewReader(expr))
	if err != nil {
		return nil, err
	}
	if len(res.AST.Children) != 1 {
		return nil, errors.New("not a single instruction")
	}
	n := res.AST.Children[0]
	if err := checkNode20(n); err != nil {
		return nil, err
	}
	return instructions.ParseCommand(n)
}

// from sets up the stage's base: another stage, scratch or an image.
func (c *converter) from(ctx context.Context, s *stageState) error {
	st := s.stage
	if st.Platform != "" {
		p, err := c.expand(st.Platform, c.metaEnv)
		if err != nil {
			return c.errAt(st.Location, err)
		}
		if p != "" && p != "linux/amd64" && p != runtime.GOOS+"/"+runtime.GOARCH && p != "$BUILDPLATFORM" && p != "$TARGETPLATFORM" {
			return c.errAt(st.Location, fmt.Errorf("FROM --platform=%s: kiln builds for linux/amd64 only; cross-platform builds are not supported", p))
		}
	}
	base, err := c.expand(st.BaseName, c.metaEnv)
	if err != nil {
		return c.errAt(st.Location, err)
	}
	if base == "" {
		return c.errAt(st.Location, fmt.Errorf("FROM needs an image name; %q expands to nothing", st.BaseName))
	}
	loc := c.location(st.Location)
	// FROM names a stage as it was declared, lowercased (unlike --from
	// and --target, which ignore case); "FROM Base" is an image
	// reference, which Docker 20.10 refuses for its capitals.
	if dep := c.stageByName(base); dep != nil && dep.idx < s.idx {
		if dep.name != base {
			return c.errAt(st.Location, fmt.Errorf("FROM %s: stage names are matched in lowercase (FROM %s) and an image name cannot have capitals", base, dep.name))
		}
		if err := c.dispatchStage(ctx, dep); err != nil {
			return err
		}
		s.vertex = dep.vertex
		s.cfg = cloneConfig(dep.cfg)
		s.env = append([]string(nil), dep.env...)
		s.history = append([]HistoryEntry(nil), dep.history...)
		s.shell = dep.shell
		return nil
	}
	if base == "scratch" {
		s.vertex = &solver.Vertex{Name: "FROM scratch", Op: ops.Scratch{}, Location: loc}
		s.cfg = v1.ConfigFile{Architecture: "amd64", OS: "linux"}
		s.cfg.Config.Env = []string{"PATH=" + DefaultPath}
		s.env = append([]string(nil), s.cfg.Config.Env...)
		return nil
	}
	if c.opts.Resolver == nil {
		return c.errAt(st.Location, fmt.Errorf("FROM %s: no image resolver", base))
	}
	img, err := c.opts.Resolver.ResolveImage(ctx, base)
	if err != nil {
		if errors.Is(err, cache.ErrNotFound) {
			return c.errAt(st.Location, fmt.Errorf("FROM %s: image not found locally; load it with 'kiln load -i FILE' or pull it: %w", base, err))
		}
		return c.errAt(st.Location, fmt.Errorf("FROM %s: %w", base, err))
	}
	s.cfg = cloneConfig(img.Config)
	// The base image is the stage's first numbered step.
	s.total, s.step = 1+len(s.cfg.Config.OnBuild)+countSteps(st.Commands), 1
	s.vertex = &solver.Vertex{Name: c.vertexName(s, "FROM "+base), Op: &ops.Image{Ref: img.Ref, Manifest: img.Manifest, Chain: img.Chain}, Location: loc}
	if _, ok := getEnv(s.cfg.Config.Env, "PATH"); !ok {
		s.cfg.Config.Env = append(s.cfg.Config.Env, "PATH="+DefaultPath)
	}
	s.env = append([]string(nil), s.cfg.Config.Env...)
	for _, h := range img.Config.History {
		s.history = append(s.history, HistoryEntry{History: h})
	}
	return nil
}

func (c *converter) location(r []parser.Range) solver.Location {
	loc := solver.Location{File: c.opts.Filename}
	if len(r) > 0 {
		loc.StartLine = r[0].Start.Line
		loc.EndLine = r[len(r)-1].End.Line
	}
	return loc
}

// cloneConfig deep-copies the parts of a config the dispatchers change.
func cloneConfig(in v1.ConfigFile) v1.ConfigFile {
	out := in
	cfg := in.Config
	cfg.Env = append([]string(nil), cfg.Env...)
	cfg.Cmd = append([]string(nil), cfg.Cmd...)
	cfg.Entrypoint = append([]string(nil), cfg.Entrypoint...)
	cfg.Shell = append([]string(nil), cfg.Shell...)
	cfg.OnBuild = append([]string(nil), cfg.OnBuild...)
	if in.Config.Cmd == nil {
		cfg.Cmd = nil
	}
	if in.Config.Entrypoint == nil {
		cfg.Entrypoint = nil
	}
	if in.Config.Shell == nil {
		cfg.Shell = nil
	}
	if in.Config.OnBuild == nil {
		cfg.OnBuild = nil
	}
	cfg.Labels = cloneMap(in.Config.Labels)
	cfg.ExposedPorts = cloneSet(in.Config.ExposedPorts)
	cfg.Volumes = cloneSet(in.Config.Volumes)
	if in.Config.Healthcheck != nil {
		h := *in.Config.Healthcheck
		h.Test = append([]string(nil), h.Test...)
		cfg.Healthcheck = &h
	}
	out.Config = cfg
	out.History = append([]v1.History(nil), in.History...)
	return out
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func cloneSet(m map[string]struct{}) map[string]struct{} {
	if m == nil {
		return nil
	}
	out := make(map[string]struct{}, len(m))
	for k := range m {
		out[k] = struct{}{}
	}
	return out
}
