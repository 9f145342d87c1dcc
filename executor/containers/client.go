package containers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// StartError is a container that could not be started. Code is 126 or 127
// when its command cannot be run, else 0.
type StartError struct {
	Msg  string
	Code int
}

func (e *StartError) Error() string { return e.Msg }

// StartOptions configures Start.
type StartOptions struct {
	// Attach streams the container's output from its first byte through
	// the returned Session; Stdin also forwards stdin (when the
	// container has OpenStdin).
	Attach, Stdin bool
	// Exe is the kiln binary to run as the shim; "" means this one.
	Exe string
}

// Start launches the container's shim (detached into its own session, so
// it outlives the caller) and has it start the container. With
// opts.Attach the returned Session streams the output; otherwise it is nil.
// A start that fails leaves the container as it was (its state records
// the error) and returns a *StartError.
func (s *Store) Start(ctx context.Context, id string, opts StartOptions) (*Session, error) {
	r, err := s.Load(id)
	if err != nil {
		return nil, err
	}
	s.checkShim(r)
	if r.Running() {
		return nil, fmt.Errorf("start %s: %w", r.Config.Name, ErrRunning)
	}
	if err := s.launchShim(ctx, r, opts.Exe); err != nil {
		return nil, err
	}
	c, err := dial(ctx, r.Dir)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", r.Config.Name, err)
	}
	rep, err := c.call(ctx, request{Op: opStart, Attach: opts.Attach, Stdin: opts.Stdin})
	if err != nil {
		c.Close()
		return nil, err
	}
	if !rep.OK {
		c.Close()
		// The shim exits after a failed start; wait for it so the caller
		// sees the container as it was.
		s.waitShimGone(ctx, id)
		return nil, &StartError{Msg: rep.Error, Code: rep.Code}
	}
	if !opts.Attach {
		c.Close()
		return nil, nil
	}
	return &Session{c: c, stdin: opts.Stdin}, nil
}

// waitShimGone waits up to 10s for the shim of id to exit.
func (s *Store) waitShimGone(ctx context.Context, id string) {
	r, err := s.Load(id)
	if err != nil {
		return
	}
	for i := 0; i < 1000 && ShimAlive(r.State.ShimPid, r.State.ShimStart); i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// launchShim starts kiln as the shim of r and waits until it listens.
func (s *Store) launchShim(ctx context.Context, r *Record, exe string) error {
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("start the container's monitor: %w", err)
		}
	}
	logf, err := os.OpenFile(filepath.Join(r.Dir, shimLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start the container's monitor: %w", err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	cmd := exec.Command(exe, ShimArg, s.root, r.Config.ID)
	cmd.Args[0] = "kiln-shim"
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.ExtraFiles = []*os.File{readyW} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return fmt.Errorf("start the container's monitor: %w", err)
	}
	pid := cmd.Process.Pid
	// Reap it if it dies while we wait; otherwise let it go.
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	got := make(chan bool, 1)
	go func() {
		b := make([]byte, 1)
		n, _ := readyR.Read(b)
		got <- n == 1
	}()
	select {
	case ok := <-got:
		if ok {
			return nil
		}
		<-exited
		msg, _ := os.ReadFile(filepath.Join(r.Dir, shimLog))
		return fmt.Errorf("the container's monitor (pid %d) exited at once: %s", pid, lastLine(msg))
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		return errors.New("the container's monitor did not come up within 15s")
	case <-ctx.Done():
		cmd.Process.Kill()
		return ctx.Err()
	}
}

func lastLine(b []byte) string {
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	if s == "" {
		return "no output"
	}
	return s
}

// dialRunning connects to the shim of a running container.
func (s *Store) dialRunning(ctx context.Context, ref string) (*Record, *conn, error) {
	r, err := s.Get(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	if !r.Running() {
		return r, nil, fmt.Errorf("container %s is not running: %w", r.Config.Name, ErrNotRunning)
	}
	c, err := dial(ctx, r.Dir)
	if errors.Is(err, ErrNoShim) {
		return r, nil, fmt.Errorf("container %s is not running: %w", r.Config.Name, ErrNotRunning)
	}
	return r, c, err
}

func (s *Store) simpleCall(ctx context.Context, ref string, req request) (*Record, reply, error) {
	r, c, err := s.dialRunning(ctx, ref)
	if err != nil {
		return r, reply{}, err
	}
	defer c.Close()
	rep, err := c.call(ctx, req)
	if err != nil {
		return r, rep, err
	}
	if !rep.OK {
		return r, rep, fmt.Errorf("%s %s: %s", req.Op, r.Config.Name, rep.Error)
	}
	return r, rep, nil
}

// Stop stops a running container: its stop signal, then SIGKILL after
// timeout (< 0: the container's own default, 10s). A stopped container is
// left alone. The restart policy does not restart it.
func (s *Store) Stop(ctx context.Context, ref string, timeout time.Duration) error {
	secs := -1.0
	if timeout >= 0 {
		secs = timeout.Seconds()
	}
	r, err := s.Get(ctx, ref)
	if err != nil {
		return err
	}
	if !r.Running() {
		return nil
	}
	_, _, err = s.simpleCall(ctx, r.Config.ID, request{Op: opStop, Timeout: secs})
	if errors.Is(err, ErrNotRunning) {
		err = nil
	}
	if err == nil {
		s.waitShimGone(ctx, r.Config.ID)
	}
	return err
}

// Kill sends sig to a running container.
func (s *Store) Kill(ctx context.Context, ref string, sig syscall.Signal) error {
	_, _, err := s.simpleCall(ctx, ref, request{Op: opKill, Signal: int(sig)})
	return err
}

// Pause freezes a running container.
func (s *Store) Pause(ctx context.Context, ref string) error {
	r, err := s.Get(ctx, ref)
	if err != nil {
		return err
	}
	if r.State.Status == Paused {
		return fmt.Errorf("container %s is already paused", r.Config.Name)
	}
	_, _, err = s.simpleCall(ctx, ref, request{Op: opPause})
	return err
}

// Unpause thaws a paused container.
func (s *Store) Unpause(ctx context.Context, ref string) error {
	r, err := s.Get(ctx, ref)
	if err != nil {
		return err
	}
	if r.State.Status != Paused {
		return fmt.Errorf("container %s is not paused", r.Config.Name)
	}
	_, _, err = s.simpleCall(ctx, ref, request{Op: opResume})
	return err
}

// Resize sets the terminal size of a running container's tty.
func (s *Store) Resize(ctx context.Context, ref string, rows, cols uint16) error {
	_, _, err := s.simpleCall(ctx, ref, request{Op: opResize, Rows: rows, Cols: cols})
	return err
}

// Wait blocks until the container stops and returns its exit code.
func (s *Store) Wait(ctx context.Context, ref string) (int, error) {
	r, c, err := s.dialRunning(ctx, ref)
	if errors.Is(err, ErrNotRunning) {
		return r.State.ExitCode, nil
	}
	if err != nil {
		return 0, err
	}
	defer c.Close()
	rep, err := c.call(ctx, request{Op: opWait})
	if err != nil {
		// The shim went away: read what it recorded.
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		r, gerr := s.Get(ctx, r.Config.ID)
		if gerr != nil {
			return 0, err
		}
		return r.State.ExitCode, nil
	}
	return rep.Code, nil
}

// Attach connects to a running container's output (and stdin).
func (s *Store) Attach(ctx context.Context, ref string, stdin bool) (*Session, error) {
	r, c, err := s.dialRunning(ctx, ref)
	if err != nil {
		return nil, err
	}
	rep, err := c.call(ctx, request{Op: opAttach, Stdin: stdin})
	if err != nil {
		c.Close()
		return nil, err
	}
	if !rep.OK {
		c.Close()
		return nil, fmt.Errorf("attach %s: %s", r.Config.Name, rep.Error)
	}
	return &Session{c: c, stdin: stdin}, nil
}

// Exec runs a process in a running container; the Session streams it.
// Env, Cwd and User default to the container's.
func (s *Store) Exec(ctx context.Context, ref string, ec ExecConfig) (*Session, error) {
	r, c, err := s.dialRunning(ctx, ref)
	if err != nil {
		return nil, err
	}
	env := append([]string(nil), r.Config.Env...)
	for _, kv := range ec.Env {
		env = MergeEnv(env, kv)
	}
	ec.Env = env
	if ec.Cwd == "" {
		ec.Cwd = r.Config.WorkingDir
	}
	if ec.User == "" {
		ec.User = r.Config.User
	}
	rep, err := c.call(ctx, request{Op: opExec, Exec: &ec})
	if err != nil {
		c.Close()
		return nil, err
	}
	if !rep.OK {
		c.Close()
		return nil, fmt.Errorf("exec in %s: %s", r.Config.Name, rep.Error)
	}
	return &Session{c: c, stdin: ec.Stdin}, nil
}

// MergeEnv sets KEY=VALUE kv in env, replacing an earlier KEY.
func MergeEnv(env []string, kv string) []string {
	key := kv
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			key = kv[:i]
			break
		}
	}
	for i, e := range env {
		if len(e) > len(key) && e[:len(key)] == key && e[len(key)] == '=' {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

// runEnv is the environment of a container's process as docker run makes
// it: HOSTNAME, and TERM=xterm with a terminal, under the container's
// (and exec's) own variables, which win.
func runEnv(hostname string, tty bool, env []string) []string {
	out := make([]string, 0, len(env)+2)
	out = append(out, "HOSTNAME="+hostname)
	if tty {
		out = append(out, "TERM=xterm")
	}
	for _, kv := range env {
		out = MergeEnv(out, kv)
	}
	return out
}
