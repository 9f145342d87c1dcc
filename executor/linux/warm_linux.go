package linux

import (
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// initProcess is a started container init that waits for its config on
// cfgW and reports its status on stR.
type initProcess struct {
	cmd       *exec.Cmd
	cfgW, stR *os.File
	// stdout and stderr are set for an init started ahead of its run
	// (warm): its output goes wherever the run that takes it says.
	stdout, stderr *lateWriter
	// extra are the child's ends of the pipes, closed by release.
	extra []*os.File
}

// selfExe is the running binary, started as the init of containers that
// run a function and, by default, of all.
const selfExe = "/proc/self/exe"

// initKind is what tells inits apart: the binary, the namespaces and the
// cgroup (v2) the init is cloned into, if any.
type initKind struct {
	exe        string
	flags      uintptr
	intoCgroup bool
	cgroupFD   int
}

// spawnInit starts k.exe as a container init in new namespaces (k.flags),
// and in those of joins. extra are passed after the config and status
// pipes (fd 5 on).
func spawnInit(k initKind, joins nsJoins, start func(joins nsJoins, cmd *exec.Cmd) error, stdin io.Reader, stdout, stderr io.Writer, extra ...*os.File) (*initProcess, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	stR, stW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		cfgW.Close()
		return nil, err
	}
	ip := &initProcess{cfgW: cfgW, stR: stR, extra: append([]*os.File{cfgR, stW}, extra...)} // fds 3, 4, 5...
	cmd := exec.Command(k.exe, InitArg)
	cmd.Args[0] = "kiln-init"
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.ExtraFiles = ip.extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: k.flags, UseCgroupFD: k.intoCgroup, CgroupFD: k.cgroupFD}
	if joins.pid == "" {
		// (The init asks for it itself too: see runInit.)
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	cmd.WaitDelay = waitDelay
	if err := start(joins, cmd); err != nil {
		ip.release()
		cfgW.Close()
		stR.Close()
		return nil, err
	}
	ip.cmd = cmd
	return ip, nil
}

// release closes the child's ends of the pipes.
func (ip *initProcess) release() {
	for _, f := range ip.extra {
		f.Close()
	}
	ip.extra = nil
}

// exited reports whether the init is gone already (without reaping it).
func (ip *initProcess) exited() bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, ip.cmd.Process.Pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err != nil || info.Signo != 0
}

// discard kills and reaps an init that was never given a config.
func (ip *initProcess) discard() {
	ip.cfgW.Close()
	ip.stR.Close()
	_ = ip.cmd.Process.Kill()
	_ = ip.cmd.Wait()
}

// lateWriter forwards writes to a writer chosen after the process that
// writes to it was started; until then (and with none) output is dropped.
type lateWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lateWriter) set(w io.Writer) {
	l.mu.Lock()
	l.w = w
	l.mu.Unlock()
}

func (l *lateWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return len(p), nil
	}
	return l.w.Write(p)
}

// warmPool keeps one init started ahead per kind (binary and namespaces), so a
// build's next RUN skips the fork, exec and Go runtime start of the init
// (about a third of a short step). It only starts one once a second run
// was asked for, so a lone `kiln run` never pays for a spare.
type warmPool struct {
	mu      sync.Mutex
	runs    int
	closed  bool
	ready   map[initKind]*initProcess
	filling map[initKind]bool
	wg      sync.WaitGroup
}

// take returns the warm init of kind k, or nil, and starts filling the
// slot again from the second run on.
func (p *warmPool) take(k initKind) *initProcess {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.runs++
	ip := p.ready[k]
	delete(p.ready, k)
	if p.runs >= 2 && !p.closed && !p.filling[k] {
		if p.filling == nil {
			p.filling = map[initKind]bool{}
		}
		p.filling[k] = true
		p.wg.Add(1)
		go p.fill(k)
	}
	if ip != nil && ip.exited() {
		go ip.discard()
		return nil
	}
	return ip
}

func (p *warmPool) fill(k initKind) {
	defer p.wg.Done()
	out, errw := &lateWriter{}, &lateWriter{}
	ip, err := spawnInit(k, nsJoins{}, startIn, nil, out, errw)
	if err == nil {
		ip.release()
		ip.stdout, ip.stderr = out, errw
	}
	p.mu.Lock()
	delete(p.filling, k)
	keep := err == nil && !p.closed && p.ready[k] == nil
	if keep {
		if p.ready == nil {
			p.ready = map[initKind]*initProcess{}
		}
		p.ready[k] = ip
	}
	p.mu.Unlock()
	if err == nil && !keep {
		ip.discard() // not while holding p.mu
	}
	// A failed start is not reported: the next run starts its own init
	// and says why that fails.
}

// close kills the warm inits and waits for spares being started.
func (p *warmPool) close() {
	p.mu.Lock()
	p.closed = true
	ready := p.ready
	p.ready = nil
	p.mu.Unlock()
	// All killed first, so their namespaces go away in parallel, then
	// reaped: a kiln command leaves no zombie behind for init to collect.
	for _, ip := range ready {
		_ = ip.cmd.Process.Kill()
	}
	for _, ip := range ready {
		ip.discard()
	}
	p.wg.Wait() // a spare started meanwhile sees closed and goes
}
