package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// forwardedSignals are passed on to the process by an init that stays PID 1.
var forwardedSignals = []os.Signal{
	unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH,
}

// initProc is the init that stays PID 1 (Spec.Init). Its main goroutine,
// locked to the thread whose bounding set and ambient set confine what it
// execs, forks every process and reaps every child; other
// goroutines serve exec requests and hand forks to it.
type initProc struct {
	cfg  *initConfig
	ln   int // listening socket for exec requests
	caps uint64

	main    int // pid of the process
	forks   chan forkRequest
	signals chan unix.Signal
	// waiters get the wait status of exec'd processes, by pid.
	waiters map[int]chan unix.WaitStatus
}

// forkRequest asks the main goroutine to start a process.
type forkRequest struct {
	p     *processConfig
	files []uintptr // stdin, stdout, stderr; a pty slave three times with Tty
	reply chan forkResult
}

type forkResult struct {
	pid  int
	exit chan unix.WaitStatus
	code int // 126/127 with err for a command that cannot be run
	err  error
}

// runInitProcess starts the process as a child of the init and then serves
// the container until the process exits; the init then exits with its
// status. It returns only when the process could not be started.
func runInitProcess(ip *initProc, first execProcess, stubs []stub, statusW *os.File) (int, error) {
	// Processes in the container must not ptrace the init or open its
	// /proc/1/exe (kiln's binary on the host).
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("make the init undumpable: %w", err)
	}
	if err := limitCaps(ip.caps); err != nil {
		return 0, err
	}
	if err := clearInheritable(); err != nil {
		return 0, err
	}
	// The init runs under the profile too (as docker run --init's does),
	// so every process it forks inherits it.
	if err := loadSeccomp(ip.cfg.Seccomp); err != nil {
		return 0, err
	}
	unix.Umask(0o022)
	ip.forks = make(chan forkRequest)
	ip.signals = make(chan unix.Signal, 8)
	ip.waiters = map[int]chan unix.WaitStatus{}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, append([]os.Signal{unix.SIGCHLD}, forwardedSignals...)...)

	files := []uintptr{0, 1, 2}
	slave := -1
	if ip.cfg.Process.Tty {
		var err error
		if slave, err = sendPty(first.u); err != nil {
			return 0, err
		}
		files = []uintptr{uintptr(slave), uintptr(slave), uintptr(slave)}
	}
	report(statusW, status{Stubs: stubs})
	if err := cloexecFrom(3); err != nil {
		return 0, fmt.Errorf("close kiln's file descriptors: %w", err)
	}
	pid, err := ip.forkExec(first, files, slave >= 0)
	if err != nil {
		code := 126
		if errors.Is(err, unix.ENOENT) {
			code = 127
		}
		return code, err
	}
	ip.main = pid
	if slave >= 0 {
		unix.Close(slave)
	}
	// The parent's Start returns at EOF.
	report(statusW, status{Started: true})
	statusW.Close()
	debug.SetGCPercent(100) // the init lives as long as the container
	go ip.serve()

	for {
		select {
		case sig := <-sigs:
			if sig == unix.SIGCHLD {
				if ws, done := ip.reap(); done {
					os.Exit(exitCode(ws))
				}
				continue
			}
			_ = unix.Kill(ip.main, sig.(unix.Signal))
		case sig := <-ip.signals:
			_ = unix.Kill(ip.main, sig)
		case req := <-ip.forks:
			req.reply <- ip.fork(req)
		}
	}
}

// exitCode is a wait status as a shell reports it.
func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// reap collects every exited child, hands the statuses of exec'd processes
// to their waiters and reports whether the main process exited.
func (ip *initProc) reap() (unix.WaitStatus, bool) {
	var mainWS unix.WaitStatus
	mainDone := false
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return mainWS, mainDone
		}
		if pid == ip.main {
			mainWS, mainDone = ws, true
		}
		if ch := ip.waiters[pid]; ch != nil {
			ch <- ws
			delete(ip.waiters, pid)
		}
	}
}

// fork starts an exec'd process on the main goroutine.
func (ip *initProc) fork(req forkRequest) forkResult {
	proc, code, err := prepareProcess(req.p)
	defer unix.Chdir("/")
	if err != nil {
		return forkResult{code: code, err: err}
	}
	tty := req.p.Tty
	if tty {
		if err := unix.Fchown(int(req.files[0]), proc.u.uid, -1); err != nil {
			return forkResult{err: fmt.Errorf("chown the pseudo terminal: %w", err)}
		}
	}
	pid, err := ip.forkExec(proc, req.files, tty)
	if err != nil {
		code := 126
		if errors.Is(err, unix.ENOENT) {
			code = 127
		}
		return forkResult{code: code, err: err}
	}
	ch := make(chan unix.WaitStatus, 1)
	ip.waiters[pid] = ch
	return forkResult{pid: pid, exit: ch}
}

// forkExec starts proc as u with files as its stdio. It must run on the
// main goroutine: the child inherits its thread's bounding set and ambient
// set; as root it then gets exactly the bounding set.
func (ip *initProc) forkExec(proc execProcess, files []uintptr, tty bool) (int, error) {
	groups := make([]uint32, len(proc.u.groups))
	for i, g := range proc.u.groups {
		groups[i] = uint32(g)
	}
	attr := &syscall.ProcAttr{
		Dir:   proc.cwd,
		Env:   proc.env,
		Files: files,
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: uint32(proc.u.uid), Gid: uint32(proc.u.gid), Groups: groups},
			Setsid:     tty,
			Setctty:    tty,
			Ctty:       0,
		},
	}
	pid, err := syscall.ForkExec(proc.argv0, proc.args, attr)
	if err != nil {
		return 0, fmt.Errorf("exec %s: %w", proc.argv0, err)
	}
	return pid, nil
}

// serve accepts exec and signal requests until the init exits.
func (ip *initProc) serve() {
	for {
		conn, err := acceptSeq(ip.ln)
		if err != nil {
			return
		}
		go ip.handle(conn)
	}
}

// handle answers one request.
func (ip *initProc) handle(conn *seqConn) {
	defer conn.close()
	msg, fds, err := conn.recv(maxInitRequest, 3)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			replyInit(conn, initReply{Error: "read init request: " + err.Error()}, -1)
		}
		return
	}
	var req initRequest
	if err := json.Unmarshal(msg, &req); err != nil {
		closeFDs(fds)
		replyInit(conn, initReply{Error: "decode init request: " + err.Error()}, -1)
		return
	}
	switch {
	case req.Signal != 0:
		closeFDs(fds)
		// Reply first: the signal may end the process and with it the
		// init, before a reply sent afterwards got out (the caller then
		// saw EOF for a signal that was delivered).
		replyInit(conn, initReply{}, -1)
		ip.signals <- unix.Signal(req.Signal)
	case req.Exec != nil && len(req.Exec.Args) > 0:
		ip.exec(conn, req.Exec, fds)
	default:
		closeFDs(fds)
		replyInit(conn, initReply{Error: "empty init request"}, -1)
	}
}

// exec runs p with the stdio fds (or a new pty), which it closes, and
// reports its exit.
func (ip *initProc) exec(conn *seqConn, p *processConfig, fds []int) {
	var files []uintptr
	master, slave := -1, -1
	if p.Tty {
		closeFDs(fds) // a Tty process gets a new pty, not the client's fds
		fds = nil
		var err error
		if master, slave, err = openPty(); err != nil {
			replyInit(conn, initReply{Error: err.Error()}, -1)
			return
		}
		files = []uintptr{uintptr(slave), uintptr(slave), uintptr(slave)}
	} else {
		if len(fds) != 3 {
			closeFDs(fds)
			replyInit(conn, initReply{Error: "exec request without stdin, stdout and stderr"}, -1)
			return
		}
		files = []uintptr{uintptr(fds[0]), uintptr(fds[1]), uintptr(fds[2])}
	}
	reply := make(chan forkResult, 1)
	ip.forks <- forkRequest{p: p, files: files, reply: reply}
	r := <-reply
	if slave >= 0 {
		unix.Close(slave)
	}
	closeFDs(fds)
	if r.err != nil {
		if master >= 0 {
			unix.Close(master)
		}
		replyInit(conn, initReply{Error: r.err.Error(), Code: r.code}, -1)
		return
	}
	sent := replyInit(conn, initReply{Pid: r.pid}, master)
	if master >= 0 {
		unix.Close(master)
	}
	if !sent {
		_ = unix.Kill(r.pid, unix.SIGKILL)
	}
	// A client that goes away kills the process.
	var exited atomic.Bool
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		_, fds, _ := conn.recv(16, 1)
		closeFDs(fds)
		if !exited.Load() {
			_ = unix.Kill(r.pid, unix.SIGKILL)
		}
	}()
	ws := <-r.exit
	exited.Store(true)
	replyInit(conn, initReply{Exited: true, Code: exitCode(ws)}, -1)
	conn.shutdown()
	<-watched
}

// replyInit sends one reply, with fd attached when >= 0.
func replyInit(conn *seqConn, r initReply, fd int) bool {
	b, err := json.Marshal(r)
	if err != nil {
		return false
	}
	if fd >= 0 {
		return conn.send(b, fd) == nil
	}
	return conn.send(b) == nil
}
