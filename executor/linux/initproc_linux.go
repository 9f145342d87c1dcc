package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"golang.org/x/sys/unix"
)

// forwardedSignals are passed on to the process by an init that stays PID 1.
var forwardedSignals = []os.Signal{
	unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH,
}

// initProc is the init that stays PID 1 (Spec.Init, docker run --init).
// Its main goroutine, locked to the thread whose bounding set and ambient
// set confine what it execs, forks the process and reaps every child;
// another goroutine serves signal requests. Exec'd processes do not go
// through it (see Exec).
type initProc struct {
	cfg  *initConfig
	ln   int // listening socket for signal requests
	caps uint64

	main    int // pid of the process
	signals chan unix.Signal
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
	ip.signals = make(chan unix.Signal, 8)
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
	pid, err := forkExec(first, files, slave >= 0, -1, false)
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

// reap collects every exited child and reports whether the main process
// exited.
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
	}
}

// forkExec starts proc as its user with files as its stdio (a pty slave,
// made the controlling terminal, with tty) from the calling thread, whose
// namespaces, bounding and ambient sets and seccomp filter the child
// inherits; with cgroupFD >= 0 the child is born in that cgroup (v2). With
// trace the child stops after its execve, before its first instruction,
// traced by the calling thread (see stoppedChild).
func forkExec(proc execProcess, files []uintptr, tty bool, cgroupFD int, trace bool) (int, error) {
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
	if cgroupFD >= 0 {
		attr.Sys.UseCgroupFD, attr.Sys.CgroupFD = true, cgroupFD
	}
	attr.Sys.Ptrace = trace
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
	msg, fds, err := conn.recv(maxInitRequest, 0)
	closeFDs(fds)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			replyInit(conn, initReply{Error: "read init request: " + err.Error()})
		}
		return
	}
	var req initRequest
	if err := json.Unmarshal(msg, &req); err != nil {
		replyInit(conn, initReply{Error: "decode init request: " + err.Error()})
		return
	}
	if req.Signal == 0 {
		replyInit(conn, initReply{Error: "empty init request"})
		return
	}
	// Reply first: the signal may end the process and with it the init,
	// before a reply sent afterwards got out (the caller then saw EOF for
	// a signal that was delivered).
	replyInit(conn, initReply{})
	ip.signals <- unix.Signal(req.Signal)
}

// replyInit sends one reply.
func replyInit(conn *seqConn, r initReply) {
	if b, err := json.Marshal(r); err == nil {
		_ = conn.send(b)
	}
}
