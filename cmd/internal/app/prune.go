package app

import (
	"context"
	"errors"
	"slices"
	"sort"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/executor/containers"
	"github.com/kiln-build/kiln/executor/network"
)

// ContainerList is every container of the App's store.
func (a *App) ContainerList(ctx context.Context) ([]*containers.Record, error) {
	cs, err := a.Containers()
	if err != nil {
		return nil, err
	}
	return cs.List(ctx)
}

// PruneContainers removes every container that is not running (created
// or exited), as docker container prune does, and returns their IDs.
func (a *App) PruneContainers(ctx context.Context) ([]string, error) {
	list, err := a.ContainerList(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, r := range list {
		if r.Running() {
			continue
		}
		if err := a.RemoveContainer(ctx, r.Config.ID, false, false); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, r.Config.ID)
	}
	return removed, errors.Join(errs...)
}

// PruneNetworks removes the user networks no container names (running or
// not), as docker network prune does, and returns their names.
func (a *App) PruneNetworks(ctx context.Context) ([]string, error) {
	list, err := a.ContainerList(ctx)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, r := range list {
		used[r.Config.Network] = true
	}
	m, err := a.Networks()
	if err != nil {
		return nil, err
	}
	nets, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, n := range nets {
		if n.Name == network.Bridge || n.Name == network.Host || n.Name == network.None || used[n.Name] {
			continue
		}
		switch err := m.Remove(ctx, n.Name); {
		case errors.Is(err, network.ErrInUse):
		case err != nil:
			errs = append(errs, err)
		default:
			removed = append(removed, n.Name)
		}
	}
	sort.Strings(removed)
	return removed, errors.Join(errs...)
}

// UntagUnusedImages removes the names of the images no container was made
// from, so the next PruneStore takes their data (docker image prune -a),
// and returns the names.
func (a *App) UntagUnusedImages(ctx context.Context) ([]string, error) {
	list, err := a.ContainerList(ctx)
	if err != nil {
		return nil, err
	}
	var inUse []digest.Digest
	for _, r := range list {
		inUse = append(inUse, digest.Digest(r.Config.ImageManifest))
	}
	names, err := a.Store.Images(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	for name, d := range names {
		if slices.Contains(inUse, d) {
			continue
		}
		if err := a.Store.Untag(ctx, name); err != nil {
			return removed, err
		}
		removed = append(removed, name)
	}
	sort.Strings(removed)
	return removed, nil
}

// PruneStore removes the blobs and snapshots no cache entry (none with
// opts.All), no named image and no container uses.
func (a *App) PruneStore(ctx context.Context, opts cache.PruneOptions) (cache.PruneReport, error) {
	// Containers' images stay, even untagged: their snapshots are the
	// containers' root filesystems.
	release, err := a.LeaseContainerImages(ctx)
	if err != nil {
		return cache.PruneReport{}, err
	}
	defer release()
	return a.Store.Prune(ctx, opts)
}
