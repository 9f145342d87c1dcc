package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// runInit is the container init: it sets up the root filesystem in the
// namespaces the parent created and then execs the process or calls the
// Func handler. It never returns. Setup failures are reported to the parent
// over statusFD.
func runInit(handlers map[string]Handler) {
	// Capabilities and credentials are per thread; the
	// final exec must happen on the thread that set them.
	runtime.LockOSThread()
	debug.SetGCPercent(-1) // short-lived; nothing worth collecting
	// Killed with the thread that forked it: spawnInit asks for that at
	// the fork unless the init joins another PID namespace, where Go's
	// check that the parent is still there kills the child (its parent
	// is outside); a parent gone before this line leaves the config pipe
	// broken, and the init ends on that.
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	statusW := os.NewFile(statusFD, "status")
	code, err := initMain(handlers, statusW)
	if err == nil {
		os.Exit(0)
	}
	report(statusW, status{Error: err.Error(), Code: code})
	if code == 0 {
		code = 1
	}
	os.Exit(code)
}

// initMain runs the init and returns only when the process could not be
// executed (or the Func finished): code is the exit code to report with err.
func initMain(handlers map[string]Handler, statusW *os.File) (code int, err error) {
	defer func() {
		if r := recover(); r != nil {
			code, err = 0, fmt.Errorf("container init: panic: %v\n%s", r, debug.Stack())
		}
	}()
	cfg, parent, err := readConfig()
	if err != nil {
		return 0, err
	}
	defer parent.Close()
	unix.Umask(0)
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return 0, fmt.Errorf("make the container's mounts private: %w", err)
	}
	rootfs := filepath.Join(cfg.RunDir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return 0, fmt.Errorf("create root filesystem mount point: %w", err)
	}
	lowers := cfg.LowerDirs
	if len(lowers) == 0 {
		empty := filepath.Join(cfg.RunDir, "empty")
		if err := os.Mkdir(empty, 0o755); err != nil {
			return 0, fmt.Errorf("create empty lower dir: %w", err)
		}
		lowers = []string{empty}
	}
	ov := overlay{
		links:    cfg.LinkMount,
		volatile: cfg.Once,
		linkDir:  filepath.Join(cfg.RunDir, "l"),
		lowers:   lowers,
		upper:    cfg.UpperDir,
		work:     cfg.WorkDir,
	}
	if !cfg.CopyMode {
		err := ov.mount(rootfs, 0)
		if err != nil && !overlayUnavailable(err) {
			return 0, fmt.Errorf("mount the root filesystem: %w", err)
		}
		if err != nil {
			// Inputs that are overlay stacks are copied too from now on.
			cfg.CopyMode = true
			report(statusW, status{Fallback: err.Error()})
		}
	}
	if cfg.CopyMode {
		report(statusW, status{Copied: true})
		if err := copyRoot(cfg, rootfs); err != nil {
			return 0, fmt.Errorf("copy the root filesystem: %w", err)
		}
	}
	if !cfg.Privileged && !cfg.DevicesFiltered {
		// Device nodes in the root filesystem (an image's, or one a
		// process makes) cannot be opened; see setupDev.
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NODEV}
		if err := unix.MountSetattr(unix.AT_FDCWD, rootfs, 0, &attr); err != nil {
			return 0, fmt.Errorf("mount the root filesystem nodev: %w", err)
		}
	}
	if cfg.Func != nil {
		if err := awaitParent(parent); err != nil {
			return 0, err
		}
		return 0, runFunc(cfg, rootfs, handlers)
	}
	return runProcess(cfg, rootfs, statusW, parent)
}

// readConfig reads the config, one JSON value, from the config pipe, and
// returns the pipe for awaitParent.
func readConfig() (*initConfig, *os.File, error) {
	f := os.NewFile(configFD, "config")
	var cfg initConfig
	if err := json.NewDecoder(f).Decode(&cfg); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("read container config: %w", err)
	}
	return &cfg, f, nil
}

// awaitParent waits until the parent closes the config pipe, which it
// does once it has put the init into the container's cgroup (a migration
// can take ~10 ms, which the init spends setting up its mounts meanwhile):
// nothing may run in the container before that.
func awaitParent(f *os.File) error {
	var b [1]byte
	n, err := f.Read(b[:])
	if n > 0 {
		return errors.New("read container config: unexpected data after the config")
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("wait for the container's cgroup: %w", err)
	}
	return nil
}

// report writes one status line to the parent.
func report(w *os.File, s status) {
	b, err := json.Marshal(s)
	if err != nil {
		return
	}
	_, _ = w.Write(append(b, '\n'))
}

// overlay is an overlayfs stack to mount.
type overlay struct {
	// linkDir gets short symlinks to the layer dirs so that the mount
	// options fit in one page even for hundreds of layers.
	linkDir     string
	links       bool     // always use linkDir (see initConfig.LinkMount)
	volatile    bool     // upper used once: see volatileOption
	lowers      []string // bottom first
	upper, work string   // empty for a read-only stack of lowers only
}

// maxMountData is the size limit of the mount(2) data argument.
const maxMountData = 4096

func (o overlay) mount(target string, flags uintptr) error {
	if !o.links && o.mountByLayer(target, flags) == nil {
		return nil
	}
	return o.mountWithLinks(target, flags)
}

// mountByLayer mounts the stack with the new mount API, one lowerdir+
// per layer (Linux 6.8): no option string to fit into a page, so no link
// dir to make (and delete: for a 40-layer step that was a third of its
// clean-up). Any failure leaves nothing mounted; mount then tries the
// classic way, which also reports an overlay the kernel refuses.
func (o overlay) mountByLayer(target string, flags uintptr) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// The source shows in /proc/mounts and df, as "overlay" under Docker.
	if err := unix.FsconfigSetString(fd, "source", "overlay"); err != nil {
		return err
	}
	for i := len(o.lowers) - 1; i >= 0; i-- { // overlayfs wants the top first
		if err := unix.FsconfigSetString(fd, "lowerdir+", o.lowers[i]); err != nil {
			return err
		}
	}
	if o.upper != "" {
		if err := unix.FsconfigSetString(fd, "upperdir", o.upper); err != nil {
			return err
		}
		if err := unix.FsconfigSetString(fd, "workdir", o.work); err != nil {
			return err
		}
		if o.volatile { // see volatileOption
			if err := unix.FsconfigSetFlag(fd, "volatile"); err != nil {
				return err
			}
		}
	}
	for _, opt := range []string{"index", "redirect_dir", "metacopy"} {
		if err := unix.FsconfigSetString(fd, opt, "off"); err != nil {
			return err
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return err
	}
	attrs := 0
	if flags&unix.MS_RDONLY != 0 {
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	return unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// volatileOption keeps overlayfs from syncing the upper filesystem when
// the container's mount namespace goes away: without it every RUN step
// ended with a syncfs of the whole host filesystem holding the store
// (370 ms after a step that wrote 256 MB, more when other programs had
// written). It is used for Rootfs.Once uppers only: a build step's upper
// is read right after the run (through the page cache) and never mounted
// again, even after a crash, so the guarantee volatile gives up is one
// kiln never relies on. (A volatile upper refuses a second mount, which
// a restarted container needs.)
const volatileOption = ",volatile"

// mountWithLinks mounts the stack with mount(2), naming the layers by
// short symlinks in the link dir so that hundreds fit into the options.
func (o overlay) mountWithLinks(target string, flags uintptr) error {
	if err := os.Mkdir(o.linkDir, 0o700); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("lowerdir=")
	for i := len(o.lowers) - 1; i >= 0; i-- { // overlayfs wants the top first
		name := strconv.Itoa(i)
		if err := os.Symlink(o.lowers[i], filepath.Join(o.linkDir, name)); err != nil {
			return err
		}
		b.WriteString(name)
		if i > 0 {
			b.WriteByte(':')
		}
	}
	if o.upper != "" {
		if err := os.Symlink(o.upper, filepath.Join(o.linkDir, "u")); err != nil {
			return err
		}
		if err := os.Symlink(o.work, filepath.Join(o.linkDir, "w")); err != nil {
			return err
		}
		b.WriteString(",upperdir=u,workdir=w")
	}
	data := b.String()
	extra := ",index=off,redirect_dir=off,metacopy=off"
	if o.upper != "" && o.volatile {
		extra += volatileOption
	}
	if len(data)+len(extra) >= maxMountData {
		return fmt.Errorf("%d layers are too many for one overlay mount", len(o.lowers))
	}
	// The layer names are relative to the link dir.
	if err := unix.Chdir(o.linkDir); err != nil {
		return err
	}
	defer unix.Chdir("/")
	err := unix.Mount("overlay", target, "overlay", flags, data+extra)
	if errors.Is(err, unix.EINVAL) {
		// Older kernels may not know one of the extra options.
		err = unix.Mount("overlay", target, "overlay", flags, data)
	}
	if err != nil {
		return fmt.Errorf("overlay of %d layers: %w", len(o.lowers), os.NewSyscallError("mount", err))
	}
	return nil
}

// overlayUnavailable reports whether err is the kernel refusing an overlay
// mount as such (no overlayfs, not allowed here, or a filesystem it rejects
// as upper or lower dir), the cases where copying still works.
func overlayUnavailable(err error) bool {
	var se *os.SyscallError
	if !errors.As(err, &se) || se.Syscall != "mount" {
		return false
	}
	for _, errno := range []unix.Errno{unix.EINVAL, unix.EPERM, unix.ENODEV, unix.EOPNOTSUPP, unix.ENOSYS} {
		if se.Err == errno {
			return true
		}
	}
	return false
}
