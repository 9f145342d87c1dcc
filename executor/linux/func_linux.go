package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// runFunc mounts the Spec's inputs read-only outside the root filesystem,
// opens them, chroots into the root filesystem and calls the handler. The
// handler's error is returned verbatim.
func runFunc(cfg *initConfig, rootfs string, handlers map[string]Handler) error {
	h := handlers[cfg.Func.Name]
	if h == nil {
		return fmt.Errorf("run function %q: no handler registered under that name", cfg.Func.Name)
	}
	roots := make([]*os.Root, len(cfg.Inputs))
	for i, in := range cfg.Inputs {
		dir := filepath.Join(cfg.RunDir, "in"+strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("mount input %d: %w", i, err)
		}
		var err error
		if in.Dir != "" {
			err = bindReadOnly(in.Dir, dir)
		} else {
			err = mountStack(cfg, dir, in.LowerDirs, false)
		}
		if err != nil {
			return fmt.Errorf("mount input %d: %w", i, err)
		}
		if roots[i], err = os.OpenRoot(dir); err != nil {
			return fmt.Errorf("open input %d: %w", i, err)
		}
	}
	if cfg.ReadOnly {
		if err := unix.Mount("", rootfs, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("make the root filesystem read-only: %w", err)
		}
	}
	if err := unix.Chroot(rootfs); err != nil {
		return fmt.Errorf("enter the root filesystem: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("enter the root filesystem: %w", err)
	}
	unix.Umask(0o022)
	if err := h(context.Background(), roots, cfg.Func.Payload); err != nil {
		return err
	}
	return nil
}

// mountStack shows the overlay stack lowers (bottom first) at dir, an
// empty directory in the run dir: read-only, or, when writable, over a
// scratch upper dir beside dir, so writes are discarded with the run dir.
// Where overlayfs cannot be mounted the layers are merged into dir (a copy
// in the run dir too).
func mountStack(cfg *initConfig, dir string, lowers []string, writable bool) error {
	if len(lowers) == 0 {
		if writable {
			return nil // dir is an empty scratch dir already
		}
		return bindReadOnly(dir, dir)
	}
	if len(lowers) == 1 && !writable {
		return bindReadOnly(lowers[0], dir)
	}
	var err error
	if !cfg.CopyMode {
		ov := overlay{links: cfg.LinkMount, linkDir: dir + ".l", lowers: lowers}
		flags := uintptr(unix.MS_RDONLY)
		if writable {
			ov.upper, ov.work, ov.volatile, flags = dir+".u", dir+".w", true, 0
			if err := os.Mkdir(ov.upper, 0o755); err != nil {
				return err
			}
			if err := os.Mkdir(ov.work, 0o700); err != nil {
				return err
			}
		}
		if err = ov.mount(dir, flags); err == nil || !overlayUnavailable(err) {
			return err
		}
	}
	if err := mergeLayers(dir, lowers); err != nil {
		return err
	}
	if writable {
		return nil
	}
	return bindReadOnly(dir, dir)
}

// bindReadOnly binds src (recursively) at dst, read-only.
func bindReadOnly(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	err := unix.MountSetattr(unix.AT_FDCWD, dst, unix.AT_RECURSIVE, &attr)
	if errors.Is(err, unix.ENOSYS) {
		err = unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
	}
	if err != nil {
		return fmt.Errorf("make %s read-only: %w", src, err)
	}
	return nil
}
