package containers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// validVolume is docker's rule for volume names.
var validVolume = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Volume is a named or anonymous volume: a directory under the store root.
type Volume struct {
	Name       string            `json:"Name"`
	Driver     string            `json:"Driver"`
	Mountpoint string            `json:"Mountpoint"`
	CreatedAt  time.Time         `json:"CreatedAt"`
	Labels     map[string]string `json:"Labels"`
	Scope      string            `json:"Scope"`
	// Anonymous marks a volume made for one container.
	Anonymous bool `json:"Anonymous,omitempty"`
}

// IsVolumeName reports whether s is a volume name rather than a host path
// (the left of -v NAME:/path).
func IsVolumeName(s string) bool { return validVolume.MatchString(s) }

func (s *Store) volumeDir(name string) string { return filepath.Join(s.volumesDir(), name) }

// CreateVolume makes volume name (a random anonymous one when name is
// empty); an existing volume is returned as it is.
func (s *Store) CreateVolume(ctx context.Context, name string, labels map[string]string) (*Volume, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	anon := name == ""
	if anon {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		name = hex.EncodeToString(b)
	} else if !IsVolumeName(name) {
		return nil, fmt.Errorf("invalid volume name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	dir := s.volumeDir(name)
	if v, err := s.Volume(ctx, name); err == nil {
		return v, nil
	}
	v := &Volume{Name: name, Driver: "local", Mountpoint: filepath.Join(dir, "_data"), CreatedAt: time.Now().UTC().Truncate(time.Second),
		Labels: labels, Scope: "local", Anonymous: anon}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	tmp, err := os.MkdirTemp(s.volumesDir(), ".new-")
	if err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	err = os.Mkdir(filepath.Join(tmp, "_data"), 0o755)
	if err == nil {
		err = writeJSON(filepath.Join(tmp, "volume.json"), v)
	}
	if err == nil {
		err = os.Rename(tmp, dir)
		if errors.Is(err, fs.ErrExist) || errors.Is(err, os.ErrExist) {
			// Created by someone else meanwhile.
			os.RemoveAll(tmp)
			return s.Volume(ctx, name)
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	return v, nil
}

// Volume returns volume name.
func (s *Store) Volume(ctx context.Context, name string) (*Volume, error) {
	if !IsVolumeName(name) {
		return nil, fmt.Errorf("no such volume: %s: %w", name, ErrNotFound)
	}
	var v Volume
	if err := readJSON(filepath.Join(s.volumeDir(name), "volume.json"), &v); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no such volume: %s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("read volume %s: %w", name, err)
	}
	v.Mountpoint = filepath.Join(s.volumeDir(name), "_data")
	return &v, nil
}

// Volumes lists every volume by name.
func (s *Store) Volumes(ctx context.Context) ([]*Volume, error) {
	ents, err := os.ReadDir(s.volumesDir())
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var out []*Volume
	for _, e := range ents {
		if !e.IsDir() || !IsVolumeName(e.Name()) {
			continue
		}
		v, err := s.Volume(ctx, e.Name())
		if err != nil {
			continue
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b *Volume) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out, nil
}

// VolumeUsers returns the IDs of the containers that mount volume name.
func (s *Store) VolumeUsers(ctx context.Context, name string) ([]string, error) {
	list, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, r := range list {
		for _, m := range r.Config.Mounts {
			if m.Type == MountVolume && m.Name == name {
				ids = append(ids, r.Config.ID)
				break
			}
		}
	}
	return ids, nil
}

// RemoveVolume deletes volume name and its data; it refuses while a
// container (running or not) uses it.
func (s *Store) RemoveVolume(ctx context.Context, name string) error {
	if _, err := s.Volume(ctx, name); err != nil {
		return err
	}
	users, err := s.VolumeUsers(ctx, name)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return fmt.Errorf("remove volume %s: volume is in use by container %s: %w", name, ShortID(users[0]), ErrInUse)
	}
	return s.removeVolumeDir(name)
}

func (s *Store) removeVolumeDir(name string) error {
	trash, err := os.MkdirTemp(s.volumesDir(), ".rm-")
	if err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := os.Rename(s.volumeDir(name), filepath.Join(trash, "v")); err != nil {
		os.Remove(trash)
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}

// PruneVolumes removes every volume no container uses and returns their
// names.
func (s *Store) PruneVolumes(ctx context.Context) ([]string, error) {
	vols, err := s.Volumes(ctx)
	if err != nil {
		return nil, err
	}
	list, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, r := range list {
		for _, m := range r.Config.Mounts {
			if m.Type == MountVolume {
				used[m.Name] = true
			}
		}
	}
	var removed []string
	for _, v := range vols {
		if used[v.Name] {
			continue
		}
		if err := s.removeVolumeDir(v.Name); err != nil {
			return removed, err
		}
		removed = append(removed, v.Name)
	}
	return removed, nil
}

// Remove deletes a stopped container: its directory (writable layer and
// logs included), its name and, with volumes (or always for AutoRemove),
// its anonymous volumes no other container uses.
func (s *Store) Remove(ctx context.Context, id string, volumes bool) error {
	r, err := s.Load(id)
	if err != nil {
		return err
	}
	if err := s.Delete(ctx, id); err != nil {
		return err
	}
	var errs []error
	if volumes || r.Config.AutoRemove {
		for _, m := range r.Config.Mounts {
			if m.Type != MountVolume || !m.Anonymous {
				continue
			}
			if err := s.RemoveVolume(ctx, m.Name); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrInUse) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// PopulateVolume fills the volume directory dir, when it is empty, with
// what the image (its layers l) has at the container path target, as
// docker does when it mounts a volume over image content: the files with
// their owners, modes and times, and the directory's own owner and mode.
// Nothing is copied when the image has no directory there.
func PopulateVolume(ctx context.Context, l Layers, target, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("fill volume for %s: %w", target, err)
	}
	if len(entries) > 0 {
		return nil
	}
	rel, err := l.Resolve(target, true)
	if err != nil {
		return fmt.Errorf("fill volume for %s: %w", target, err)
	}
	fi, err := l.Stat(rel)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.IsDir()) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fill volume for %s: %w", target, err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(l.WriteTar(ctx, rel, ".", pw)) }()
	err = ExtractTar(ctx, pr, func(name string) (string, error) { return securejoin.SecureJoin(dir, name) })
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("fill volume for %s from the image: %w", target, err)
	}
	return nil
}
