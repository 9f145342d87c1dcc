package linux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/kiln-build/kiln/executor"
	"golang.org/x/sys/unix"
)

// errNoInit is returned by Exec on a container started without Spec.Init.
var errNoInit = errors.New("exec in container: the container was started without Init (Spec.Init), which serves exec")

// Exec implements executor.Container: the init forks p inside the
// container with the same confinement as the container's process. A
// command that cannot be run is reported like Run does (exit code 126 or
// 127 with an error). Cancelling ctx kills the process.
func (c *container) Exec(ctx context.Context, p executor.Process) (int, error) {
	if !c.init {
		return -1, errNoInit
	}
	if len(p.Args) == 0 {
		return -1, errors.New("exec in container: no command given")
	}
	select {
	case <-c.done:
		return -1, errors.New("exec in container: the container is not running")
	default:
	}
	req := initRequest{Exec: &processConfig{Args: p.Args, Env: p.Env, Cwd: p.Cwd, User: p.User, Tty: p.Tty, RunGroups: p.RunGroups}}
	var x execIO
	defer x.close()
	var fds []int
	if !p.Tty {
		var err error
		if fds, err = x.pipes(p); err != nil {
			return -1, fmt.Errorf("exec in container: %w", err)
		}
	}
	conn, first, master, err := c.send(ctx, req, fds)
	x.closeSent()
	if err != nil {
		return -1, err
	}
	defer conn.close()
	if first.Error != "" {
		if master != nil {
			master.Close()
		}
		if first.Code != 0 {
			return first.Code, &execError{msg: first.Error, exit: &executor.ExitError{Code: first.Code}}
		}
		return -1, fmt.Errorf("exec in container: %s", first.Error)
	}
	if master != nil {
		defer master.Close()
		x.tty(master, p.Stdin, p.Stdout)
	}
	x.start()

	exit := make(chan initReply, 1)
	go func() {
		r, f, err := readReply(conn)
		if f != nil {
			f.Close()
		}
		if err != nil {
			r = initReply{Error: "the container exited"}
		}
		exit <- r
	}()
	select {
	case r := <-exit:
		x.wait()
		if !r.Exited {
			return -1, fmt.Errorf("exec in container: %s", r.Error)
		}
		return r.Code, nil
	case <-ctx.Done():
		conn.shutdown() // the init kills the process
		<-exit
		return -1, fmt.Errorf("exec in container: %w", ctx.Err())
	}
}

// send sends one request with fds to the init and reads the first reply,
// with the fd it carries (a pty master) as a file.
func (c *container) send(ctx context.Context, req initRequest, fds []int) (*seqConn, initReply, *os.File, error) {
	conn, err := dialSeq(c.initSock)
	if err != nil {
		return nil, initReply{}, nil, fmt.Errorf("connect to the container's init: %w", err)
	}
	b, err := json.Marshal(req)
	if err == nil {
		err = conn.send(b, fds...)
	}
	if err != nil {
		conn.close()
		return nil, initReply{}, nil, fmt.Errorf("send request to the container's init: %w", err)
	}
	stop := context.AfterFunc(ctx, conn.shutdown)
	r, f, err := readReply(conn)
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		conn.close()
		return nil, initReply{}, nil, fmt.Errorf("read reply of the container's init: %w", err)
	}
	return conn, r, f, nil
}

// request sends a request that needs no fds and gets one reply.
func (c *container) request(ctx context.Context, req initRequest) (initReply, error) {
	conn, r, f, err := c.send(ctx, req, nil)
	if err != nil {
		return r, err
	}
	conn.close()
	if f != nil {
		f.Close()
	}
	if r.Error != "" {
		return r, errors.New(r.Error)
	}
	return r, nil
}

// readReply reads one reply and the fd attached to it, if any, as a
// non-blocking file.
func readReply(conn *seqConn) (initReply, *os.File, error) {
	msg, fds, err := conn.recv(64<<10, 1)
	if err != nil {
		return initReply{}, nil, err
	}
	var f *os.File
	if len(fds) > 0 {
		closeFDs(fds[1:])
		if err := unix.SetNonblock(fds[0], true); err != nil {
			unix.Close(fds[0])
			return initReply{}, nil, err
		}
		f = os.NewFile(uintptr(fds[0]), "pty")
	}
	var r initReply
	if err := json.Unmarshal(msg, &r); err != nil {
		if f != nil {
			f.Close()
		}
		return initReply{}, nil, err
	}
	return r, f, nil
}

// execIO copies an exec'd process's stdio.
type execIO struct {
	sent    []*os.File // the process's ends, closed once sent
	mine    []*os.File // kiln's ends
	readers []*os.File // kiln's ends it reads output from
	copies  []func()   // output copies, waited for
	feed    func()     // copies stdin, not waited for
	wg      sync.WaitGroup
	stdinW  *os.File
}

// pipes creates the process's stdin, stdout and stderr and returns the fds
// to send.
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

// closeSent closes the process's ends after they were sent.
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
