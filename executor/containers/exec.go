package containers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/executor/network"
)

// execSession is one exec'd process's stdin.
type execSession struct {
	mu sync.Mutex
	w  *os.File
}

func (e *execSession) writeStdin(p []byte) {
	e.mu.Lock()
	w := e.w
	e.mu.Unlock()
	if w != nil {
		w.Write(p)
	}
}

func (e *execSession) closeStdin() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.w != nil {
		e.w.Close()
		e.w = nil
	}
}

// serveExec runs req.Exec in the container and streams it to c.
func (sh *shim) serveExec(ctx context.Context, c *conn, req request) {
	sh.mu.Lock()
	ctr := sh.ctr
	paused := sh.state.Status == Paused
	sh.mu.Unlock()
	ec := req.Exec
	switch {
	case ctr == nil:
		writeReply(c, reply{Error: ErrNotRunning.Error()})
		c.Close()
		return
	case paused:
		writeReply(c, reply{Error: "the container is paused; unpause it first"})
		c.Close()
		return
	case ec == nil || len(ec.Args) == 0:
		writeReply(c, reply{Error: "exec: no command given"})
		c.Close()
		return
	}
	cl := &client{c: c}
	p := executor.Process{Args: ec.Args, Env: runEnv(sh.cfg.Hostname, ec.Tty, ec.Env), Cwd: ec.Cwd, User: ec.User, Tty: ec.Tty, RunGroups: true,
		Stdout: writerFunc(func(b []byte) (int, error) { cl.write(frameStdout, b); return len(b), nil }),
		Stderr: writerFunc(func(b []byte) (int, error) { cl.write(frameStderr, b); return len(b), nil })}
	es := &execSession{}
	var stdinR *os.File
	if ec.Stdin {
		r, w, err := os.Pipe()
		if err != nil {
			writeReply(c, errReply(err))
			c.Close()
			return
		}
		stdinR, es.w = r, w
		p.Stdin = r
	}
	if ec.Detach {
		p.Stdout, p.Stderr = nil, nil
	}
	if cl.reply(reply{OK: true}) != nil {
		es.closeStdin()
		return
	}
	go sh.readInput(c, ec.Stdin, es)
	execCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	code, err := ctr.Exec(execCtx, p)
	if stdinR != nil {
		stdinR.Close()
	}
	es.closeStdin()
	es2 := exitStatus{Code: code}
	if err != nil {
		es2.Error = err.Error()
		var xe *executor.ExitError
		if asExit(err, &xe) {
			es2.Code = xe.Code
		} else if es2.Code == 0 {
			es2.Code = 126
		}
	}
	b, _ := json.Marshal(es2)
	c.mu.Lock()
	_ = writeFrame(c.c, frameExit, b)
	c.mu.Unlock()
	c.Close()
}

// healthLoop runs the health check every interval while ctx lasts.
func (sh *shim) healthLoop(ctx context.Context, ctr executor.Container, hc Healthcheck) {
	interval, timeout, retries := hc.Interval, hc.Timeout, hc.Retries
	if interval <= 0 {
		interval = 30 * time.Second
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if retries <= 0 {
		retries = 3
	}
	var args []string
	switch hc.Test[0] {
	case "CMD":
		args = hc.Test[1:]
	case "CMD-SHELL":
		args = []string{"/bin/sh", "-c", strings.Join(hc.Test[1:], " ")}
	default:
		args = hc.Test
	}
	if len(args) == 0 {
		return
	}
	began := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var out bytes.Buffer
		w := &limitWriter{w: &out, n: 4096}
		probe := HealthProbe{Start: time.Now().UTC()}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		code, err := ctr.Exec(pctx, executor.Process{Args: args, Env: runEnv(sh.cfg.Hostname, false, sh.cfg.Env), Cwd: sh.cfg.WorkingDir,
			User: sh.cfg.User, RunGroups: true, Stdout: w, Stderr: w})
		timedOut := pctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return
		}
		probe.End = time.Now().UTC()
		probe.ExitCode, probe.Output = code, out.String()
		if err != nil && code == 0 {
			probe.ExitCode = -1
			probe.Output += err.Error()
		}
		if timedOut {
			probe.ExitCode = -1
			probe.Output = fmt.Sprintf("Health check exceeded timeout (%s)", timeout)
		}
		sh.mu.Lock()
		h := sh.state.Health
		if h == nil || sh.ctr != ctr {
			sh.mu.Unlock()
			return
		}
		h.Log = append(h.Log, probe)
		if len(h.Log) > 5 {
			h.Log = h.Log[len(h.Log)-5:]
		}
		if probe.ExitCode == 0 {
			h.Status, h.FailingStreak = "healthy", 0
		} else if time.Since(began) >= hc.StartPeriod {
			h.FailingStreak++
			if h.FailingStreak >= retries {
				h.Status = "unhealthy"
			}
		}
		sh.saveLocked()
		sh.mu.Unlock()
	}
}

type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > l.n {
		p = p[:l.n]
	}
	l.n -= len(p)
	l.w.Write(p)
	return n, nil
}

// mapping converts p for the network manager.
func (p Port) mapping() (network.PortMapping, error) {
	pm := network.PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Proto: p.Proto}
	if p.HostIP != "" {
		ip, err := netip.ParseAddr(p.HostIP)
		if err != nil {
			return pm, fmt.Errorf("published port %s: %w", p, err)
		}
		pm.HostIP = ip
	}
	if pm.Proto == "" {
		pm.Proto = "tcp"
	}
	return pm, nil
}

// String is the port as -p takes it.
func (p Port) String() string {
	s := strconv.Itoa(int(p.HostPort)) + ":" + strconv.Itoa(int(p.ContainerPort))
	if p.HostIP != "" {
		s = p.HostIP + ":" + s
	}
	if p.Proto != "" && p.Proto != "tcp" {
		s += "/" + p.Proto
	}
	return s
}

func asExit(err error, xe **executor.ExitError) bool { return errors.As(err, xe) }
