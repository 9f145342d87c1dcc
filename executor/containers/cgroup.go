package containers

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// cgroupRoot is where the cgroup filesystems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// CgroupPath is a container's cgroup, relative to the cgroup root (v2) or
// each controller's root (v1).
func CgroupPath(id string) string { return "kiln/" + id }

// RemoveCgroup removes what is left of container id's cgroup when the
// executor could not clean up after it (its shim was killed): the empty
// directories under each hierarchy, deepest first. A cgroup that still has
// processes stays; that is not an error.
func RemoveCgroup(id string) error {
	var dirs []string
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		dirs = append(dirs, filepath.Join(cgroupRoot, CgroupPath(id)))
	} else {
		ents, _ := os.ReadDir(cgroupRoot)
		for _, e := range ents {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(cgroupRoot, e.Name(), CgroupPath(id)))
			}
		}
	}
	var errs []error
	for _, d := range dirs {
		var sub []string
		_ = filepath.WalkDir(d, func(p string, de fs.DirEntry, err error) error {
			if err == nil && de.IsDir() {
				sub = append(sub, p)
			}
			return nil
		})
		slices.Reverse(sub)
		for _, p := range sub {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, os.ErrExist) && !isBusy(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func isBusy(err error) bool {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error() == "device or resource busy"
	}
	return false
}
