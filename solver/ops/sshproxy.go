package ops

import (
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
)

// sshProxy forwards connections to an SSH agent socket from a socket of
// its own, owned and permitted as a RUN --mount=type=ssh asks (BuildKit
// does the same), so a step's user can reach the agent without the host
// socket's owner or mode changing.
type sshProxy struct {
	path string
	dir  string
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// startSSHProxy listens on a new socket that forwards to agent.
func startSSHProxy(agent string, uid, gid int, mode fs.FileMode) (*sshProxy, error) {
	dir, err := os.MkdirTemp("", "kiln-ssh-")
	if err != nil {
		return nil, fmt.Errorf("forward the SSH agent: %w", err)
	}
	p := &sshProxy{dir: dir, path: filepath.Join(dir, "agent.sock"), conns: map[net.Conn]struct{}{}}
	p.ln, err = net.Listen("unix", p.path)
	if err == nil {
		err = os.Chown(p.path, uid, gid)
	}
	if err == nil {
		err = os.Chmod(p.path, mode.Perm())
	}
	if err != nil {
		if p.ln != nil {
			p.ln.Close()
		}
		os.RemoveAll(dir)
		return nil, fmt.Errorf("forward the SSH agent: %w", err)
	}
	p.wg.Add(1)
	go p.serve(agent)
	return p, nil
}

func (p *sshProxy) serve(agent string) {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.forward(c, agent)
		}()
	}
}

// forward copies between c and a new connection to the agent until either
// side closes.
func (p *sshProxy) forward(c net.Conn, agent string) {
	if !p.track(c) {
		return
	}
	defer p.untrack(c)
	a, err := net.Dial("unix", agent)
	if err != nil {
		return
	}
	if !p.track(a) {
		return
	}
	defer p.untrack(a)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(a, c)
	go pipe(c, a)
	<-done
	<-done
}

// track registers an open connection; false when the proxy is closing
// (the connection is closed then).
func (p *sshProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *sshProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// close stops the proxy: the listener, the open connections, the socket.
func (p *sshProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	p.wg.Wait()
	_ = os.RemoveAll(p.dir)
}
