package linux

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// openPty opens a new pseudo terminal in the container's /dev/pts (so the
// process sees its own /dev/pts/N) and returns the master and the slave.
func openPty() (master, slave int, err error) {
	master, err = unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("open a pseudo terminal: %w", err)
	}
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(master)
		return -1, -1, fmt.Errorf("unlock the pseudo terminal: %w", err)
	}
	// TIOCGPTPEER opens the slave of this very master, without a path.
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		unix.Close(master)
		return -1, -1, fmt.Errorf("open the pseudo terminal's slave: %w", errno)
	}
	return master, int(fd), nil
}

// sendFDs sends msg with fds attached over the unix socket sock.
func sendFDs(sock int, msg []byte, fds ...int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	return unix.Sendmsg(sock, msg, oob, nil, unix.MSG_NOSIGNAL)
}

// recvFD receives one message with one fd from the stream socket f and
// returns the fd as a file (close-on-exec, non-blocking so that reads can
// time out).
func recvFD(f *os.File) (*os.File, error) {
	buf := make([]byte, 64)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(f.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, err
	}
	fds, err := parseRights(oob[:oobn])
	if err != nil {
		return nil, err
	}
	if len(fds) != 1 {
		closeFDs(fds)
		return nil, errors.New("no pseudo terminal received")
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), "pty"), nil
}

// parseRights returns the fds of SCM_RIGHTS messages in oob.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		r, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		fds = append(fds, r...)
	}
	return fds, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// copyTTY copies stdin to the pty master and the master's output to
// stdout; it closes done when the output ends (EIO once every slave fd is
// closed). Stdin is copied until it ends and is never closed.
func copyTTY(master *os.File, stdin io.Reader, stdout io.Writer, done chan<- struct{}) {
	if stdin != nil {
		go func() { _, _ = io.Copy(master, stdin) }()
	}
	if stdout == nil {
		stdout = io.Discard
	}
	_, _ = io.Copy(stdout, master)
	close(done)
}

// resize sets the window size of the pty master f.
func resize(f *os.File, rows, cols uint16) error {
	ws := &unix.Winsize{Row: rows, Col: cols}
	// Not f.Fd(), which would put the fd back into blocking mode.
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) { ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws) }); err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	if ioErr != nil {
		return fmt.Errorf("resize terminal: %w", ioErr)
	}
	return nil
}

// seqConn is a connected SOCK_SEQPACKET unix socket used with blocking
// calls (the net package would make the binary, and so every container
// start, pay for cgo's resolver).
type seqConn struct {
	fd   int
	once sync.Once
}

// dialSeq connects to the seqpacket socket at path.
func dialSeq(path string) (*seqConn, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &seqConn{fd: fd}, nil
}

// listenSeq listens on a new seqpacket socket at path.
func listenSeq(path string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Listen(fd, 64); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// acceptSeq accepts one connection on the listening socket lfd.
func acceptSeq(lfd int) (*seqConn, error) {
	for {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &seqConn{fd: fd}, nil
	}
}

// send sends one message with fds attached.
func (c *seqConn) send(msg []byte, fds ...int) error {
	for {
		err := sendFDs(c.fd, msg, fds...)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// recv receives one message of at most size bytes and the fds attached to
// it (close-on-exec). io.EOF means the peer closed the connection.
func (c *seqConn) recv(size, maxFDs int) ([]byte, []int, error) {
	buf := make([]byte, size)
	oob := make([]byte, unix.CmsgSpace(4*maxFDs))
	for {
		n, oobn, flags, _, err := unix.Recvmsg(c.fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		var fds []int
		if oobn > 0 {
			fds, _ = parseRights(oob[:oobn])
		}
		if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			closeFDs(fds)
			return nil, nil, errors.New("message too large")
		}
		if n == 0 && len(fds) == 0 {
			return nil, nil, io.EOF
		}
		return buf[:n], fds, nil
	}
}

// shutdown wakes up every call blocked on the connection.
func (c *seqConn) shutdown() { _ = unix.Shutdown(c.fd, unix.SHUT_RDWR) }

// close shuts the connection down and closes it (once).
func (c *seqConn) close() {
	c.once.Do(func() {
		c.shutdown()
		unix.Close(c.fd)
	})
}
