package linux

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// parsedMount is a checked Spec mount.
type parsedMount struct {
	mountConfig
	// attrs are MOUNT_ATTR_* flags for a bind mount; flags and data the
	// mount(2) arguments of a tmpfs.
	attrs uint64
	flags uintptr
	data  string
	// fileMode, uid and gid are a file mount's.
	fileMode uint32
	uid, gid int
}

// parseMount checks m and turns its options into mount flags.
func parseMount(m mountConfig) (parsedMount, error) {
	p := parsedMount{mountConfig: m}
	if !path.IsAbs(m.Target) || path.Clean(m.Target) == "/" {
		return p, fmt.Errorf("mount %q: the target must be an absolute path other than /", m.Target)
	}
	p.Target = path.Clean(m.Target)
	switch m.Type {
	case "bind":
		if !path.IsAbs(m.Source) {
			return p, fmt.Errorf("mount %s: the bind source %q is not an absolute path", m.Target, m.Source)
		}
		if m.ReadOnly {
			p.attrs |= unix.MOUNT_ATTR_RDONLY
		}
		for _, o := range m.Options {
			switch o {
			case "ro":
				p.attrs |= unix.MOUNT_ATTR_RDONLY
			case "nosuid":
				p.attrs |= unix.MOUNT_ATTR_NOSUID
			case "nodev":
				p.attrs |= unix.MOUNT_ATTR_NODEV
			case "noexec":
				p.attrs |= unix.MOUNT_ATTR_NOEXEC
			case "rw", "bind", "rbind", "private", "rprivate", "slave", "rslave", "z", "Z":
				// Binds are always recursive and private.
			default:
				return p, fmt.Errorf("mount %s: unsupported bind option %q", m.Target, o)
			}
		}
	case "layers":
		if m.ReadOnly {
			p.attrs |= unix.MOUNT_ATTR_RDONLY
		}
		if len(m.Options) > 0 {
			return p, fmt.Errorf("mount %s: a layers mount takes no options (got %q)", m.Target, m.Options)
		}
		for _, l := range m.LowerDirs {
			if !path.IsAbs(l) {
				return p, fmt.Errorf("mount %s: the layer dir %q is not an absolute path", m.Target, l)
			}
		}
	case "file":
		p.attrs |= unix.MOUNT_ATTR_RDONLY
		p.fileMode = 0o400
		for _, o := range m.Options {
			key, val, _ := strings.Cut(o, "=")
			n, err := strconv.ParseUint(val, 10, 32)
			if key == "mode" {
				n, err = strconv.ParseUint(val, 8, 32)
			}
			if err != nil {
				return p, fmt.Errorf("mount %s: invalid file option %q", m.Target, o)
			}
			switch key {
			case "mode":
				p.fileMode = uint32(n) & 0o7777
			case "uid":
				p.uid = int(n)
			case "gid":
				p.gid = int(n)
			default:
				return p, fmt.Errorf("mount %s: unsupported file option %q", m.Target, o)
			}
		}
	case "tmpfs":
		if m.Source != "" && m.Source != "tmpfs" {
			return p, fmt.Errorf("mount %s: a tmpfs has no source (got %q)", m.Target, m.Source)
		}
		p.flags = unix.MS_NOSUID | unix.MS_NODEV
		if m.ReadOnly {
			p.flags |= unix.MS_RDONLY
		}
		var data []string
		for _, o := range m.Options {
			key, _, _ := strings.Cut(o, "=")
			switch o {
			case "ro":
				p.flags |= unix.MS_RDONLY
			case "rw":
				p.flags &^= unix.MS_RDONLY
			case "noexec":
				p.flags |= unix.MS_NOEXEC
			case "exec":
				p.flags &^= unix.MS_NOEXEC
			case "nosuid", "nodev":
			case "suid":
				p.flags &^= unix.MS_NOSUID
			case "dev":
				p.flags &^= unix.MS_NODEV
			default:
				switch key {
				case "size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "huge", "mpol":
					if strings.Contains(o, ",") {
						return p, fmt.Errorf("mount %s: invalid tmpfs option %q", m.Target, o)
					}
					data = append(data, o)
				default:
					return p, fmt.Errorf("mount %s: unsupported tmpfs option %q", m.Target, o)
				}
			}
		}
		p.data = strings.Join(data, ",")
	default:
		return p, fmt.Errorf("mount %s: unsupported type %q (want bind, tmpfs, layers or file)", m.Target, m.Type)
	}
	return p, nil
}

// openedMount is a Spec mount prepared before pivot_root: a bind source
// is opened (as a detached copy of its mount tree) while host paths still
// resolve.
type openedMount struct {
	parsedMount
	tree int  // bind: detached mount tree, else -1
	dir  bool // the target must be a directory
}

// openMounts parses and opens the Spec's mounts; a layers mount is
// mounted in the run dir first.
func openMounts(cfg *initConfig) ([]openedMount, error) {
	var out []openedMount
	for i, m := range cfg.Mounts {
		p, err := parseMount(m)
		if err != nil {
			closeMounts(out)
			return nil, err
		}
		om := openedMount{parsedMount: p, tree: -1, dir: true}
		if p.Type != "tmpfs" {
			fd, err := openBindSource(cfg, i, p)
			if err != nil {
				closeMounts(out)
				return nil, fmt.Errorf("mount %s: %w", p.Target, err)
			}
			om.tree = fd
			if !cfg.Privileged {
				// As the root filesystem: no usable device nodes.
				p.attrs |= unix.MOUNT_ATTR_NODEV
				om.parsedMount = p
			}
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err == nil {
				om.dir = st.Mode&unix.S_IFMT == unix.S_IFDIR
			}
			if p.attrs != 0 {
				attr := unix.MountAttr{Attr_set: p.attrs}
				if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
					out = append(out, om)
					closeMounts(out)
					return nil, fmt.Errorf("mount %s: set bind mount options: %w", p.Target, err)
				}
			}
		}
		out = append(out, om)
	}
	return out, nil
}

// openBindSource returns a detached copy of the mount tree to bind for p
// (any type but tmpfs): its host path, a file mount's data file (see
// openDataFile), or for a layers mount the path p.Source inside the stack,
// which it mounts at m<i> in the run dir (resolved inside the stack, so
// symlinks cannot lead out of it).
func openBindSource(cfg *initConfig, i int, p parsedMount) (int, error) {
	const flags = unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC | unix.AT_RECURSIVE
	switch p.Type {
	case "bind":
		fd, err := unix.OpenTree(unix.AT_FDCWD, p.Source, flags)
		if err != nil {
			return -1, fmt.Errorf("open bind source %s: %w", p.Source, err)
		}
		return fd, nil
	case "file":
		return openDataFile(cfg, i, p)
	}
	dir := filepath.Join(cfg.RunDir, "m"+strconv.Itoa(i))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return -1, err
	}
	if err := mountStack(cfg, dir, p.LowerDirs, !p.ReadOnly); err != nil {
		return -1, fmt.Errorf("mount its layers: %w", err)
	}
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(root)
	rel := strings.TrimLeft(path.Clean("/"+p.Source), "/")
	if rel == "" {
		rel = "."
	}
	src, err := unix.Openat2(root, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return -1, fmt.Errorf("source %s: %w", path.Clean("/"+p.Source), err)
	}
	defer unix.Close(src)
	fd, err := unix.OpenTree(src, "", flags|unix.AT_EMPTY_PATH)
	if err != nil {
		return -1, fmt.Errorf("open source %s: %w", path.Clean("/"+p.Source), err)
	}
	return fd, nil
}

// openDataFile writes a file mount's data to a tmpfs mounted at f<i> in
// the run dir, inside the init's mount namespace only (the host sees an
// empty dir, and the tmpfs goes with the namespace however the container
// ends), and returns a detached copy of that file's mount.
func openDataFile(cfg *initConfig, i int, p parsedMount) (int, error) {
	dir := filepath.Join(cfg.RunDir, "f"+strconv.Itoa(i))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return -1, err
	}
	size := (len(p.Data)/4096 + 2) * 4096
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size="+strconv.Itoa(size)); err != nil {
		return -1, fmt.Errorf("mount a tmpfs for the file: %w", err)
	}
	f := filepath.Join(dir, "data")
	if err := os.WriteFile(f, p.Data, 0o600); err != nil {
		return -1, err
	}
	if err := os.Chown(f, p.uid, p.gid); err != nil {
		return -1, err
	}
	if err := unix.Chmod(f, p.fileMode); err != nil {
		return -1, err
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, f, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("open the file: %w", err)
	}
	return fd, nil
}

func closeMounts(ms []openedMount) {
	for _, m := range ms {
		if m.tree >= 0 {
			unix.Close(m.tree)
		}
	}
}

// mount mounts m at its target inside the container's root (the caller has
// pivoted, so symlinks in the image resolve inside it), creating the target
// as a stub when missing.
func (s *stubber) mount(m openedMount) error {
	n := len(s.stubs)
	err := s.mountAt(m.Target, m.dir, func(t string) error {
		if m.tree >= 0 {
			return unix.MoveMount(m.tree, "", unix.AT_FDCWD, t, unix.MOVE_MOUNT_F_EMPTY_PATH)
		}
		return unix.Mount("tmpfs", t, "tmpfs", m.flags, m.data)
	})
	if m.KeepStub {
		// The dirs made for it stay: all stubs but a file leaf.
		for i := n; i < len(s.stubs); i++ {
			s.stubs[i].Keep = m.dir || i < len(s.stubs)-1
		}
	}
	return err
}
