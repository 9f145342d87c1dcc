package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// The container end-to-end tests drive kiln run and friends. Network
// traffic goes only to loopback and to the containers' own addresses.

// hostState is what a container may leak on the host: veth interfaces,
// mounts and kiln cgroups.
type hostState struct {
	root    string
	veths   []string
	mounts  []string
	cgroups []string
}

func snapshotHost(t *testing.T, root string) hostState {
	t.Helper()
	s := hostState{root: root}
	// Only kiln's own bridges count: other tests may run beside these.
	out, _ := exec.Command("ip", "-o", "link", "show", "type", "veth").Output()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.Contains(l, "master kiln0") && !strings.Contains(l, "master kiln-") {
			continue
		}
		if f := strings.Fields(l); len(f) > 1 {
			s.veths = append(s.veths, strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], root) {
			s.mounts = append(s.mounts, f[4])
		}
	}
	for _, base := range []string{"/sys/fs/cgroup/kiln", "/sys/fs/cgroup/pids/kiln", "/sys/fs/cgroup/memory/kiln"} {
		ents, _ := os.ReadDir(base)
		for _, e := range ents {
			if e.IsDir() {
				s.cgroups = append(s.cgroups, filepath.Join(base, e.Name()))
			}
		}
	}
	sort.Strings(s.veths)
	sort.Strings(s.mounts)
	return s
}

// checkNoLeaks fails when the host has veths, mounts or cgroups that were
// not there in before (after giving asynchronous cleanup a moment).
func checkNoLeaks(t *testing.T, before hostState, what string) {
	t.Helper()
	var extra []string
	for i := 0; i < 50; i++ {
		now := snapshotHost(t, before.root)
		extra = nil
		for _, v := range now.veths {
			if !slices.Contains(before.veths, v) {
				extra = append(extra, "veth "+v)
			}
		}
		for _, m := range now.mounts {
			if !slices.Contains(before.mounts, m) {
				extra = append(extra, "mount "+m)
			}
		}
		for _, c := range now.cgroups {
			if !slices.Contains(before.cgroups, c) {
				extra = append(extra, "cgroup "+c)
			}
		}
		if len(extra) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("%s left behind: %s", what, strings.Join(extra, ", "))
}

// containerDirs lists the container directories under the store.
func (e *env) containerDirs() []string {
	ents, _ := os.ReadDir(filepath.Join(e.root, "containers"))
	var out []string
	for _, en := range ents {
		if en.IsDir() {
			out = append(out, en.Name())
		}
	}
	return out
}

// newContainerEnv is newEnv plus a cleanup that removes every container.
func newContainerEnv(t *testing.T) *env {
	e := newEnv(t)
	t.Cleanup(func() {
		r := e.kiln("ps", "-aq", "--no-trunc")
		for _, id := range strings.Fields(r.stdout) {
			e.kiln("rm", "-f", "-v", id)
		}
	})
	return e
}

func (e *env) state(ref string) map[string]any {
	e.t.Helper()
	r := e.must("inspect", ref)
	var out []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out) != 1 {
		e.t.Fatalf("inspect %s: %v\n%s", ref, err, r.stdout)
	}
	st, _ := out[0]["State"].(map[string]any)
	return st
}

func (e *env) status(ref string) string {
	e.t.Helper()
	s, _ := e.state(ref)["Status"].(string)
	return s
}

// refuses checks that kiln exits 125 for each of cases, each run as
// PREFIX... CASE... busybox true.
func (e *env) refuses(prefix []string, cases [][]string) {
	e.t.Helper()
	for _, c := range cases {
		args := append(append(append([]string{}, prefix...), c...), "busybox", "true")
		if r := e.kiln(args...); r.code != 125 {
			e.t.Errorf("%q: exit %d, want 125 (%s)", args, r.code, r.stderr)
		}
	}
}

func TestContainerLifecycle(t *testing.T) {
	e := newContainerEnv(t)
	before := snapshotHost(t, e.root)
	// With --init, kiln's init is PID 1 and passes SIGTERM on to sleep.
	id := strings.TrimSpace(e.must("create", "--init", "--name", "life", "busybox", "sh", "-c", "echo out; echo err >&2; exec sleep 1000").stdout)
	if len(id) != 64 {
		t.Fatalf("create printed %q, want a 64-digit ID", id)
	}
	if got := e.status("life"); got != "created" {
		t.Fatalf("status after create %q, want created", got)
	}
	if r := e.must("ps", "-a"); !strings.Contains(r.stdout, "Created") || !strings.Contains(r.stdout, "life") {
		t.Errorf("ps -a lacks the created container:\n%s", r.stdout)
	}
	if r := e.must("ps"); strings.Contains(r.stdout, "life") {
		t.Errorf("ps shows a container that is not running:\n%s", r.stdout)
	}
	e.must("start", "life")
	if got := e.status("life"); got != "running" {
		t.Fatalf("status after start %q, want running", got)
	}
	if r := e.must("ps", "--filter", "status=running", "-q"); strings.TrimSpace(r.stdout) != id[:12] {
		t.Errorf("ps --filter status=running -q = %q, want %s", r.stdout, id[:12])
	}
	waitFor(t, "logs", func() bool { return strings.Contains(e.must("logs", "life").stdout, "out") })
	if r := e.must("logs", "life"); r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("logs: stdout %q stderr %q, want out / err", r.stdout, r.stderr)
	}
	if r := e.must("logs", "-t", "--tail", "1", "life"); strings.Count(r.stdout+r.stderr, "\n") != 1 || !strings.Contains(r.stdout+r.stderr, "T") {
		t.Errorf("logs -t --tail 1: %q %q", r.stdout, r.stderr)
	}
	if r := e.must("exec", "-e", "X=1", "life", "sh", "-c", "echo exec $X; cat /proc/1/cmdline >/dev/null"); r.stdout != "exec 1\n" {
		t.Errorf("exec printed %q", r.stdout)
	}
	if r := e.kiln("exec", "life", "sh", "-c", "exit 7"); r.code != 7 {
		t.Errorf("exec exit %d, want 7", r.code)
	}
	if r := e.must("top", "life"); !strings.Contains(r.stdout, "sleep 1000") {
		t.Errorf("top lacks the process:\n%s", r.stdout)
	}
	start := time.Now()
	e.must("stop", "-t", "5", "life")
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("stop took %s; sleep should die of SIGTERM at once", d)
	}
	st := e.state("life")
	if st["Status"] != "exited" || st["ExitCode"].(float64) != 143 {
		t.Errorf("after stop: %v %v, want exited 143", st["Status"], st["ExitCode"])
	}
	if r := e.must("ps", "-a"); !strings.Contains(r.stdout, "Exited (143)") {
		t.Errorf("ps -a after stop:\n%s", r.stdout)
	}
	// Without --init the command is PID 1, as under docker run: sleep has
	// no SIGTERM handler, so as PID 1 it ignores SIGTERM, and stop kills
	// it once the timeout is over.
	e.must("run", "-d", "--name", "pid1", "busybox", "sleep", "1000")
	if r := e.must("exec", "pid1", "cat", "/proc/1/cmdline"); r.stdout != "sleep\x001000\x00" {
		t.Errorf("PID 1 of a container without --init: %q, want sleep 1000", r.stdout)
	}
	// A command docker exec cannot start exits 126 (20.10), a missing
	// working directory included (exec does not make it, unlike run).
	for _, args := range [][]string{{"exec", "pid1", "nosuch"}, {"exec", "-w", "/nonexist", "pid1", "pwd"}, {"exec", "-u", "nobody", "pid1", "id"}, {"exec", "-w", "rel", "pid1", "pwd"}} {
		if r := e.kiln(args...); r.code != 126 || r.stderr == "" {
			t.Errorf("exec %q: exit %d, stderr %q; want 126 and a message", args, r.code, r.stderr)
		}
	}
	// --cidfile gets the ID, and a second run with the same file is
	// refused before it creates anything.
	cid := filepath.Join(t.TempDir(), "cid")
	e.must("run", "--rm", "--cidfile", cid, "busybox", "true")
	if b, err := os.ReadFile(cid); err != nil || len(b) != 64 {
		t.Errorf("--cidfile holds %q (%v), want a 64-digit ID", b, err)
	}
	if r := e.kiln("run", "--rm", "--cidfile", cid, "busybox", "true"); r.code != 125 || !strings.Contains(r.stderr, "ID file found") {
		t.Errorf("run with an existing --cidfile: exit %d, %q", r.code, r.stderr)
	}
	// --dns, --dns-search and --dns-option write the container's
	// resolv.conf, as docker run does.
	if r := e.must("run", "--rm", "--network", "none", "--dns", "192.0.2.1", "--dns-search", "a.example", "--dns-option", "ndots:2", "busybox", "cat", "/etc/resolv.conf"); r.stdout != "search a.example\nnameserver 192.0.2.1\noptions ndots:2\n" {
		t.Errorf("resolv.conf with --dns: %q", r.stdout)
	}
	// A relative -w is refused, as by docker run.
	if r := e.kiln("run", "--rm", "-w", "rel", "busybox", "pwd"); r.code != 125 || !strings.Contains(r.stderr, "absolute path") {
		t.Errorf("run -w rel: exit %d, stderr %q; want 125 asking for an absolute path", r.code, r.stderr)
	}
	start = time.Now()
	e.must("stop", "-t", "1", "pid1")
	if d := time.Since(start); d < time.Second {
		t.Errorf("stop of a PID 1 that ignores SIGTERM took %s, want the 1 s timeout", d)
	}
	if st := e.state("pid1"); st["ExitCode"].(float64) != 137 {
		t.Errorf("after stop: exit code %v, want 137 (killed)", st["ExitCode"])
	}
	e.must("rm", "pid1")
	// exec on a stopped container is a kiln error.
	if r := e.kiln("exec", "life", "true"); r.code != 125 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("exec on a stopped container: exit %d, stderr %q; want 125 and one line", r.code, r.stderr)
	}
	e.must("start", "life")
	e.must("restart", "-t", "1", "life")
	if got := e.status("life"); got != "running" {
		t.Errorf("status after restart %q", got)
	}
	e.must("kill", "life")
	if r := e.must("wait", "life"); strings.TrimSpace(r.stdout) != "137" {
		t.Errorf("wait after kill printed %q, want 137", r.stdout)
	}
	e.must("rename", "life", "life2")
	if r := e.kiln("rm", "life"); r.code == 0 {
		t.Errorf("rm of the old name succeeded")
	}
	e.must("rm", "life2")
	if r := e.must("ps", "-aq"); strings.TrimSpace(r.stdout) != "" {
		t.Errorf("ps -aq after rm: %q", r.stdout)
	}
	if d := e.containerDirs(); len(d) != 0 {
		t.Errorf("container dirs left: %v", d)
	}
	checkNoLeaks(t, before, "the lifecycle")
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if ok() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestContainerExitCodesAndErrors(t *testing.T) {
	e := newContainerEnv(t)
	srcDir := t.TempDir()
	e.must("run", "-d", "--name", "taken", "-p", "127.0.0.1:18181:80", "-v", "used:/data", "busybox", "sleep", "1000")
	before := snapshotHost(t, e.root)
	dirsBefore := e.containerDirs()
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"exit status", []string{"run", "--rm", "busybox", "sh", "-c", "exit 3"}, 3},
		{"not found", []string{"run", "--rm", "busybox", "no-such-command"}, 127},
		{"not executable", []string{"run", "--rm", "busybox", "/etc/passwd"}, 126},
		{"bad flag", []string{"run", "--no-such-flag", "busybox"}, 125},
		{"unknown image", []string{"run", "--rm", "--pull", "never", "no-such-image"}, 125},
		{"port in use", []string{"run", "--rm", "-p", "127.0.0.1:18181:80", "busybox", "true"}, 125},
		{"missing bind source", []string{"run", "--rm", "-v", filepath.Join(srcDir, "missing") + ":/x", "busybox", "true"}, 125},
		{"name taken", []string{"run", "--rm", "--name", "taken", "busybox", "true"}, 125},
		{"bad restart", []string{"run", "--restart", "sometimes", "busybox", "true"}, 125},
		{"unknown network", []string{"run", "--rm", "--network", "no-such-net", "busybox", "true"}, 125},
		{"unknown security option", []string{"run", "--rm", "--security-opt", "apparmor=x", "busybox", "true"}, 125},
		{"seccomp refuses", []string{"run", "--rm", "busybox", "unshare", "-U", "true"}, 1},
		{"volume in use", []string{"volume", "rm", "used"}, 125},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.kiln(tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", r.code, tc.code, r.stdout, r.stderr)
			}
			if tc.code == 125 {
				if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 {
					t.Errorf("want a one-line error, got:\n%s", r.stderr)
				}
			}
			checkNoLeaks(t, before, tc.name)
			if got := e.containerDirs(); !slices.Equal(got, dirsBefore) {
				t.Errorf("container dirs %v, want %v", got, dirsBefore)
			}
		})
	}
	for _, opt := range []string{"seccomp=unconfined", "seccomp:unconfined"} {
		if r := e.must("run", "--rm", "--security-opt", opt, "busybox", "grep", "^Seccomp:", "/proc/self/status"); r.stdout != "Seccomp:\t0\n" {
			t.Errorf("--security-opt %s: %q, want no seccomp filter", opt, r.stdout)
		}
	}
	e.must("kill", "taken")
	if r := e.must("wait", "taken"); strings.TrimSpace(r.stdout) != "137" {
		t.Errorf("wait after kill: %q, want 137", r.stdout)
	}
}

func TestRunInteractiveTTY(t *testing.T) {
	e := newContainerEnv(t)
	cmd := exec.Command(e.bin, "--root", e.root, "run", "-it", "--rm", "busybox", "sh")
	cmd.Env = append(os.Environ(), "TERM=xterm")
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	pty.Setsize(ptmx, &pty.Winsize{Rows: 30, Cols: 100})
	out := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		io.Copy(&b, ptmx) // ends with EIO once kiln exits
		out <- b.String()
	}()
	time.Sleep(500 * time.Millisecond)
	io.WriteString(ptmx, "stty size; echo h''i; exit 3\r")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("kiln run -it did not exit; output so far lost")
	}
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Errorf("exit %d, want 3", code)
	}
	got := <-out
	if !strings.Contains(got, "hi\r\n") {
		t.Errorf("output lacks hi:\n%q", got)
	}
	if !strings.Contains(got, "30 100") {
		t.Errorf("the terminal size did not reach the container:\n%q", got)
	}
}

// ptySession is kiln run in a pseudo terminal, as a user at a terminal runs
// it.
type ptySession struct {
	t    testing.TB
	cmd  *exec.Cmd
	ptmx *os.File
	out  chan string
	done chan error
}

func (e *env) ptyKiln(args ...string) *ptySession {
	e.t.Helper()
	cmd := exec.Command(e.bin, append([]string{"--root", e.root}, args...)...)
	cmd.Env = append(os.Environ(), "TERM=xterm")
	ptmx, err := pty.Start(cmd)
	if err != nil {
		e.t.Fatal(err)
	}
	p := &ptySession{t: e.t, cmd: cmd, ptmx: ptmx, out: make(chan string, 1), done: make(chan error, 1)}
	go func() {
		var b bytes.Buffer
		io.Copy(&b, ptmx) // ends with EIO once kiln exits
		p.out <- b.String()
	}()
	go func() { p.done <- cmd.Wait() }()
	e.t.Cleanup(func() {
		cmd.Process.Kill()
		ptmx.Close()
	})
	return p
}

// typeIn writes s to the terminal after the session had time to start.
func (p *ptySession) typeIn(s string) {
	time.Sleep(500 * time.Millisecond)
	io.WriteString(p.ptmx, s)
}

// exit waits for kiln to exit and returns its status and output.
func (p *ptySession) exit() (int, string) {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		p.t.Fatalf("%v did not exit", p.cmd.Args)
	}
	return p.cmd.ProcessState.ExitCode(), <-p.out
}

func TestDetachKeys(t *testing.T) {
	e := newContainerEnv(t)
	// run -it: Ctrl-P Ctrl-Q leaves quietly (exit 0), the shell runs on.
	p := e.ptyKiln("run", "-it", "--name", "dk", "busybox", "sh")
	p.typeIn("echo o''ne\r")
	p.typeIn("\x10\x11")
	if code, out := p.exit(); code != 0 || !strings.Contains(out, "one") {
		t.Fatalf("run -it, then Ctrl-P Ctrl-Q: exit %d, want 0\n%q", code, out)
	}
	if st := e.status("dk"); st != "running" {
		t.Fatalf("after the detach the container is %s, want running", st)
	}
	// attach with other keys: exit 1 and docker's message. Ctrl-P alone
	// is typed into the shell, not held.
	p = e.ptyKiln("attach", "--detach-keys", "ctrl-a,x", "dk")
	p.typeIn("echo t''wo\r")
	p.typeIn("\x01x")
	if code, out := p.exit(); code != 1 || !strings.Contains(out, "two") || !strings.Contains(out, "read escape sequence") {
		t.Fatalf("attach, then Ctrl-A x: exit %d, want 1 with read escape sequence\n%q", code, out)
	}
	// exec -it: the exec'd shell survives the detach.
	p = e.ptyKiln("exec", "-it", "dk", "sh")
	p.typeIn("\x10\x11")
	if code, out := p.exit(); code != 1 {
		t.Fatalf("exec -it, then Ctrl-P Ctrl-Q: exit %d, want 1\n%q", code, out)
	}
	time.Sleep(300 * time.Millisecond)
	if r := e.must("exec", "dk", "ps", "-o", "args"); strings.Count(r.stdout, "sh\n") < 2 {
		t.Errorf("after detaching from exec, the exec'd shell is gone:\n%s", r.stdout)
	}
	// Back in with the default keys; the shell's own exit ends attach.
	p = e.ptyKiln("attach", "dk")
	p.typeIn("exit 5\r")
	if code, out := p.exit(); code != 5 {
		t.Fatalf("attach, then exit 5: exit %d\n%q", code, out)
	}
	if r := e.kiln("run", "--rm", "-it", "--detach-keys", "ctrl-1", "busybox", "true"); r.code != 125 || !strings.Contains(r.stderr, "invalid detach keys") {
		t.Errorf("bad --detach-keys: exit %d %s", r.code, r.stderr)
	}
	// Without the flag, the Docker config's detachKeys apply.
	cfg := t.TempDir()
	t.Setenv("DOCKER_CONFIG", cfg)
	os.WriteFile(filepath.Join(cfg, "config.json"), []byte(`{"detachKeys": "ctrl-b,y"}`), 0o600)
	p = e.ptyKiln("run", "-it", "--rm", "--name", "dk2", "busybox", "sh")
	p.typeIn("\x10\x11echo t''hree\r")
	p.typeIn("\x02y")
	if code, out := p.exit(); code != 0 || !strings.Contains(out, "three") {
		t.Fatalf("run -it with detachKeys ctrl-b,y in the Docker config: exit %d, want 0\n%q", code, out)
	}
	if st := e.status("dk2"); st != "running" {
		t.Fatalf("after the detach the --rm container is %s, want running", st)
	}
	e.must("kill", "dk2")
	os.WriteFile(filepath.Join(cfg, "config.json"), []byte(`{"detachKeys": "ctrl-"}`), 0o600)
	p = e.ptyKiln("run", "-it", "--rm", "busybox", "true")
	if code, out := p.exit(); code != 125 || !strings.Contains(out, "detachKeys") {
		t.Errorf("bad detachKeys in the Docker config: exit %d\n%q", code, out)
	}
}

func TestVolumes(t *testing.T) {
	e := newContainerEnv(t)
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "in.txt"), []byte("from host\n"), 0o644)
	r := e.must("run", "--rm", "-v", host+":/h", "busybox", "sh", "-c", "cat /h/in.txt; echo from container > /h/out.txt")
	if r.stdout != "from host\n" {
		t.Errorf("bind mount read %q", r.stdout)
	}
	if b, _ := os.ReadFile(filepath.Join(host, "out.txt")); string(b) != "from container\n" {
		t.Errorf("bind mount write: host sees %q", b)
	}
	if r := e.kiln("run", "--rm", "-v", host+":/h:ro", "busybox", "touch", "/h/x"); r.code == 0 {
		t.Errorf("write to a read-only bind succeeded")
	}
	// A named volume keeps data across containers.
	e.must("run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo persisted > /data/f")
	if r := e.must("run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f"); r.stdout != "persisted\n" {
		t.Errorf("named volume: %q", r.stdout)
	}
	if r := e.must("volume", "ls", "-q"); strings.TrimSpace(r.stdout) != "data" {
		t.Errorf("volume ls -q: %q", r.stdout)
	}
	// An anonymous volume goes with --rm.
	e.must("run", "--rm", "-v", "/anon", "busybox", "touch", "/anon/x")
	if r := e.must("volume", "ls", "-q"); strings.TrimSpace(r.stdout) != "data" {
		t.Errorf("anonymous volume left after --rm: %q", r.stdout)
	}
	e.must("create", "--name", "user", "-v", "data:/data", "busybox", "true")
	if r := e.kiln("volume", "rm", "data"); r.code != 125 || !strings.Contains(r.stderr, "in use") {
		t.Errorf("volume rm of a used volume: exit %d %s", r.code, r.stderr)
	}
	e.must("rm", "user")
	e.must("volume", "rm", "data")
	// An empty volume mounted over image content starts as a copy of it,
	// the directory's owner and mode included; one that has files stays
	// as it is, and nocopy keeps it empty.
	if r := e.must("run", "--rm", "-v", "etc:/etc", "busybox", "sh", "-c", "cat /etc/passwd | head -1; stat -c '%a %u' /etc"); r.stdout != "root:x:0:0:root:/root:/bin/sh\n755 0\n" {
		t.Errorf("a new volume over /etc holds %q, want the image's /etc", r.stdout)
	}
	e.must("run", "--rm", "-v", "etc:/etc", "busybox", "sh", "-c", "rm /etc/group; echo mine > /etc/passwd")
	if r := e.must("run", "--rm", "-v", "etc:/x", "busybox", "sh", "-c", "cat /x/passwd; ls /x | grep -c group || true"); r.stdout != "mine\n0\n" {
		t.Errorf("a volume with files was filled again: %q", r.stdout)
	}
	if r := e.must("run", "--rm", "-v", "empty:/etc:nocopy", "busybox", "ls", "/etc"); r.stdout != "" {
		t.Errorf("a nocopy volume over /etc holds %q, want nothing", r.stdout)
	}
	e.must("volume", "rm", "etc", "empty")
	// --mount, docker's long form, for the same three kinds.
	if r := e.must("run", "--rm", "--mount", "type=bind,source="+host+",target=/h,readonly", "--mount", "type=tmpfs,target=/t,tmpfs-mode=1770",
		"--mount", "source=long,target=/v", "busybox", "sh", "-c", "cat /h/in.txt; stat -c %a /t; touch /h/x 2>/dev/null || echo ro; ls /v | head -1"); r.stdout != "from host\n1770\nro\n" {
		t.Errorf("--mount: %q", r.stdout)
	}
	e.must("volume", "rm", "long")
	// --volumes-from borrows another container's volumes; --rm of the
	// borrower leaves them, :ro makes them read-only.
	e.must("create", "--name", "vsrc", "-v", "/anon", "busybox", "true")
	e.must("run", "--rm", "--volumes-from", "vsrc", "busybox", "sh", "-c", "echo kept > /anon/f")
	if r := e.must("run", "--rm", "--volumes-from", "vsrc:ro", "busybox", "sh", "-c", "cat /anon/f; touch /anon/g 2>/dev/null || echo ro"); r.stdout != "kept\nro\n" {
		t.Errorf("--volumes-from: %q", r.stdout)
	}
	e.must("rm", "-v", "vsrc")
	e.must("volume", "create", "v2")
	e.must("volume", "inspect", "v2")
	if r := e.must("volume", "prune", "-f"); !strings.Contains(r.stdout, "v2") {
		t.Errorf("volume prune: %q", r.stdout)
	}
	// tmpfs and read-only root.
	if r := e.must("run", "--rm", "--read-only", "--tmpfs", "/scratch", "busybox", "sh", "-c", "touch /scratch/a && ! touch /b 2>/dev/null && echo ok"); r.stdout != "ok\n" {
		t.Errorf("--read-only --tmpfs: %q", r.stdout)
	}
	// --tmpfs is noexec unless asked otherwise, as under docker run.
	if r := e.must("run", "--rm", "--tmpfs", "/t1", "--tmpfs", "/t2:exec,size=1m", "busybox", "sh", "-c", "grep -E ' /t[12] ' /proc/mounts | cut -d' ' -f2,4; grep ' /sys ' /proc/mounts | cut -d' ' -f1"); r.stdout != "/t1 rw,nosuid,nodev,noexec,relatime\n/t2 rw,nosuid,nodev,relatime,size=1024k\nsysfs\n" {
		t.Errorf("--tmpfs options and /sys: %q", r.stdout)
	}
}

// freePort returns a TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func httpGet(t *testing.T, url string) (string, error) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	var lastErr error
	for i := 0; i < 30; i++ {
		resp, err := client.Get(url)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b), err
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	return "", lastErr
}

func TestPublishPort(t *testing.T) {
	e := newContainerEnv(t)
	before := snapshotHost(t, e.root)
	www := t.TempDir()
	os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from kiln\n"), 0o644)
	port := freePort(t)
	e.must("run", "-d", "--name", "web", "-p", fmt.Sprintf("%d:80", port), "-v", www+":/www:ro", "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
	body, err := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil || body != "hello from kiln\n" {
		t.Fatalf("GET through the published port: %q, %v", body, err)
	}
	if r := e.must("port", "web"); strings.TrimSpace(r.stdout) != fmt.Sprintf("80/tcp -> 0.0.0.0:%d", port) {
		t.Errorf("port: %q", r.stdout)
	}
	if r := e.must("ps"); !strings.Contains(r.stdout, fmt.Sprintf("0.0.0.0:%d->80/tcp", port)) {
		t.Errorf("ps lacks the port:\n%s", r.stdout)
	}
	e.must("rm", "-f", "web")
	// -P publishes the exposed ports (here from --expose) on free ports.
	e.must("run", "-d", "--name", "webp", "-P", "--expose", "80", "--expose", "53/udp", "-v", www+":/www:ro", "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
	r := e.must("port", "webp", "80/tcp")
	_, hostPort, ok := strings.Cut(strings.TrimSpace(r.stdout), ":")
	if !ok || hostPort == "0" {
		t.Fatalf("port webp 80/tcp: %q", r.stdout)
	}
	if body, err := httpGet(t, "http://127.0.0.1:"+hostPort+"/"); err != nil || body != "hello from kiln\n" {
		t.Errorf("GET through the -P port %s: %q, %v", hostPort, body, err)
	}
	if r := e.must("port", "webp"); !strings.Contains(r.stdout, "53/udp -> 0.0.0.0:") {
		t.Errorf("port webp: %q lacks 53/udp", r.stdout)
	}
	e.must("rm", "-f", "webp")
	checkNoLeaks(t, before, "a published port")
	if _, err := (&http.Client{Timeout: time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
		t.Errorf("the port still answers after rm -f")
	}
}

func TestUserNetworkByName(t *testing.T) {
	e := newContainerEnv(t)
	before := snapshotHost(t, e.root)
	e.must("network", "create", "e2enet")
	t.Cleanup(func() { e.kiln("network", "rm", "e2enet") })
	if r := e.must("network", "ls"); !strings.Contains(r.stdout, "e2enet") || !strings.Contains(r.stdout, "bridge") {
		t.Errorf("network ls:\n%s", r.stdout)
	}
	www := t.TempDir()
	os.WriteFile(filepath.Join(www, "index.html"), []byte("web by name\n"), 0o644)
	e.must("run", "-d", "--name", "web", "--network", "e2enet", "--network-alias", "www", "--network-alias", "site", "-v", www+":/www:ro", "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
	r := e.kiln("run", "--rm", "--network", "e2enet", "busybox", "sh", "-c",
		"for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://web/ && exit 0; sleep 0.3; done; exit 1")
	if r.code != 0 || r.stdout != "web by name\n" {
		t.Fatalf("wget http://web/: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	// Its --network-alias names too.
	r = e.kiln("run", "--rm", "--network", "e2enet", "busybox", "sh", "-c", "wget -q -O - http://www/ && wget -q -O - http://site/")
	if r.code != 0 || r.stdout != "web by name\nweb by name\n" {
		t.Errorf("wget the aliases: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	e.refuses([]string{"run", "--rm", "--network-alias", "x"}, [][]string{{"--network", "bridge"}, {"--network", "none"}, {"--network", "host"}})
	if r := e.kiln("network", "rm", "e2enet"); r.code == 0 {
		t.Errorf("network rm succeeded while a container is attached")
	}
	e.must("rm", "-f", "web")
	e.must("network", "rm", "e2enet")
	checkNoLeaks(t, before, "a user network")
}

// TestJoinContainerNamespaces checks --network container:NAME (the other
// container's network namespace, host name and /etc/hosts: a server it
// runs on 127.0.0.1 answers) and --pid container:NAME (its processes are
// visible, the new one is not PID 1, and it dies with the other's PID 1),
// and the errors docker run gives.
func TestJoinContainerNamespaces(t *testing.T) {
	e := newContainerEnv(t)
	e.must("run", "-d", "--name", "donor", "--hostname", "donorhost", "--network", "none", "busybox", "sh", "-c", "echo hello-from-donor | nc -l -p 7000; exec sleep 60")
	r := e.kiln("run", "--rm", "--network", "container:donor", "busybox", "sh", "-c",
		"hostname; grep -c localhost /etc/hosts; ip -o link | wc -l; for i in 1 2 3 4 5 6 7 8 9 10; do nc 127.0.0.1 7000 && exit 0; sleep 0.2; done; exit 1")
	if r.code != 0 || r.stdout != "donorhost\n2\n1\nhello-from-donor\n" {
		t.Errorf("--network container:donor: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = e.kiln("run", "--rm", "--pid", "container:donor", "busybox", "sh", "-c", "[ $$ != 1 ] && echo not-pid1; cat /proc/1/comm")
	if r.code != 0 || r.stdout != "not-pid1\nsleep\n" {
		t.Errorf("--pid container:donor: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	e.refuses([]string{"run", "--rm"}, [][]string{
		{"--network", "container:donor", "--hostname", "x"},
		{"--network", "container:donor", "-p", "8080:80"},
		{"--network", "container:donor", "--dns", "10.0.0.1"},
		{"--network", "container:no-such-container"},
		{"--pid", "container:no-such-container"},
	})
	// A joiner dies with the PID 1 of the namespace it joined.
	e.must("run", "-d", "--name", "joiner", "--pid", "container:donor", "busybox", "sleep", "60")
	e.must("stop", "-t", "1", "donor")
	if r := e.must("wait", "joiner"); r.stdout != "137\n" {
		t.Errorf("joiner after the donor stopped: wait %q", r.stdout)
	}
	// Neither joins a container that is not running.
	for _, flag := range []string{"--network", "--pid"} {
		r := e.kiln("run", "--rm", flag, "container:donor", "busybox", "true")
		if r.code != 125 || !strings.Contains(r.stderr, "non running container") {
			t.Errorf("%s container:donor (stopped): exit %d %s", flag, r.code, r.stderr)
		}
	}
}

// TestStaticIP checks --ip: the address on a user network created with
// --subnet, refused when taken, outside the subnet, on a network without a
// subnet of the user's or on the built-in ones; and --mac-address.
func TestStaticIP(t *testing.T) {
	e := newContainerEnv(t)
	e.must("network", "create", "--subnet", "10.123.45.0/24", "ipnet")
	t.Cleanup(func() { e.kiln("network", "rm", "ipnet") })
	e.must("network", "create", "autonet")
	t.Cleanup(func() { e.kiln("network", "rm", "autonet") })
	e.must("run", "-d", "--name", "fixed", "--network", "ipnet", "--ip", "10.123.45.67", "busybox", "sleep", "60")
	if r := e.must("exec", "fixed", "sh", "-c", "ip -o -4 addr show eth0 | grep -o '10.123.45.67/24'"); r.stdout != "10.123.45.67/24\n" {
		t.Errorf("address in the container: %q", r.stdout)
	}
	if r := e.kiln("run", "--rm", "--network", "ipnet", "busybox", "grep", "fixed", "/etc/hosts"); r.code != 0 || !strings.HasPrefix(r.stdout, "10.123.45.67\t") {
		t.Errorf("a peer's hosts file: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	e.refuses([]string{"run", "--rm"}, [][]string{
		{"--network", "ipnet", "--ip", "10.123.45.67"}, // taken
		{"--network", "ipnet", "--ip", "10.9.9.9"},     // outside
		{"--network", "ipnet", "--ip", "10.123.45.1"},  // the gateway
		{"--network", "autonet", "--ip", "10.99.0.5"},  // no user subnet
		{"--network", "bridge", "--ip", "10.123.45.9"},
		{"--network", "ipnet", "--ip", "not-an-ip"},
	})
	// --mac-address on a bridge network.
	if r := e.must("run", "--rm", "--network", "ipnet", "--mac-address", "02:42:0a:7b:2d:09", "busybox", "cat", "/sys/class/net/eth0/address"); r.stdout != "02:42:0a:7b:2d:09\n" {
		t.Errorf("--mac-address: eth0 has %q", r.stdout)
	}
	e.refuses([]string{"run", "--rm"}, [][]string{{"--mac-address", "nope"}, {"--network", "none", "--mac-address", "02:42:0a:7b:2d:09"}})
	e.must("rm", "-f", "fixed")
	// Free again once its holder is gone.
	e.must("run", "--rm", "--network", "ipnet", "--ip", "10.123.45.67", "busybox", "true")
}

// TestRunResourceFlags checks what --memory, --memory-swap,
// --memory-reservation, --cpu-shares, --cpu-period, --cpu-quota and
// --cpuset-cpus write into the container's cgroup (as dockerd 20.10 does on
// v1; runc's conversions on v2), the default swap (twice the memory), and
// the combinations docker refuses.
func TestRunResourceFlags(t *testing.T) {
	e := newContainerEnv(t)
	script := `cd /sys/fs/cgroup
if [ -e memory.max ]; then
  cat memory.max; s=$(cat memory.swap.max); echo $((s + $(cat memory.max))); cat memory.low cpu.weight cpu.max cpuset.cpus
else
  cat memory/memory.limit_in_bytes; cat memory/memory.memsw.limit_in_bytes 2>/dev/null || echo 104857600; cat memory/memory.soft_limit_in_bytes cpu/cpu.shares; echo "$(cat cpu/cpu.cfs_quota_us) $(cat cpu/cpu.cfs_period_us)"; cat cpuset/cpuset.cpus
fi
grep Cpus_allowed_list /proc/self/status | cut -f2`
	r := e.kiln("run", "--rm", "--network", "none", "-m", "64m", "--memory-swap", "100m", "--memory-reservation", "32m", "--cpu-shares", "512",
		"--cpu-period", "50000", "--cpu-quota", "25000", "--cpuset-cpus", "0", "busybox", "sh", "-c", script)
	if r.code != 0 {
		if strings.Contains(r.stderr, "not available") {
			t.Skipf("a cgroup controller is missing here: %s", r.stderr)
		}
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	v1 := "67108864\n104857600\n33554432\n512\n25000 50000\n0\n0\n"
	v2 := "67108864\n104857600\n33554432\n20\n25000 50000\n0\n0\n" // weight 1+(512-2)*9999/262142
	if r.stdout != v1 && r.stdout != v2 {
		t.Errorf("cgroup files: %q, want %q (v1) or %q (v2)", r.stdout, v1, v2)
	}
	// Without --memory-swap the container may swap as much as its memory.
	r = e.must("run", "--rm", "--network", "none", "-m", "64m", "busybox", "sh", "-c",
		"cd /sys/fs/cgroup; if [ -e memory.swap.max ]; then cat memory.swap.max; elif [ -e memory/memory.memsw.limit_in_bytes ]; then echo $(( $(cat memory/memory.memsw.limit_in_bytes) - 67108864 )); else echo 67108864; fi")
	if r.stdout != "67108864\n" {
		t.Errorf("default swap: %q, want as much as the memory", r.stdout)
	}
	e.refuses([]string{"run", "--rm", "--network", "none"}, [][]string{
		{"--memory-swap", "100m"},
		{"-m", "64m", "--memory-swap", "32m"},
		{"-m", "64m", "--memory-reservation", "128m"},
		{"--cpus", "1", "--cpu-quota", "10000"},
		{"--cpu-period", "100"},
		{"--cpu-quota", "10"},
		{"--cpuset-cpus", "x"},
		{"--cpuset-cpus", "4096"},
	})
}

// TestSysctl checks --sysctl: namespaced parameters set in the container
// (the host's stay), and the ones docker run refuses.
func TestSysctl(t *testing.T) {
	e := newContainerEnv(t)
	hostPort, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	r := e.must("run", "--rm", "--network", "none", "--sysctl", "net.ipv4.ip_unprivileged_port_start=80", "--sysctl", "kernel.shmmax=1000000",
		"busybox", "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start", "/proc/sys/kernel/shmmax")
	if r.stdout != "80\n1000000\n" {
		t.Errorf("sysctls in the container: %q", r.stdout)
	}
	if now, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); string(now) != string(hostPort) {
		t.Errorf("the host's ip_unprivileged_port_start changed: %q -> %q", hostPort, now)
	}
	e.refuses([]string{"run", "--rm"}, [][]string{
		{"--network", "host", "--sysctl", "net.ipv4.ip_forward=1"},
		{"--network", "none", "--sysctl", "kernel.hostname=x"},
		{"--network", "none", "--ipc", "host", "--sysctl", "kernel.shmmax=1"},
		{"--network", "none", "--sysctl", "net.ipv4.no_such_parameter=1"},
		{"--network", "none", "--sysctl", "novalue"},
	})
}

// TestRunProcessKnobs checks --domainname, --oom-score-adj,
// --device-cgroup-rule (read of a node the container makes, write
// refused), --memory-swappiness and --oom-kill-disable (cgroup v1 only),
// --userns host and the values docker refuses.
func TestRunProcessKnobs(t *testing.T) {
	e := newContainerEnv(t)
	r := e.must("run", "--rm", "--network", "none", "--userns", "host", "--domainname", "example.org", "--oom-score-adj", "500",
		"--device-cgroup-rule", "c 10:229 r", "busybox", "sh", "-c",
		"cat /proc/sys/kernel/domainname /proc/self/oom_score_adj; mknod /tmp/f c 10 229; (: < /tmp/f) && echo read; (: > /tmp/f) 2>/dev/null || echo write-refused")
	if r.stdout != "example.org\n500\nread\nwrite-refused\n" {
		t.Errorf("output %q", r.stdout)
	}
	r = e.must("run", "--rm", "--network", "none", "-m", "64m", "--memory-swappiness", "10", "--oom-kill-disable", "busybox", "sh", "-c",
		"cd /sys/fs/cgroup/memory 2>/dev/null && cat memory.swappiness && grep oom_kill_disable memory.oom_control || echo v2")
	if r.stdout != "10\noom_kill_disable 1\n" && r.stdout != "v2\n" {
		t.Errorf("swappiness and OOM killer: %q", r.stdout)
	}
	e.refuses([]string{"run", "--rm", "--network", "none"}, [][]string{
		{"--oom-score-adj", "2000"},
		{"--device-cgroup-rule", "x 1:2 r"},
		{"--device-cgroup-rule", "c 1 r"},
		{"--memory-swappiness", "200"},
		{"--userns", "remap"},
		{"--uts", "host", "--domainname", "x"},
	})
}

// TestManagementCommands checks docker's grouped commands (container ls,
// image rm, system df, ...) and the prunes: stopped containers go, a
// running one stays; user networks no container names go; image prune -a
// untags images no container uses and keeps the ones that one does.
func TestManagementCommands(t *testing.T) {
	e := newContainerEnv(t)
	e.must("run", "--name", "stopped", "busybox", "true")
	e.must("create", "--name", "created", "busybox", "true")
	e.must("run", "-d", "--name", "running", "busybox", "sleep", "60")
	e.must("network", "create", "unusednet")
	e.must("network", "create", "namednet")
	t.Cleanup(func() { e.kiln("network", "rm", "namednet"); e.kiln("network", "rm", "unusednet") })
	e.must("create", "--name", "onnet", "--network", "namednet", "busybox", "true")
	if r := e.must("container", "ls", "-a"); strings.Count(r.stdout, "\n") != 5 {
		t.Errorf("container ls -a:\n%s", r.stdout)
	}
	e.must("container", "rm", "onnet")
	if r := e.must("network", "prune", "-f"); r.stdout != "Deleted Networks:\nnamednet\nunusednet\n\n" {
		t.Errorf("network prune: %q", r.stdout)
	}
	r := e.must("container", "prune", "-f")
	if !strings.HasPrefix(r.stdout, "Deleted Containers:\n") || strings.Count(r.stdout, "\n") != 4 {
		t.Errorf("container prune: %q", r.stdout)
	}
	if r := e.must("container", "list", "-a", "-q"); strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("left after container prune: %q", r.stdout)
	}
	ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo unused > /u\n"})
	e.must("build", "-q", "-t", "unused:1", ctx)
	e.must("tag", "busybox", "busybox:kept")
	if r := e.must("image", "prune", "-a", "-f"); !strings.Contains(r.stdout, "untagged: unused:1\n") || strings.Contains(r.stdout, "busybox") {
		t.Errorf("image prune -a: %q", r.stdout)
	}
	if r := e.must("image", "ls"); strings.Contains(r.stdout, "unused") || !strings.Contains(r.stdout, "kept") {
		t.Errorf("image ls after prune -a:\n%s", r.stdout)
	}
	e.must("image", "rm", "busybox:kept")
	e.must("system", "df")
	e.must("builder", "prune", "-f")
	e.must("system", "prune", "-f")
	if r := e.must("ps", "-q"); strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("system prune touched the running container: %q", r.stdout)
	}
}

// TestFormatFlags checks docker's --format templates on inspect, ps,
// images and info, as scripts use them.
func TestFormatFlags(t *testing.T) {
	e := newContainerEnv(t)
	e.must("run", "-d", "--name", "fmt", "-l", "team=kiln", "busybox", "sleep", "60")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect", "-f", "{{.State.Status}} {{.State.Running}} {{.Name}} {{.Config.Image}}", "fmt"}, "running true /fmt busybox\n"},
		{[]string{"inspect", "--format", "{{index .RepoTags 0}} {{.Os}}", "busybox"}, "busybox:latest linux\n"},
		{[]string{"ps", "--format", "{{.Names}} {{.State}} {{.Labels}}"}, "fmt running team=kiln\n"},
		{[]string{"ps", "--format", "table {{.Names}}\t{{.Image}}"}, "NAMES   IMAGE\nfmt     busybox\n"},
		{[]string{"images", "--format", "{{.Repository}}:{{.Tag}}", "busybox"}, "busybox:latest\n"},
		{[]string{"info", "--format", "{{.ContainersRunning}} {{.OSType}}"}, "1 linux\n"},
		{[]string{"network", "ls", "--format", "{{.Name}}"}, "bridge\nhost\nnone\n"},
		{[]string{"volume", "ls", "--format", "{{.Name}} {{.Driver}}"}, ""},
	} {
		if r := e.must(tc.args...); r.stdout != tc.want {
			t.Errorf("%q: %q, want %q", tc.args, r.stdout, tc.want)
		}
	}
	if r := e.kiln("ps", "--format", "{{.Nope"); r.code == 0 {
		t.Errorf("a broken template: exit 0")
	}
}

// TestStats checks kiln stats --no-stream: a busy container uses CPU, a
// sleeping one about none, the memory limit shows, and --format works.
func TestStats(t *testing.T) {
	e := newContainerEnv(t)
	e.must("run", "-d", "--name", "busy", "-m", "64m", "busybox", "sh", "-c", "while :; do :; done")
	e.must("run", "-d", "--name", "idle", "busybox", "sleep", "60")
	r := e.must("stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}", "busy", "idle")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("stats: %q", r.stdout)
	}
	var busyCPU, idleCPU float64
	var busyMem, idleMem, busyPids string
	fmt.Sscanf(strings.Replace(lines[0], "%", "", 1), "busy %f %s / 64MiB %s", &busyCPU, &busyMem, &busyPids)
	fmt.Sscanf(strings.Replace(lines[1], "%", "", 1), "idle %f %s", &idleCPU, &idleMem)
	if busyCPU < 20 || idleCPU > 20 || busyPids != "1" || !strings.Contains(lines[0], "/ 64MiB ") {
		t.Errorf("stats: %q (busy %.1f%% %s pids %s, idle %.1f%%)", r.stdout, busyCPU, busyMem, busyPids, idleCPU)
	}
	if r := e.must("stats", "--no-stream"); !strings.HasPrefix(r.stdout, "CONTAINER ID   NAME   CPU %") || strings.Count(r.stdout, "\n") != 3 {
		t.Errorf("stats table:\n%s", r.stdout)
	}
}

// TestUpdate checks kiln update: the limits of a running container
// change in its cgroup and stay for its next run; docker's refusals hold.
func TestUpdate(t *testing.T) {
	e := newContainerEnv(t)
	e.must("run", "-d", "--name", "upd", "-m", "64m", "busybox", "sleep", "60")
	if r := e.must("update", "-m", "128m", "--pids-limit", "50", "upd"); r.stdout != "upd\n" {
		t.Errorf("update said %q", r.stdout)
	}
	script := "cd /sys/fs/cgroup; if [ -e memory.max ]; then cat memory.max pids.max; else cat memory/memory.limit_in_bytes pids/pids.max; fi"
	if r := e.must("exec", "upd", "sh", "-c", script); r.stdout != "134217728\n50\n" {
		t.Errorf("limits after update: %q", r.stdout)
	}
	e.must("update", "-m", "32m", "upd") // shrinking works too
	e.must("restart", "-t", "0", "upd")
	if r := e.must("exec", "upd", "sh", "-c", script); r.stdout != "33554432\n50\n" {
		t.Errorf("limits after a restart: %q", r.stdout)
	}
	if r := e.must("inspect", "-f", "{{.HostConfig.Memory}}", "upd"); r.stdout != "33554432\n" {
		t.Errorf("inspect after update: %q", r.stdout)
	}
	e.must("update", "--cpus", "0.5", "upd")
	for _, args := range [][]string{{"--cpu-quota", "20000", "upd"}, {"--memory-swap", "16m", "upd"}, {"-m", "64m", "no-such-container"}, {"--device-read-iops", "/dev/null:1", "upd"}} {
		if r := e.kiln(append([]string{"update"}, args...)...); r.code == 0 {
			t.Errorf("update %q: exit 0", args)
		}
	}
}

// TestShareIPC checks --ipc shareable and --ipc container:NAME: the joiner
// is in the donor's IPC namespace and sees its /dev/shm; a container that
// is not shareable cannot be joined, as under docker run.
func TestShareIPC(t *testing.T) {
	e := newContainerEnv(t)
	e.must("run", "-d", "--name", "ipcdonor", "--ipc", "shareable", "busybox", "sh", "-c", "echo shared > /dev/shm/f; exec sleep 60")
	donorNS := e.must("exec", "ipcdonor", "readlink", "/proc/self/ns/ipc").stdout
	r := e.must("run", "--rm", "--ipc", "container:ipcdonor", "busybox", "sh", "-c", "for i in 1 2 3 4 5; do [ -e /dev/shm/f ] && break; sleep 0.2; done; readlink /proc/self/ns/ipc; cat /dev/shm/f")
	if r.stdout != donorNS+"shared\n" {
		t.Errorf("joiner: %q, want the donor's namespace %q and its /dev/shm", r.stdout, donorNS)
	}
	if r := e.must("run", "--rm", "busybox", "sh", "-c", "readlink /proc/self/ns/ipc; ls /dev/shm | wc -l"); r.stdout == donorNS+"1\n" || !strings.HasSuffix(r.stdout, "\n0\n") {
		t.Errorf("a private container: %q", r.stdout)
	}
	e.must("run", "-d", "--name", "ipcprivate", "busybox", "sleep", "60")
	e.refuses([]string{"run", "--rm"}, [][]string{{"--ipc", "container:ipcprivate"}, {"--ipc", "container:no-such"}, {"--ipc", "bogus"}})
}

// TestRunAttach checks kiln run -a: only the streams named are copied.
func TestRunAttach(t *testing.T) {
	e := newContainerEnv(t)
	script := "echo out; echo err >&2; exit 3"
	for _, tc := range []struct {
		attach         []string
		stdout, stderr string
	}{
		{nil, "out\n", "err\n"},
		{[]string{"-a", "stdout"}, "out\n", ""},
		{[]string{"-a", "STDERR"}, "", "err\n"},
	} {
		r := e.kiln(append(append([]string{"run", "--rm"}, tc.attach...), "busybox", "sh", "-c", script)...)
		if r.code != 3 || r.stdout != tc.stdout || r.stderr != tc.stderr {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", tc.attach, r.code, r.stdout, r.stderr)
		}
	}
	e.refuses([]string{"run", "--rm"}, [][]string{{"-a", "bogus"}, {"-d", "-a", "stdout"}})
}

// TestCgroupParent checks --cgroup-parent: the container's cgroup is made
// below it (in every hierarchy), and a path with .. is refused.
func TestCgroupParent(t *testing.T) {
	e := newContainerEnv(t)
	parent := fmt.Sprintf("kiln-e2e-parent-%d", os.Getpid())
	t.Cleanup(func() {
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + parent)
		for _, d := range append(dirs, "/sys/fs/cgroup/"+parent) {
			os.Remove(d)
		}
	})
	r := e.must("run", "--rm", "--cgroup-parent", "/"+parent, "busybox", "cat", "/proc/self/cgroup")
	if !strings.Contains(r.stdout, "/"+parent+"/") {
		t.Errorf("/proc/self/cgroup does not show the parent %s:\n%s", parent, r.stdout)
	}
	e.refuses([]string{"run", "--rm"}, [][]string{{"--cgroup-parent", "../escape"}})
}

// TestIpcNoneAndCgroupns checks --ipc none (no /dev/shm) and --cgroupns
// private (the container's cgroup is its root, for exec'd processes too),
// and that without it the host's paths show, as docker run on cgroup v1.
func TestIpcNoneAndCgroupns(t *testing.T) {
	e := newContainerEnv(t)
	if r := e.must("run", "--rm", "--ipc", "none", "busybox", "sh", "-c", "[ -e /dev/shm ] && echo shm || echo no-shm"); r.stdout != "no-shm\n" {
		t.Errorf("--ipc none: %q", r.stdout)
	}
	e.must("run", "-d", "--name", "cgns", "--cgroupns", "private", "busybox", "sleep", "60")
	r := e.must("exec", "cgns", "cat", "/proc/self/cgroup")
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if !strings.HasSuffix(line, ":/") {
			t.Errorf("--cgroupns private, an exec'd process: %q is not at the root", line)
		}
	}
	if r = e.must("run", "--rm", "busybox", "cat", "/proc/self/cgroup"); !strings.Contains(r.stdout, "/kiln/") {
		t.Errorf("default cgroup namespace: %q, want the host's paths", r.stdout)
	}
	e.refuses([]string{"run", "--rm"}, [][]string{{"--cgroupns", "bogus"}, {"--ipc", "bogus"}})
}

// TestBlockIOFlags checks --device-read-bps and --device-write-iops on
// the device holding the store, and the refusals; --blkio-weight is
// written where the kernel keeps weights and dropped with docker's
// warning elsewhere.
func TestBlockIOFlags(t *testing.T) {
	e := newContainerEnv(t)
	var st syscall.Stat_t
	if err := syscall.Stat(e.root, &st); err != nil {
		t.Fatal(err)
	}
	dev := ""
	ents, _ := os.ReadDir("/dev")
	for _, en := range ents {
		var ds syscall.Stat_t
		p := "/dev/" + en.Name()
		if syscall.Stat(p, &ds) == nil && ds.Mode&syscall.S_IFMT == syscall.S_IFBLK && ds.Rdev == st.Dev {
			dev = p
			break
		}
	}
	if dev == "" {
		t.Skipf("no block device node in /dev for the store's filesystem (%d:%d)", unix.Major(st.Dev), unix.Minor(st.Dev))
	}
	want := fmt.Sprintf("%d:%d 1048576\n%d:%d 100\n", unix.Major(st.Dev), unix.Minor(st.Dev), unix.Major(st.Dev), unix.Minor(st.Dev))
	script := "cd /sys/fs/cgroup; if [ -e io.max ]; then cat io.max; else cat blkio/blkio.throttle.read_bps_device blkio/blkio.throttle.write_iops_device; fi"
	r := e.must("run", "--rm", "--device-read-bps", dev+":1mb", "--device-write-iops", dev+":100", "--blkio-weight", "300", "busybox", "sh", "-c", script)
	if r.stdout != want && !strings.Contains(r.stdout, "rbps=1048576") {
		t.Errorf("throttles: %q, want %q", r.stdout, want)
	}
	if !blkioWeightSupported() && !strings.Contains(r.stderr, "Weight discarded") {
		t.Errorf("no warning for the dropped weight: %q", r.stderr)
	}
	e.refuses([]string{"run", "--rm"}, [][]string{{"--blkio-weight", "5"}, {"--device-read-bps", "/dev/null:1mb"}, {"--device-read-iops", dev + ":x"}})
}

// TestAttach checks kiln attach: the output of a running container until
// it exits (its status is kiln's), its stdin when it was started with -i,
// and the refusal of a stopped one.
func TestAttach(t *testing.T) {
	e := newContainerEnv(t)
	e.must("run", "-d", "--name", "att", "busybox", "sh", "-c", "sleep 1; echo late; echo err >&2; exit 4")
	if r := e.kiln("attach", "att"); r.code != 4 || r.stdout != "late\n" || r.stderr != "err\n" {
		t.Errorf("attach: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := e.kiln("attach", "att"); r.code != 125 || !strings.Contains(r.stderr, "stopped container") {
		t.Errorf("attach to a stopped container: exit %d %s", r.code, r.stderr)
	}
	e.must("run", "-d", "-i", "--name", "atti", "busybox", "sh", "-c", "read x; echo got $x")
	cmd := exec.Command(e.bin, "--root", e.root, "attach", "atti")
	cmd.Stdin = strings.NewReader("hello\n")
	if out, err := cmd.Output(); err != nil || string(out) != "got hello\n" {
		t.Errorf("attach with stdin: %q, %v", out, err)
	}
}

func TestPauseFreezes(t *testing.T) {
	e := newContainerEnv(t)
	dir := t.TempDir()
	e.must("run", "-d", "--name", "busy", "--network", "none", "-v", dir+":/c", "busybox", "sh", "-c",
		"i=0; while true; do i=$((i+1)); echo $i > /c/t; mv /c/t /c/n; done")
	counter := func() int {
		b, _ := os.ReadFile(filepath.Join(dir, "n"))
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	waitFor(t, "the loop", func() bool { return counter() > 0 })
	e.must("pause", "busy")
	if got := e.status("busy"); got != "paused" {
		t.Errorf("status %q, want paused", got)
	}
	if r := e.must("ps"); !strings.Contains(r.stdout, "(Paused)") {
		t.Errorf("ps:\n%s", r.stdout)
	}
	time.Sleep(200 * time.Millisecond)
	a := counter()
	time.Sleep(500 * time.Millisecond)
	if b := counter(); a != b || a == 0 {
		t.Errorf("the loop ran while paused: %d then %d", a, b)
	}
	e.must("unpause", "busy")
	waitFor(t, "the loop to go on", func() bool { return counter() > a })
	e.must("stop", "-t", "1", "busy")
}

func TestShimKilledShowsExited(t *testing.T) {
	e := newContainerEnv(t)
	before := snapshotHost(t, e.root)
	id := strings.TrimSpace(e.must("run", "-d", "busybox", "sleep", "1000").stdout)
	var st struct{ ShimPid int }
	b, err := os.ReadFile(filepath.Join(e.root, "containers", id, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &st)
	if st.ShimPid == 0 {
		t.Fatalf("no shim pid in state.json: %s", b)
	}
	syscall.Kill(st.ShimPid, syscall.SIGKILL)
	waitFor(t, "ps to show the container exited", func() bool {
		return strings.Contains(e.must("ps", "-a").stdout, "Exited (137)")
	})
	e.must("rm", id)
	checkNoLeaks(t, before, "a killed shim")
}

func TestRestartPolicy(t *testing.T) {
	e := newContainerEnv(t)
	e.must("run", "-d", "--name", "flaky", "--network", "none", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1")
	waitFor(t, "two restarts", func() bool {
		st := e.state("flaky")
		return st["Status"] == "exited" && st["ExitCode"].(float64) == 1
	})
	r := e.must("inspect", "flaky")
	if !strings.Contains(r.stdout, `"RestartCount": 2`) {
		t.Errorf("RestartCount is not 2:\n%s", r.stdout)
	}
	if r := e.must("logs", "flaky"); r.stdout != "" {
		t.Errorf("logs %q", r.stdout)
	}
}

func TestPruneKeepsContainerLayers(t *testing.T) {
	e := newContainerEnv(t)
	e.must("tag", "busybox", "mine")
	e.must("create", "--name", "keep", "--network", "none", "mine", "echo", "still here")
	e.must("rmi", "mine")
	e.must("prune", "--all")
	e.must("prune", "--all")
	if r := e.must("start", "-a", "keep"); r.stdout != "still here\n" {
		t.Errorf("start after prune: %q", r.stdout)
	}
}

// TestRunLatency reports the median time of kiln run --rm busybox true.
func TestRunLatency(t *testing.T) {
	e := newContainerEnv(t)
	var ds []time.Duration
	for i := 0; i < 10; i++ {
		start := time.Now()
		e.must("run", "--rm", "busybox", "true")
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	t.Logf("kiln run --rm busybox true: median %s (min %s, max %s)", (ds[4]+ds[5])/2, ds[0], ds[9])
	var none []time.Duration
	for i := 0; i < 10; i++ {
		start := time.Now()
		e.must("run", "--rm", "--network", "none", "busybox", "true")
		none = append(none, time.Since(start))
	}
	slices.Sort(none)
	t.Logf("kiln run --rm --network none busybox true: median %s", (none[4]+none[5])/2)
}

func TestCopyDiffExportCommit(t *testing.T) {
	e := newContainerEnv(t)
	e.must("run", "--name", "fs", "--network", "none", "busybox", "sh", "-c",
		"mkdir -p /app/sub && echo v1 > /app/sub/f && rm /bin/yes && rm /etc/group && ln -s /app /link")
	// diff sees added, changed and deleted paths.
	diff := e.must("diff", "fs").stdout
	for _, want := range []string{"A /app\n", "A /app/sub/f\n", "D /etc/group\n", "D /bin/yes\n", "C /etc\n", "A /link\n"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff lacks %q:\n%s", want, diff)
		}
	}
	// cp out of the stopped container, through its layers and a symlink.
	host := t.TempDir()
	e.must("cp", "fs:/link/sub", host)
	if b, _ := os.ReadFile(filepath.Join(host, "sub", "f")); string(b) != "v1\n" {
		t.Errorf("cp out: %q", b)
	}
	e.must("cp", "fs:/bin/busybox", filepath.Join(host, "bb"))
	if fi, err := os.Stat(filepath.Join(host, "bb")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("cp out of a lower layer file: %v", err)
	}
	if r := e.kiln("cp", "fs:/etc/group", host); r.code != 125 {
		t.Errorf("cp of a deleted file: exit %d", r.code)
	}
	// cp into the stopped container, then see it from a run.
	os.WriteFile(filepath.Join(host, "new.txt"), []byte("copied in\n"), 0o644)
	e.must("cp", filepath.Join(host, "new.txt"), "fs:/app/sub/")
	e.must("cp", filepath.Join(host, "new.txt"), "fs:/etc/group")
	// commit makes an image kiln run starts.
	e.must("commit", "-m", "with app", "--change", `CMD ["cat", "/app/sub/new.txt", "/etc/group"]`, "fs", "committed:1")
	if r := e.must("run", "--rm", "--network", "none", "committed:1"); r.stdout != "copied in\ncopied in\n" {
		t.Errorf("run of the committed image: %q", r.stdout)
	}
	// export is the merged root filesystem.
	r := e.must("export", "fs")
	names := map[string]bool{}
	tr := tar.NewReader(strings.NewReader(r.stdout))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names[h.Name] = true
	}
	for _, want := range []string{"bin/busybox", "app/sub/f", "app/sub/new.txt", "link", "etc/passwd"} {
		if !names[want] {
			t.Errorf("export lacks %s", want)
		}
	}
	if names["bin/yes"] {
		t.Errorf("export has a deleted file")
	}
	// cp in and out of a running container, and logs -f.
	e.must("run", "-d", "--name", "live", "--network", "none", "busybox", "sh", "-c", "echo one; sleep 1; echo two; exec sleep 1000")
	e.must("cp", filepath.Join(host, "new.txt"), "live:/tmp/")
	if r := e.must("exec", "live", "cat", "/tmp/new.txt"); r.stdout != "copied in\n" {
		t.Errorf("cp into a running container: %q", r.stdout)
	}
	e.must("exec", "live", "sh", "-c", "echo made > /made")
	e.must("cp", "live:/made", filepath.Join(host, "made"))
	if b, _ := os.ReadFile(filepath.Join(host, "made")); string(b) != "made\n" {
		t.Errorf("cp out of a running container: %q", b)
	}
	cmd := exec.Command(e.bin, "--root", e.root, "logs", "-f", "live")
	stdout, _ := cmd.StdoutPipe()
	cmd.Start()
	br := bufio.NewReader(stdout)
	var lines []string
	for len(lines) < 2 {
		l, err := br.ReadString('\n')
		if err != nil {
			break
		}
		lines = append(lines, l)
	}
	e.must("stop", "-t", "0", "live")
	cmd.Wait()
	if strings.Join(lines, "") != "one\ntwo\n" {
		t.Errorf("logs -f: %q", lines)
	}
}

// TestRunEnvironment checks what a process sees that docker run sets up:
// HOSTNAME in the environment (the container's own variables win), TERM
// with a terminal, the primary group among the supplementary ones, and
// the loopback-only hosts file on the none network.
func TestRunEnvironment(t *testing.T) {
	e := newContainerEnv(t)
	r := e.must("run", "--rm", "--network", "none", "busybox", "sh", "-c", `[ "$HOSTNAME" = "$(hostname)" ] && echo same; echo "${TERM:-noterm}"; id -G; cat /etc/hosts`)
	want := "same\nnoterm\n0\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n" +
		"ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
	if r.stdout != want {
		t.Errorf("run:\n%s\nwant:\n%s", r.stdout, want)
	}
	if r := e.must("run", "--rm", "-e", "HOSTNAME=mine", "-u", "1000:7", "busybox", "sh", "-c", `echo $HOSTNAME; id -G`); r.stdout != "mine\n7\n" {
		t.Errorf("run -e HOSTNAME=mine -u 1000:7: %q", r.stdout)
	}
	if r := e.must("run", "--rm", "--network", "none", "--add-host", "reg:10.1.2.3", "busybox", "tail", "-1", "/etc/hosts"); r.stdout != "10.1.2.3\treg\n" {
		t.Errorf("run --add-host: last hosts line %q", r.stdout)
	}
	host, _ := os.Hostname()
	if r := e.must("run", "--rm", "--network", "host", "busybox", "hostname"); strings.TrimSpace(r.stdout) != host {
		t.Errorf("hostname on the host network: %q, want %q", r.stdout, host)
	}
}
