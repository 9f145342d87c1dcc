package app

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/cache/layer"
	"github.com/kiln-build/kiln/executor/containers"
	"github.com/kiln-build/kiln/exporter"
	"github.com/kiln-build/kiln/frontend"
)

// CommitRequest is kiln commit.
type CommitRequest struct {
	Container string
	// Tag names the new image ("" leaves it untagged).
	Tag     string
	Message string
	Author  string
	// Changes are Dockerfile instructions applied to the config.
	Changes []string
	// Pause freezes a running container while its changes are read.
	Pause bool
}

// CommitContainer makes an image of a container: its image's layers plus
// one layer with the container's changes (its upper dir), and the
// container's config (command, environment, working dir, user, labels,
// exposed ports) with req.Changes applied.
func (a *App) CommitContainer(ctx context.Context, req CommitRequest) (*exporter.Image, error) {
	cs, err := a.Containers()
	if err != nil {
		return nil, err
	}
	r, err := cs.Get(ctx, req.Container)
	if err != nil {
		return nil, err
	}
	base, err := a.ContainerImage(ctx, r)
	if err != nil {
		return nil, err
	}
	if req.Pause && r.State.Status == containers.Running {
		if err := cs.Pause(ctx, r.Config.ID); err == nil {
			defer cs.Unpause(context.WithoutCancel(ctx), r.Config.ID)
		}
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := layer.Diff(ctx, r.UpperDir(), pw)
		pw.CloseWithError(err)
	}()
	l, err := a.Store.ImportLayer(ctx, pr, cache.MediaTypeLayerTar, "")
	pr.CloseWithError(err)
	if err != nil {
		return nil, fmt.Errorf("commit %s: store its changes: %w", r.Config.Name, err)
	}
	chain := base.Chain.Append(l)

	cfg := base.Config
	cfg.History = slices.Clone(cfg.History)
	cc := cfg.Config
	cc.Env = slices.Clone(r.Config.Env)
	cc.Cmd = slices.Clone(r.Config.Cmd)
	cc.Entrypoint = slices.Clone(r.Config.Entrypoint)
	cc.WorkingDir = r.Config.WorkingDir
	cc.User = r.Config.User
	cc.Labels = maps.Clone(r.Config.Labels)
	if len(r.Config.ExposedPorts) > 0 {
		cc.ExposedPorts = map[string]struct{}{}
		for _, p := range r.Config.ExposedPorts {
			cc.ExposedPorts[p] = struct{}{}
		}
	}
	if r.Config.StopSignal != "" {
		cc.StopSignal = r.Config.StopSignal
	}
	cfg.Config = cc
	if len(req.Changes) > 0 {
		cfg, err = frontend.ApplyChanges(ctx, cfg, req.Changes)
		if err != nil {
			return nil, fmt.Errorf("commit %s: %w", r.Config.Name, err)
		}
	}
	now := v1.Time{Time: time.Now().UTC().Truncate(time.Second)}
	cfg.Created = now
	if req.Author != "" {
		cfg.Author = req.Author
	}
	cfg.History = append(cfg.History, v1.History{Created: now, Author: req.Author, Comment: req.Message,
		CreatedBy: strings.Join(r.Config.Args, " ")})
	img, err := exporter.Write(ctx, a.Store, chain, cfg)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", r.Config.Name, err)
	}
	if req.Tag != "" {
		name, err := exporter.NormalizeName(req.Tag)
		if err != nil {
			return nil, err
		}
		if err := a.Store.Tag(ctx, name, img.ManifestDigest); err != nil {
			return nil, err
		}
	}
	return img, nil
}
