package linux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	c, err := e.start(ctx, spec, true)
	if err != nil {
		return err
	}
	code, err := c.Wait()
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("run container: %w", cerr)
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return &executor.ExitError{Code: code}
	}
	return nil
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
	case spec.Func != nil && spec.Func.Name == "":
		return errors.New("run container: the function has no name")
	case spec.Func != nil && (spec.Init || len(spec.Mounts) > 0 || len(spec.CapAdd) > 0 || len(spec.CapDrop) > 0):
		return errors.New("run container: Init, Mounts, CapAdd and CapDrop need a process, not a function")
	case spec.Rootfs.UpperDir == "" || spec.Rootfs.WorkDir == "":
		return errors.New("run container: the root filesystem needs an upper and a work dir")
	case spec.PIDNSPath != "" && spec.HostPID:
		return errors.New("run container: HostPID and PIDNSPath cannot be used together")
	case (spec.IPCNSPath != "" || spec.ShmDir != "") && spec.HostIPC:
		return errors.New("run container: HostIPC cannot be used with IPCNSPath or ShmDir")
	case spec.Resources != nil && !spec.Resources.IsZero() && spec.CgroupPath == "":
		return errors.New("run container: resource limits need a cgroup path")
	}
	switch spec.Network {
	case "", executor.NetworkHost, executor.NetworkNone:
	default:
		return fmt.Errorf("run container: unknown network mode %q (want %q or %q)", spec.Network, executor.NetworkHost, executor.NetworkNone)
	}
	if spec.CgroupPath != "" {
		if err := checkCgroupPath(spec.CgroupPath); err != nil {
			return fmt.Errorf("run container: %w", err)
		}
	}
	if len(spec.Sysctls) > 0 {
		ownNet := ownNetwork(spec)
		for name, value := range spec.Sysctls {
			if err := executor.CheckSysctl(name, value, ownNet, !spec.HostIPC && spec.IPCNSPath == ""); err != nil {
				return fmt.Errorf("run container: %w", err)
			}
		}
	}
	if r := spec.Resources; r != nil && (r.Memory < 0 || r.CPUs < 0 || r.PidsLimit < 0) {
		return errors.New("run container: negative resource limit")
	}
	for _, m := range spec.Mounts {
		if _, err := parseMount(newMountConfig(m)); err != nil {
			return fmt.Errorf("run container: %w", err)
		}
	}
	if _, err := capMask(spec.CapAdd, spec.CapDrop); err != nil {
		return fmt.Errorf("run container: %w", err)
	}
	return nil
}

// ownNetwork reports whether the container gets a network namespace that
// is not kiln's: a new one, or a joined one other than kiln's own (another
// container may be on the host network).
func ownNetwork(spec executor.Spec) bool {
	if spec.NetNSPath == "" {
		return spec.Network == executor.NetworkNone
	}
	var joined, own unix.Stat_t
	if unix.Stat(spec.NetNSPath, &joined) != nil || unix.Stat("/proc/self/ns/net", &own) != nil {
		return false
	}
	return joined.Dev != own.Dev || joined.Ino != own.Ino
}

// writeEtcFiles writes the hosts, resolv.conf and hostname files the init
// binds over the container's, so they never land in a layer. A build step
// (no EtcHostname) gets BuildKit's hosts file; a docker run-like container
// gets docker run's: the host's own on the host network, else the loopback
// names alone (on a bridge the network's file is bound over it).
func writeEtcFiles(runDir, hostname string, spec executor.Spec) error {
	var hosts bytes.Buffer
	switch {
	case !spec.EtcHostname:
		fmt.Fprintf(&hosts, "127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n", hostname)
	case spec.Network != executor.NetworkNone && spec.NetNSPath == "":
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts.Write(b)
			if len(b) > 0 && b[len(b)-1] != '\n' {
				hosts.WriteByte('\n')
			}
			break
		}
		fallthrough
	default:
		hosts.WriteString(executor.LoopbackHosts)
	}
	for _, h := range spec.ExtraHosts {
		name, ip, err := executor.ParseExtraHost(h)
		if err != nil {
			return err
		}
		fmt.Fprintf(&hosts, "%s\t%s\n", ip, name)
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		resolv = []byte("# kiln: the host has no /etc/resolv.conf\n")
	}
	resolv = executor.ResolvConf(resolv, spec.DNS, spec.DNSSearch, spec.DNSOptions)
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
