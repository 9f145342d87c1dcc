package executortest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/executor"
)

// StarterSuite runs the conformance tests of executor.Starter (kiln run:
// start, wait, signal, exec, tty, mounts, network namespaces, cgroups,
// capabilities) against the executor newStarter returns. Tests whose
// kernel feature (a cgroup controller, ip netns) is missing skip and say
// why.
func StarterSuite(t *testing.T, newStarter func(t *testing.T) executor.Starter) {
	RequireRoot(t)
	s := &starterSuite{bin: BinLayer(t), etc: EtcLayer(t), st: newStarter(t)}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"StartWait", s.testStartWait},
		{"StartFailure", s.testStartFailure},
		{"SignalKill", s.testSignalKill},
		{"InitSignal", s.testInitSignal},
		{"InitExitCode", s.testInitExitCode},
		{"InitReapsZombies", s.testInitReaps},
		{"Exec", s.testExec},
		{"ExecTty", s.testExecTty},
		{"ExecWithoutInit", s.testExecWithoutInit},
		{"ShmSizeUlimits", s.testShmSizeUlimits},
		{"Privileged", s.testPrivileged},
		{"DeviceNodes", s.testDeviceNodes},
		{"HostPIDIPC", s.testHostPIDIPC},
		{"DisableIPv6", s.testDisableIPv6},
		{"Tty", s.testTty},
		{"TtyInit", s.testTtyInit},
		{"TtyResize", s.testTtyResize},
		{"TtyCtrlC", s.testTtyCtrlC},
		{"Mounts", s.testMounts},
		{"MountSymlinkEscape", s.testMountSymlinkEscape},
		{"NetNS", s.testNetNS},
		{"CapDrop", s.testCapDrop},
		{"CapAdd", s.testCapAdd},
		{"MemoryLimit", s.testMemoryLimit},
		{"PidsLimit", s.testPidsLimit},
		{"CPULimit", s.testCPULimit},
		{"CgroupFiles", s.testCgroupFiles},
		{"PauseResume", s.testPauseResume},
		{"NothingLeft", s.testNothingLeft},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.fn)
	}
}

type starterSuite struct {
	bin, etc string
	st       executor.Starter
}

var cgroupSeq atomic.Int64

// cgroupPath returns a cgroup path no other test uses.
func cgroupPath() string {
	return fmt.Sprintf("kiln-test/%d-%d", os.Getpid(), cgroupSeq.Add(1))
}

// spec returns a spec running args over the bin and etc layers.
func (s *starterSuite) spec(t *testing.T, args ...string) executor.Spec {
	return executor.Spec{
		Rootfs: NewRootfs(t, s.bin, s.etc),
		Process: &executor.Process{
			Args: args,
			Env:  []string{"PATH=/bin"},
		},
		EtcHostname: true,
	}
}

// start starts spec and makes sure the container is gone when the test ends.
func (s *starterSuite) start(t *testing.T, spec executor.Spec) executor.Container {
	t.Helper()
	c, err := s.st.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("start %q: %v", spec.Process.Args, err)
	}
	t.Cleanup(func() {
		_ = c.Signal(syscall.SIGKILL)
		_, _ = c.Wait()
	})
	return c
}

// wait waits for c at most d, killing it on timeout.
func wait(t *testing.T, c executor.Container, d time.Duration) (int, error) {
	t.Helper()
	type res struct {
		code int
		err  error
	}
	done := make(chan res, 1)
	go func() {
		code, err := c.Wait()
		done <- res{code, err}
	}()
	select {
	case r := <-done:
		return r.code, r.err
	case <-time.After(d):
		_ = c.Signal(syscall.SIGKILL)
		t.Fatalf("the container did not exit within %v", d)
		return 0, nil
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func (s *starterSuite) testStartWait(t *testing.T) {
	var out bytes.Buffer
	spec := s.spec(t, "sh", "-c", "echo hi; exit 5")
	spec.Process.Stdout = &out
	c := s.start(t, spec)
	if c.Pid() <= 0 {
		t.Errorf("Pid() = %d", c.Pid())
	}
	code, err := wait(t, c, 10*time.Second)
	if err != nil || code != 5 {
		t.Errorf("Wait = %d, %v; want 5", code, err)
	}
	if out.String() != "hi\n" {
		t.Errorf("stdout %q", out.String())
	}
	// Waiting again returns the same.
	if code, err := c.Wait(); code != 5 || err != nil {
		t.Errorf("second Wait = %d, %v", code, err)
	}

	// The ctx of Start bounds the start only.
	ctx, cancel := context.WithCancel(t.Context())
	c, err = s.st.Start(ctx, s.spec(t, "sh", "-c", "sleep 0.3; exit 6"))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if code, err := wait(t, c, 10*time.Second); code != 6 || err != nil {
		t.Errorf("Wait after cancelling Start's ctx = %d, %v; want 6", code, err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	cancel()
	if _, err := s.st.Start(ctx, s.spec(t, "true")); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a cancelled ctx: %v", err)
	}
}

func (s *starterSuite) testStartFailure(t *testing.T) {
	for _, init := range []bool{false, true} {
		spec := s.spec(t, "no-such-command")
		spec.Init = init
		c, err := s.st.Start(t.Context(), spec)
		if err == nil {
			c.Wait()
			t.Fatalf("init %v: Start of a missing command succeeded", init)
		}
		wantExit(t, err, 127)
	}
}

func (s *starterSuite) testSignalKill(t *testing.T) {
	c := s.start(t, s.spec(t, "sleep", "100"))
	if err := c.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code, err := wait(t, c, 10*time.Second); code != 137 || err != nil {
		t.Errorf("Wait = %d, %v; want 137", code, err)
	}
	if err := c.Signal(syscall.SIGKILL); err == nil {
		t.Error("Signal after Wait succeeded")
	}
}

func (s *starterSuite) testInitSignal(t *testing.T) {
	spec := s.spec(t, "sleep", "100")
	spec.Init = true
	c := s.start(t, spec)
	time.Sleep(50 * time.Millisecond)
	if err := c.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := wait(t, c, 10*time.Second); code != 143 || err != nil {
		t.Errorf("Wait = %d, %v; want 143 (SIGTERM forwarded to sleep)", code, err)
	}
	// A signal sent to the init's pid from the host is forwarded too.
	c = s.start(t, spec)
	time.Sleep(50 * time.Millisecond)
	if err := syscall.Kill(c.Pid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code, err := wait(t, c, 10*time.Second); code != 130 || err != nil {
		t.Errorf("Wait = %d, %v; want 130 (SIGINT forwarded to sleep)", code, err)
	}
}

func (s *starterSuite) testInitExitCode(t *testing.T) {
	var out bytes.Buffer
	spec := s.spec(t, "sh", "-c", "echo $$ $(cat /proc/1/comm); exit 4")
	spec.Init = true
	spec.Process.Stdout = &out
	c := s.start(t, spec)
	if code, err := wait(t, c, 10*time.Second); code != 4 || err != nil {
		t.Errorf("Wait = %d, %v; want 4", code, err)
	}
	if f := strings.Fields(out.String()); len(f) != 2 || f[0] == "1" || f[1] == "sh" {
		t.Errorf("pid of sh, comm of pid 1 = %q; want sh not to be pid 1", out.String())
	}
}

func (s *starterSuite) testInitReaps(t *testing.T) {
	// The inner sh exits at once; its sleep is orphaned to PID 1, which
	// must reap it when it exits.
	var out bytes.Buffer
	spec := s.spec(t, "sh", "-c", `sh -c "sleep 0.2 &"; sleep 1; cat /proc/[0-9]*/stat | cut -d" " -f2,3`)
	spec.Init = true
	spec.Process.Stdout = &out
	c := s.start(t, spec)
	if code, err := wait(t, c, 10*time.Second); code != 0 || err != nil {
		t.Fatalf("Wait = %d, %v", code, err)
	}
	if strings.Contains(out.String(), " Z") {
		t.Errorf("zombies left in the container:\n%s", out.String())
	}
}

func (s *starterSuite) testExec(t *testing.T) {
	spec := s.spec(t, "sleep", "100")
	spec.Init = true
	spec.Hostname = "exectest"
	c := s.start(t, spec)
	ctx := t.Context()
	run := func(p executor.Process) (string, string, int) {
		t.Helper()
		var out, errOut bytes.Buffer
		p.Stdout, p.Stderr = &out, &errOut
		if p.Env == nil {
			p.Env = []string{"PATH=/bin"}
		}
		code, err := c.Exec(ctx, p)
		if err != nil {
			t.Fatalf("exec %q: %v", p.Args, err)
		}
		return out.String(), errOut.String(), code
	}
	if out, _, code := run(executor.Process{Args: []string{"cat", "/etc/hostname"}}); out != "exectest\n" || code != 0 {
		t.Errorf("cat /etc/hostname = %q, %d", out, code)
	}
	if out, _, _ := run(executor.Process{Args: []string{"env"}, Env: []string{"PATH=/bin", "A=1"}}); out != "PATH=/bin\nA=1\nHOME=/root\n" {
		t.Errorf("env = %q", out)
	}
	if out, _, _ := run(executor.Process{Args: []string{"sh", "-c", "echo $(id -u) $(id -g) $HOME; pwd"}, User: "app", Cwd: "/bin"}); out != "1000 1000 /home/app\n/bin\n" {
		t.Errorf("id, home, pwd = %q", out)
	}
	// Unlike the container's process, an exec'd one does not get its
	// working directory made (docker exec -w).
	if code, err := c.Exec(ctx, executor.Process{Args: []string{"pwd"}, Cwd: "/tmp/w"}); code != 126 || err == nil {
		t.Errorf("exec in a missing directory = %d, %v; want 126 and an error", code, err)
	}
	if out, errOut, code := run(executor.Process{Args: []string{"sh", "-c", "echo o; echo e >&2; exit 7"}}); out != "o\n" || errOut != "e\n" || code != 7 {
		t.Errorf("exit 7: stdout %q stderr %q code %d", out, errOut, code)
	}
	var out bytes.Buffer
	code, err := c.Exec(ctx, executor.Process{Args: []string{"cat"}, Stdin: strings.NewReader("in"), Stdout: &out})
	if err != nil || code != 0 || out.String() != "in" {
		t.Errorf("cat with stdin = %q, %d, %v", out.String(), code, err)
	}
	// The exec'd process is in the container: same PID namespace.
	if out, _, _ := run(executor.Process{Args: []string{"cat", "/proc/1/cmdline"}}); strings.Contains(out, "sleep") {
		t.Errorf("pid 1 is %q, want the init", out)
	}
	if out, _, _ := run(executor.Process{Args: []string{"grep", "^CapEff:", "/proc/self/status"}}); out != "CapEff:\t"+dockerCapBnd+"\n" {
		t.Errorf("exec'd process capabilities %q", out)
	}
	code, err = c.Exec(ctx, executor.Process{Args: []string{"no-such-command"}, Env: []string{"PATH=/bin"}})
	if code != 127 || err == nil {
		t.Errorf("exec of a missing command = %d, %v; want 127 and an error", code, err)
	}
	// Cancelling the ctx kills the exec'd process.
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Exec(cctx, executor.Process{Args: []string{"sleep", "100"}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled exec: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancelled exec took %v", d)
	}
	if err := c.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wait(t, c, 10*time.Second)
	if _, err := c.Exec(ctx, executor.Process{Args: []string{"true"}}); err == nil {
		t.Error("Exec after exit succeeded")
	}
}

func (s *starterSuite) testExecTty(t *testing.T) {
	spec := s.spec(t, "sleep", "100")
	spec.Init = true
	c := s.start(t, spec)
	var out lockedBuffer
	code, err := c.Exec(t.Context(), executor.Process{
		Args: []string{"sh", "-c", "test -t 0 && test -t 1 && tty && exit 3"}, Env: []string{"PATH=/bin"},
		Tty: true, Stdout: &out,
	})
	if err != nil || code != 3 {
		t.Fatalf("exec = %d, %v (output %q); want 3", code, err, out.String())
	}
	if !strings.HasPrefix(out.String(), "/dev/pts/") {
		t.Errorf("tty = %q, want /dev/pts/N", out.String())
	}
}

// testExecWithoutInit execs into a container whose PID 1 is its own
// process, as docker exec does: the exec'd process is in the container's
// namespaces, cgroup and seccomp filter, not a child of PID 1.
func (s *starterSuite) testExecWithoutInit(t *testing.T) {
	spec := s.spec(t, "sleep", "100")
	spec.Hostname = "noinit"
	spec.Resources = &executor.Resources{PidsLimit: 50}
	spec.CgroupPath = cgroupPath()
	c := s.startLimited(t, spec)
	var out, errOut bytes.Buffer
	script := `tr '\0' ' ' < /proc/1/cmdline; echo; hostname; grep -c "` + spec.CgroupPath + `$" /proc/self/cgroup; grep ^Seccomp: /proc/self/status; echo ppid $PPID`
	code, err := c.Exec(t.Context(), executor.Process{Args: []string{"sh", "-c", script}, Env: []string{"PATH=/bin"}, Stdout: &out, Stderr: &errOut})
	if err != nil || code != 0 {
		t.Fatalf("Exec = %d, %v: %s", code, err, errOut.String())
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) < 5 || lines[0] != "sleep 100 " || lines[1] != "noinit" || lines[2] == "0" || lines[3] != "Seccomp:\t2" || lines[4] != "ppid 0" {
		t.Errorf("exec'd process saw %q; want PID 1 sleep, hostname noinit, the container's cgroup, seccomp filter mode 2, a parent outside the container", out.String())
	}
	// The threads that forked those processes end; the container lives on
	// (an init forked by such a thread would die with it, Pdeathsig).
	for i := range 20 {
		if code, err := c.Exec(t.Context(), executor.Process{Args: []string{"true"}, Env: []string{"PATH=/bin"}}); err != nil || code != 0 {
			t.Fatalf("exec %d = %d, %v", i, code, err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if err := c.Signal(0); err != nil {
		t.Errorf("the container ended after the execs: %v", err)
	}
}

// testShmSizeUlimits checks Spec.ShmSize and Spec.Ulimits, for the
// container's process and for an exec'd one.
func (s *starterSuite) testShmSizeUlimits(t *testing.T) {
	var out, errOut lockedBuffer
	spec := s.spec(t, "sh", "-c", "df -k /dev/shm | tail -1 | awk '{print $2}'; ulimit -Sn; ulimit -Hn; exec sleep 100")
	spec.ShmSize = 8 << 20
	spec.Ulimits = []executor.Ulimit{{Resource: syscall.RLIMIT_NOFILE, Soft: 300, Hard: 400}}
	spec.Process.Stdout, spec.Process.Stderr = &out, &errOut
	c := s.start(t, spec)
	waitFor := time.Now().Add(10 * time.Second)
	for !strings.HasSuffix(out.String(), "400\n") && time.Now().Before(waitFor) {
		time.Sleep(20 * time.Millisecond)
	}
	if out.String() != "8192\n300\n400\n" {
		t.Errorf("shm size and nofile limits %q (%s), want 8192 300 400", out.String(), errOut.String())
	}
	var eout bytes.Buffer
	if code, err := c.Exec(t.Context(), executor.Process{Args: []string{"sh", "-c", "ulimit -Sn; ulimit -Hn"}, Env: []string{"PATH=/bin"}, Stdout: &eout}); err != nil || code != 0 || eout.String() != "300\n400\n" {
		t.Errorf("exec'd process: %q, %d, %v; want the container's limits 300 400", eout.String(), code, err)
	}
}

// testPrivileged checks Spec.Privileged: no seccomp profile, mounts
// allowed, /proc unmasked, /sys writable and more devices than the default
// /dev holds (the host's).
func (s *starterSuite) testPrivileged(t *testing.T) {
	var out, errOut lockedBuffer
	spec := s.spec(t, "sh", "-c", `grep ^Seccomp: /proc/self/status
mkdir -p /m && mount -t tmpfs none /m && echo mounted
grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1
mount | grep -c ' /proc/timer_list '
[ $(ls /dev | wc -l) -gt 20 ] && echo devices`)
	spec.Privileged = true
	spec.Process.Stdout, spec.Process.Stderr = &out, &errOut
	c := s.start(t, spec)
	if code, err := wait(t, c, 30*time.Second); code != 0 || err != nil {
		t.Fatalf("Wait = %d, %v: %s%s", code, err, out.String(), errOut.String())
	}
	if want := "Seccomp:\t0\nmounted\nrw\n0\ndevices\n"; out.String() != want {
		t.Errorf("privileged container: %q (%s), want %q", out.String(), errOut.String(), want)
	}
}

// testDeviceNodes checks the device nodes a container may use. With a
// cgroup of its own (kiln run), as under docker run: the standard nodes,
// and nodes the container makes for them (it has CAP_MKNOD), also in a
// process Exec adds; a node of another device cannot be opened, unless
// Spec.Devices gives it, with the access its permissions allow. Without a
// cgroup, every node the container makes is refused (nodev mounts) while
// /dev/null and friends work.
func (s *starterSuite) testDeviceNodes(t *testing.T) {
	script := `mknod /dev/mynull c 1 3 && { (echo x > /dev/mynull) && echo dev-open || echo dev-refused; }
mkdir -p /d && mknod /d/mynull c 1 3 && { (echo x > /d/mynull) && echo root-open || echo root-refused; }
mknod /d/kvm c 10 232 && { (: > /d/kvm) && echo kvm-open || echo kvm-refused; }
echo x > /dev/null && head -c 3 /dev/zero | wc -c`
	for _, tc := range []struct {
		cgroup         bool
		want, wantExec string
	}{
		{true, "dev-open\nroot-open\nkvm-refused\n3\n", "exec-open\nexec-kvm-refused\n"},
		{false, "dev-refused\nroot-refused\nkvm-refused\n3\n", "exec-refused\nexec-kvm-refused\n"},
	} {
		var out, errOut lockedBuffer
		spec := s.spec(t, "sh", "-c", script+"; exec sleep 60")
		if tc.cgroup {
			spec.CgroupPath = cgroupPath()
		}
		spec.Process.Stdout, spec.Process.Stderr = &out, &errOut
		c := s.start(t, spec)
		deadline := time.Now().Add(30 * time.Second)
		for !strings.HasSuffix(out.String(), "3\n") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if out.String() != tc.want {
			t.Errorf("cgroup %v: device nodes: %q (%s), want %q", tc.cgroup, out.String(), errOut.String(), tc.want)
		}
		var execOut lockedBuffer
		args := []string{"sh", "-c", `{ (echo x > /d/mynull) && echo exec-open || echo exec-refused; } 2>/dev/null
{ (: > /d/kvm) && echo exec-kvm-open || echo exec-kvm-refused; } 2>/dev/null`}
		code, err := c.Exec(t.Context(), executor.Process{Args: args, Env: []string{"PATH=/bin"}, Stdout: &execOut, Stderr: &execOut})
		if code != 0 || err != nil || execOut.String() != tc.wantExec {
			t.Errorf("cgroup %v: exec: %d, %v, %q, want %q", tc.cgroup, code, err, execOut.String(), tc.wantExec)
		}
		_ = c.Signal(syscall.SIGKILL)
		_, _ = c.Wait()
	}
	// A host device given in Spec.Devices works, at the path asked for,
	// with the access its permissions give (a node that is not one of the
	// standard devices and opens without capabilities; opened only).
	node := ""
	for _, p := range []string{"/dev/fuse", "/dev/loop-control", "/dev/loop0"} {
		if _, err := os.Stat(p); err == nil {
			node = p
			break
		}
	}
	if node == "" {
		t.Skip("Spec.Devices: no /dev/fuse, /dev/loop-control or /dev/loop0 on this host to give the container")
	}
	for _, tc := range []struct {
		perms, want string
	}{
		{"", "read\nwrite\n"},
		{"r", "read\nwrite-refused\n"},
	} {
		var out, errOut lockedBuffer
		spec := s.spec(t, "sh", "-c", "{ (: < /dev/sub/k) && echo read; (: > /dev/sub/k) && echo write || echo write-refused; } 2>/dev/null")
		spec.CgroupPath = cgroupPath()
		spec.Devices = []executor.Device{{HostPath: node, ContainerPath: "/dev/sub/k", Permissions: tc.perms}}
		spec.Process.Stdout, spec.Process.Stderr = &out, &errOut
		c := s.start(t, spec)
		if code, err := wait(t, c, 30*time.Second); code != 0 || err != nil || out.String() != tc.want {
			t.Errorf("Spec.Devices %q: %d, %v, %q %s, want %q", tc.perms, code, err, out.String(), errOut.String(), tc.want)
		}
	}
}

// testHostPIDIPC checks Spec.HostPID (the process sees the host's PID 1,
// and is not PID 1 itself), Spec.HostIPC (the host's /dev/shm) and
// Spec.HostUTS (the host's name, which stays as it is).
func (s *starterSuite) testHostPIDIPC(t *testing.T) {
	name := fmt.Sprintf("kiln-test-%d", os.Getpid())
	defer os.Remove("/dev/shm/" + name)
	host1, _ := os.ReadFile("/proc/1/cmdline")
	var out, errOut lockedBuffer
	hostName, _ := os.Hostname()
	spec := s.spec(t, "sh", "-c", "[ $$ != 1 ] && echo not-pid1; tr '\\0' ' ' < /proc/1/cmdline; echo; echo shared > /dev/shm/"+name+"; hostname")
	spec.HostPID, spec.HostIPC, spec.HostUTS = true, true, true
	spec.Hostname = "kiln-must-not-rename-the-host"
	spec.Process.Stdout, spec.Process.Stderr = &out, &errOut
	c := s.start(t, spec)
	if code, err := wait(t, c, 30*time.Second); code != 0 || err != nil {
		t.Fatalf("Wait = %d, %v: %s%s", code, err, out.String(), errOut.String())
	}
	want := "not-pid1\n" + strings.ReplaceAll(string(host1), "\x00", " ") + "\n" + hostName + "\n"
	if out.String() != want {
		t.Errorf("with HostPID: %q (%s), want %q", out.String(), errOut.String(), want)
	}
	if b, err := os.ReadFile("/dev/shm/" + name); err != nil || string(b) != "shared\n" {
		t.Errorf("with HostIPC the host's /dev/shm holds %q, %v", b, err)
	}
	if h, _ := os.Hostname(); h != hostName {
		t.Errorf("with HostUTS the host was renamed %q (was %q)", h, hostName)
	}
}

// testDisableIPv6 checks Spec.DisableIPv6 in a network namespace of the
// container's own: IPv6 is off there and stays as it was on the host.
func (s *starterSuite) testDisableIPv6(t *testing.T) {
	const f = "/proc/sys/net/ipv6/conf/all/disable_ipv6"
	host, err := os.ReadFile(f)
	if err != nil {
		t.Skipf("no IPv6 in this kernel: %v", err)
	}
	var out, errOut lockedBuffer
	spec := s.spec(t, "cat", f)
	spec.Network = executor.NetworkNone
	spec.DisableIPv6 = true
	spec.Process.Stdout, spec.Process.Stderr = &out, &errOut
	c := s.start(t, spec)
	if code, err := wait(t, c, 30*time.Second); code != 0 || err != nil || out.String() != "1\n" {
		t.Errorf("disable_ipv6 in the container: %q, %d, %v %s; want 1", out.String(), code, err, errOut.String())
	}
	if after, _ := os.ReadFile(f); string(after) != string(host) {
		t.Errorf("the host's disable_ipv6 went from %q to %q", host, after)
	}
}

// ttyRun runs sh on a terminal, feeding it input, and returns its output.
func (s *starterSuite) ttyRun(t *testing.T, init bool, args []string, input ...string) (string, int) {
	t.Helper()
	pr, pw := io.Pipe()
	var out lockedBuffer
	spec := s.spec(t, args...)
	spec.Init = init
	spec.Process.Tty = true
	spec.Process.Stdin, spec.Process.Stdout = pr, &out
	c := s.start(t, spec)
	go func() {
		for _, in := range input {
			if _, err := pw.Write([]byte(in)); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	code, err := wait(t, c, 10*time.Second)
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(out.String(), "\r\n", "\n"), code
}

func (s *starterSuite) testTty(t *testing.T) {
	out, code := s.ttyRun(t, false, []string{"sh"}, "test -t 0 && test -t 1 && echo is-a-tty; tty\n", "echo hi\n", "exit 3\n")
	if code != 3 {
		t.Errorf("exit code %d, want 3; output:\n%s", code, out)
	}
	for _, want := range []string{"\nis-a-tty\n", "\n/dev/pts/0\n", "\nhi\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not contain %q:\n%s", want, out)
		}
	}
}

func (s *starterSuite) testTtyInit(t *testing.T) {
	out, code := s.ttyRun(t, true, []string{"sh"}, "test -t 0 && echo is-a-tty\n", "exit 3\n")
	if code != 3 || !strings.Contains(out, "\nis-a-tty\n") {
		t.Errorf("exit code %d, output:\n%s", code, out)
	}
}

func (s *starterSuite) testTtyResize(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	var out lockedBuffer
	spec := s.spec(t, "sh")
	spec.Process.Tty = true
	spec.Process.Stdin, spec.Process.Stdout = pr, &out
	c := s.start(t, spec)
	if err := c.Resize(40, 100); err != nil {
		t.Fatal(err)
	}
	go io.WriteString(pw, "stty size; exit 0\n")
	if code, err := wait(t, c, 10*time.Second); code != 0 || err != nil {
		t.Fatalf("Wait = %d, %v\n%s", code, err, out.String())
	}
	if !strings.Contains(out.String(), "\n40 100\r\n") {
		t.Errorf("stty size after Resize(40, 100):\n%q", out.String())
	}
	if err := c.Resize(1, 1); err == nil {
		t.Error("Resize after exit succeeded")
	}
	c = s.start(t, s.spec(t, "true"))
	if err := c.Resize(1, 1); err == nil {
		t.Error("Resize without a tty succeeded")
	}
}

func (s *starterSuite) testTtyCtrlC(t *testing.T) {
	for _, init := range []bool{false, true} {
		t.Run(fmt.Sprintf("init=%v", init), func(t *testing.T) {
			script := `trap "echo got-int; exit 9" INT; echo ready; while :; do sleep 0.05; done`
			out, code := s.ttyRun(t, init, []string{"sh", "-c", script}, "", "", "", "\x03")
			if code != 9 || !strings.Contains(out, "got-int") {
				t.Errorf("after ^C: exit %d, output %q; want 9 and got-int", code, out)
			}
		})
	}
}

func (s *starterSuite) testMounts(t *testing.T) {
	rw, ro := t.TempDir(), t.TempDir()
	WriteFiles(t, ro, map[string]string{"f": "ro data"})
	var out, errOut bytes.Buffer
	spec := s.spec(t, "sh", "-c", `echo w > /data/rw/new && cat /data/ro/f && echo;
		echo x > /data/ro/x 2>/dev/null && echo ro-writable;
		echo t > /scratch/t && grep -E " /scratch tmpfs " /proc/mounts | grep -c size=1024k`)
	spec.Process.Stdout, spec.Process.Stderr = &out, &errOut
	spec.Mounts = []executor.Mount{
		{Type: "bind", Source: rw, Target: "/data/rw"},
		{Type: "bind", Source: ro, Target: "/data/ro", ReadOnly: true},
		{Type: "tmpfs", Target: "/scratch", Options: []string{"size=1m", "mode=1777"}},
	}
	c := s.start(t, spec)
	if code, err := wait(t, c, 10*time.Second); code != 0 || err != nil {
		t.Fatalf("Wait = %d, %v\n%s%s", code, err, out.String(), errOut.String())
	}
	if out.String() != "ro data\n1\n" {
		t.Errorf("output %q", out.String())
	}
	if b, err := os.ReadFile(filepath.Join(rw, "new")); string(b) != "w\n" {
		t.Errorf("rw bind: host file %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(ro, "x")); err == nil {
		t.Error("wrote to a read-only bind")
	}
	// The mount points were stubs: none is left in the upper dir.
	if files := upperFiles(t, spec.Rootfs.UpperDir); len(files) != 0 {
		t.Errorf("upper = %q, want empty", files)
	}
}

func (s *starterSuite) testMountSymlinkEscape(t *testing.T) {
	host := t.TempDir()
	evil := t.TempDir()
	for _, l := range [][2]string{{host, "abs"}, {"../../../../../../" + host, "rel"}} {
		if err := os.Symlink(l[0], filepath.Join(evil, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	spec := s.spec(t, "true")
	spec.Rootfs.LowerDirs = append(spec.Rootfs.LowerDirs, evil)
	src := t.TempDir()
	spec.Mounts = []executor.Mount{
		{Type: "tmpfs", Target: "/abs/t1"},
		{Type: "bind", Source: src, Target: "/rel/t2"},
	}
	c := s.start(t, spec)
	if code, err := wait(t, c, 10*time.Second); code != 0 || err != nil {
		t.Fatalf("Wait = %d, %v", code, err)
	}
	if left, _ := os.ReadDir(host); len(left) != 0 {
		t.Errorf("a mount target was created on the host through an image symlink: %v", left)
	}
}

func (s *starterSuite) testNetNS(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("requires ip (iproute2) on the host to create a network namespace")
	}
	name := fmt.Sprintf("kilntest-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	// A dummy interface, or a bridge where the kernel has no dummy driver.
	if _, err := exec.Command("ip", "-n", name, "link", "add", "kilnd0", "type", "dummy").CombinedOutput(); err != nil {
		if out, err := exec.Command("ip", "-n", name, "link", "add", "kilnd0", "type", "bridge").CombinedOutput(); err != nil {
			t.Skipf("cannot add an interface to the network namespace: %v: %s", err, out)
		}
	}
	var out bytes.Buffer
	spec := s.spec(t, "sh", "-c", "ls /sys/class/net | tr '\\n' ' '; grep -c kilnd0 /proc/net/dev; cat /sys/class/net/lo/operstate")
	spec.NetNSPath = "/var/run/netns/" + name
	spec.Process.Stdout = &out
	c := s.start(t, spec)
	if code, err := wait(t, c, 10*time.Second); code != 0 || err != nil {
		t.Fatalf("Wait = %d, %v\n%s", code, err, out.String())
	}
	if want := "kilnd0 lo 1\nunknown\n"; out.String() != want {
		t.Errorf("interfaces, kilnd0 in /proc/net/dev, lo state = %q, want %q", out.String(), want)
	}
}

func (s *starterSuite) testCapDrop(t *testing.T) {
	run := func(drop []string) (string, int) {
		var out bytes.Buffer
		spec := s.spec(t, "sh", "-c", "mkdir -p /tmp && touch /tmp/x && chown 1 /tmp/x 2>&1")
		spec.CapDrop = drop
		spec.Process.Stdout = &out
		code, _ := wait(t, s.start(t, spec), 10*time.Second)
		return out.String(), code
	}
	if out, code := run(nil); code != 0 {
		t.Errorf("chown with the default capabilities: %d %s", code, out)
	}
	for _, drop := range [][]string{{"CHOWN"}, {"cap_chown"}, {"ALL"}} {
		if out, code := run(drop); code == 0 {
			t.Errorf("chown with CapDrop %q succeeded: %s", drop, out)
		}
	}
}

func (s *starterSuite) testCapAdd(t *testing.T) {
	run := func(add []string) int {
		spec := s.spec(t, "ip", "link", "set", "lo", "down")
		spec.Network = executor.NetworkNone
		spec.CapAdd = add
		code, _ := wait(t, s.start(t, spec), 10*time.Second)
		return code
	}
	if code := run(nil); code == 0 {
		t.Error("ip link set lo down succeeded without NET_ADMIN")
	}
	if code := run([]string{"NET_ADMIN"}); code != 0 {
		t.Errorf("ip link set lo down with CapAdd NET_ADMIN: exit %d", code)
	}
	if _, err := s.st.Start(t.Context(), executor.Spec{Rootfs: NewRootfs(t), Process: &executor.Process{Args: []string{"true"}}, CapAdd: []string{"NO_SUCH_CAP"}}); err == nil {
		t.Error("Start with an unknown capability succeeded")
	}
}

// startLimited starts spec in a new cgroup, skipping when the controller
// the test needs is not available.
func (s *starterSuite) startLimited(t *testing.T, spec executor.Spec) executor.Container {
	t.Helper()
	if spec.CgroupPath == "" {
		spec.CgroupPath = cgroupPath()
	}
	c, err := s.st.Start(t.Context(), spec)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("cgroup controller unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Signal(syscall.SIGKILL)
		_, _ = c.Wait()
	})
	return c
}

func (s *starterSuite) testMemoryLimit(t *testing.T) {
	spec := s.spec(t, "sh", "-c", "head -c 300m /dev/zero | tail")
	spec.Resources = &executor.Resources{Memory: 64 << 20}
	c := s.startLimited(t, spec)
	if code, err := wait(t, c, 60*time.Second); code != 137 || err != nil {
		t.Errorf("Wait = %d, %v; want 137 (OOM-killed)", code, err)
	}
}

// testCgroupFiles checks that a container with a cgroup sees it, read-only,
// in /sys/fs/cgroup, as under Docker: a program there can read its memory
// limit.
func (s *starterSuite) testCgroupFiles(t *testing.T) {
	var out, errOut bytes.Buffer
	// The first thing the process does is to look at its own cgroup: the
	// init starts it only once it is inside.
	spec := s.spec(t, "sh", "-c", `grep -q "$KILN_TEST_CGROUP\$" /proc/self/cgroup || { echo not in its cgroup:; cat /proc/self/cgroup; }
cd /sys/fs/cgroup
if [ -e memory.max ]; then cat memory.max; f=memory.max; else cat memory/memory.limit_in_bytes; f=memory/memory.limit_in_bytes; fi
echo 1 > $f 2>/dev/null && echo writable || echo read-only`)
	spec.Resources = &executor.Resources{Memory: 64 << 20}
	spec.Process.Stdout, spec.Process.Stderr = &out, &errOut
	spec.CgroupPath = cgroupPath()
	spec.Process.Env = append(spec.Process.Env, "KILN_TEST_CGROUP="+spec.CgroupPath)
	c := s.startLimited(t, spec)
	if code, err := wait(t, c, 30*time.Second); code != 0 || err != nil {
		t.Fatalf("Wait = %d, %v: %s", code, err, errOut.String())
	}
	if want := fmt.Sprintf("%d\nread-only\n", 64<<20); out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}

func (s *starterSuite) testPidsLimit(t *testing.T) {
	var out, errOut bytes.Buffer
	spec := s.spec(t, "sh", "-c", "for i in $(seq 100); do sleep 10 & done; echo all-started")
	spec.Resources = &executor.Resources{PidsLimit: 10}
	spec.Process.Stdout, spec.Process.Stderr = &out, &errOut
	c := s.startLimited(t, spec)
	code, err := wait(t, c, 30*time.Second)
	if err != nil || code == 0 || strings.Contains(out.String(), "all-started") {
		t.Errorf("Wait = %d, %v, output %q %q; want the loop to fail", code, err, out.String(), errOut.String())
	}
}

func (s *starterSuite) testCPULimit(t *testing.T) {
	var out lockedBuffer
	// The process stays until the test has looked at its cgroup: a
	// process that already exited shows none.
	spec := s.spec(t, "sh", "-c", "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || echo unknown; exec sleep 30")
	spec.Resources = &executor.Resources{CPUs: 0.5}
	spec.Process.Stdout = &out
	c := s.startLimited(t, spec)
	pid := c.Pid()
	cg, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	// The container reads its quota from its own /sys/fs/cgroup.
	waitFor(10*time.Second, func() bool { return strings.Contains(out.String(), "\n") })
	if got := strings.Fields(out.String()); len(got) == 0 || got[0] != "50000" {
		t.Errorf("CPU quota seen in the container: %q, want 50000", out.String())
	}
	if err := c.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code, err := wait(t, c, 10*time.Second); code != 137 || err != nil {
		t.Fatalf("Wait = %d, %v; want 137 (killed)", code, err)
	}
	if !strings.Contains(string(cg), "kiln-test/") {
		t.Errorf("the container was not in its cgroup: %s", cg)
	}
}

// cpuTicks is the user+system CPU time of pid in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	sys, _ := strconv.ParseInt(f[12], 10, 64)
	return u + sys, nil
}

func (s *starterSuite) testPauseResume(t *testing.T) {
	spec := s.spec(t, "sh", "-c", "while :; do :; done")
	c := s.startLimited(t, spec)
	ticks := func() int64 {
		n, err := cpuTicks(c.Pid())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := ticks()
	if !waitFor(5*time.Second, func() bool { return ticks() > before+5 }) {
		t.Fatal("the busy loop does not run")
	}
	if err := c.Pause(); errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("cannot pause: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	paused := ticks()
	time.Sleep(300 * time.Millisecond)
	if n := ticks(); n > paused+1 {
		t.Errorf("the paused loop used %d ticks", n-paused)
	}
	if err := c.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed := ticks()
	if !waitFor(5*time.Second, func() bool { return ticks() > resumed+5 }) {
		t.Error("the loop does not run after Resume")
	}
	// A paused container can still be killed.
	if err := c.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := c.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code, err := wait(t, c, 10*time.Second); code != 137 || err != nil {
		t.Errorf("Wait = %d, %v; want 137", code, err)
	}
	noStart := s.start(t, s.spec(t, "true"))
	if err := noStart.Pause(); err == nil {
		t.Error("Pause without a cgroup succeeded")
	}
}

func (s *starterSuite) testNothingLeft(t *testing.T) {
	src := t.TempDir()
	spec := s.spec(t, "sh", "-c", "sleep 100 & sleep 100 & echo started; wait")
	spec.Init = true
	spec.Mounts = []executor.Mount{{Type: "bind", Source: src, Target: "/src"}, {Type: "tmpfs", Target: "/tmp"}}
	spec.Resources = &executor.Resources{PidsLimit: 100}
	var out lockedBuffer
	spec.Process.Stdout = &out
	c := s.startLimited(t, spec)
	if !waitFor(5*time.Second, func() bool { return strings.Contains(out.String(), "started") }) {
		t.Fatal("the container did not start its processes")
	}
	pids := descendants(c.Pid())
	cgroups, _ := os.ReadFile("/proc/" + strconv.Itoa(c.Pid()) + "/cgroup")
	if err := c.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wait(t, c, 10*time.Second)
	for _, pid := range append(pids, c.Pid()) {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Errorf("process %d is still there", pid)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, p := range []string{spec.Rootfs.UpperDir, filepath.Dir(spec.Rootfs.UpperDir), src} {
		if bytes.Contains(mounts, []byte(p)) {
			t.Errorf("a mount of %s is left on the host", p)
		}
	}
	for _, line := range strings.Split(string(cgroups), "\n") {
		_, p, ok := strings.Cut(line, ":/kiln-test/")
		if !ok {
			continue
		}
		matches, _ := filepath.Glob("/sys/fs/cgroup/*/kiln-test/" + p)
		if _, err := os.Stat("/sys/fs/cgroup/kiln-test/" + p); err == nil {
			matches = append(matches, "/sys/fs/cgroup/kiln-test/"+p)
		}
		if len(matches) > 0 {
			t.Errorf("cgroups left: %v", matches)
		}
	}
}

// descendants returns the pids whose parent chain leads to pid.
func descendants(pid int) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 {
			parent[p], _ = strconv.Atoi(f[1])
		}
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}
