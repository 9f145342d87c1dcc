package app

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/cache/contenthash"
	"github.com/kiln-build/kiln/cache/layer"
	"github.com/kiln-build/kiln/cmd/internal/hugeheap"
	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/exporter"
	"github.com/kiln-build/kiln/exporter/buildcache"
	"github.com/kiln-build/kiln/frontend"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops/fileop"
)

// BuildRequest is one kiln build.
type BuildRequest struct {
	// ContextDir is the build context; "-" reads a tar from Stdin.
	ContextDir string
	// Dockerfile is the Dockerfile path; "" means ContextDir/Dockerfile,
	// "-" reads it from Stdin.
	Dockerfile string
	Tags       []string
	BuildArgs  map[string]string
	Target     string
	NoCache    bool
	Labels     map[string]string
	Network    executor.Network
	// Secrets are what RUN --mount=type=secret mounts, by id.
	Secrets map[string][]byte
	// SSH are the agent sockets RUN --mount=type=ssh forwards, by id.
	SSH map[string]string
	// ExtraHosts are added to RUN steps' /etc/hosts ("name ip").
	ExtraHosts []string
	// Jobs bounds parallel steps (0: number of CPUs).
	Jobs int
	// Registry says when and how base images are pulled.
	Registry RegistryOptions
	// CacheFrom and CacheTo import and export the build cache.
	CacheFrom, CacheTo []CacheSpec
	// Events receives progress.
	Events func(solver.Event)
	// Warn receives warnings.
	Warn  func(string)
	Stdin io.Reader
}

// BuildResult is a finished build.
type BuildResult struct {
	Image *exporter.Image
	Tags  []string
}

// Build runs a build and tags the image.
func (a *App) Build(ctx context.Context, req BuildRequest) (*BuildResult, error) {
	contextDir := req.ContextDir
	if contextDir == "-" {
		if req.Dockerfile == "-" {
			return nil, errors.New("the context and the Dockerfile cannot both come from stdin")
		}
		dir, cleanup, dockerfileOnly, err := a.contextFromStdin(ctx, req.Stdin)
		if err != nil {
			return nil, err
		}
		if dockerfileOnly {
			// As docker build - < Dockerfile: stdin was the Dockerfile,
			// and the context is empty.
			req.Dockerfile = ""
		}
		defer cleanup()
		contextDir = dir
	}
	contextDir, err := filepath.Abs(contextDir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(contextDir); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("build context %s is not a directory", contextDir)
	}
	dfPath := req.Dockerfile
	var df []byte
	switch dfPath {
	case "-":
		df, err = io.ReadAll(req.Stdin)
		dfPath = "Dockerfile"
	case "":
		dfPath = filepath.Join(contextDir, "Dockerfile")
		df, err = os.ReadFile(dfPath)
	default:
		df, err = os.ReadFile(dfPath)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no Dockerfile at %s: name one with -f", dfPath)
		}
		return nil, fmt.Errorf("read Dockerfile: %w", err)
	}
	excludes, err := readDockerignore(contextDir, req.Dockerfile)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	if epoch := os.Getenv("SOURCE_DATE_EPOCH"); epoch != "" {
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", epoch)
		}
		now = time.Unix(sec, 0).UTC()
	}
	hashesPath := filepath.Join(a.Store.Root(), "contexthash", digest.FromString(contextDir).Encoded()+".json")
	reserveHeap(hashesPath)
	hashes := contenthash.Open(hashesPath)
	defer func() {
		if err := hashes.Save(); err != nil {
			a.Logger.Debug("cannot save the context stat cache", "err", err)
		}
	}()
	plan, err := frontend.Convert(ctx, df, frontend.Options{
		FileDigest: func(ctx context.Context, src *os.Root, name string, fi fs.FileInfo) (digest.Digest, error) {
			return hashes.Digest(ctx, name, fi, func() (digest.Digest, error) { return fileop.DigestFile(ctx, src, name, fi.Size()) })
		},
		FileLookup: hashes.LookupSum,
		Filename:   displayPath(dfPath),
		BuildArgs:  req.BuildArgs,
		Target:     req.Target,
		ContextDir: contextDir,
		Excludes:   excludes,
		Resolver:   localResolver{a: a, opts: req.Registry},
		Network:    req.Network,
		ExtraHosts: req.ExtraHosts,
		Labels:     req.Labels,
		Now:        now,
		Warn:       req.Warn,
	})
	if err != nil {
		return nil, err
	}
	opts := solver.Options{
		Deps:        &solver.Deps{Store: a.Store, Executor: a.Executor, Logger: a.Logger, Secrets: req.Secrets, SSH: req.SSH},
		Parallelism: req.Jobs,
		NoCache:     req.NoCache,
		Events:      req.Events,
	}
	var index *buildcache.Index
	if sources := a.importCaches(ctx, req.CacheFrom, req.Registry, req.Warn); len(sources) > 0 {
		index = &buildcache.Index{Store: a.Store, Sources: sources}
		opts.Index = index
		opts.Materialize = index.Materialize
	}
	sol, err := solver.Solve(ctx, plan.Target, opts)
	if err != nil {
		return nil, err
	}
	if index != nil {
		// The image is complete in the store even when every step came
		// from an imported cache.
		if err := index.Materialize(ctx, sol.Result.Chain); err != nil {
			return nil, err
		}
	}
	cfg := plan.Config
	cfg.History = a.history(ctx, sol, plan, len(sol.Result.Chain))
	for _, c := range req.CacheTo {
		if c.Type == "inline" {
			if err := inlineCache(ctx, sol, plan, &cfg); err != nil {
				return nil, err
			}
		}
	}
	if index != nil {
		// A config recorded with the imported cache for this very result
		// keeps its timestamps, so the image digest is the same as where
		// the cache was made.
		if k, ok := sol.Key(plan.Target); ok {
			if b, ok := index.ImageConfig(k); ok {
				var prev v1.ConfigFile
				if json.Unmarshal(b, &prev) == nil && sameButTimes(prev, cfg) {
					cfg = prev
				}
			}
		}
	}
	img := a.unchangedImage(ctx, req.Tags, sol.Result.Chain, cfg)
	if img == nil {
		img, err = exporter.Write(ctx, a.Store, sol.Result.Chain, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("write image: %w", err)
	}
	if err := a.exportCaches(ctx, req.CacheTo, sol, plan, img, req.Registry); err != nil {
		return nil, err
	}
	res := &BuildResult{Image: img}
	for _, t := range req.Tags {
		name, err := exporter.NormalizeName(t)
		if err != nil {
			return nil, fmt.Errorf("tag %q: %w", t, err)
		}
		if err := a.Store.Tag(ctx, name, img.ManifestDigest); err != nil {
			return nil, fmt.Errorf("tag %s: %w", t, err)
		}
		res.Tags = append(res.Tags, exporter.FamiliarName(name))
	}
	return res, nil
}

// history marks each step that added no layer as an empty layer, so the
// history matches the chain.
func (a *App) history(ctx context.Context, sol *solver.Solution, plan *frontend.Plan, layers int) []v1.History {
	out := make([]v1.History, len(plan.History))
	// Fast path: when every step that may add a layer did, the history
	// needs no look-ups (a no-op rebuild of 40 RUN steps would otherwise
	// read the cache index 80 times).
	steps, base := 0, 0
	for _, h := range plan.History {
		switch {
		case h.Vertex != nil:
			steps++
		case !h.EmptyLayer:
			base++
		}
	}
	if steps+base == layers {
		for i, h := range plan.History {
			out[i] = h.History
			if h.Vertex != nil {
				out[i].EmptyLayer = false
			}
		}
		return out
	}
	nonEmpty := 0
	for i, h := range plan.History {
		out[i] = h.History
		if h.Vertex == nil {
			if !h.EmptyLayer {
				nonEmpty++
			}
			continue
		}
		out[i].EmptyLayer = false
		if len(h.Vertex.Inputs) > 0 {
			r, ok1 := sol.ResultOf(ctx, h.Vertex)
			in, ok2 := sol.ResultOf(ctx, h.Vertex.Inputs[0])
			if ok1 && ok2 && len(r.Chain) == len(in.Chain) {
				out[i].EmptyLayer = true
				continue
			}
		}
		nonEmpty++
	}
	if nonEmpty != layers {
		// The history does not line up with the chain (e.g. a base image
		// without history); mark layers from the end instead.
		for i := range out {
			out[i].EmptyLayer = true
		}
		for i := len(out) - 1; i >= 0 && layers > 0; i-- {
			out[i].EmptyLayer = false
			layers--
		}
	}
	return out
}

// unchangedImage returns the image a tag already names when it has the same
// layers and the same config but for timestamps, so a no-op rebuild keeps the
// image ID.
func (a *App) unchangedImage(ctx context.Context, tags []string, chain cache.Chain, cfg v1.ConfigFile) *exporter.Image {
	for _, t := range tags {
		old, err := exporter.Lookup(ctx, a.Store, t)
		if err != nil || old.Chain.ChainID() != chain.ChainID() || len(old.Chain) != len(chain) {
			continue
		}
		if sameButTimes(old.Config, cfg) {
			return old
		}
	}
	return nil
}

func sameButTimes(a, b v1.ConfigFile) bool {
	norm := func(c v1.ConfigFile) []byte {
		c.Created = v1.Time{}
		c.RootFS = v1.RootFS{}
		h := make([]v1.History, len(c.History))
		for i, e := range c.History {
			e.Created = v1.Time{}
			h[i] = e
		}
		c.History = h
		if c.Architecture == "" {
			c.Architecture = "amd64"
		}
		if c.OS == "" {
			c.OS = "linux"
		}
		b, _ := json.Marshal(c)
		return b
	}
	return bytes.Equal(norm(a), norm(b))
}

// readDockerignore reads <Dockerfile>.dockerignore next to the Dockerfile
// or, failing that, .dockerignore at the context root.
func readDockerignore(contextDir, dockerfile string) ([]string, error) {
	var candidates []string
	if dockerfile != "" && dockerfile != "-" {
		candidates = append(candidates, dockerfile+".dockerignore")
	}
	candidates = append(candidates, filepath.Join(contextDir, ".dockerignore"))
	for _, p := range candidates {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		pats, err := ignorefile.ReadAll(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", p, err)
		}
		return pats, nil
	}
	return nil, nil
}

func displayPath(p string) string {
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, p); err == nil && !filepath.IsAbs(rel) && len(rel) < len(p) && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return p
}

// contextFromStdin unpacks the context tar (compressed or not) that r
// holds into a temp dir or, as docker build does when r holds no archive,
// writes r there as the Dockerfile of an otherwise empty context
// (dockerfileOnly).
func (a *App) contextFromStdin(ctx context.Context, r io.Reader) (dir string, cleanup func(), dockerfileOnly bool, err error) {
	if r == nil {
		return "", nil, false, errors.New("no stdin to read the context from")
	}
	dir, err = os.MkdirTemp(filepath.Join(a.Store.Root()), "context-")
	if err != nil {
		return "", nil, false, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	br := bufio.NewReaderSize(r, 64<<10)
	if head, _ := br.Peek(512); !layer.Compressed(head) && !isTarHeader(head) {
		// Not an archive: the Dockerfile, as docker build takes it.
		data, err := io.ReadAll(br)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "Dockerfile"), data, 0o644)
		}
		if err != nil {
			cleanup()
			return "", nil, false, fmt.Errorf("read the Dockerfile from stdin: %w", err)
		}
		return dir, cleanup, true, nil
	}
	rc, err := layer.Decompress(br)
	if err != nil {
		cleanup()
		return "", nil, false, fmt.Errorf("read context from stdin: %w", err)
	}
	defer rc.Close()
	if err := layer.Unpack(ctx, rc, dir, layer.UnpackOptions{NoSameOwner: true}); err != nil {
		cleanup()
		return "", nil, false, fmt.Errorf("read context from stdin: %w", err)
	}
	return dir, cleanup, false, nil
}

// isTarHeader reports whether head starts with a tar header block.
func isTarHeader(head []byte) bool {
	_, err := tar.NewReader(bytes.NewReader(head)).Next()
	return err == nil
}

// reserveHeap backs the heap with huge pages (hugeheap.Reserve) before a
// build whose context is large, which the size of its stat cache tells: the
// walk of a 20,000-file context allocates ~10 MB, and in 4 KiB pages that
// is 2,600 page faults: 135 ms -> 103 ms for a no-op rebuild on a VM where
// a fault costs ~11 µs. At ~5,000 files the walk's ~650 faults still cost
// more than Reserve's collection (4-5 ms); a small context's rebuild would
// only pay for the collection.
func reserveHeap(statCache string) {
	fi, err := os.Stat(statCache)
	if err != nil || fi.Size() < reserveMinCache {
		return
	}
	hugeheap.Reserve(48 << 20)
}

// reserveMinCache is the stat-cache size from which reserveHeap reserves:
// ~90 bytes per file, so ~5,000 files.
const reserveMinCache = 450 << 10
