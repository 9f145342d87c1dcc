package linux

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// defaultPath is searched when the container's environment has no PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath finds file in the PATH of env (the container's, not kiln's),
// like exec.LookPath. On failure code is 127 for not found and 126 for not
// executable.
func lookPath(file string, env []string) (string, int, error) {
	if strings.Contains(file, "/") {
		if err := executable(file); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", 127, fmt.Errorf("exec: %q: %w", file, err)
			}
			return "", 126, fmt.Errorf("exec: %q: %w", file, err)
		}
		return file, 0, nil
	}
	pathEnv, ok := "", false
	for i := len(env) - 1; i >= 0; i-- {
		if v, found := strings.CutPrefix(env[i], "PATH="); found {
			pathEnv, ok = v, true
			break
		}
	}
	if !ok {
		pathEnv = defaultPath
	}
	var denied error
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		err := executable(p)
		if err == nil {
			return p, 0, nil
		}
		if denied == nil && errors.Is(err, fs.ErrPermission) {
			denied = err
		}
	}
	if denied != nil {
		return "", 126, fmt.Errorf("exec: %q: %w", file, denied)
	}
	return "", 127, fmt.Errorf("exec: %q: executable file not found in $PATH", file)
}

// executable checks that p is a file with an execute bit.
func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return &fs.PathError{Op: "exec", Path: p, Err: unix.EISDIR}
	}
	if fi.Mode()&0o111 == 0 {
		return &fs.PathError{Op: "exec", Path: p, Err: fs.ErrPermission}
	}
	return nil
}

// cloexecFrom marks every fd >= first close-on-exec so no fd of kiln's
// reaches the container process.
func cloexecFrom(first int) error {
	err := unix.CloseRange(uint(first), ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	// close_range with CLOSE_RANGE_CLOEXEC needs Linux 5.11.
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd < first {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && !errors.Is(err, unix.EBADF) {
			return err
		}
	}
	return nil
}

// defaultCaps is Docker's default capability set.
var defaultCaps = []uintptr{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FSETID, unix.CAP_FOWNER, unix.CAP_MKNOD,
	unix.CAP_NET_RAW, unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETFCAP, unix.CAP_SETPCAP,
	unix.CAP_NET_BIND_SERVICE, unix.CAP_SYS_CHROOT, unix.CAP_KILL, unix.CAP_AUDIT_WRITE,
}

// dropPrivileges limits the capabilities to caps (a bit mask, see capMask)
// and switches to u. It acts on the calling thread only,
// which must be the one that execs.
func dropPrivileges(u execUser, caps uint64) error {
	if err := limitCaps(caps); err != nil {
		return err
	}
	keep := [2]uint32{uint32(caps), uint32(caps >> 32)}
	if err := setgroups(u.groups); err != nil {
		return fmt.Errorf("set supplementary groups: %w", err)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(u.gid), uintptr(u.gid), uintptr(u.gid)); e != 0 {
		return fmt.Errorf("set group id %d: %w", u.gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(u.uid), uintptr(u.uid), uintptr(u.uid)); e != 0 {
		return fmt.Errorf("set user id %d: %w", u.uid, e)
	}
	// Switching to a non-root uid already cleared the effective and
	// permitted sets; root keeps the default set. Inheritable stays
	// empty, as in Docker since CVE-2022-24769.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if u.uid == 0 {
		for i := range data {
			data[i].Effective, data[i].Permitted = keep[i], keep[i]
		}
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	return nil
}

// limitCaps drops every capability outside caps from the bounding set and
// clears the ambient set of the calling thread: what it execs gets at most
// caps, as root or through a setuid or file-capability binary. As in
// Docker (builds and docker run alike), no_new_privs stays off, so a
// setuid binary run by a non-root USER works; the bounding set still caps
// what it gains. The thread's own effective capabilities stay.
func limitCaps(caps uint64) error {
	for c := uintptr(0); c < 64; c++ {
		if caps&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
			if errors.Is(err, unix.EINVAL) {
				break // past the kernel's last capability
			}
			return fmt.Errorf("drop capability %d: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	return nil
}

// clearInheritable empties the inheritable capability set of the calling
// thread and keeps its effective and permitted sets.
func clearInheritable() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("get capabilities: %w", err)
	}
	for i := range data {
		data[i].Inheritable = 0
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	return nil
}

// setgroups sets the supplementary groups of the calling thread.
func setgroups(gids []int) error {
	g := make([]uint32, len(gids)+1)
	for i, id := range gids {
		g[i] = uint32(id)
	}
	_, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), uintptr(unsafe.Pointer(&g[0])), 0)
	if e != 0 {
		return e
	}
	return nil
}
