package containers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"

	"golang.org/x/sys/unix"
)

// validName is docker's rule for container names.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Words of generated names (adjective_noun, like docker's).
var (
	nameAdjectives = []string{"brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
		"nifty", "proud", "quirky", "sharp", "tender", "upbeat", "vivid", "witty", "zealous", "bold"}
	nameNouns = []string{"ada", "babbage", "curie", "darwin", "euler", "fermi", "gauss", "hopper", "knuth", "lovelace",
		"maxwell", "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "volta", "wozniak", "yalow"}
)

// CheckName validates a container name.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid container name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	return nil
}

// withNames runs fn on the name index with its lock held; fn's changes are
// written back when it returns true.
func (s *Store) withNames(ctx context.Context, fn func(names map[string]string) (bool, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(s.containersDir(), "names.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock container names: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock container names: %w", err)
	}
	names, err := s.readNames()
	if err != nil {
		return err
	}
	changed, err := fn(names)
	if err != nil || !changed {
		return err
	}
	return writeJSON(filepath.Join(s.containersDir(), "names.json"), names)
}

func (s *Store) readNames() (map[string]string, error) {
	names := map[string]string{}
	err := readJSON(filepath.Join(s.containersDir(), "names.json"), &names)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read container names: %w", err)
	}
	return names, nil
}

// names returns the name index (a snapshot).
func (s *Store) names(ctx context.Context) (map[string]string, error) {
	var out map[string]string
	err := s.withNames(ctx, func(names map[string]string) (bool, error) {
		out = names
		return false, nil
	})
	return out, err
}

// reserveName records name for id; an empty name gets a generated one.
func (s *Store) reserveName(ctx context.Context, name, id string) (string, error) {
	if name != "" {
		if err := CheckName(name); err != nil {
			return "", err
		}
	}
	err := s.withNames(ctx, func(names map[string]string) (bool, error) {
		if name == "" {
			for i := 0; ; i++ {
				name = nameAdjectives[rand.IntN(len(nameAdjectives))] + "_" + nameNouns[rand.IntN(len(nameNouns))]
				if i > 20 {
					name += fmt.Sprint(rand.IntN(1000))
				}
				if _, taken := names[name]; !taken {
					break
				}
			}
		}
		if other, taken := names[name]; taken && other != id {
			return false, fmt.Errorf("the container name %q is already in use by container %s; remove or rename that container: %w",
				name, ShortID(other), ErrNameTaken)
		}
		names[name] = id
		return true, nil
	})
	return name, err
}

// releaseName removes name when it still belongs to id.
func (s *Store) releaseName(ctx context.Context, name, id string) error {
	return s.withNames(ctx, func(names map[string]string) (bool, error) {
		if names[name] != id {
			return false, nil
		}
		delete(names, name)
		return true, nil
	})
}

// Rename gives container ref the name newName.
func (s *Store) Rename(ctx context.Context, ref, newName string) error {
	r, err := s.Get(ctx, ref)
	if err != nil {
		return err
	}
	if err := CheckName(newName); err != nil {
		return err
	}
	old := r.Config.Name
	err = s.withNames(ctx, func(names map[string]string) (bool, error) {
		if other, taken := names[newName]; taken && other != r.Config.ID {
			return false, fmt.Errorf("rename %s: the name %q is already in use by container %s: %w", old, newName, ShortID(other), ErrNameTaken)
		}
		if names[old] == r.Config.ID {
			delete(names, old)
		}
		names[newName] = r.Config.ID
		r.Config.Name = newName
		if err := s.SaveConfig(&r.Config); err != nil {
			return false, fmt.Errorf("rename %s: %w", old, err)
		}
		return true, nil
	})
	return err
}
