package linux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/executor"
	"golang.org/x/sys/unix"
)

// defaultHostname is the container's hostname when the Spec has none.
const defaultHostname = "kiln"

// waitDelay bounds how long Run waits for stdio copying after the container
// exited (a Stdin reader that never returns, for example).
const waitDelay = 2 * time.Second

// execError is a command that could not be started: not found (127) or not
// executable (126). Its message is the reason; it unwraps to the ExitError
// so callers see the code.
type execError struct {
	msg  string
	exit *executor.ExitError
}

func (e *execError) Error() string { return e.msg }
func (e *execError) Unwrap() error { return e.exit }

func (e *Executor) run(ctx context.Context, spec executor.Spec) error {
	if err := checkSpec(spec); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	runDir, err := os.MkdirTemp(e.opts.StateDir, "run-")
	if err != nil {
		return fmt.Errorf("create container state dir: %w", err)
	}
	defer os.RemoveAll(runDir)

	cfg := initConfig{
		RunDir:     runDir,
		LowerDirs:  spec.Rootfs.LowerDirs,
		UpperDir:   spec.Rootfs.UpperDir,
		WorkDir:    spec.Rootfs.WorkDir,
		ReadOnly:   spec.Rootfs.ReadOnly,
		CopyMode:   e.copyMode.Load(),
		Inputs:     spec.Inputs,
		Hostname:   spec.Hostname,
		NewNetwork: spec.Network == executor.NetworkNone,
	}
	if cfg.Hostname == "" {
		cfg.Hostname = defaultHostname
	}
	var stdin io.Reader
	var stdout, stderr io.Writer
	if p := spec.Process; p != nil {
		cfg.Process = &processConfig{Args: p.Args, Env: p.Env, Cwd: p.Cwd, User: p.User}
		if err := writeEtcFiles(runDir, cfg.Hostname, spec.ExtraHosts); err != nil {
			return err
		}
		stdin, stdout, stderr = p.Stdin, p.Stdout, p.Stderr
	} else {
		cfg.Func = &funcConfig{Name: spec.Func.Name, Payload: spec.Func.Payload}
		stdout, stderr = spec.Func.Stdout, spec.Func.Stderr
	}
	cfgData, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode container config: %w", err)
	}

	st, exitErr, err := start(ctx, cfgData, cfg.NewNetwork, stdin, stdout, stderr)
	if st.Fallback != "" {
		e.copyMode.Store(true)
	}
	var copyErr error
	if st.Copied {
		copyDir := filepath.Join(spec.Rootfs.WorkDir, copyDirName)
		if err == nil && ctx.Err() == nil {
			copyErr = writeChanges(copyDir, spec.Rootfs.UpperDir)
		}
		if rerr := os.RemoveAll(copyDir); copyErr == nil {
			copyErr = rerr
		}
		if copyErr != nil {
			copyErr = fmt.Errorf("write the changes of the copied root filesystem: %w", copyErr)
		}
	}
	if err != nil {
		return err
	}
	if spec.Process != nil && len(st.Stubs) > 0 {
		// Best effort: a stub that cannot be removed only adds an empty
		// file or dir to the layer.
		_ = removeStubs(spec.Rootfs.UpperDir, st.Stubs)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("run container: %w", err)
	}
	if st.Error != "" {
		if st.Code != 0 {
			return &execError{msg: st.Error, exit: &executor.ExitError{Code: st.Code}}
		}
		return errors.New(st.Error)
	}
	if exitErr != nil {
		return exitErr
	}
	return copyErr
}

// checkSpec rejects specs the init cannot run, with errors that say why.
func checkSpec(spec executor.Spec) error {
	switch {
	case spec.Process == nil && spec.Func == nil:
		return errors.New("run container: the spec has neither a process nor a function")
	case spec.Process != nil && spec.Func != nil:
		return errors.New("run container: the spec has both a process and a function")
	case spec.Process != nil && len(spec.Process.Args) == 0:
		return errors.New("run container: no command given")
	case spec.Process != nil && spec.Process.Tty:
		return fmt.Errorf("run container with a terminal: %w (tty is not supported yet)", errors.ErrUnsupported)
	case spec.Func != nil && spec.Func.Name == "":
		return errors.New("run container: the function has no name")
	case spec.Rootfs.UpperDir == "" || spec.Rootfs.WorkDir == "":
		return errors.New("run container: the root filesystem needs an upper and a work dir")
	}
	switch spec.Network {
	case "", executor.NetworkHost, executor.NetworkNone:
	default:
		return fmt.Errorf("run container: unknown network mode %q (want %q or %q)", spec.Network, executor.NetworkHost, executor.NetworkNone)
	}
	return nil
}

// start runs the init to completion. It returns the final status the init
// reported (the stubs it created, and a setup or Func error) and the exit
// status as an *executor.ExitError (nil for 0).
func start(ctx context.Context, cfgData []byte, newNet bool, stdin io.Reader, stdout, stderr io.Writer) (status, error, error) {
	var st status
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return st, nil, fmt.Errorf("start container: %w", err)
	}
	defer cfgR.Close()
	defer cfgW.Close()
	stR, stW, err := os.Pipe()
	if err != nil {
		return st, nil, fmt.Errorf("start container: %w", err)
	}
	defer stR.Close()
	defer stW.Close()

	cmd := exec.CommandContext(ctx, "/proc/self/exe", InitArg)
	cmd.Args[0] = "kiln-init"
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.ExtraFiles = []*os.File{cfgR, stW} // fds 3 and 4
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	if newNet {
		flags |= unix.CLONE_NEWNET
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		return st, nil, fmt.Errorf("start container: %w", err)
	}
	cfgR.Close()
	stW.Close()
	// A failed write means the init died early; Wait reports why.
	_, _ = cfgW.Write(cfgData)
	cfgW.Close()

	// The status pipe reaches EOF when the init execs the process (the fd
	// is close-on-exec there) or exits.
	dec := json.NewDecoder(stR)
	for {
		var s status
		if err := dec.Decode(&s); err != nil {
			break
		}
		st.Stubs = append(st.Stubs, s.Stubs...)
		st.Copied = st.Copied || s.Copied
		if s.Fallback != "" {
			st.Fallback = s.Fallback
		}
		if s.Error != "" {
			st.Error, st.Code = s.Error, s.Code
		}
	}
	err = cmd.Wait()
	ps := cmd.ProcessState
	if ps == nil {
		return st, nil, fmt.Errorf("run container: %w", err)
	}
	ws, _ := ps.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled():
		return st, &executor.ExitError{Code: 128 + int(ws.Signal())}, nil
	case ws.ExitStatus() != 0:
		return st, &executor.ExitError{Code: ws.ExitStatus()}, nil
	case err != nil && !errors.Is(err, exec.ErrWaitDelay):
		return st, nil, fmt.Errorf("run container: %w", err)
	}
	return st, nil, nil
}

// writeEtcFiles writes the hosts, resolv.conf and hostname files the init
// binds over the container's, so they never land in a layer.
func writeEtcFiles(runDir, hostname string, extraHosts []string) error {
	var hosts bytes.Buffer
	fmt.Fprintf(&hosts, "127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n", hostname)
	for _, h := range extraHosts {
		name, ip, err := parseExtraHost(h)
		if err != nil {
			return err
		}
		fmt.Fprintf(&hosts, "%s\t%s\n", ip, name)
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		resolv = []byte("# kiln: the host has no /etc/resolv.conf\n")
	}
	files := []struct {
		name string
		data []byte
	}{
		{hostsFile, hosts.Bytes()},
		{resolvFile, resolv},
		{hostnameFile, []byte(hostname + "\n")},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(runDir, f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("write container /etc/%s: %w", f.name, err)
		}
	}
	return nil
}

// parseExtraHost splits "name ip" (or Docker's "name:ip").
func parseExtraHost(s string) (name, ip string, err error) {
	if f := strings.Fields(s); len(f) == 2 {
		return f[0], f[1], nil
	}
	if name, ip, ok := strings.Cut(strings.TrimSpace(s), ":"); ok && name != "" && ip != "" && !strings.ContainsAny(s, " \t\n") {
		return name, ip, nil
	}
	return "", "", fmt.Errorf("invalid extra host %q: want \"name ip\"", s)
}
