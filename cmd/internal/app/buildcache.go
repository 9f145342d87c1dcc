package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/exporter"
	"github.com/kiln-build/kiln/exporter/buildcache"
	"github.com/kiln-build/kiln/frontend"
	"github.com/kiln-build/kiln/solver"
)

// CacheSpec is a parsed --cache-from or --cache-to value.
type CacheSpec struct {
	// Type is "registry", "local" or "inline".
	Type string
	// Ref is the registry reference (type=registry).
	Ref string
	// Dir is the OCI layout directory (type=local: dest= or src=).
	Dir string
	// Max exports every stage's steps (mode=max) instead of only the
	// final image's (mode=min, the default).
	Max bool
}

// ParseCacheSpec parses "type=registry,ref=HOST/REPO:TAG,mode=max",
// "type=local,dest=DIR", "type=local,src=DIR", "type=inline" or a bare image
// reference (type=registry).
func ParseCacheSpec(s string) (CacheSpec, error) {
	if !strings.Contains(s, "=") {
		return CacheSpec{Type: "registry", Ref: s}, nil
	}
	var c CacheSpec
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return c, fmt.Errorf("cache %q: %q is not KEY=VALUE", s, kv)
		}
		switch k {
		case "type":
			c.Type = v
		case "ref":
			c.Ref = v
		case "dest", "src":
			c.Dir = v
		case "mode":
			switch v {
			case "min":
			case "max":
				c.Max = true
			default:
				return c, fmt.Errorf("cache %q: mode=%s: want min or max", s, v)
			}
		case "compression", "oci-mediatypes", "ignore-error", "image-manifest":
		default:
			return c, fmt.Errorf("cache %q: unknown key %q", s, k)
		}
	}
	switch {
	case c.Type == "registry" && c.Ref == "":
		return c, fmt.Errorf("cache %q: type=registry needs ref=", s)
	case c.Type == "local" && c.Dir == "":
		return c, fmt.Errorf("cache %q: type=local needs dest= (export) or src= (import)", s)
	case c.Type != "registry" && c.Type != "local" && c.Type != "inline":
		return c, fmt.Errorf("cache %q: type=%s: want registry, local or inline", s, c.Type)
	}
	return c, nil
}

// importCaches opens the --cache-from sources; one that cannot be read is
// reported through warn and skipped, as docker does.
func (a *App) importCaches(ctx context.Context, specs []CacheSpec, reg RegistryOptions, warn func(string)) []*buildcache.Source {
	var out []*buildcache.Source
	for _, c := range specs {
		var src *buildcache.Source
		var err error
		switch c.Type {
		case "local":
			src, err = buildcache.ImportLocal(ctx, c.Dir)
		case "registry":
			src, err = a.localInlineCache(ctx, c.Ref)
			if src == nil {
				src, err = buildcache.ImportRegistry(ctx, c.Ref, reg.Registry)
			}
		default:
			err = fmt.Errorf("--cache-from type=%s cannot be imported", c.Type)
		}
		if err != nil {
			if warn != nil {
				warn(err.Error())
			}
			continue
		}
		out = append(out, src)
	}
	return out
}

// localInlineCache reads the inline cache of a local image named ref; nil
// when there is no such image or it has no inline cache.
func (a *App) localInlineCache(ctx context.Context, ref string) (*buildcache.Source, error) {
	img, err := exporter.Lookup(ctx, a.Store, ref)
	if err != nil {
		return nil, nil
	}
	raw, err := a.Store.ReadBlob(ctx, img.ID)
	if err != nil {
		return nil, nil
	}
	b, err := buildcache.InlineConfig(raw)
	if err != nil {
		return nil, nil
	}
	cfg, err := buildcache.Parse(b)
	if err != nil {
		return nil, err
	}
	return buildcache.NewSource("cache "+ref, cfg, a.Store.OpenBlob), nil
}

// cacheRecords collects key → chain of the steps a cache export covers:
// the final image's steps, or with max every step of the build.
func cacheRecords(ctx context.Context, sol *solver.Solution, target *solver.Vertex, max bool) map[digest.Digest]cache.Chain {
	var vs []*solver.Vertex
	if max {
		vs = sol.Vertices()
	} else {
		for v := target; v != nil; {
			vs = append(vs, v)
			if len(v.Inputs) == 0 {
				break
			}
			v = v.Inputs[0]
		}
	}
	out := map[digest.Digest]cache.Chain{}
	for _, v := range vs {
		if u, ok := v.Op.(solver.Uncacheable); ok && u.NoRecord() {
			continue
		}
		k, ok := sol.Key(v)
		if !ok {
			continue
		}
		r, ok := sol.ResultOf(ctx, v)
		if !ok {
			continue
		}
		out[k] = r.Chain
	}
	return out
}

// inlineCache puts the final image's cache records into cfg as a label.
func inlineCache(ctx context.Context, sol *solver.Solution, plan *frontend.Plan, cfg *v1.ConfigFile) error {
	b, err := json.Marshal(buildcache.NewConfig(cacheRecords(ctx, sol, plan.Target, false), nil))
	if err != nil {
		return err
	}
	if cfg.Config.Labels == nil {
		cfg.Config.Labels = map[string]string{}
	}
	cfg.Config.Labels[buildcache.InlineLabel] = string(b)
	return nil
}

// exportCaches writes the --cache-to destinations (inline is done before
// the image is written).
func (a *App) exportCaches(ctx context.Context, specs []CacheSpec, sol *solver.Solution, plan *frontend.Plan, img *exporter.Image, reg RegistryOptions) error {
	for _, c := range specs {
		if c.Type == "inline" {
			continue
		}
		records := cacheRecords(ctx, sol, plan.Target, c.Max)
		images := map[digest.Digest][]byte{}
		if k, ok := sol.Key(plan.Target); ok {
			if b, err := a.Store.ReadBlob(ctx, img.ID); err == nil {
				images[k] = b
			}
		}
		cfg := buildcache.NewConfig(records, images)
		var err error
		switch c.Type {
		case "local":
			err = buildcache.ExportLocal(ctx, a.Store, c.Dir, cfg)
		case "registry":
			err = buildcache.ExportRegistry(ctx, a.Store, c.Ref, cfg, reg.Registry)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
