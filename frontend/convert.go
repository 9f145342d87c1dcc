package frontend

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops/fileop"
)

// DefaultPath is the PATH an image without one gets, as in BuildKit.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Image is a base image the resolver found.
type Image struct {
	// Ref is the normalized name.
	Ref string
	// Manifest is the manifest digest; it enters the cache keys.
	Manifest digest.Digest
	Config   v1.ConfigFile
	Chain    cache.Chain
}

// ImageResolver finds base images (FROM, COPY --from=image).
type ImageResolver interface {
	// ResolveImage returns the image named ref; an error that wraps
	// cache.ErrNotFound when there is no such image.
	ResolveImage(ctx context.Context, ref string) (*Image, error)
}

// Options configures Convert.
type Options struct {
	// Filename names the Dockerfile in errors ("Dockerfile").
	Filename string
	// BuildArgs are --build-arg values.
	BuildArgs map[string]string
	// Target is the stage to build; "" means the last one.
	Target string
	// ContextDir is the build context directory COPY/ADD read from.
	ContextDir string
	// Excludes are the .dockerignore patterns.
	Excludes []string
	// FileDigest, when set, supplies content digests of context files
	// for COPY/ADD cache keys (a stat cache).
	FileDigest fileop.FileDigestFunc
	// FileLookup, when set, gives the content digests FileDigest would
	// without reading (stat cache hits); see fileop.ChecksumOptions.
	FileLookup fileop.SumLookupFunc
	// Resolver finds base images.
	Resolver ImageResolver
	// Network is the default network of RUN steps.
	Network executor.Network
	// ExtraHosts are added to every RUN step's /etc/hosts ("name ip").
	ExtraHosts []string
	// Labels are added to the final image (--label).
	Labels map[string]string
	// Now stamps history entries; zero means time.Now().
	Now time.Time
	// Warn receives warnings (e.g. an ignored # syntax= directive).
	Warn func(string)
}

// HistoryEntry is an image history entry; Vertex is the step that may add a
// layer for it (nil for config-only instructions and base history).
type HistoryEntry struct {
	v1.History
	Vertex *solver.Vertex
}

// Plan is the result of Convert.
type Plan struct {
	// Target produces the root filesystem of the image.
	Target *solver.Vertex
	// Config is the image config (History and RootFS are filled in by the
	// caller after solving, from History).
	Config v1.ConfigFile
	// History of the image, base entries first. An entry with a Vertex
	// adds a layer unless that step's result equals its input's.
	History []HistoryEntry
}

type converter struct {
	opts    Options
	escape  rune
	stages  []*stageState
	metaEnv []string // global ARG values, KEY=VALUE
	proxy   []string // every RUN's proxy variables (see proxyEnv)
	now     time.Time
}

// Convert parses the Dockerfile and returns the build graph of its target.
func Convert(ctx context.Context, dockerfile []byte, opts Options) (*Plan, error) {
	if opts.Filename == "" {
		opts.Filename = "Dockerfile"
	}
	if opts.Network == "" {
		opts.Network = executor.NetworkHost
	}
	c := &converter{opts: opts, now: opts.Now, proxy: proxyEnv(opts.BuildArgs)}
	if c.now.IsZero() {
		c.now = time.Now().UTC()
	}
	res, err := parseDockerfile(dockerfile)
	if err != nil {
		return nil, c.parseErr(err)
	}
	if len(res.AST.Children) == 0 {
		return nil, &Error{File: opts.Filename, Err: errors.New("the Dockerfile has no instructions")}
	}
	c.escape = res.EscapeToken
	if syntax, _, _, ok := parser.DetectSyntax(dockerfile); ok && opts.Warn != nil {
		opts.Warn(fmt.Sprintf("%s: ignoring # syntax=%s: kiln has its own Dockerfile frontend", opts.Filename, syntax))
	}
	for _, n := range res.AST.Children {
		if err := checkNode20(n); err != nil {
			return nil, &Error{File: opts.Filename, Line: n.StartLine, Err: err}
		}
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, c.parseErr(err)
	}
	if len(stages) == 0 {
		return nil, &Error{File: opts.Filename, Line: res.AST.Children[0].StartLine, Err: errors.New("no FROM instruction: a Dockerfile must start with FROM (only ARG may come before it)")}
	}
	if err := c.globalArgs(metaArgs); err != nil {
		return nil, err
	}
	for i := range stages {
		st := &stages[i]
		c.stages = append(c.stages, &stageState{idx: i, stage: st, name: strings.ToLower(st.Name)})
	}
	target := c.stages[len(c.stages)-1]
	if opts.Target != "" {
		target = c.stageByName(opts.Target)
		if target == nil {
			return nil, &Error{File: opts.Filename, Err: fmt.Errorf("target stage %q could not be found%s", opts.Target, c.stageNamesHint())}
		}
	}
	if err := c.dispatchStage(ctx, target); err != nil {
		return nil, err
	}
	cfg := target.cfg
	for k, v := range opts.Labels {
		if cfg.Config.Labels == nil {
			cfg.Config.Labels = map[string]string{}
		}
		cfg.Config.Labels[k] = v
	}
	cfg.Created = v1.Time{Time: c.now}
	cfg.History = nil
	return &Plan{Target: target.vertex, Config: cfg, History: target.history}, nil
}

func (c *converter) stageByName(name string) *stageState {
	for _, s := range c.stages {
		if s.name != "" && strings.EqualFold(s.name, name) {
			return s
		}
	}
	return nil
}

func (c *converter) stageNamesHint() string {
	var names []string
	for _, s := range c.stages {
		if s.name != "" {
			names = append(names, s.name)
		}
	}
	if len(names) == 0 {
		return " (the Dockerfile has no named stages)"
	}
	return " (stages: " + strings.Join(names, ", ") + ")"
}

// predefinedArgs are available to every ARG declaration without a value.
func predefinedArgs() map[string]string {
	return map[string]string{
		"TARGETPLATFORM": "linux/amd64", "TARGETOS": "linux", "TARGETARCH": "amd64", "TARGETVARIANT": "",
		"BUILDPLATFORM": "linux/amd64", "BUILDOS": "linux", "BUILDARCH": "amd64", "BUILDVARIANT": "",
	}
}

// globalArgs evaluates the ARGs before the first FROM.
func (c *converter) globalArgs(metaArgs []instructions.ArgCommand) error {
	pre := predefinedArgs()
	for k, v := range pre {
		c.metaEnv = setEnv(c.metaEnv, k, v)
	}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			var val *string
			if kv.Value != nil {
				v, err := c.expand(*kv.Value, c.metaEnv)
				if err != nil {
					return c.errAt(a.Location(), err)
				}
				val = &v
			}
			if bv, ok := c.opts.BuildArgs[kv.Key]; ok {
				val = &bv
			}
			if val != nil {
				c.metaEnv = setEnv(c.metaEnv, kv.Key, *val)
			} else {
				c.metaEnv = unsetEnv(c.metaEnv, kv.Key)
			}
		}
	}
	return nil
}

// expand expands $VAR in word with env.
func (c *converter) expand(word string, env []string) (string, error) {
	if err := checkSubstitutions(word, c.escape); err != nil {
		return "", err
	}
	lex := shell.NewLex(c.escape)
	s, _, err := lex.ProcessWord(word, shell.EnvsFromSlice(env))
	return s, err
}

func (c *converter) expandWords(word string, env []string) ([]string, error) {
	if err := checkSubstitutions(word, c.escape); err != nil {
		return nil, err
	}
	lex := shell.NewLex(c.escape)
	if !strings.ContainsAny(word, "'\"") {
		// Without quotes the words are the expansion split at white
		// space. BuildKit's ProcessWords drops what comes before a
		// ${NAME:-w} or ${NAME:+w} ("80${P:+80}" gives "80"), which
		// Docker 20.10's did not ("8080").
		w, _, err := lex.ProcessWord(word, shell.EnvsFromSlice(env))
		return strings.Fields(w), err
	}
	return lex.ProcessWords(word, shell.EnvsFromSlice(env))
}

// stageState is the dispatch state of one stage.
type stageState struct {
	idx   int
	stage *instructions.Stage
	name  string

	busy, done bool

	vertex  *solver.Vertex
	cfg     v1.ConfigFile
	env     []string // the build environment: image env, ARGs and ENVs
	cmdSet  bool
	history []HistoryEntry
	step    int
	total   int
	shell   []string
}

func (s *stageState) label() string {
	return s.stage.Name
}

// stageByRef resolves a FROM or --from reference to an earlier stage.
func (c *converter) stageByRef(ref string, allowIndex bool) *stageState {
	if allowIndex {
		if n, err := strconv.Atoi(ref); err == nil && n >= 0 && n < len(c.stages) {
			return c.stages[n]
		}
	}
	return c.stageByName(ref)
}

// setEnv sets KEY=VALUE in env, replacing an existing KEY in place.
func setEnv(env []string, key, val string) []string {
	kv := key + "=" + val
	for i, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			out := append([]string(nil), env...)
			out[i] = kv
			return out
		}
	}
	return append(append([]string(nil), env...), kv)
}

func unsetEnv(env []string, key string) []string {
	var out []string
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k != key {
			out = append(out, e)
		}
	}
	return out
}

func getEnv(env []string, key string) (string, bool) {
	for _, e := range env {
		if k, v, _ := strings.Cut(e, "="); k == key {
			return v, true
		}
	}
	return "", false
}
