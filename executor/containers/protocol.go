package containers

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The control socket speaks one JSON request line per connection, answered
// by one JSON reply line. Streaming operations (start with attach, attach,
// exec) then exchange frames: a kind byte, a 4-byte big-endian length and
// the payload.
const (
	frameStdin      byte = 0 // client -> shim: stdin data
	frameStdout     byte = 1 // shim -> client
	frameStderr     byte = 2 // shim -> client
	frameExit       byte = 3 // shim -> client: JSON exitStatus, last frame
	frameResize     byte = 4 // client -> shim: rows, cols (uint16 each)
	frameStdinClose byte = 5 // client -> shim: end of stdin
	frameSignal     byte = 6 // client -> shim: a signal number (uint32)
	frameDetach     byte = 7 // client -> shim: the user detached; the process keeps its stdin
)

// maxFrame bounds a frame's payload.
const maxFrame = 1 << 20

// Operations of the control socket.
const (
	opStart  = "start"
	opAttach = "attach"
	opStop   = "stop"
	opKill   = "kill"
	opPause  = "pause"
	opResume = "resume"
	opResize = "resize"
	opExec   = "exec"
	opWait   = "wait"
)

// ExecConfig is a process kiln exec runs in a running container.
type ExecConfig struct {
	Args    []string `json:"Args"`
	Env     []string `json:"Env,omitempty"`
	Cwd     string   `json:"Cwd,omitempty"`
	User    string   `json:"User,omitempty"`
	Tty     bool     `json:"Tty,omitempty"`
	Stdin   bool     `json:"Stdin,omitempty"`
	Detach  bool     `json:"Detach,omitempty"`
	Rows    uint16   `json:"Rows,omitempty"`
	Columns uint16   `json:"Columns,omitempty"`
}

type request struct {
	Op      string      `json:"op"`
	Attach  bool        `json:"attach,omitempty"`
	Stdin   bool        `json:"stdin,omitempty"`
	Signal  int         `json:"signal,omitempty"`
	Timeout float64     `json:"timeout,omitempty"` // seconds; < 0: default
	Rows    uint16      `json:"rows,omitempty"`
	Cols    uint16      `json:"cols,omitempty"`
	Exec    *ExecConfig `json:"exec,omitempty"`
}

type reply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Code is an exit status: for wait and stop, and for a start that
	// failed because the command cannot be run (126, 127).
	Code int `json:"code,omitempty"`
}

type exitStatus struct {
	Code  int    `json:"code"`
	Error string `json:"error,omitempty"`
}

func writeFrame(w io.Writer, kind byte, p []byte) error {
	var h [5]byte
	h[0] = kind
	binary.BigEndian.PutUint32(h[1:], uint32(len(p)))
	if _, err := w.Write(append(h[:], p...)); err != nil {
		return err
	}
	return nil
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("control socket: frame of %d bytes is too large", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return h[0], p, nil
}

// sockAddr returns an address for the socket at path short enough for
// sun_path (108 bytes): the path itself, or one through /proc/self/fd of
// the opened dir. The returned file (nil for a short path) must stay open
// while the address is used.
func sockAddr(path string) (string, *os.File, error) {
	if len(path) < 100 {
		return path, nil, nil
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return "", nil, err
	}
	return "/proc/self/fd/" + strconv.Itoa(int(d.Fd())) + "/" + filepath.Base(path), d, nil
}

// ErrNoShim is a container without a live shim to talk to.
var ErrNoShim = errors.New("the container's monitor is not running")

// dial connects to the shim of the container in dir.
func dial(ctx context.Context, dir string) (*conn, error) {
	addr, d, err := sockAddr(filepath.Join(dir, sockName))
	if err != nil {
		return nil, err
	}
	if d != nil {
		defer d.Close()
	}
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", addr)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, ErrNoShim
		}
		return nil, fmt.Errorf("connect to the container's monitor: %w", err)
	}
	return &conn{c: c, r: bufio.NewReader(c)}, nil
}

// conn is a client connection to a shim.
type conn struct {
	c  net.Conn
	r  *bufio.Reader
	mu sync.Mutex // serializes frame writes
}

func (c *conn) Close() error { return c.c.Close() }

// call sends req and reads the reply line.
func (c *conn) call(ctx context.Context, req request) (reply, error) {
	stop := context.AfterFunc(ctx, func() { c.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	b, _ := json.Marshal(req)
	if _, err := c.c.Write(append(b, '\n')); err != nil {
		return reply{}, fmt.Errorf("send %s to the container's monitor: %w", req.Op, err)
	}
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		if ctx.Err() != nil {
			return reply{}, ctx.Err()
		}
		return reply{}, fmt.Errorf("%s: the container's monitor hung up: %w", req.Op, err)
	}
	var rep reply
	if err := json.Unmarshal(line, &rep); err != nil {
		return reply{}, fmt.Errorf("%s: bad reply from the container's monitor: %w", req.Op, err)
	}
	return rep, nil
}

func (c *conn) send(kind byte, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return writeFrame(c.c, kind, p)
}

// Streams are the local ends of an attached or exec'd process.
type Streams struct {
	// Stdin is copied to the process when the session has stdin; its EOF
	// closes the process's stdin.
	Stdin io.Reader
	// Stdout and Stderr receive the output (a tty's output is all stdout).
	Stdout, Stderr io.Writer
	// Resize delivers terminal sizes to forward (rows, cols).
	Resize <-chan [2]uint16
	// Signals delivers signals to forward to the process.
	Signals <-chan syscall.Signal
	// DetachKeys, when set, is the key sequence that ends the session
	// when typed on Stdin (docker's Ctrl-P Ctrl-Q): Stream then returns
	// ErrDetached and the process runs on. The sequence is not sent.
	DetachKeys []byte
}

// Session is an attached start, attach or exec: a stream of output until
// the process exits.
type Session struct {
	c     *conn
	stdin bool
}

// Close hangs up (the container keeps running).
func (s *Session) Close() error { return s.c.Close() }

// Stream copies the process's output to st until it exits, forwarding
// stdin, resizes and signals, and returns its exit status. When ctx is done
// it hangs up and returns ctx's error; when the user types st.DetachKeys it
// hangs up and returns ErrDetached.
func (s *Session) Stream(ctx context.Context, st Streams) (int, error) {
	defer s.c.Close()
	stop := context.AfterFunc(ctx, func() { s.c.c.Close() })
	defer stop()
	done := make(chan struct{})
	defer close(done)
	var detached atomic.Bool
	if s.stdin && st.Stdin != nil {
		go func() {
			if s.copyStdin(st.Stdin, st.DetachKeys) {
				// Stored before the hang-up that wakes the reader below.
				detached.Store(true)
				s.c.c.Close()
			}
		}()
	}
	go func() {
		for {
			select {
			case <-done:
				return
			case sz, ok := <-st.Resize:
				if !ok {
					st.Resize = nil
					continue
				}
				var p [4]byte
				binary.BigEndian.PutUint16(p[:], sz[0])
				binary.BigEndian.PutUint16(p[2:], sz[1])
				_ = s.c.send(frameResize, p[:])
			case sig, ok := <-st.Signals:
				if !ok {
					st.Signals = nil
					continue
				}
				var p [4]byte
				binary.BigEndian.PutUint32(p[:], uint32(sig))
				_ = s.c.send(frameSignal, p[:])
			}
		}
	}()
	for {
		kind, p, err := readFrame(s.c.r)
		if err != nil {
			if detached.Load() {
				return 0, ErrDetached
			}
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("the container's monitor hung up: %w", err)
		}
		switch kind {
		case frameStdout:
			if st.Stdout != nil {
				st.Stdout.Write(p)
			}
		case frameStderr:
			if st.Stderr != nil {
				st.Stderr.Write(p)
			}
		case frameExit:
			var es exitStatus
			if err := json.Unmarshal(p, &es); err != nil {
				return 0, fmt.Errorf("bad exit status from the container's monitor: %w", err)
			}
			if es.Error != "" {
				return es.Code, &StartError{Msg: es.Error, Code: es.Code}
			}
			return es.Code, nil
		}
	}
}

// copyStdin sends in to the process until it ends, then closes the
// process's stdin; with detach keys it stops instead when they are typed,
// telling the shim so, and reports true.
func (s *Session) copyStdin(in io.Reader, keys []byte) bool {
	var f *detachFilter
	if len(keys) > 0 {
		f = newDetachFilter(keys)
	}
	buf := make([]byte, 32<<10)
	var out []byte
	for {
		n, err := in.Read(buf)
		data := buf[:n]
		detach := false
		if f != nil && n > 0 {
			out, detach = f.feed(out[:0], data)
			data = out
		}
		if len(data) > 0 && s.c.send(frameStdin, data) != nil {
			return false
		}
		if detach {
			_ = s.c.send(frameDetach, nil)
			return true
		}
		if err != nil {
			if f != nil {
				if h := f.held(); len(h) > 0 {
					_ = s.c.send(frameStdin, h)
				}
			}
			_ = s.c.send(frameStdinClose, nil)
			return false
		}
	}
}
