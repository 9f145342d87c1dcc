package linux

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/kiln-build/kiln/executor"
	"golang.org/x/sys/unix"
)

// Mount points created in the container's /proc and /sys are hidden or made
// read-only like Docker's defaults, so root in the container cannot, for
// example, set the host's core_pattern or trigger sysrq.
var (
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
		"/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
	}
	readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// devices are the nodes created in the container's /dev (all mode 0666).
var devices = []struct {
	name         string
	major, minor uint32
}{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

// devLinks are the symlinks created in the container's /dev.
var devLinks = [][2]string{
	{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
	{"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"},
}

// runProcess finishes the container (proc, dev, sys, /etc files, pivot_root,
// hostname, network, user, capabilities) and execs the process. It returns
// only on failure, with the exit code to report (126/127 for a command that
// cannot be run, else 0).
func runProcess(cfg *initConfig, rootfs string, statusW, parent *os.File) (int, error) {
	p := cfg.Process
	// Everything from the host is opened before pivot_root, as detached
	// mounts, so no host path is resolved inside the container later.
	etcFiles := []string{hostsFile, resolvFile}
	if cfg.EtcHostname {
		etcFiles = append(etcFiles, hostnameFile)
	}
	etc := make([]int, len(etcFiles))
	for i, name := range etcFiles {
		fd, err := unix.OpenTree(unix.AT_FDCWD, filepath.Join(cfg.RunDir, name), unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return 0, fmt.Errorf("prepare /etc/%s: %w", name, err)
		}
		etc[i] = fd
	}
	sysFD, err := sysMount(!cfg.Privileged)
	if err != nil {
		return 0, fmt.Errorf("prepare /sys: %w", err)
	}
	cgroupFDs, err := openCgroupDirs(cfg.CgroupDirs)
	if err != nil {
		return 0, err
	}
	devs, err := openHostDev(cfg)
	if err != nil {
		return 0, err
	}
	upperFD, err := unix.Open(cfg.UpperDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open upper dir: %w", err)
	}
	mounts, err := openMounts(cfg)
	if err != nil {
		return 0, err
	}
	ln := -1
	if cfg.Init {
		// The socket lives in the run dir on the host, which the
		// container cannot reach after pivot_root.
		if ln, err = listenSeq(cfg.InitSocket); err != nil {
			return 0, fmt.Errorf("listen for signal requests: %w", err)
		}
	}
	if err := pivotRoot(rootfs); err != nil {
		return 0, err
	}

	// From here on every path is inside the container.
	st := stubber{upperFD: upperFD}
	if err := st.mountAt("/proc", true, func(t string) error {
		return unix.Mount("proc", t, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	}); err != nil {
		return 0, err
	}
	shmSize := cfg.ShmSize
	if cfg.NoShm {
		shmSize = -1
	}
	if err := st.mountAt("/dev", true, func(t string) error { return setupDev(t, shmSize, devs.nodes) }); err != nil {
		return 0, err
	}
	if err := st.mountAt("/sys", true, func(t string) error {
		return unix.MoveMount(sysFD, "", unix.AT_FDCWD, t, unix.MOVE_MOUNT_F_EMPTY_PATH)
	}); err != nil {
		return 0, err
	}
	if err := mountCgroups(cgroupFDs, !cfg.Privileged); err != nil {
		return 0, err
	}
	for i, name := range etcFiles {
		fd := etc[i]
		if err := st.mountAt("/etc/"+name, false, func(t string) error {
			if err := unix.MoveMount(fd, "", unix.AT_FDCWD, t, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				return err
			}
			if !cfg.ReadOnlyEtc {
				return nil
			}
			return unix.Mount("", t, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		}); err != nil {
			return 0, err
		}
		unix.Close(fd)
	}
	for _, m := range mounts {
		if err := st.mount(m); err != nil {
			return 0, err
		}
	}
	closeMounts(mounts)
	unix.Close(sysFD)
	unix.Close(upperFD)
	if err := devs.finish(); err != nil {
		return 0, err
	}
	if cfg.DisableIPv6 && (cfg.NewNetwork || cfg.JoinedNetwork) {
		// Before /proc/sys turns read-only; a kernel without IPv6 has
		// no such files.
		for _, conf := range []string{"all", "default", "lo"} {
			_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+conf+"/disable_ipv6", []byte("1"), 0)
		}
	}
	for name, value := range cfg.Sysctls {
		// Checked by the caller (executor.CheckSysctl).
		p := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
		if err := os.WriteFile(p, []byte(value), 0); err != nil {
			return 0, fmt.Errorf("sysctl %s=%s: %w", name, value, err)
		}
	}
	if !cfg.Privileged {
		if err := maskPaths(); err != nil {
			return 0, err
		}
	}
	if !cfg.HostUTS { // in the host's UTS namespace this would rename the host
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return 0, fmt.Errorf("set hostname %q: %w", cfg.Hostname, err)
		}
		if cfg.Domainname != "" {
			if err := unix.Setdomainname([]byte(cfg.Domainname)); err != nil {
				return 0, fmt.Errorf("set domain name %q: %w", cfg.Domainname, err)
			}
		}
	}
	if cfg.NewNetwork || cfg.JoinedNetwork {
		if err := loopbackUp(); err != nil {
			return 0, err
		}
	}
	caps := defaultCapMask()
	if cfg.Caps != nil {
		caps = *cfg.Caps
	}

	proc, code, err := prepareProcess(p, true)
	if err != nil {
		return code, err
	}
	if proc.u, err = addGroups(proc.u, cfg.GroupAdd, "/etc/group"); err != nil {
		return 0, err
	}
	if cfg.ReadOnly {
		if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return 0, fmt.Errorf("make the root filesystem read-only: %w", err)
		}
	}
	if err := setUlimits(0, cfg.Ulimits); err != nil {
		return 0, err
	}
	if cfg.OomScoreAdj != 0 {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(cfg.OomScoreAdj)), 0); err != nil {
			return 0, fmt.Errorf("set oom_score_adj to %d: %w", cfg.OomScoreAdj, err)
		}
	}
	if err := awaitParent(parent); err != nil {
		return 0, err
	}
	if cfg.PrivateCgroupNS {
		// In its own cgroup now (awaitParent): that becomes the root
		// the container's processes see.
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return 0, fmt.Errorf("make the cgroup namespace: %w", err)
		}
	}
	if cfg.Init {
		return runInitProcess(&initProc{cfg: cfg, ln: ln, caps: caps}, proc, st.stubs, statusW)
	}
	slave := -1
	if p.Tty {
		if slave, err = sendPty(proc.u); err != nil {
			return 0, err
		}
	}

	if p.EmptyStdin {
		if err := emptyStdin(); err != nil {
			return 0, err
		}
	}
	// Tell the parent which stubs to clean up; after this only the
	// privilege drop and exec remain.
	report(statusW, status{Stubs: st.stubs})
	if err := cloexecFrom(3); err != nil {
		return 0, fmt.Errorf("close kiln's file descriptors: %w", err)
	}
	if slave >= 0 {
		if err := takeTerminal(slave); err != nil {
			return 0, err
		}
	}
	if err := loadSeccomp(cfg.Seccomp); err != nil {
		return 0, err
	}
	if err := dropPrivileges(proc.u, caps); err != nil {
		return 0, err
	}
	unix.Umask(0o022)
	report(statusW, status{Started: true})
	err = unix.Exec(proc.argv0, proc.args, proc.env)
	code = 126
	if errors.Is(err, unix.ENOENT) {
		code = 127
	}
	return code, fmt.Errorf("exec %s: %w", proc.argv0, err)
}

// setUlimits sets the resource limits of process pid (0: this one),
// before the privileges are dropped (raising a hard limit needs
// CAP_SYS_RESOURCE).
func setUlimits(pid int, limits []executor.Ulimit) error {
	for _, l := range limits {
		var err error
		if pid == 0 {
			// Through syscall, which then drops the RLIMIT_NOFILE it
			// would otherwise put back in the processes it starts.
			err = syscall.Setrlimit(l.Resource, &syscall.Rlimit{Cur: l.Soft, Max: l.Hard})
		} else {
			err = unix.Prlimit(pid, l.Resource, &unix.Rlimit{Cur: l.Soft, Max: l.Hard}, nil)
		}
		if err != nil {
			return fmt.Errorf("set resource limit %d to %d:%d: %w", l.Resource, l.Soft, l.Hard, err)
		}
	}
	return nil
}

// execProcess is a process resolved inside the container, ready to run.
type execProcess struct {
	argv0     string
	args, env []string
	cwd       string
	u         execUser
}

// prepareProcess resolves p's user, environment and command inside the
// container and changes to its working directory (created when missing
// with makeCwd).
// On failure code is 126 or 127 for a command that cannot be run.
func prepareProcess(p *processConfig, makeCwd bool) (execProcess, int, error) {
	u, err := lookupUser(p.User, "/etc/passwd", "/etc/group", p.RunGroups)
	if err != nil {
		return execProcess{}, 0, err
	}
	env := p.Env
	if !hasEnv(env, "HOME") {
		env = append(env[:len(env):len(env)], "HOME="+u.home)
	}
	// Made as written, as runc does: "/a/../b" makes /a too (a WORKDIR
	// keeps such a path as written, as Docker 20.10 does). This runs in
	// the container's root, which ".." cannot leave.
	raw := p.Cwd
	if !path.IsAbs(raw) {
		raw = "/" + raw
	}
	if makeCwd {
		if err := os.MkdirAll(raw, 0o755); err != nil {
			return execProcess{}, 0, fmt.Errorf("create working directory %s: %w", raw, err)
		}
	}
	cwd := path.Clean(raw)
	if err := enterDir(cwd); err != nil {
		// A working directory that is not there (docker exec -w) is a
		// command that cannot be run.
		return execProcess{}, 126, err
	}
	argv0, code, err := lookPath(p.Args[0], env)
	if err != nil {
		return execProcess{}, code, err
	}
	return execProcess{argv0: argv0, args: p.Args, env: env, cwd: cwd, u: u}, 0, nil
}

// sendPty opens a pseudo terminal for the process, sends the master to the
// parent over consoleFD and returns the slave, owned by u.
func sendPty(u execUser) (int, error) {
	master, slave, err := openPty()
	if err != nil {
		return -1, err
	}
	defer unix.Close(master)
	if err := unix.Fchown(slave, u.uid, -1); err != nil {
		unix.Close(slave)
		return -1, fmt.Errorf("chown the pseudo terminal: %w", err)
	}
	if err := sendFDs(consoleFD, []byte{'M'}, master); err != nil {
		unix.Close(slave)
		return -1, fmt.Errorf("send the pseudo terminal: %w", err)
	}
	unix.Close(consoleFD)
	return slave, nil
}

// takeTerminal makes the slave of a pty the controlling terminal of a new
// session and the stdin, stdout and stderr of the process.
func takeTerminal(slave int) error {
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("start a session: %w", err)
	}
	if err := unix.IoctlSetInt(slave, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set the controlling terminal: %w", err)
	}
	for fd := range 3 {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return fmt.Errorf("set up the terminal: %w", err)
		}
	}
	if slave > 2 {
		unix.Close(slave)
	}
	return nil
}

// pivotRoot makes rootfs the root and detaches the old root, without
// creating a directory for it in the root filesystem.
func pivotRoot(rootfs string) error {
	if err := unix.Chdir(rootfs); err != nil {
		return fmt.Errorf("enter root filesystem: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root to the root filesystem: %w", err)
	}
	// The old root is now stacked on ".": detach it.
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	return unix.Chdir("/")
}

// enterDir changes to dir and checks the result is inside the container's
// root (a leaked directory outside it would show as unreachable).
func enterDir(dir string) error {
	if err := unix.Chdir(dir); err != nil {
		return fmt.Errorf("change to working directory %s: %w", dir, err)
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Getcwd(buf)
	if err != nil || n == 0 || buf[0] != '/' {
		return fmt.Errorf("working directory %s is outside the container", dir)
	}
	return nil
}

// sysMount returns a detached sysfs mount, read-only unless !readOnly
// (privileged), or, where a new sysfs cannot be mounted, a recursive bind
// of the host's /sys.
func sysMount(readOnly bool) (int, error) {
	var attrs uint64 = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC
	if readOnly {
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	if fsfd, err := unix.Fsopen("sysfs", unix.FSOPEN_CLOEXEC); err == nil {
		// Named "sysfs" in /proc/mounts, as under Docker (not "none").
		err = unix.FsconfigSetString(fsfd, "source", "sysfs")
		if err == nil {
			err = unix.FsconfigCreate(fsfd)
		}
		if err == nil {
			mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, int(attrs))
			if err == nil {
				unix.Close(fsfd)
				return mfd, nil
			}
		}
		unix.Close(fsfd)
	}
	mfd, err := unix.OpenTree(unix.AT_FDCWD, "/sys", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return -1, err
	}
	attr := unix.MountAttr{Attr_set: attrs}
	if err := unix.MountSetattr(mfd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		unix.Close(mfd)
		return -1, err
	}
	return mfd, nil
}

// openDevNodes opens the host's device nodes of devices (null, zero, ...)
// as detached bind mounts, before pivot_root, by name; a node the host
// lacks is left out (setupDev then makes it).
func openDevNodes() map[string]int {
	fds := map[string]int{}
	for _, d := range devices {
		p := "/dev/" + d.name
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(d.major, d.minor) {
			continue
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, p, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err == nil {
			fds[d.name] = fd
		}
	}
	return fds
}

// setupDev mounts a tmpfs on target and fills it like Docker's /dev, with
// a /dev/shm of shmSize bytes (0: Docker's 64 MiB; negative: none). With nodes (the
// host's, from openDevNodes) the tmpfs is nodev and the standard devices
// are those nodes bound in: a device node the container makes itself (it
// has CAP_MKNOD, as under Docker) cannot be opened, where Docker's device
// cgroup refuses it. Without (privileged, or confined by a device filter),
// the nodes are made.
func setupDev(target string, shmSize int64, nodes map[string]int) error {
	flags := uintptr(unix.MS_NOSUID | unix.MS_STRICTATIME)
	if nodes != nil {
		flags |= unix.MS_NODEV
	}
	if err := unix.Mount("tmpfs", target, "tmpfs", flags, "mode=755,size=65536k"); err != nil {
		return err
	}
	for _, d := range devices {
		p := target + "/" + d.name
		if fd, ok := nodes[d.name]; ok {
			err := os.WriteFile(p, nil, 0o666)
			if err == nil {
				err = unix.MoveMount(fd, "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH)
			}
			unix.Close(fd)
			if err != nil {
				return fmt.Errorf("bind /dev/%s: %w", d.name, err)
			}
			continue
		}
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("create /dev/%s: %w", d.name, err)
		}
	}
	for _, l := range devLinks {
		if err := unix.Symlink(l[1], target+"/"+l[0]); err != nil {
			return fmt.Errorf("create /dev/%s: %w", l[0], err)
		}
	}
	for _, dir := range []string{"pts", "shm", "mqueue"} {
		if dir == "shm" && shmSize < 0 {
			continue
		}
		if err := unix.Mkdir(target+"/"+dir, 0o755); err != nil {
			return fmt.Errorf("create /dev/%s: %w", dir, err)
		}
	}
	if err := unix.Mount("devpts", target+"/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620,gid=5"); err != nil {
		return fmt.Errorf("mount /dev/pts: %w", err)
	}
	if shmSize == 0 {
		shmSize = 64 << 20
	}
	if shmSize > 0 {
		if err := unix.Mount("shm", target+"/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("mode=1777,size=%d", shmSize)); err != nil {
			return fmt.Errorf("mount /dev/shm: %w", err)
		}
	}
	// POSIX message queues of the container's IPC namespace, as Docker
	// and BuildKit mount them; a kernel without them leaves the dir.
	if err := unix.Mount("mqueue", target+"/mqueue", "mqueue", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("mount /dev/mqueue: %w", err)
	}
	return nil
}

// maskPaths hides sensitive /proc and /sys entries and makes others
// read-only. Entries the kernel does not have are skipped.
func maskPaths() error {
	for _, p := range maskedPaths {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			continue
		}
		var err error
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	for _, p := range readonlyPaths {
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
	}
	return nil
}

// hostDev is what a container takes from the host's /dev, opened before
// pivot_root (openHostDev) and put in place after /dev is set up (finish).
type hostDev struct {
	nodes map[string]int    // the standard nodes, bound in (nil: made)
	all   []hostDevice      // privileged: every host device, made
	binds []executor.Device // Spec.Devices, and /dev/shm with HostIPC or ShmDir
	fds   []int             // the opened nodes of binds
}

func openHostDev(cfg *initConfig) (hostDev, error) {
	var d hostDev
	var err error
	switch {
	case cfg.Privileged:
		if d.all, err = listHostDevices("/dev"); err != nil {
			return d, err
		}
	case !cfg.DevicesFiltered:
		d.nodes = openDevNodes()
	}
	if d.fds, err = openDevices(cfg.Devices); err != nil {
		return d, err
	}
	d.binds = cfg.Devices
	shm := cfg.ShmDir
	if cfg.HostIPC {
		// The host's /dev/shm replaces the container's, as under
		// docker run --ipc host.
		shm = "/dev/shm"
	}
	if shm != "" {
		fd, err := unix.OpenTree(unix.AT_FDCWD, shm, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			closeFDs(d.fds)
			return d, fmt.Errorf("open the shared /dev/shm %s: %w", shm, err)
		}
		d.binds = append(slices.Clone(d.binds), executor.Device{HostPath: shm, ContainerPath: "/dev/shm"})
		d.fds = append(d.fds, fd)
	}
	return d, nil
}

// finish binds the opened devices in and, privileged, makes the host's.
func (d hostDev) finish() error {
	if err := bindDevices(d.binds, d.fds); err != nil {
		return err
	}
	return makeHostDevices(d.all)
}

// openDevices opens the host nodes of devs (--device) as detached bind
// mounts, before pivot_root; they keep working on the nodev /dev.
func openDevices(devs []executor.Device) ([]int, error) {
	fds := make([]int, 0, len(devs))
	for _, d := range devs {
		var st unix.Stat_t
		if err := unix.Stat(d.HostPath, &st); err != nil {
			closeFDs(fds)
			return nil, fmt.Errorf("device %s: %w", d.HostPath, err)
		}
		if t := st.Mode & unix.S_IFMT; t != unix.S_IFCHR && t != unix.S_IFBLK {
			closeFDs(fds)
			return nil, fmt.Errorf("device %s: not a device node", d.HostPath)
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, d.HostPath, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			closeFDs(fds)
			return nil, fmt.Errorf("device %s: %w", d.HostPath, err)
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// bindDevices binds the opened nodes fds at their container paths (inside
// the container now), making the parent directories.
func bindDevices(devs []executor.Device, fds []int) error {
	defer closeFDs(fds)
	for i, d := range devs {
		p := d.ContainerPath
		if p == "" {
			p = d.HostPath
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("device %s: %w", p, err)
		}
		if _, err := os.Lstat(p); err != nil {
			if err := os.WriteFile(p, nil, 0o666); err != nil {
				return fmt.Errorf("device %s: %w", p, err)
			}
		}
		if err := unix.MoveMount(fds[i], "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("device %s: %w", p, err)
		}
	}
	return nil
}

// hostDevice is a device node of the host's /dev, for a privileged
// container.
type hostDevice struct {
	rel  string // path below /dev
	mode uint32 // st_mode: type and permissions
	rdev uint64
	uid  int
	gid  int
}

// listHostDevices lists the character and block devices below dir (the
// host's /dev, read before pivot_root), leaving out the pty, shm and
// mqueue trees the container has of its own.
func listHostDevices(dir string) ([]hostDevice, error) {
	var out []hostDevice
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a device that went away, an unreadable dir
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			switch rel {
			case "pts", "shm", "mqueue":
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type()&(fs.ModeDevice|fs.ModeCharDevice) == 0 {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		out = append(out, hostDevice{rel: rel, mode: st.Mode, rdev: st.Rdev, uid: int(st.Uid), gid: int(st.Gid)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the host's devices: %w", err)
	}
	return out, nil
}

// makeHostDevices creates devs in the container's /dev, as docker run
// --privileged does; nodes the container has already are kept.
func makeHostDevices(devs []hostDevice) error {
	for _, d := range devs {
		p := filepath.Join("/dev", d.rel)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(p), err)
		}
		if err := unix.Mknod(p, d.mode, int(d.rdev)); err != nil {
			return fmt.Errorf("create device %s: %w", p, err)
		}
		_ = unix.Chmod(p, d.mode&0o7777)
		_ = unix.Lchown(p, d.uid, d.gid)
	}
	return nil
}

// loopbackUp brings up lo in a new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	return nil
}

// stubber creates missing mount points in the root filesystem and records
// them for the parent to remove afterwards.
type stubber struct {
	upperFD int // the upper dir, to tell whether a parent dir was there
	stubs   []stub
	// parents holds each parent dir's state from before its first stub.
	parents map[string]*parentInfo
}

// mountAt makes sure p exists (a directory when dir, else a file), creating
// it and its missing parents as stubs, and calls mount with the path to
// mount on. Symlinks are followed inside the container's root.
func (s *stubber) mountAt(p string, dir bool, mount func(target string) error) error {
	target, err := s.ensure(p, dir)
	if err == nil {
		err = mount(target)
	}
	if err != nil {
		return fmt.Errorf("mount %s: %w", p, err)
	}
	return nil
}

// maxSymlinks bounds the dangling symlinks ensure follows for one path.
const maxSymlinks = 40

// ensure returns the resolved path of p, creating it if missing. It runs
// after pivot_root, so every symlink resolves inside the container's root.
func (s *stubber) ensure(p string, dir bool) (string, error) {
	return s.ensureN(p, dir, 0)
}

func (s *stubber) ensureN(p string, dir bool, links int) (string, error) {
	if _, err := os.Stat(p); err == nil {
		return filepath.EvalSymlinks(p)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		// A dangling symlink: create what it points to, like runc.
		if links >= maxSymlinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if !path.IsAbs(target) {
			dir, err := filepath.EvalSymlinks(path.Dir(p))
			if err != nil {
				return "", err
			}
			target = path.Join(dir, target)
		}
		return s.ensureN(path.Clean(target), dir, links+1)
	}
	parentExisted := true
	if _, err := os.Stat(path.Dir(p)); errors.Is(err, fs.ErrNotExist) {
		parentExisted = false
	}
	parent, err := s.ensureN(path.Dir(p), true, links)
	if err != nil {
		return "", err
	}
	target := path.Join(parent, path.Base(p))
	st := stub{Path: target}
	if parentExisted && parent != "/" {
		if s.parents[parent] == nil {
			if s.parents == nil {
				s.parents = map[string]*parentInfo{}
			}
			s.parents[parent] = s.parentInfo(parent)
		}
		st.Parent = s.parents[parent]
	}
	if dir {
		err = unix.Mkdir(target, 0o755)
	} else {
		var fd int
		fd, err = unix.Open(target, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return "", err
	}
	s.stubs = append(s.stubs, st)
	return target, nil
}

// parentInfo records dir's state before a stub is added to it.
func (s *stubber) parentInfo(dir string) *parentInfo {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil
	}
	info := &parentInfo{
		Path:  dir,
		Mode:  st.Mode,
		UID:   st.Uid,
		GID:   st.Gid,
		Atime: st.Atim.Nano(),
		Mtime: st.Mtim.Nano(),
	}
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS}
	if fd, err := unix.Openat2(s.upperFD, strings.TrimPrefix(dir, "/"), &how); err == nil {
		info.InUpper = true
		unix.Close(fd)
	}
	return info
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}

// emptyStdin replaces stdin with the read end of a pipe whose write end is
// closed: reads see the end at once, as with /dev/null, but stdin is a
// pipe, as in Docker's RUN steps.
func emptyStdin() error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("make stdin: %w", err)
	}
	unix.Close(p[1])
	defer unix.Close(p[0])
	if err := unix.Dup3(p[0], 0, 0); err != nil {
		return fmt.Errorf("make stdin: %w", err)
	}
	return nil
}

// openCgroupDirs opens the container's cgroup directories (CgroupDirs) as
// detached mounts, before pivot_root, by controller.
func openCgroupDirs(dirs map[string]string) (map[string]int, error) {
	fds := map[string]int{}
	for ctrl, dir := range dirs {
		fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, fmt.Errorf("prepare /sys/fs/cgroup: %w", err)
		}
		fds[ctrl] = fd
	}
	return fds, nil
}

// mountCgroups shows the container's own cgroups read-only in
// /sys/fs/cgroup, as Docker does, so a program can read its limits there:
// on cgroup v2 its directory is /sys/fs/cgroup; on v1 a tmpfs there holds
// one directory per controller. It closes the fds.
func mountCgroups(fds map[string]int, readOnly bool) error {
	if len(fds) == 0 {
		return nil
	}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	const dir = "/sys/fs/cgroup"
	const ro = unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	bind := func(fd int, target string) error {
		if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("mount %s: %w", target, err)
		}
		if !readOnly {
			return nil
		}
		if err := unix.Mount("", target, "", ro, ""); err != nil {
			return fmt.Errorf("mount %s read-only: %w", target, err)
		}
		return nil
	}
	if fd, ok := fds[""]; ok {
		return bind(fd, dir)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755"); err != nil {
		return fmt.Errorf("mount %s: %w", dir, err)
	}
	ctrls := make([]string, 0, len(fds))
	for c := range fds {
		ctrls = append(ctrls, c)
	}
	slices.Sort(ctrls)
	for _, c := range ctrls {
		target := path.Join(dir, c)
		if err := os.Mkdir(target, 0o755); err != nil {
			return fmt.Errorf("mount %s: %w", target, err)
		}
		if err := bind(fds[c], target); err != nil {
			return err
		}
	}
	return nil
}
