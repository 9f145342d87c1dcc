package linux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/kiln-build/kiln/executor"
	"golang.org/x/sys/unix"
)

// Exec implements executor.Container, as docker exec runs a process: p
// runs in the container's namespaces and cgroup, with the confinement of
// the container's process (bounding set, seccomp filter), as a child of
// kiln's process forked from a thread that joined the container. The
// container's PID 1 is the container's own process (or, with Spec.Init,
// kiln's init) and has no part in it. A command that cannot be run is
// reported like Run does (exit code 126 or 127 with an error). Cancelling
// ctx kills the process.
func (c *container) Exec(ctx context.Context, p executor.Process) (int, error) {
	if !c.process {
		return -1, errors.New("exec in container: the container runs no process")
	}
	if len(p.Args) == 0 {
		return -1, errors.New("exec in container: no command given")
	}
	if p.Cwd != "" && !path.IsAbs(p.Cwd) {
		return 126, &execError{msg: fmt.Sprintf("exec in container: the working directory %q must be an absolute path", p.Cwd), exit: &executor.ExitError{Code: 126}}
	}
	select {
	case <-c.done:
		return -1, errors.New("exec in container: the container is not running")
	default:
	}
	var x execIO
	defer x.close()
	var fds []int
	if !p.Tty {
		var err error
		if fds, err = x.pipes(p); err != nil {
			return -1, fmt.Errorf("exec in container: %w", err)
		}
	}
	pc := &processConfig{Args: p.Args, Env: p.Env, Cwd: p.Cwd, User: p.User, Tty: p.Tty, RunGroups: p.RunGroups}
	var r execStart
	onDiscardedThread(func() { r = c.forkInside(pc, fds) })
	x.closeSent()
	if r.err != nil {
		if r.code != 0 {
			return r.code, &execError{msg: r.err.Error(), exit: &executor.ExitError{Code: r.code}}
		}
		return -1, fmt.Errorf("exec in container: %w", r.err)
	}
	if r.master != nil {
		defer r.master.Close()
		x.tty(r.master, p.Stdin, p.Stdout)
	}
	x.start()
	exit := make(chan int, 1)
	go func() {
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(r.pid, &ws, 0, nil)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		exit <- exitCode(ws)
	}()
	var code int
	select {
	case code = <-exit:
	case <-ctx.Done():
		_ = unix.Kill(r.pid, unix.SIGKILL)
		<-exit
		x.wait()
		return -1, fmt.Errorf("exec in container: %w", ctx.Err())
	}
	x.wait()
	return code, nil
}

// onDiscardedThread runs fn on a thread of its own that ends with it, for
// work that changes the thread for good (its namespaces, cgroup, seccomp
// filter): the goroutine ends locked to the thread, so the runtime ends the
// thread too. The main thread cannot end (the runtime would keep it,
// changed, and /proc/self describes it): a goroutine that lands there holds
// it while fn runs on another.
func onDiscardedThread(fn func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			fn()
			close(done)
			return
		}
		go func() {
			runtime.LockOSThread()
			fn()
			close(done)
		}()
		<-done
		runtime.UnlockOSThread()
	}()
	<-done
}

// finishStoppedChild waits for the traced child pid to stop after its
// execve, calls finish (which sets what the child could not be given
// before) and lets it run. The calling thread must be the one that forked
// it.
func finishStoppedChild(pid int, finish func() error) error {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for the exec'd process: %w", err)
		}
		break
	}
	if !ws.Stopped() {
		return errors.New("the exec'd process ended before it started")
	}
	if err := finish(); err != nil {
		return err
	}
	if err := unix.PtraceDetach(pid); err != nil {
		return fmt.Errorf("let the exec'd process run: %w", err)
	}
	return nil
}

// addToCgroupFD moves process pid into the cgroup (v2) whose directory is
// open as dirfd.
func addToCgroupFD(dirfd, pid int) error {
	fd, err := unix.Openat(dirfd, "cgroup.procs", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		_, err = unix.Write(fd, []byte(strconv.Itoa(pid)))
		unix.Close(fd)
	}
	if err != nil {
		return fmt.Errorf("move the exec'd process into the container's cgroup: %w", err)
	}
	return nil
}

// execStart is the outcome of forkInside.
type execStart struct {
	pid    int
	master *os.File // the pty master of a Tty process
	code   int      // 126/127 with err for a command that cannot be run
	err    error
}

// forkInside starts p from the calling thread, which it moves into the
// container for good: into its cgroup (v1), then its mount, uts, ipc, net
// and pid namespaces (through a pidfd of the container's init), then under
// its bounding set and seccomp filter. stdio are p's stdin, stdout and
// stderr unless p.Tty, which gets a new pty of the container's /dev/pts.
// The caller must have locked the thread and must never unlock it.
func (c *container) forkInside(p *processConfig, stdio []int) execStart {
	fail := func(err error) execStart { return execStart{err: err} }
	pidfd, err := unix.PidfdOpen(c.cmd.Process.Pid, 0)
	if err != nil {
		return fail(fmt.Errorf("open the container's init: %w", err))
	}
	defer unix.Close(pidfd)
	cgroupFD := -1
	if c.cg != nil {
		if cgroupFD, err = c.cg.addThread(); err != nil {
			return fail(err)
		}
		if cgroupFD >= 0 {
			defer unix.Close(cgroupFD)
		}
	}
	// A thread shares its root and working directory with the others
	// until it unshares them; only then may it join a mount namespace.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fail(fmt.Errorf("unshare the filesystem attributes: %w", err))
	}
	nsFlags := unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET | unix.CLONE_NEWPID
	if c.privateCgroupNS {
		nsFlags |= unix.CLONE_NEWCGROUP
	}
	if err := unix.Setns(pidfd, nsFlags); err != nil {
		return fail(fmt.Errorf("join the container's namespaces: %w", err))
	}
	// From here on every path is inside the container. The working
	// directory must exist, as under docker exec (a run makes it).
	proc, code, err := prepareProcess(p, false)
	if err != nil {
		return execStart{code: code, err: err}
	}
	if proc.u, err = addGroups(proc.u, c.groupAdd, "/etc/group"); err != nil {
		return execStart{code: 126, err: err}
	}
	var files []uintptr
	var master *os.File
	if p.Tty {
		m, slave, err := openPty()
		if err != nil {
			return fail(err)
		}
		defer unix.Close(slave)
		if err := unix.Fchown(slave, proc.u.uid, -1); err != nil {
			unix.Close(m)
			return fail(fmt.Errorf("chown the pseudo terminal: %w", err))
		}
		if err := unix.SetNonblock(m, true); err != nil {
			unix.Close(m)
			return fail(err)
		}
		master = os.NewFile(uintptr(m), "pty")
		files = []uintptr{uintptr(slave), uintptr(slave), uintptr(slave)}
	} else {
		files = []uintptr{uintptr(stdio[0]), uintptr(stdio[1]), uintptr(stdio[2])}
	}
	closeMaster := func() {
		if master != nil {
			master.Close()
		}
	}
	if err := limitCaps(c.caps); err != nil {
		closeMaster()
		return fail(err)
	}
	if err := clearInheritable(); err != nil {
		closeMaster()
		return fail(err)
	}
	if err := loadSeccompThread(c.seccomp); err != nil {
		closeMaster()
		return fail(err)
	}
	// Resource limits belong to a process, and this thread's is kiln's:
	// the child stops after its execve, gets the container's limits and
	// only then runs (as under runc, which sets them before the exec).
	// The same stop puts it into a v2 cgroup when the seccomp filter
	// refuses clone3 (Docker's profile does), which CLONE_INTO_CGROUP
	// needs.
	limits := len(c.ulimits) > 0
	moveLater := cgroupFD >= 0 && len(c.seccomp) > 0
	cloneInto := cgroupFD
	if moveLater {
		cloneInto = -1
	}
	pid, err := forkExec(proc, files, p.Tty, cloneInto, limits || moveLater)
	if err != nil {
		closeMaster()
		code := 126
		if errors.Is(err, unix.ENOENT) {
			code = 127
		}
		return execStart{code: code, err: err}
	}
	if limits || moveLater {
		err := finishStoppedChild(pid, func() error {
			if moveLater {
				// Through the fd: this thread is in the container's
				// mount namespace now.
				if err := addToCgroupFD(cgroupFD, pid); err != nil {
					return err
				}
			}
			return setUlimits(pid, c.ulimits)
		})
		if err != nil {
			_ = unix.Kill(pid, unix.SIGKILL)
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, 0, nil)
			closeMaster()
			return fail(err)
		}
	}
	return execStart{pid: pid, master: master}
}

// request sends a request to the init's socket (Spec.Init) and waits for
// its reply.
func (c *container) request(ctx context.Context, req initRequest) error {
	conn, err := dialSeq(c.initSock)
	if err != nil {
		return fmt.Errorf("connect to the container's init: %w", err)
	}
	defer conn.close()
	b, err := json.Marshal(req)
	if err == nil {
		err = conn.send(b)
	}
	if err != nil {
		return fmt.Errorf("send request to the container's init: %w", err)
	}
	stop := context.AfterFunc(ctx, conn.shutdown)
	msg, fds, err := conn.recv(maxInitRequest, 0)
	closeFDs(fds)
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("read reply of the container's init: %w", err)
	}
	var r initReply
	if err := json.Unmarshal(msg, &r); err != nil {
		return fmt.Errorf("read reply of the container's init: %w", err)
	}
	if r.Error != "" {
		return errors.New(r.Error)
	}
	return nil
}

// execIO copies an exec'd process's stdio.
type execIO struct {
	sent    []*os.File // the process's ends, closed once it has them
	mine    []*os.File // kiln's ends
	readers []*os.File // kiln's ends it reads output from
	copies  []func()   // output copies, waited for
	feed    func()     // copies stdin, not waited for
	wg      sync.WaitGroup
	stdinW  *os.File
}

// pipes creates the process's stdin, stdout and stderr and returns their
// fds for the process.
func (x *execIO) pipes(p executor.Process) ([]int, error) {
	devNull := func() (*os.File, error) { return os.OpenFile(os.DevNull, os.O_RDWR, 0) }
	var stdin, stdout, stderr *os.File
	var err error
	if p.Stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		stdin, x.stdinW = r, w
		x.mine = append(x.mine, w)
		x.feed = func() {
			_, _ = io.Copy(w, p.Stdin)
			w.Close()
		}
	} else if stdin, err = devNull(); err != nil {
		return nil, err
	}
	x.sent = append(x.sent, stdin)
	output := func(dst io.Writer) (*os.File, error) {
		if dst == nil {
			return devNull()
		}
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		x.mine = append(x.mine, r)
		x.readers = append(x.readers, r)
		x.copies = append(x.copies, func() { _, _ = io.Copy(dst, r) })
		return w, nil
	}
	if stdout, err = output(p.Stdout); err != nil {
		return nil, err
	}
	x.sent = append(x.sent, stdout)
	if p.Stderr != nil && p.Stdout != nil && sameWriter(p.Stderr, p.Stdout) {
		stderr = stdout // one pipe, so the writer is never written concurrently
	} else {
		if stderr, err = output(p.Stderr); err != nil {
			return nil, err
		}
		x.sent = append(x.sent, stderr)
	}
	return []int{int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd())}, nil
}

// sameWriter reports whether a and b are the same writer (comparable and
// equal), like os/exec's check.
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// tty copies between the pty master and stdin/stdout.
func (x *execIO) tty(master *os.File, stdin io.Reader, stdout io.Writer) {
	x.readers = append(x.readers, master)
	done := make(chan struct{})
	x.copies = append(x.copies, func() { copyTTY(master, stdin, stdout, done) })
}

// closeSent closes the process's ends once it has them.
func (x *execIO) closeSent() {
	for _, f := range x.sent {
		f.Close()
	}
	x.sent = nil
}

func (x *execIO) start() {
	if x.feed != nil {
		go x.feed()
	}
	for _, fn := range x.copies {
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			fn()
		}()
	}
}

// wait waits for the output to end, at most waitDelay (a background
// process may keep it open).
func (x *execIO) wait() {
	done := make(chan struct{})
	go func() {
		x.wg.Wait()
		close(done)
	}()
	if x.stdinW != nil {
		// Stop feeding a process that is gone; the copy may block on a
		// reader that never ends, which is the caller's to close.
		x.stdinW.Close()
	}
	select {
	case <-done:
		return
	case <-time.After(waitDelay):
	}
	for _, r := range x.readers {
		_ = r.SetReadDeadline(time.Now())
	}
}

func (x *execIO) close() {
	x.closeSent()
	for _, f := range x.mine {
		f.Close()
	}
}
