package containers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/executor/network"
)

// ShimArg is the hidden first argument that makes the kiln binary a
// container's shim: kiln kiln-container-shim ROOT ID.
const ShimArg = "kiln-container-shim"

// IsShim reports whether the process was started as a shim.
func IsShim() bool { return len(os.Args) > 1 && os.Args[1] == ShimArg }

// Networker connects containers to networks (network.Manager).
type Networker interface {
	Attach(ctx context.Context, req network.AttachRequest) (*network.Endpoint, error)
	Detach(ctx context.Context, containerID string) error
}

// ShimOptions configures RunShim.
type ShimOptions struct {
	Store *Store
	ID    string
	// Starter runs the container.
	Starter executor.Starter
	// Network attaches containers on bridge and user networks; nil allows
	// only host and none.
	Network Networker
	// Ready, when not nil, gets one byte once the control socket listens
	// and is then closed.
	Ready io.WriteCloser
	// StartTimeout is how long the shim waits for its first start
	// request before it gives up; 0 means 30s.
	StartTimeout time.Duration
	// Logger receives the shim's own logs; nil discards them.
	Logger *slog.Logger
}

// shim monitors one container.
type shim struct {
	opts ShimOptions
	s    *Store
	cfg  Config
	dir  string
	log  *LogWriter
	lg   *slog.Logger

	startReq chan startCall
	// calls counts the requests being served, so the shim answers them
	// before it exits.
	calls sync.WaitGroup

	mu       sync.Mutex
	started  bool // a start request was taken
	state    State
	ctr      executor.Container
	stdinW   *os.File
	clients  map[*client]struct{}
	stopping bool          // stopped by the user: no restart
	exited   chan struct{} // closed when the current run ends
	final    bool          // no more runs
	attached bool          // the network is attached
	endpoint network.Endpoint
	cancel   context.CancelFunc
}

// client is an attached connection that receives output.
type client struct {
	c     *conn
	ready bool
	buf   bytes.Buffer // output before the reply line went out
	dead  bool
}

type startCall struct {
	client *client
	result chan error
}

// RunShim monitors container opts.ID: it listens on the control socket,
// waits for a start request, runs the container (again, as its restart
// policy says), and returns once the container has exited for good, its
// network is detached and (for AutoRemove) the container is removed.
func RunShim(ctx context.Context, opts ShimOptions) error {
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r, err := opts.Store.Load(opts.ID)
	if err != nil {
		return err
	}
	sh := &shim{opts: opts, s: opts.Store, cfg: r.Config, dir: r.Dir, state: r.State, lg: lg,
		startReq: make(chan startCall, 1), clients: map[*client]struct{}{}}
	sh.log, err = OpenLog(r.LogPath(), r.Config.LogMaxSize, r.Config.LogMaxFiles, nil)
	if err != nil {
		return err
	}
	defer sh.log.Close()

	sock := filepath.Join(r.Dir, sockName)
	_ = os.Remove(sock)
	addr, d, err := sockAddr(sock)
	if err != nil {
		return fmt.Errorf("listen on the control socket: %w", err)
	}
	ln, err := net.Listen("unix", addr)
	if d != nil {
		d.Close()
	}
	if err != nil {
		return fmt.Errorf("listen on the control socket: %w", err)
	}
	defer ln.Close()
	pid := os.Getpid()
	start, _ := ProcStart(pid)
	sh.mu.Lock()
	sh.state.ShimPid, sh.state.ShimStart = pid, start
	sh.saveLocked()
	sh.mu.Unlock()

	go sh.accept(ctx, ln)
	defer sh.drain()
	if opts.Ready != nil {
		opts.Ready.Write([]byte{1})
		opts.Ready.Close()
	}

	var sc startCall
	select {
	case sc = <-sh.startReq:
	case <-time.After(opts.StartTimeout):
		sh.finish(ctx)
		return errors.New("no start request came")
	case <-ctx.Done():
		sh.finish(ctx)
		return ctx.Err()
	}
	if err := sh.startRun(ctx, sc.client); err != nil {
		sh.finish(ctx)
		sc.result <- err
		return err
	}
	sc.result <- nil
	sh.loop(ctx)
	return nil
}

// loop waits for each run to end and restarts the container as its policy
// says.
func (sh *shim) loop(ctx context.Context) {
	for {
		sh.mu.Lock()
		ctr := sh.ctr
		sh.mu.Unlock()
		code, err := ctr.Wait()
		if err != nil {
			sh.lg.Warn("wait for the container", "err", err)
			if code == 0 {
				code = 255
			}
		}
		if sh.cfg.IpcMode == "shareable" {
			// Joiners keep their own mounts of it.
			_ = unix.Unmount(filepath.Join(sh.dir, shmDirName), unix.MNT_DETACH)
		}
		sh.mu.Lock()
		if sh.cancel != nil {
			sh.cancel()
		}
		if sh.stdinW != nil {
			sh.stdinW.Close()
			sh.stdinW = nil
		}
		sh.ctr = nil
		st := &sh.state
		st.Status, st.ExitCode, st.Pid, st.FinishedAt = Exited, code, 0, time.Now().UTC()
		if st.Health != nil {
			st.Health.Status = "unhealthy"
		}
		restart := sh.cfg.Restart.ShouldRestart(code, st.RestartCount, sh.stopping)
		if restart {
			st.Status = Restarting
		}
		sh.saveLocked()
		if !restart {
			sh.final = true
			sh.mu.Unlock()
			sh.finish(ctx)
			sh.endRun(code)
			return
		}
		n := st.RestartCount
		sh.mu.Unlock()
		sh.endRun(code)

		select {
		case <-time.After(RestartDelay(n)):
		case <-ctx.Done():
		}
		sh.mu.Lock()
		stop := sh.stopping || ctx.Err() != nil
		if !stop {
			sh.state.RestartCount++
		}
		sh.mu.Unlock()
		if stop {
			sh.mu.Lock()
			sh.state.Status = Exited
			sh.final = true
			sh.saveLocked()
			sh.mu.Unlock()
			sh.finish(ctx)
			return
		}
		if err := sh.startRun(ctx, nil); err != nil {
			sh.lg.Warn("restart the container", "err", err)
			sh.mu.Lock()
			sh.final = true
			sh.mu.Unlock()
			sh.finish(ctx)
			return
		}
	}
}

// endRun tells the attached clients and waiters that the run ended.
func (sh *shim) endRun(code int) {
	sh.mu.Lock()
	clients := sh.clients
	sh.clients = map[*client]struct{}{}
	ch := sh.exited
	sh.mu.Unlock()
	b, _ := json.Marshal(exitStatus{Code: code})
	for c := range clients {
		c.c.mu.Lock()
		if !c.dead {
			_ = writeFrame(c.c.c, frameExit, b)
		}
		c.c.mu.Unlock()
		c.c.Close()
	}
	if ch != nil {
		close(ch)
	}
}

// finish undoes the network attachment and, for AutoRemove, removes the
// container; the shim is done afterwards.
func (sh *shim) finish(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	sh.mu.Lock()
	attached := sh.attached
	sh.attached = false
	sh.state.IPAddress, sh.state.Gateway, sh.state.Ports = "", "", nil
	sh.saveLocked()
	sh.mu.Unlock()
	if attached && sh.opts.Network != nil {
		if err := sh.opts.Network.Detach(ctx, sh.cfg.ID); err != nil {
			sh.lg.Warn("detach the network", "err", err)
		}
	}
	_ = os.Remove(filepath.Join(sh.dir, sockName))
	if sh.cfg.AutoRemove {
		sh.mu.Lock()
		started := !sh.state.StartedAt.IsZero()
		sh.mu.Unlock()
		if started {
			if err := sh.s.Remove(ctx, sh.cfg.ID, true); err != nil {
				sh.lg.Warn("remove the container", "err", err)
			}
		}
	}
}

// applyDNS rewrites the resolv.conf the network made for the container
// with its --dns, --dns-search and --dns-option values, if any.
func applyDNS(path string, c Config) error {
	if len(c.DNS) == 0 && len(c.DNSSearch) == 0 && len(c.DNSOptions) == 0 {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("container resolv.conf: %w", err)
	}
	if err := os.WriteFile(path, executor.ResolvConf(data, c.DNS, c.DNSSearch, c.DNSOptions), 0o644); err != nil {
		return fmt.Errorf("container resolv.conf: %w", err)
	}
	return nil
}

// saveLocked writes the state; sh.mu is held.
func (sh *shim) saveLocked() {
	if err := sh.s.SaveState(sh.cfg.ID, &sh.state); err != nil {
		sh.lg.Warn("save the container state", "err", err)
	}
}

// spec builds the executor spec of a run.
func (sh *shim) spec() executor.Spec {
	c := &sh.cfg
	spec := executor.Spec{
		// A --rm container runs once (it allows no restart policy, and
		// stopping it removes it) and its upper is deleted after: nothing
		// needs it on disk, so it is not flushed at the end (Once).
		Rootfs:            executor.Rootfs{LowerDirs: c.LowerDirs, UpperDir: filepath.Join(sh.dir, "upper"), WorkDir: filepath.Join(sh.dir, "work"), ReadOnly: c.ReadOnly, Once: c.AutoRemove},
		Hostname:          c.Hostname,
		CgroupPath:        c.CgroupPath(),
		CapAdd:            c.CapAdd,
		CapDrop:           c.CapDrop,
		SeccompUnconfined: slices.Contains(c.SecurityOpt, SeccompUnconfined),
		ExtraHosts:        c.ExtraHosts,
		DisableIPv6:       true,
		RunOptions:        c.RunOptions,
		// PID 1 is the container's process, as under docker run, or with
		// --init kiln's init, which forwards signals and reaps orphans.
		Init:        c.Init,
		StopSignal:  c.StopSignal,
		EtcHostname: true,
	}
	if !c.Resources.IsZero() {
		res := c.Resources
		spec.Resources = &res
	}
	for _, m := range c.Mounts {
		em := executor.Mount{Type: "bind", Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly, Options: m.Options}
		if m.Type == MountTmpfs {
			em.Type, em.Source = "tmpfs", ""
		}
		spec.Mounts = append(spec.Mounts, em)
	}
	return spec
}

// attachNetwork attaches the container to its kiln network (once per
// shim) and points spec at the endpoint's namespace and files.
func (sh *shim) attachNetwork(ctx context.Context, spec *executor.Spec) error {
	sh.mu.Lock()
	attached := sh.attached
	sh.mu.Unlock()
	if !attached {
		if sh.opts.Network == nil {
			return fmt.Errorf("network %s: kiln has no network manager here", sh.cfg.Network)
		}
		req := network.AttachRequest{ContainerID: sh.cfg.ID, Name: sh.cfg.Name, Hostname: sh.cfg.Hostname, Network: sh.cfg.Network,
			ExtraHosts: sh.cfg.ExtraHosts, Aliases: sh.cfg.NetworkAliases}
		if sh.cfg.MacAddress != "" {
			mac, err := net.ParseMAC(sh.cfg.MacAddress)
			if err != nil {
				return fmt.Errorf("--mac-address %s: %w", sh.cfg.MacAddress, err)
			}
			req.MAC = mac
		}
		if sh.cfg.IPAddress != "" {
			ip, err := netip.ParseAddr(sh.cfg.IPAddress)
			if err != nil {
				return fmt.Errorf("--ip %s: %w", sh.cfg.IPAddress, err)
			}
			req.IP = ip
		}
		for _, p := range sh.cfg.Ports {
			pm, err := p.mapping()
			if err != nil {
				return err
			}
			req.Ports = append(req.Ports, pm)
		}
		// A previous shim may have died attached.
		_ = sh.opts.Network.Detach(ctx, sh.cfg.ID)
		_ = RemoveCgroup(&sh.cfg)
		ep, err := sh.opts.Network.Attach(ctx, req)
		if err != nil {
			_ = sh.opts.Network.Detach(context.WithoutCancel(ctx), sh.cfg.ID)
			return err
		}
		sh.mu.Lock()
		sh.attached = true
		sh.state.IPAddress = addrString(ep.IP)
		sh.state.Gateway = addrString(ep.Gateway)
		sh.state.Ports = nil
		for _, pm := range ep.Ports {
			port := Port{HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Proto: pm.Proto}
			if pm.HostIP.IsValid() {
				port.HostIP = pm.HostIP.String()
			}
			sh.state.Ports = append(sh.state.Ports, port)
		}
		sh.endpoint = *ep
		sh.mu.Unlock()
	}
	sh.mu.Lock()
	ep := sh.endpoint
	sh.mu.Unlock()
	spec.NetNSPath = ep.NetNSPath
	if ep.NetNSPath == "" {
		spec.Network = executor.NetworkHost
	}
	var etc []executor.Mount
	if ep.HostsPath != "" {
		etc = append(etc, executor.Mount{Type: "bind", Source: ep.HostsPath, Target: "/etc/hosts"})
	}
	if ep.ResolvConfPath != "" {
		if err := applyDNS(ep.ResolvConfPath, sh.cfg); err != nil {
			return err
		}
		etc = append(etc, executor.Mount{Type: "bind", Source: ep.ResolvConfPath, Target: "/etc/resolv.conf"})
	}
	spec.Mounts = append(etc, spec.Mounts...)
	return nil
}

// joinNetwork points spec at the network namespace of the container
// Config.Network names (container:ID), with copies of that container's
// /etc/hosts and /etc/resolv.conf as it sees them now.
func (sh *shim) joinNetwork(ctx context.Context, spec *executor.Spec) error {
	pid, err := sh.joinedPid(ctx, sh.cfg.NetworkContainer(), "network")
	if err != nil {
		return err
	}
	spec.NetNSPath = fmt.Sprintf("/proc/%d/ns/net", pid)
	// The namespace is the other container's to set up (it may be the
	// host's, under --network host).
	spec.DisableIPv6 = false
	for _, f := range []struct{ name, target string }{{"joined-hosts", "/etc/hosts"}, {"joined-resolv.conf", "/etc/resolv.conf"}} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", pid, f.target))
		if err != nil {
			return fmt.Errorf("read %s of container %s: %w", f.target, ShortID(sh.cfg.NetworkContainer()), err)
		}
		p := filepath.Join(sh.dir, f.name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return fmt.Errorf("container %s: %w", f.target, err)
		}
		spec.Mounts = append([]executor.Mount{{Type: "bind", Source: p, Target: f.target}}, spec.Mounts...)
	}
	return nil
}

// shmDirName is the directory in a shareable container's directory where
// its /dev/shm tmpfs is mounted while it runs, for the containers that
// join its IPC namespace.
const shmDirName = "shm"

// shareIPC points spec at the IPC namespace and /dev/shm the container
// shares: its own /dev/shm on the host side (--ipc shareable), or the
// namespace and /dev/shm of the shareable container it joins.
func (sh *shim) shareIPC(ctx context.Context, spec *executor.Spec) error {
	switch id, joins := strings.CutPrefix(sh.cfg.IpcMode, ContainerModePrefix); {
	case sh.cfg.IpcMode == "shareable":
		dir := filepath.Join(sh.dir, shmDirName)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("shareable /dev/shm: %w", err)
		}
		size := sh.cfg.ShmSize
		if size <= 0 {
			size = 64 << 20
		}
		_ = unix.Unmount(dir, unix.MNT_DETACH) // one a killed shim left
		if err := unix.Mount("shm", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("mode=1777,size=%d", size)); err != nil {
			return fmt.Errorf("shareable /dev/shm: %w", err)
		}
		spec.ShmDir = dir
	case joins:
		r, err := sh.s.Get(ctx, id)
		if err != nil {
			return fmt.Errorf("join the IPC namespace of container %s: %w", ShortID(id), err)
		}
		if r.Config.IpcMode != "shareable" {
			return fmt.Errorf("cannot join IPC of container %s: non-shareable IPC (hint: use --ipc shareable for the donor container)", ShortID(id))
		}
		pid, err := runningPid(r, "IPC namespace")
		if err != nil {
			return err
		}
		spec.IPCNSPath = fmt.Sprintf("/proc/%d/ns/ipc", pid)
		spec.ShmDir = filepath.Join(r.Dir, shmDirName)
	}
	return nil
}

// joinedPid is the host PID of the PID 1 of the running container id,
// whose namespace (what) this one joins.
func (sh *shim) joinedPid(ctx context.Context, id, what string) (int, error) {
	r, err := sh.s.Get(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("join the %s of container %s: %w", what, ShortID(id), err)
	}
	return runningPid(r, what)
}

// runningPid is the host PID of r's PID 1, whose namespace (what) a
// container joins; r must be running.
func runningPid(r *Record, what string) (int, error) {
	if !r.Running() || r.State.Pid <= 0 {
		return 0, fmt.Errorf("cannot join the %s of a non running container: %s", what, ShortID(r.Config.ID))
	}
	return r.State.Pid, nil
}

// startRun starts one run of the container. c, when not nil, is the
// client that asked to attach; it receives output from the first byte.
func (sh *shim) startRun(ctx context.Context, c *client) (err error) {
	// kiln update may have changed the limits since the shim started.
	if r, err := sh.s.Load(sh.cfg.ID); err == nil {
		sh.cfg.Resources = r.Config.Resources
	}
	spec := sh.spec()
	if id := sh.cfg.PIDContainer; id != "" {
		pid, err := sh.joinedPid(ctx, id, "PID namespace")
		if err != nil {
			return err
		}
		spec.PIDNSPath = fmt.Sprintf("/proc/%d/ns/pid", pid)
	}
	if err := sh.shareIPC(ctx, &spec); err != nil {
		return err
	}
	switch {
	case sh.cfg.Network == network.Host:
		spec.Network = executor.NetworkHost
	case sh.cfg.Network == network.None:
		spec.Network = executor.NetworkNone
	case sh.cfg.NetworkContainer() != "":
		if err := sh.joinNetwork(ctx, &spec); err != nil {
			return err
		}
	default:
		if err := sh.attachNetwork(ctx, &spec); err != nil {
			return err
		}
	}

	p := &executor.Process{Args: sh.cfg.Args, Env: runEnv(sh.cfg.Hostname, sh.cfg.Tty, sh.cfg.Env), Cwd: sh.cfg.WorkingDir,
		User: sh.cfg.User, Tty: sh.cfg.Tty, RunGroups: true, Stdout: sh.output(frameStdout), Stderr: sh.output(frameStderr)}
	var stdinR, stdinW *os.File
	if sh.cfg.OpenStdin {
		stdinR, stdinW, err = os.Pipe()
		if err != nil {
			return fmt.Errorf("start container: %w", err)
		}
		p.Stdin = stdinR
	}
	spec.Process = p

	sh.mu.Lock()
	if c != nil {
		sh.clients[c] = struct{}{}
	}
	sh.stdinW = stdinW
	sh.exited = make(chan struct{})
	sh.mu.Unlock()

	ctr, err := sh.opts.Starter.Start(ctx, spec)
	if err != nil {
		if stdinR != nil {
			stdinR.Close()
			stdinW.Close()
		}
		sh.mu.Lock()
		delete(sh.clients, c)
		sh.stdinW = nil
		sh.state.Error = err.Error()
		var xe *executor.ExitError
		if errors.As(err, &xe) {
			sh.state.ExitCode = xe.Code
		}
		sh.saveLocked()
		ch := sh.exited
		sh.exited = nil
		sh.mu.Unlock()
		close(ch)
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sh.mu.Lock()
	sh.ctr = ctr
	sh.cancel = cancel
	st := &sh.state
	st.Status, st.Pid, st.ExitCode, st.Error, st.StartedAt = Running, ctr.Pid(), 0, "", time.Now().UTC()
	st.FinishedAt = time.Time{}
	if hc := sh.cfg.Healthcheck; hc != nil && len(hc.Test) > 0 && hc.Test[0] != "NONE" {
		st.Health = &Health{Status: "starting", Log: []HealthProbe{}}
		go sh.healthLoop(runCtx, ctr, *hc)
	}
	sh.saveLocked()
	sh.mu.Unlock()
	return nil
}

func addrString(a interface {
	IsValid() bool
	String() string
}) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// output is the writer of one stream: the log plus the attached clients.
func (sh *shim) output(kind byte) io.Writer {
	stream := "stdout"
	if kind == frameStderr {
		stream = "stderr"
	}
	return writerFunc(func(p []byte) (int, error) {
		if err := sh.log.Write(stream, p); err != nil {
			sh.lg.Warn("write the container log", "err", err)
		}
		sh.mu.Lock()
		clients := make([]*client, 0, len(sh.clients))
		for c := range sh.clients {
			clients = append(clients, c)
		}
		sh.mu.Unlock()
		for _, c := range clients {
			c.write(kind, p)
		}
		return len(p), nil
	})
}

// write sends output to c, or buffers it until c is ready.
func (c *client) write(kind byte, p []byte) {
	c.c.mu.Lock()
	defer c.c.mu.Unlock()
	if c.dead {
		return
	}
	if !c.ready {
		_ = writeFrame(&c.buf, kind, p)
		return
	}
	c.c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := writeFrame(c.c.c, kind, p); err != nil {
		c.dead = true
	}
}

// reply sends the reply line, then any buffered output.
func (c *client) reply(rep reply) error {
	c.c.mu.Lock()
	defer c.c.mu.Unlock()
	b, _ := json.Marshal(rep)
	if _, err := c.c.c.Write(append(b, '\n')); err != nil {
		c.dead = true
		return err
	}
	if c.buf.Len() > 0 {
		if _, err := c.c.c.Write(c.buf.Bytes()); err != nil {
			c.dead = true
		}
		c.buf.Reset()
	}
	c.ready = true
	return nil
}

// accept serves control connections until ln is closed.
func (sh *shim) accept(ctx context.Context, ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go sh.serve(ctx, &conn{c: nc, r: bufio.NewReader(nc)})
	}
}

func (sh *shim) serve(ctx context.Context, c *conn) {
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		c.Close()
		return
	}
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		writeReply(c, reply{Error: "bad request: " + err.Error()})
		c.Close()
		return
	}
	switch req.Op {
	case opStart:
		sh.calls.Add(1)
		sh.serveStart(ctx, c, req, sh.calls.Done)
	case opAttach:
		sh.serveAttach(c, req)
	case opExec:
		sh.serveExec(ctx, c, req)
	default:
		sh.calls.Add(1)
		defer sh.calls.Done()
		writeReply(c, sh.simple(ctx, req))
		c.Close()
	}
}

// drain gives the requests in flight (stop, wait) a moment to get their
// answers out before the shim exits.
func (sh *shim) drain() {
	done := make(chan struct{})
	go func() {
		sh.calls.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

func writeReply(c *conn, rep reply) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, _ := json.Marshal(rep)
	c.c.Write(append(b, '\n'))
}

func errReply(err error) reply {
	rep := reply{Error: err.Error()}
	var xe *executor.ExitError
	if errors.As(err, &xe) {
		rep.Code = xe.Code
	}
	return rep
}

// serveStart handles a start request; replied is called once the reply is
// out.
func (sh *shim) serveStart(ctx context.Context, c *conn, req request, replied func()) {
	var once sync.Once
	done := func() { once.Do(replied) }
	defer done()
	var cl *client
	if req.Attach {
		cl = &client{c: c}
	}
	sc := startCall{client: cl, result: make(chan error, 1)}
	sh.mu.Lock()
	taken := sh.started
	sh.started = true
	sh.mu.Unlock()
	if taken {
		writeReply(c, reply{Error: "the container is already running"})
		c.Close()
		return
	}
	sh.startReq <- sc
	if err := <-sc.result; err != nil {
		writeReply(c, errReply(err))
		c.Close()
		return
	}
	if cl == nil {
		writeReply(c, reply{OK: true})
		c.Close()
		return
	}
	if cl.reply(reply{OK: true}) != nil {
		return
	}
	done()
	sh.readInput(c, req.Stdin, nil)
}

func (sh *shim) serveAttach(c *conn, req request) {
	sh.mu.Lock()
	if sh.ctr == nil {
		sh.mu.Unlock()
		writeReply(c, reply{Error: ErrNotRunning.Error()})
		c.Close()
		return
	}
	cl := &client{c: c}
	sh.clients[cl] = struct{}{}
	sh.mu.Unlock()
	if cl.reply(reply{OK: true}) != nil {
		return
	}
	sh.readInput(c, req.Stdin, nil)
}

// readInput handles the frames an attached client sends: stdin (to the
// container's stdin, or to exec's when w is set), resizes and signals.
func (sh *shim) readInput(c *conn, stdin bool, exec *execSession) {
	for {
		kind, p, err := readFrame(c.r)
		if err != nil {
			if exec == nil {
				return
			}
			// An exec's client hung up: nothing more to read.
			exec.closeStdin()
			return
		}
		switch kind {
		case frameDetach:
			// The user detached: the process keeps its stdin open, as
			// after docker's Ctrl-P Ctrl-Q.
			return
		case frameStdin:
			if !stdin {
				continue
			}
			if exec != nil {
				exec.writeStdin(p)
				continue
			}
			sh.mu.Lock()
			w := sh.stdinW
			sh.mu.Unlock()
			if w != nil {
				w.Write(p)
			}
		case frameStdinClose:
			if !stdin {
				continue
			}
			if exec != nil {
				exec.closeStdin()
				continue
			}
			if sh.cfg.StdinOnce {
				sh.mu.Lock()
				if sh.stdinW != nil {
					sh.stdinW.Close()
					sh.stdinW = nil
				}
				sh.mu.Unlock()
			}
		case frameResize:
			if len(p) == 4 {
				rows, cols := binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:])
				if exec != nil {
					continue // exec has no resize in the executor contract
				}
				sh.mu.Lock()
				ctr := sh.ctr
				sh.mu.Unlock()
				if ctr != nil {
					_ = ctr.Resize(rows, cols)
				}
			}
		case frameSignal:
			if len(p) == 4 {
				sig := syscall.Signal(binary.BigEndian.Uint32(p))
				if exec != nil {
					continue
				}
				sh.mu.Lock()
				ctr := sh.ctr
				sh.mu.Unlock()
				if ctr != nil {
					_ = ctr.Signal(sig)
				}
			}
		}
	}
}

// simple serves the operations without a stream.
func (sh *shim) simple(ctx context.Context, req request) reply {
	sh.mu.Lock()
	ctr, exited := sh.ctr, sh.exited
	sh.mu.Unlock()
	switch req.Op {
	case opWait:
		if exited != nil {
			<-exited
		}
		sh.mu.Lock()
		defer sh.mu.Unlock()
		return reply{OK: true, Code: sh.state.ExitCode}
	case opStop:
		return sh.stop(req.Timeout)
	}
	if ctr == nil {
		return reply{Error: ErrNotRunning.Error()}
	}
	var err error
	switch req.Op {
	case opKill:
		sig := syscall.Signal(req.Signal)
		if sig == 0 {
			sig = syscall.SIGKILL
		}
		if sig == syscall.SIGKILL || sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGQUIT {
			sh.mu.Lock()
			sh.stopping = true
			sh.mu.Unlock()
		}
		err = ctr.Signal(sig)
	case opPause:
		if err = ctr.Pause(); err == nil {
			sh.setStatus(Paused)
		}
	case opResume:
		if err = ctr.Resume(); err == nil {
			sh.setStatus(Running)
		}
	case opResize:
		err = ctr.Resize(req.Rows, req.Cols)
	default:
		return reply{Error: "unknown operation " + req.Op}
	}
	if err != nil {
		return errReply(err)
	}
	return reply{OK: true}
}

func (sh *shim) setStatus(s Status) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.ctr != nil {
		sh.state.Status = s
		sh.saveLocked()
	}
}

// stop sends the stop signal, then SIGKILL after timeout seconds (< 0: the
// container's default), and waits for the exit.
func (sh *shim) stop(timeout float64) reply {
	sh.mu.Lock()
	sh.stopping = true
	ctr, exited, paused := sh.ctr, sh.exited, sh.state.Status == Paused
	sh.mu.Unlock()
	if ctr == nil {
		sh.mu.Lock()
		defer sh.mu.Unlock()
		return reply{OK: true, Code: sh.state.ExitCode}
	}
	d := sh.cfg.StopTimeout
	if d == 0 {
		d = 10 * time.Second
	}
	if timeout >= 0 {
		d = time.Duration(timeout * float64(time.Second))
	}
	sig := syscall.SIGTERM
	if sh.cfg.StopSignal != "" {
		if s, err := executor.ParseSignal(sh.cfg.StopSignal); err == nil {
			sig = s
		}
	}
	if d > 0 {
		_ = ctr.Signal(sig)
		if paused {
			_ = ctr.Resume()
		}
	}
	select {
	case <-exited:
	case <-time.After(d):
		_ = ctr.Signal(syscall.SIGKILL)
		if paused {
			_ = ctr.Resume()
		}
		<-exited
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return reply{OK: true, Code: sh.state.ExitCode}
}
