package linux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/executor"
	"golang.org/x/sys/unix"
)

// initSocketName is the init's exec socket in the run dir (Spec.Init).
const initSocketName = "init.sock"

// maxSocketPath is the longest path a unix socket address can hold.
const maxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

func (e *Executor) startContainer(ctx context.Context, spec executor.Spec) (executor.Container, error) {
	c, err := e.start(ctx, spec, false)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// container is a started container; it implements executor.Container.
type container struct {
	cmd      *exec.Cmd
	runDir   string
	rootfs   executor.Rootfs
	process  bool
	init     bool
	initSock string
	cg       *cgroup
	// caps, seccomp and ulimits confine the container's process, and its
	// Exec'd processes alike.
	caps     uint64
	seccomp  []byte
	ulimits  []executor.Ulimit
	groupAdd []string
	// privateCgroupNS: Spec.PrivateCgroupNS; Exec joins its cgroup namespace too.
	privateCgroupNS bool
	// tty is the pty master of a Tty process; ttyOut is closed when
	// copying its output has finished.
	tty    *os.File
	ttyOut chan struct{}

	// st is what the init reported while starting; final once started
	// is closed.
	st      status
	started chan struct{}
	// cancelled is set when Run's ctx killed the container: the changes
	// of a copied root filesystem are then dropped.
	cancelled atomic.Bool
	stop      func() bool // unregisters the kill on ctx

	done chan struct{} // closed when the container is gone and cleaned up
	code int
	err  error // a failure to wait or clean up, not the exit status
}

// start starts the container. With whole, ctx bounds the whole run (Run);
// else only the start (Start).
func (e *Executor) start(ctx context.Context, spec executor.Spec, whole bool) (*container, error) {
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	runDir, err := os.MkdirTemp(e.opts.StateDir, "run-")
	if err != nil {
		return nil, fmt.Errorf("create container state dir: %w", err)
	}
	c := &container{
		runDir:          runDir,
		rootfs:          spec.Rootfs,
		process:         spec.Process != nil,
		init:            spec.Init,
		ulimits:         spec.Ulimits,
		groupAdd:        spec.GroupAdd,
		privateCgroupNS: spec.PrivateCgroupNS,
		started:         make(chan struct{}),
		done:            make(chan struct{}),
	}
	ok := false
	defer func() {
		if !ok {
			c.cleanup()
		}
	}()

	cfg := initConfig{
		RunDir:        runDir,
		LowerDirs:     spec.Rootfs.LowerDirs,
		UpperDir:      spec.Rootfs.UpperDir,
		WorkDir:       spec.Rootfs.WorkDir,
		ReadOnly:      spec.Rootfs.ReadOnly,
		Once:          spec.Rootfs.Once,
		CopyMode:      e.copyMode.Load(),
		LinkMount:     e.opts.linkMount,
		Inputs:        spec.Inputs,
		Hostname:      spec.Hostname,
		EtcHostname:   spec.EtcHostname,
		ReadOnlyEtc:   spec.ReadOnlyEtc,
		NewNetwork:    spec.Network == executor.NetworkNone && spec.NetNSPath == "",
		JoinedNetwork: spec.NetNSPath != "",
		Init:          spec.Init,
		RunOptions:    spec.RunOptions,
		ShmDir:        spec.ShmDir,
		DisableIPv6:   spec.DisableIPv6,
	}
	if cfg.Hostname == "" {
		cfg.Hostname = defaultHostname
	}
	var stdin io.Reader
	var stdout, stderr io.Writer
	tty := false
	if p := spec.Process; p != nil {
		tty = p.Tty
		cfg.Process = &processConfig{Args: p.Args, Env: p.Env, Cwd: p.Cwd, User: p.User, Tty: p.Tty, RunGroups: p.RunGroups,
			EmptyStdin: p.EmptyStdin && p.Stdin == nil && !p.Tty}
		if err := writeEtcFiles(runDir, cfg.Hostname, spec); err != nil {
			return nil, err
		}
		if !tty {
			stdin, stdout, stderr = p.Stdin, p.Stdout, p.Stderr
		}
		for _, m := range spec.Mounts {
			cfg.Mounts = append(cfg.Mounts, newMountConfig(m))
		}
		caps := defaultCapMask()
		if len(spec.CapAdd) > 0 || len(spec.CapDrop) > 0 || spec.Privileged {
			add := spec.CapAdd
			if spec.Privileged {
				add = append([]string{"ALL"}, add...)
			}
			caps, _ = capMask(add, spec.CapDrop) // checked by checkSpec
			cfg.Caps = &caps
		}
		c.caps = caps
		if !spec.SeccompUnconfined && !spec.Privileged {
			if cfg.Seccomp, err = e.seccomp.program(caps); err != nil {
				return nil, err
			}
			c.seccomp = cfg.Seccomp
		}
		if spec.Init {
			c.initSock = filepath.Join(runDir, initSocketName)
			if len(c.initSock) > maxSocketPath {
				return nil, fmt.Errorf("start container: the state dir path %s is too long for the init's socket", e.opts.StateDir)
			}
			cfg.InitSocket = c.initSock
		}
	} else {
		cfg.Func = &funcConfig{Name: spec.Func.Name, Payload: spec.Func.Payload}
		stdout, stderr = spec.Func.Stdout, spec.Func.Stderr
	}
	if spec.CgroupPath != "" {
		var devices []deviceRule
		if !spec.Privileged {
			if devices, err = runDeviceRules(spec.Devices, spec.DeviceCgroupRules); err != nil {
				return nil, fmt.Errorf("start container: %w", err)
			}
		}
		if c.cg, err = newCgroup(spec.CgroupPath, spec.Resources, devices, e.opts.forceCgroupV2); err != nil {
			return nil, fmt.Errorf("start container: %w", err)
		}
		cfg.DevicesFiltered = c.cg.devicesFiltered
		if c.cg.v2 {
			cfg.CgroupDirs = map[string]string{"": c.cg.dir}
		} else {
			cfg.CgroupDirs = c.cg.dirs
		}
	}
	kind := e.initKindFor(spec, &cfg, whole)
	cfgData, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode container config: %w", err)
	}

	var extra []*os.File
	var consoleParent *os.File
	if tty {
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("start container: %w", err)
		}
		consoleParent = os.NewFile(uintptr(pair[0]), "console")
		consoleChild := os.NewFile(uintptr(pair[1]), "console")
		defer consoleParent.Close()
		defer consoleChild.Close()
		extra = append(extra, consoleChild) // fd 5
	}
	// A build's RUN and COPY steps (no stdin, no terminal, no joined
	// network) can take an init started ahead of them. One that died
	// waiting (its config pipe is broken) is replaced by a new one.
	var ip *initProcess
	configured := false
	// A container from Start never does: it may get Exec'd processes, and
	// its init must come from the fork thread (see forkThread).
	joins := nsJoins{net: spec.NetNSPath, pid: spec.PIDNSPath, ipc: spec.IPCNSPath}
	if whole && !tty && stdin == nil && joins == (nsJoins{}) && !spec.Init {
		if ip = e.warm.take(kind); ip != nil {
			ip.stdout.set(stdout)
			ip.stderr.set(stderr)
			if err := c.configure(ip, cfgData); err != nil {
				ip.discard()
				ip = nil
			} else {
				configured = true
			}
		}
	}
	if ip == nil {
		start := startIn
		if !whole {
			// A container that may get Exec'd processes.
			start = e.forker.start
		}
		ip, err = spawnInit(kind, joins, start, stdin, stdout, stderr, extra...)
		if err != nil && kind.exe != selfExe {
			// The small init cannot be started (gone, not executable):
			// this binary is an init too.
			e.initGone.Store(true)
			kind.exe = selfExe
			ip, err = spawnInit(kind, joins, start, stdin, stdout, stderr, extra...)
		}
		if err != nil && kind.intoCgroup {
			// Not into the build cgroup (removed under us?): the
			// container falls back to nodev mounts.
			kind.intoCgroup = false
			cfg.DevicesFiltered = false
			if cfgData, err = json.Marshal(cfg); err == nil {
				ip, err = spawnInit(kind, joins, start, stdin, stdout, stderr, extra...)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("start container: %w", err)
		}
	}
	ip.release()
	cfgW, stR := ip.cfgW, ip.stR
	defer cfgW.Close()
	defer stR.Close()
	cmd := ip.cmd
	c.cmd = cmd
	ok = true // from here on the waiter cleans up
	stop := context.AfterFunc(ctx, func() {
		c.cancelled.Store(true)
		_ = cmd.Process.Kill()
	})
	c.stop = stop
	go c.wait()

	var startErr error
	if !configured {
		if err := c.configure(ip, cfgData); err != nil && !errors.Is(err, errConfigWrite) {
			startErr = fmt.Errorf("start container: %w", err)
			_ = cmd.Process.Kill()
		}
	}
	cfgW.Close()
	if consoleParent != nil {
		// The init sends the pty master before it reports its status, or
		// closes the socket when it fails first.
		if m, err := recvFD(consoleParent); err == nil {
			c.tty = m
		}
	}
	c.readStatus(stR)
	if c.tty != nil {
		c.ttyOut = make(chan struct{})
		go copyTTY(c.tty, spec.Process.Stdin, spec.Process.Stdout, c.ttyOut)
	}
	if c.st.Fallback != "" {
		e.copyMode.Store(true)
	}
	close(c.started)

	if !whole {
		stop()
		if ctx.Err() != nil { // ctx ended during the start
			c.cancelled.Store(true)
			_ = cmd.Process.Kill()
		}
	}
	// An init that ran a function reports only failures; one that runs a
	// process says it started it.
	started := c.st.Started || cfg.Func != nil
	if startErr == nil && c.st.Error == "" && started && (whole || !c.cancelled.Load()) {
		return c, nil
	}
	<-c.done
	switch {
	case startErr != nil:
		return nil, startErr
	case c.cancelled.Load():
		return nil, fmt.Errorf("run container: %w", context.Cause(ctx))
	case c.st.Error == "":
		return nil, fmt.Errorf("start container: the container init (%s) ended with exit status %d before it started the process", kind.exe, c.code)
	case c.st.Code != 0:
		return nil, &execError{msg: c.st.Error, exit: &executor.ExitError{Code: c.st.Code}}
	}
	return nil, errors.New(c.st.Error)
}

// initKindFor is the kind of init spec needs: the binary, the namespaces
// to make and, for a build step, the cgroup with the device filter to
// clone it into (then cfg says the devices are filtered).
func (e *Executor) initKindFor(spec executor.Spec, cfg *initConfig, whole bool) initKind {
	kind := initKind{exe: e.initExe(), flags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC}
	if cfg.Func != nil {
		kind.exe = selfExe
	}
	if cfg.NewNetwork {
		kind.flags |= unix.CLONE_NEWNET
	}
	if spec.HostPID || spec.PIDNSPath != "" {
		kind.flags &^= unix.CLONE_NEWPID
	}
	if spec.HostIPC || spec.IPCNSPath != "" {
		kind.flags &^= unix.CLONE_NEWIPC
	}
	if spec.HostUTS {
		kind.flags &^= unix.CLONE_NEWUTS
	}
	if whole && spec.CgroupPath == "" && !spec.Privileged {
		// A build step: its init is cloned into the cgroup whose
		// device filter allows what BuildKit's containers may open.
		// (A container from Start without a cgroup of its own keeps
		// nodev mounts: the processes Exec adds would not be in it.)
		if fd := e.devices.get(); fd >= 0 {
			kind.intoCgroup, kind.cgroupFD = true, fd
			cfg.DevicesFiltered = true
		}
	}
	return kind
}

// errConfigWrite is a failure to hand the init its config: it died early.
var errConfigWrite = errors.New("the container init did not take its config")

// configure writes the init's config, which it waits for before doing
// anything, then puts the init into the container's cgroup while it sets
// up the mounts. The caller closes the config pipe afterwards, and the
// init starts no process before it has seen that close.
func (c *container) configure(ip *initProcess, cfgData []byte) error {
	if _, err := ip.cfgW.Write(cfgData); err != nil {
		return fmt.Errorf("%w: %w", errConfigWrite, err)
	}
	if c.cg != nil {
		// An init that is gone already (it could not start the process)
		// reports why on its status pipe.
		if err := c.cg.add(ip.cmd.Process.Pid); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
	}
	return nil
}

// nsJoins are existing namespaces an init is started in, by path; "" is
// kiln's own (or a new one, as the clone flags say).
type nsJoins struct {
	net, pid, ipc string
}

// startIn starts cmd in the namespaces of joins. The init is forked from a
// thread that joined them, so every thread of it is born there (setns in a
// multi-threaded Go program would only move one thread).
func startIn(joins nsJoins, cmd *exec.Cmd) error {
	if joins == (nsJoins{}) {
		return cmd.Start()
	}
	errc := make(chan error, 1)
	go func() {
		// The thread is only unlocked (and reused) when it is back in
		// kiln's namespace; otherwise it ends with this goroutine. A
		// thread that exits would kill the init through Pdeathsig, so
		// that only happens when the restore fails.
		runtime.LockOSThread()
		restored, err := startInLocked(joins, cmd)
		if restored {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// startInLocked is startIn on the calling thread, which the caller has
// locked; restored is false when the thread could not go back to kiln's
// namespaces and must end.
func startInLocked(joins nsJoins, cmd *exec.Cmd) (restored bool, err error) {
	type join struct {
		path, own, what string
		typ             int
	}
	var todo []join
	if joins.net != "" {
		todo = append(todo, join{joins.net, "/proc/thread-self/ns/net", "network", unix.CLONE_NEWNET})
	}
	if joins.ipc != "" {
		todo = append(todo, join{joins.ipc, "/proc/thread-self/ns/ipc", "IPC", unix.CLONE_NEWIPC})
	}
	if joins.pid != "" {
		// Setting a thread's PID namespace sets its children's; its
		// own stays, and so does the one to go back to.
		todo = append(todo, join{joins.pid, "/proc/thread-self/ns/pid", "PID", unix.CLONE_NEWPID})
	}
	var back []func() error
	restore := func() bool {
		ok := true
		for i := len(back) - 1; i >= 0; i-- {
			ok = back[i]() == nil && ok
		}
		return ok
	}
	for _, j := range todo {
		own, err := os.Open(j.own)
		if err != nil {
			return restore(), err
		}
		defer own.Close()
		target, err := os.Open(j.path)
		if err != nil {
			return restore(), fmt.Errorf("open %s namespace: %w", j.what, err)
		}
		err = unix.Setns(int(target.Fd()), j.typ)
		target.Close()
		if err != nil {
			return restore(), fmt.Errorf("join %s namespace %s: %w", j.what, j.path, err)
		}
		back = append(back, func() error { return unix.Setns(int(own.Fd()), j.typ) })
	}
	err = cmd.Start()
	return restore(), err
}

// forkThread is the thread that starts the inits of containers from Start,
// which may get Exec'd processes. Exec forks them from threads that join
// the container and then end; an init forked by such a thread earlier
// would die with it (Pdeathsig follows the thread that forked). This
// thread stays locked, and so alive, for the life of the process.
type forkThread struct {
	mu   sync.Mutex
	reqs chan func() bool // a func returns false when the thread must end
}

// start starts cmd as startIn does, on the fork thread.
func (f *forkThread) start(joins nsJoins, cmd *exec.Cmd) error {
	var err error
	f.do(func() bool {
		var restored bool
		restored, err = startInLocked(joins, cmd)
		return restored
	})
	return err
}

func (f *forkThread) do(fn func() bool) {
	f.mu.Lock()
	if f.reqs == nil {
		reqs := make(chan func() bool)
		f.reqs = reqs
		go func() {
			runtime.LockOSThread() // never unlocked
			for fn := range reqs {
				if !fn() {
					// A thread left in another namespace ends (and its
					// inits with it); the next start gets a new one.
					f.mu.Lock()
					f.reqs = nil
					f.mu.Unlock()
					return
				}
			}
		}()
	}
	reqs := f.reqs
	f.mu.Unlock()
	done := make(chan struct{})
	reqs <- func() bool {
		defer close(done)
		return fn()
	}
	<-done
}

// readStatus decodes the init's status lines until the pipe reaches EOF:
// when the init exec'd the process (the fd is close-on-exec there), started
// it (Spec.Init) or exited.
func (c *container) readStatus(r io.Reader) {
	dec := json.NewDecoder(r)
	for {
		var s status
		if err := dec.Decode(&s); err != nil {
			return
		}
		c.st.Stubs = append(c.st.Stubs, s.Stubs...)
		c.st.Copied = c.st.Copied || s.Copied
		c.st.Started = c.st.Started || s.Started
		if s.Fallback != "" {
			c.st.Fallback = s.Fallback
		}
		if s.Error != "" {
			c.st.Error, c.st.Code = s.Error, s.Code
		}
	}
}

// wait reaps the init, cleans up after the container and closes done.
func (c *container) wait() {
	defer close(c.done)
	err := c.cmd.Wait()
	c.stop()
	if ps := c.cmd.ProcessState; ps != nil {
		ws, _ := ps.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled():
			c.code = 128 + int(ws.Signal())
		default:
			c.code = ws.ExitStatus()
		}
		if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				c.err = fmt.Errorf("run container: %w", err)
			}
		}
	} else {
		c.err = fmt.Errorf("run container: %w", err)
	}
	<-c.started
	if c.ttyOut != nil {
		select {
		case <-c.ttyOut:
		case <-time.After(waitDelay):
		}
	}
	if c.tty != nil {
		c.tty.Close()
	}
	if c.st.Copied {
		copyDir := filepath.Join(c.rootfs.WorkDir, copyDirName)
		var copyErr error
		if c.err == nil && !c.cancelled.Load() {
			copyErr = writeChanges(copyDir, c.rootfs.UpperDir)
		}
		if rerr := os.RemoveAll(copyDir); copyErr == nil {
			copyErr = rerr
		}
		if copyErr != nil && c.err == nil && c.st.Error == "" {
			c.err = fmt.Errorf("write the changes of the copied root filesystem: %w", copyErr)
		}
	}
	if c.process && len(c.st.Stubs) > 0 && c.err == nil {
		// Best effort: a stub that cannot be removed only adds an empty
		// file or dir to the layer.
		_ = removeStubs(c.rootfs.UpperDir, c.st.Stubs)
	}
	c.cleanup()
}

// cleanup removes the cgroup and the run dir.
func (c *container) cleanup() {
	if c.cg != nil {
		if err := c.cg.remove(); err != nil && c.err == nil {
			c.err = fmt.Errorf("remove container cgroup: %w", err)
		}
	}
	os.RemoveAll(c.runDir)
}

// Pid implements executor.Container.
func (c *container) Pid() int { return c.cmd.Process.Pid }

// Wait implements executor.Container.
func (c *container) Wait() (int, error) {
	<-c.done
	if c.err != nil {
		return c.code, c.err
	}
	if c.st.Error != "" {
		// Only a Func reports its error after starting.
		return c.code, errors.New(c.st.Error)
	}
	return c.code, nil
}

// Signal implements executor.Container. Under Spec.Init the init forwards
// sig to the process (SIGKILL goes to the init and so ends the container).
func (c *container) Signal(sig syscall.Signal) error {
	select {
	case <-c.done:
		return os.ErrProcessDone
	default:
	}
	if c.init && sig != syscall.SIGKILL && sig != syscall.SIGSTOP {
		err := c.request(context.Background(), initRequest{Signal: int(sig)})
		if err == nil {
			return nil
		}
		select {
		case <-c.done:
			return os.ErrProcessDone
		default:
			return err
		}
	}
	err := c.cmd.Process.Signal(sig)
	if err == nil && sig == syscall.SIGKILL && c.cg != nil {
		// A frozen container only dies once thawed.
		_ = c.cg.freeze(false)
	}
	return err
}

// Pause implements executor.Container.
func (c *container) Pause() error {
	if c.cg == nil {
		return errors.New("pause container: it has no cgroup (Spec.CgroupPath)")
	}
	return c.cg.freeze(true)
}

// Resume implements executor.Container.
func (c *container) Resume() error {
	if c.cg == nil {
		return errors.New("resume container: it has no cgroup (Spec.CgroupPath)")
	}
	return c.cg.freeze(false)
}

// Resize implements executor.Container.
func (c *container) Resize(rows, cols uint16) error {
	if c.tty == nil {
		return errors.New("resize terminal: the process has no terminal")
	}
	select {
	case <-c.done:
		return os.ErrProcessDone
	default:
	}
	return resize(c.tty, rows, cols)
}
