package executortest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/executor"
)

// dockerCapBnd is CapBnd in /proc/self/status for Docker's default set.
const dockerCapBnd = "00000000a80425fb"

// Suite runs the conformance tests against the executor newExec returns.
func Suite(t *testing.T, newExec func(t *testing.T) executor.Executor) {
	RequireRoot(t)
	s := &suite{
		bin:  BinLayer(t),
		etc:  EtcLayer(t),
		exec: newExec(t),
	}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Echo", s.testEcho},
		{"Stdin", s.testStdin},
		{"EmptyStdin", s.testEmptyStdin},
		{"ExitCode", s.testExitCode},
		{"Signal", s.testSignal},
		{"NotFound", s.testNotFound},
		{"NotExecutable", s.testNotExecutable},
		{"EnvAndPath", s.testEnvAndPath},
		{"Cwd", s.testCwd},
		{"User", s.testUser},
		{"UnknownUser", s.testUnknownUser},
		{"UpperDir", s.testUpperDir},
		{"UpperDirOnce", s.testUpperDirOnce},
		{"NoStubsInUpper", s.testNoStubsInUpper},
		{"Whiteout", s.testWhiteout},
		{"DeleteDir", s.testDeleteDir},
		{"ReplaceDir", s.testReplaceDir},
		{"Metadata", s.testMetadata},
		{"PreparedUpper", s.testPreparedUpper},
		{"NetworkNone", s.testNetworkNone},
		{"Hostname", s.testHostname},
		{"ReadOnlyEtc", s.testReadOnlyEtc},
		{"PID1", s.testPID1},
		{"Cancel", s.testCancel},
		{"FDs", s.testFDs},
		{"Privileges", s.testPrivileges},
		{"ProcReadOnly", s.testProcReadOnly},
		{"Seccomp", s.testSeccomp},
		{"DeviceNodes", s.testDeviceNodes},
		{"ManyLayers", s.testManyLayers},
		{"ReadOnly", s.testReadOnly},
		{"Func", s.testFunc},
		{"FuncError", s.testFuncError},
		{"FuncLowerInputs", s.testFuncLowerInputs},
		{"LayersMounts", s.testLayersMounts},
		{"FileMount", s.testFileMount},
		{"Parallel", s.testParallel},
		{"NoLowerDirs", s.testNoLowerDirs},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.fn)
	}
}

type suite struct {
	bin, etc string // shared read-only lower dirs
	exec     executor.Executor
}

// result is the outcome of one run.
type result struct {
	stdout, stderr string
	err            error
	rootfs         executor.Rootfs
}

// run runs args in a fresh rootfs over the bin and etc layers; edit may
// change the spec first.
func (s *suite) run(t *testing.T, args []string, edit func(*executor.Spec)) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	spec := executor.Spec{
		Rootfs: NewRootfs(t, s.bin, s.etc),
		Process: &executor.Process{
			Args:   args,
			Env:    []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Stdout: &stdout,
			Stderr: &stderr,
		},
	}
	if edit != nil {
		edit(&spec)
	}
	err := s.exec.Run(t.Context(), spec)
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err, rootfs: spec.Rootfs}
}

// mustRun is run that fails the test on an error.
func (s *suite) mustRun(t *testing.T, args []string, edit func(*executor.Spec)) result {
	t.Helper()
	r := s.run(t, args, edit)
	if r.err != nil {
		t.Fatalf("run %q: %v\nstdout: %s\nstderr: %s", args, r.err, r.stdout, r.stderr)
	}
	return r
}

func sh(script string) []string { return []string{"sh", "-c", script} }

func wantExit(t *testing.T, err error, code int) {
	t.Helper()
	var ee *executor.ExitError
	if !errors.As(err, &ee) || ee.Code != code {
		t.Fatalf("error = %v, want exit code %d", err, code)
	}
}

// upperFiles lists the upper dir (relative slash paths), sorted.
func upperFiles(t *testing.T, upper string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == upper {
			return err
		}
		rel, _ := filepath.Rel(upper, p)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func (s *suite) testEcho(t *testing.T) {
	r := s.mustRun(t, sh("echo hello; echo oops >&2"), nil)
	if r.stdout != "hello\n" || r.stderr != "oops\n" {
		t.Errorf("stdout %q, stderr %q; want %q, %q", r.stdout, r.stderr, "hello\n", "oops\n")
	}
}

func (s *suite) testStdin(t *testing.T) {
	r := s.mustRun(t, []string{"cat"}, func(sp *executor.Spec) { sp.Process.Stdin = strings.NewReader("from stdin") })
	if r.stdout != "from stdin" {
		t.Errorf("stdout %q, want %q", r.stdout, "from stdin")
	}
}

func (s *suite) testExitCode(t *testing.T) {
	wantExit(t, s.run(t, sh("exit 3"), nil).err, 3)
}

func (s *suite) testSignal(t *testing.T) {
	// A PID 1 ignores signals it has no handler for, even from outside
	// its namespace, except SIGKILL; the test sends that from the host.
	arg := strconv.Itoa(100000 + os.Getpid())
	done := make(chan result, 1)
	go func() { done <- s.run(t, []string{"sleep", arg}, nil) }()
	want := []byte("sleep\x00" + arg + "\x00")
	deadline := time.Now().Add(10 * time.Second)
	for killed := false; !killed; {
		if time.Now().After(deadline) {
			t.Fatal("the container's sleep never showed up in /proc")
		}
		time.Sleep(5 * time.Millisecond)
		procs, _ := os.ReadDir("/proc")
		for _, p := range procs {
			pid, err := strconv.Atoi(p.Name())
			if err != nil {
				continue
			}
			if cmd, _ := os.ReadFile("/proc/" + p.Name() + "/cmdline"); bytes.Equal(cmd, want) {
				if err := syscallKill(pid, 9); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
	}
	wantExit(t, (<-done).err, 128+9)
}

func (s *suite) testNotFound(t *testing.T) {
	r := s.run(t, []string{"no-such-command"}, nil)
	wantExit(t, r.err, 127)
	if want := `exec: "no-such-command": executable file not found in $PATH`; r.err.Error() != want {
		t.Errorf("error %q, want %q", r.err, want)
	}
	r = s.run(t, []string{"/no/such/path"}, nil)
	wantExit(t, r.err, 127)
}

func (s *suite) testNotExecutable(t *testing.T) {
	r := s.run(t, []string{"/data.txt"}, func(sp *executor.Spec) {
		WriteFiles(t, sp.Rootfs.UpperDir, map[string]string{"data.txt": "not a program"})
	})
	wantExit(t, r.err, 126)
	if !strings.Contains(r.err.Error(), "/data.txt") {
		t.Errorf("error %q does not name the file", r.err)
	}
}

func (s *suite) testEnvAndPath(t *testing.T) {
	// /custom/bin is not in kiln's PATH, only in the container's.
	tool := t.TempDir()
	WriteFiles(t, tool, map[string]string{"custom/bin/greet*": "#!/bin/sh\necho \"$GREETING from $0\"\n"})
	r := s.mustRun(t, []string{"greet"}, func(sp *executor.Spec) {
		sp.Rootfs.LowerDirs = append(sp.Rootfs.LowerDirs, tool)
		sp.Process.Env = []string{"PATH=/custom/bin:/bin", "GREETING=hi"}
	})
	if want := "hi from /custom/bin/greet\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	r = s.mustRun(t, []string{"env"}, func(sp *executor.Spec) { sp.Process.Env = []string{"PATH=/bin", "A=1"} })
	if got, want := strings.Fields(r.stdout), []string{"PATH=/bin", "A=1", "HOME=/root"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("env = %q, want %q", got, want)
	}
}

func (s *suite) testCwd(t *testing.T) {
	r := s.mustRun(t, []string{"pwd"}, func(sp *executor.Spec) { sp.Process.Cwd = "/work/dir" })
	if r.stdout != "/work/dir\n" {
		t.Errorf("pwd = %q, want /work/dir", r.stdout)
	}
	fi, err := os.Stat(filepath.Join(r.rootfs.UpperDir, "work", "dir"))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Errorf("working dir in upper: %v, %v", fi, err)
	}
	// Made as written, as runc makes it: /up too.
	r = s.mustRun(t, []string{"pwd"}, func(sp *executor.Spec) { sp.Process.Cwd = "/up/../down" })
	if r.stdout != "/down\n" {
		t.Errorf("pwd = %q, want /down", r.stdout)
	}
	for _, d := range []string{"up", "down"} {
		if fi, err := os.Stat(filepath.Join(r.rootfs.UpperDir, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s in upper: %v, %v", d, fi, err)
		}
	}
}

func (s *suite) testUser(t *testing.T) {
	for _, tt := range []struct{ user, want string }{
		{"", "0 0 0 10 /root"},
		{"app", "1000 1000 1000 50 /home/app"},
		{"1000", "1000 1000 1000 50 /home/app"},
		{"app:staff", "1000 50 50 /home/app"},
		{"1000:1000", "1000 1000 1000 /home/app"},
		{"4242:4243", "4242 4243 4243 /"},
	} {
		t.Run(tt.user, func(t *testing.T) {
			r := s.mustRun(t, sh(`echo $(id -u) $(id -g) $(id -G) $HOME`), func(sp *executor.Spec) { sp.Process.User = tt.user })
			if got := strings.TrimSpace(r.stdout); got != tt.want {
				t.Errorf("uid gid groups home = %q, want %q", got, tt.want)
			}
		})
	}
}

func (s *suite) testUnknownUser(t *testing.T) {
	r := s.run(t, []string{"true"}, func(sp *executor.Spec) { sp.Process.User = "nobody" })
	if r.err == nil || !strings.Contains(r.err.Error(), `"nobody"`) {
		t.Fatalf("error = %v, want one naming user \"nobody\"", r.err)
	}
}

func (s *suite) testUpperDir(t *testing.T) {
	r := s.mustRun(t, sh("echo data > /new.txt && mkdir -p /a/b && echo x >> /etc/passwd"), nil)
	got, err := os.ReadFile(filepath.Join(r.rootfs.UpperDir, "new.txt"))
	if err != nil || string(got) != "data\n" {
		t.Errorf("upper new.txt = %q, %v", got, err)
	}
	files := upperFiles(t, r.rootfs.UpperDir)
	if want := "a a/b etc etc/passwd new.txt"; strings.Join(files, " ") != want {
		t.Errorf("upper = %q, want %q", files, want)
	}
}

// testUpperDirOnce checks that a Rootfs used once (a build step, which
// may skip flushing it) still leaves every change in the upper dir.
func (s *suite) testUpperDirOnce(t *testing.T) {
	r := s.mustRun(t, sh("head -c 100000 /bin/busybox > /big && echo data > /new.txt && echo x >> /etc/passwd"),
		func(sp *executor.Spec) { sp.Rootfs.Once = true })
	got, err := os.ReadFile(filepath.Join(r.rootfs.UpperDir, "new.txt"))
	if err != nil || string(got) != "data\n" {
		t.Errorf("upper new.txt = %q, %v", got, err)
	}
	if fi, err := os.Stat(filepath.Join(r.rootfs.UpperDir, "big")); err != nil || fi.Size() != 100000 {
		t.Errorf("upper big: %v, %v", fi, err)
	}
	files := upperFiles(t, r.rootfs.UpperDir)
	if want := "big etc etc/passwd new.txt"; strings.Join(files, " ") != want {
		t.Errorf("upper = %q, want %q", files, want)
	}
}

func (s *suite) testNoStubsInUpper(t *testing.T) {
	for _, tt := range []struct {
		name  string
		edit  func(*executor.Spec)
		check string // a file that must still be there
	}{
		{"bare", func(sp *executor.Spec) { sp.Rootfs.LowerDirs = []string{s.bin} }, ""},
		{"with etc", nil, ""},
		{"etc in upper", func(sp *executor.Spec) {
			WriteFiles(t, sp.Rootfs.UpperDir, map[string]string{"etc/keep": "k"})
		}, "etc/keep"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := s.mustRun(t, []string{"true"}, tt.edit)
			files := upperFiles(t, r.rootfs.UpperDir)
			want := []string{}
			if tt.check != "" {
				want = []string{"etc", tt.check}
			}
			if strings.Join(files, " ") != strings.Join(want, " ") {
				t.Errorf("upper after true = %q, want %q", files, want)
			}
		})
	}
	// A created /etc that now holds files stays, the stubs in it do not.
	r := s.mustRun(t, sh("echo hi > /etc/new"), func(sp *executor.Spec) { sp.Rootfs.LowerDirs = []string{s.bin} })
	if files := upperFiles(t, r.rootfs.UpperDir); strings.Join(files, " ") != "etc etc/new" {
		t.Errorf("upper = %q, want [etc etc/new]", files)
	}
}

func (s *suite) testWhiteout(t *testing.T) {
	r := s.mustRun(t, []string{"rm", "/etc/motd"}, nil)
	fi, err := os.Lstat(filepath.Join(r.rootfs.UpperDir, "etc", "motd"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeCharDevice == 0 || rdev(fi) != 0 {
		t.Errorf("etc/motd in upper is %v (rdev %d), want a 0:0 character device", fi.Mode(), rdev(fi))
	}
}

// dataLayer returns a lower dir with /data/a and /data/b/c.
func dataLayer(t *testing.T) string {
	dir := t.TempDir()
	WriteFiles(t, dir, map[string]string{"data/a": "a", "data/b/c": "c"})
	return dir
}

func (s *suite) testDeleteDir(t *testing.T) {
	data := dataLayer(t)
	r := s.mustRun(t, []string{"rm", "-r", "/data/b"}, func(sp *executor.Spec) {
		sp.Rootfs.LowerDirs = append(sp.Rootfs.LowerDirs, data)
	})
	if files := upperFiles(t, r.rootfs.UpperDir); strings.Join(files, " ") != "data data/b" {
		t.Errorf("upper = %q, want [data data/b]", files)
	}
	fi, err := os.Lstat(filepath.Join(r.rootfs.UpperDir, "data", "b"))
	if err != nil || fi.Mode()&fs.ModeCharDevice == 0 || rdev(fi) != 0 {
		t.Errorf("data/b in upper: %v, %v; want a 0:0 character device", fi, err)
	}
}

func (s *suite) testReplaceDir(t *testing.T) {
	data := dataLayer(t)
	r := s.mustRun(t, sh("rm -r /data && mkdir /data && echo n > /data/new && ls /data"), func(sp *executor.Spec) {
		sp.Rootfs.LowerDirs = append(sp.Rootfs.LowerDirs, data)
	})
	if r.stdout != "new\n" {
		t.Errorf("ls /data = %q, want only new", r.stdout)
	}
	if files := upperFiles(t, r.rootfs.UpperDir); strings.Join(files, " ") != "data data/new" {
		t.Errorf("upper = %q, want [data data/new]", files)
	}
	if v, err := getXattr(filepath.Join(r.rootfs.UpperDir, "data"), "trusted.overlay.opaque"); v != "y" {
		t.Errorf("data in upper is not opaque: %q, %v", v, err)
	}
}

func (s *suite) testMetadata(t *testing.T) {
	m := t.TempDir()
	WriteFiles(t, m, map[string]string{"m/file": "content", "m/other": "other"})
	file := filepath.Join(m, "m", "file")
	mtime := time.Unix(1500000000, 0)
	for _, err := range []error{
		os.Lchown(file, 1000, 50),
		os.Chmod(file, os.ModeSetuid|0o751),
		setXattr(file, "user.kiln", "v"),
		os.Chtimes(file, mtime, mtime),
		os.Link(file, filepath.Join(m, "m", "link")),
		os.Symlink("file", filepath.Join(m, "m", "sym")),
		mkfifo(filepath.Join(m, "m", "fifo")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	r := s.mustRun(t, sh("stat -c '%A %u %g %Y %h %s' /m/file /m/link; readlink /m/sym; test -p /m/fifo && echo fifo"),
		func(sp *executor.Spec) { sp.Rootfs.LowerDirs = append(sp.Rootfs.LowerDirs, m) })
	want := "-rwsr-x--x 1000 50 1500000000 2 7\n-rwsr-x--x 1000 50 1500000000 2 7\nfile\nfifo\n"
	if r.stdout != want {
		t.Errorf("lower file attributes in the container:\n%s\nwant:\n%s", r.stdout, want)
	}
	if files := upperFiles(t, r.rootfs.UpperDir); len(files) != 0 {
		t.Errorf("upper after reading = %q, want empty", files)
	}
	// A changed file keeps its owner and xattrs in the upper dir; an
	// untouched one is not there.
	r = s.mustRun(t, []string{"chmod", "600", "/m/other", "/m/file"},
		func(sp *executor.Spec) { sp.Rootfs.LowerDirs = append(sp.Rootfs.LowerDirs, m) })
	up := filepath.Join(r.rootfs.UpperDir, "m", "file")
	fi, err := os.Lstat(up)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || owner(fi) != "1000:50" || !fi.ModTime().Equal(mtime) {
		t.Errorf("m/file in upper: %v %s %v", fi.Mode(), owner(fi), fi.ModTime())
	}
	if v, err := getXattr(up, "user.kiln"); v != "v" {
		t.Errorf("xattr user.kiln of m/file in upper = %q, %v", v, err)
	}
	if files := upperFiles(t, r.rootfs.UpperDir); strings.Join(files, " ") != "m m/file m/link m/other" &&
		strings.Join(files, " ") != "m m/file m/other" {
		t.Errorf("upper = %q, want m, m/file, m/other (and m/link)", files)
	}
}

func (s *suite) testPreparedUpper(t *testing.T) {
	r := s.mustRun(t, sh("cat /prep/keep; echo more >> /prep/edit; test -e /etc/motd || echo gone"), func(sp *executor.Spec) {
		WriteFiles(t, sp.Rootfs.UpperDir, map[string]string{"prep/keep": "k\n", "prep/edit": "e\n", "etc/x": "x"})
		if err := mkWhiteout(filepath.Join(sp.Rootfs.UpperDir, "etc", "motd")); err != nil {
			t.Fatal(err)
		}
	})
	if r.stdout != "k\ngone\n" {
		t.Errorf("stdout %q, want k and gone", r.stdout)
	}
	if files := upperFiles(t, r.rootfs.UpperDir); strings.Join(files, " ") != "etc etc/motd etc/x prep prep/edit prep/keep" {
		t.Errorf("upper = %q", files)
	}
	if got, err := os.ReadFile(filepath.Join(r.rootfs.UpperDir, "prep", "edit")); string(got) != "e\nmore\n" {
		t.Errorf("prep/edit = %q, %v", got, err)
	}
	fi, err := os.Lstat(filepath.Join(r.rootfs.UpperDir, "etc", "motd"))
	if err != nil || fi.Mode()&fs.ModeCharDevice == 0 || rdev(fi) != 0 {
		t.Errorf("etc/motd in upper: %v, %v; want a whiteout", fi, err)
	}
}

func (s *suite) testNetworkNone(t *testing.T) {
	r := s.mustRun(t, sh("ls /sys/class/net; cat /sys/class/net/lo/flags"), func(sp *executor.Spec) { sp.Network = executor.NetworkNone })
	if want := "lo\n0x9\n"; r.stdout != want {
		t.Errorf("interfaces and lo flags = %q, want %q (only lo, up)", r.stdout, want)
	}
}

func (s *suite) testHostname(t *testing.T) {
	r := s.mustRun(t, sh("hostname; cat /etc/hostname"), func(sp *executor.Spec) { sp.EtcHostname = true })
	if r.stdout != "kiln\nkiln\n" {
		t.Errorf("default hostname = %q, want kiln", r.stdout)
	}
	// Without EtcHostname (a build step) there is no /etc/hostname.
	r = s.mustRun(t, sh("hostname; test -e /etc/hostname && echo has-file; true"), nil)
	if r.stdout != "kiln\n" {
		t.Errorf("build step: %q, want the hostname and no /etc/hostname", r.stdout)
	}
	r = s.mustRun(t, sh("hostname; cat /etc/hosts"), func(sp *executor.Spec) {
		sp.Hostname = "builder"
		sp.ExtraHosts = []string{"db 10.0.0.7"}
	})
	if !strings.HasPrefix(r.stdout, "builder\n") || !strings.Contains(r.stdout, "127.0.0.1\tlocalhost builder\n") ||
		!strings.Contains(r.stdout, "10.0.0.7\tdb\n") {
		t.Errorf("hostname and /etc/hosts = %q", r.stdout)
	}
}

// testReadOnlyEtc checks that a build step cannot write the generated
// /etc/hosts and /etc/resolv.conf, as under Docker 20.10's builder, while a
// docker run-like container can.
func (s *suite) testReadOnlyEtc(t *testing.T) {
	script := sh("for f in hosts resolv.conf; do (echo x >> /etc/$f) 2>/dev/null && echo $f rw || echo $f ro; done")
	r := s.mustRun(t, script, func(sp *executor.Spec) { sp.ReadOnlyEtc = true })
	if r.stdout != "hosts ro\nresolv.conf ro\n" {
		t.Errorf("with ReadOnlyEtc: %q, want both read-only", r.stdout)
	}
	r = s.mustRun(t, script, nil)
	if r.stdout != "hosts rw\nresolv.conf rw\n" {
		t.Errorf("without ReadOnlyEtc: %q, want both writable", r.stdout)
	}
}

// testEmptyStdin gives a RUN step's process a pipe at its end as stdin, as
// Docker does; without it stdin is /dev/null.
func (s *suite) testEmptyStdin(t *testing.T) {
	script := sh("readlink /proc/self/fd/0 | sed 's/[0-9]//g'; cat; echo end")
	r := s.mustRun(t, script, func(sp *executor.Spec) { sp.Process.EmptyStdin = true })
	if r.stdout != "pipe:[]\nend\n" {
		t.Errorf("EmptyStdin: %q, want a pipe at its end", r.stdout)
	}
	r = s.mustRun(t, script, nil)
	if r.stdout != "/dev/null\nend\n" {
		t.Errorf("no stdin: %q, want /dev/null", r.stdout)
	}
}

func (s *suite) testPID1(t *testing.T) {
	r := s.mustRun(t, sh("echo $$; cat /proc/1/comm; ls /proc > /dev/shm/ls; grep -c '^[0-9]' /dev/shm/ls"), nil)
	if r.stdout != "1\nsh\n2\n" { // sh and ls
		t.Errorf("pid, comm of pid 1, process count = %q, want 1, sh, 2", r.stdout)
	}
}

func (s *suite) testCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	spec := executor.Spec{Rootfs: NewRootfs(t, s.bin), Process: &executor.Process{Args: []string{"sleep", "100"}}}
	go func() { done <- s.exec.Run(ctx, spec) }()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("cancel took %v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func (s *suite) testFDs(t *testing.T) {
	// ls itself holds fd 3 for /proc/self/fd.
	r := s.mustRun(t, []string{"ls", "/proc/self/fd"}, func(sp *executor.Spec) { sp.Process.Stdin = strings.NewReader("") })
	if got := strings.Fields(r.stdout); strings.Join(got, " ") != "0 1 2 3" {
		t.Errorf("fds in the container = %q, want 0 1 2 (and ls's own 3)", got)
	}
}

func (s *suite) testPrivileges(t *testing.T) {
	r := s.mustRun(t, []string{"grep", "-E", "^(NoNewPrivs|Cap(Inh|Prm|Eff|Bnd|Amb)):", "/proc/self/status"}, nil)
	want := fmt.Sprintf("CapInh:\t%016x\nCapPrm:\t%s\nCapEff:\t%s\nCapBnd:\t%s\nCapAmb:\t%016x\nNoNewPrivs:\t0\n", 0, dockerCapBnd, dockerCapBnd, dockerCapBnd, 0)
	if r.stdout != want {
		t.Errorf("root's status:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = s.mustRun(t, []string{"grep", "-E", "^Cap(Prm|Eff|Bnd):", "/proc/self/status"}, func(sp *executor.Spec) { sp.Process.User = "app" })
	want = fmt.Sprintf("CapPrm:\t%016x\nCapEff:\t%016x\nCapBnd:\t%s\n", 0, 0, dockerCapBnd)
	if r.stdout != want {
		t.Errorf("app's status:\n%s\nwant:\n%s", r.stdout, want)
	}
}

// testSeccomp checks that processes run under Docker's default seccomp
// profile (unshare(CLONE_NEWUSER) is refused, though no capability is
// needed for it), with or without kiln's init, unless SeccompUnconfined.
func (s *suite) testSeccomp(t *testing.T) {
	script := sh("grep '^Seccomp:' /proc/self/status; unshare -U true 2>/dev/null && echo unshared || echo refused")
	for _, init := range []bool{false, true} {
		r := s.mustRun(t, script, func(sp *executor.Spec) { sp.Init = init })
		if r.stdout != "Seccomp:\t2\nrefused\n" {
			t.Errorf("init=%v: %q, want a filter that refuses unshare -U", init, r.stdout)
		}
	}
	r := s.mustRun(t, script, func(sp *executor.Spec) { sp.SeccompUnconfined = true })
	if !strings.HasPrefix(r.stdout, "Seccomp:\t0\n") {
		t.Errorf("unconfined: %q, want no filter", r.stdout)
	}
}

// testDeviceNodes checks what device nodes a run may use, as BuildKit's
// device cgroup allows them: /dev's own, and nodes the process makes for
// the standard devices (mknod of any node works), in /dev or in the root
// filesystem; a node of another device, such as /dev/kvm or a loop
// device, cannot be opened.
func (s *suite) testDeviceNodes(t *testing.T) {
	r := s.mustRun(t, sh(`echo x > /dev/null && head -c 3 /dev/zero | wc -c
mknod /dev/mynull c 1 3 && echo x > /dev/mynull && echo dev-null-open
mkdir -p /d && mknod /d/zero c 1 5 && head -c 2 /d/zero | wc -c
mknod /d/kvm c 10 232 && { (: > /d/kvm) && echo kvm-open || echo kvm-refused; }
mknod /d/loop b 7 0 && { (: < /d/loop) && echo loop-open || echo loop-refused; }`), nil)
	if want := "3\ndev-null-open\n2\nkvm-refused\nloop-refused\n"; r.stdout != want {
		t.Errorf("device nodes: %q (%s), want %q", r.stdout, r.stderr, want)
	}
	if !strings.Contains(r.stderr, "Operation not permitted") {
		t.Errorf("refused opens said %q, want EPERM as under Docker's device cgroup", r.stderr)
	}
}

func (s *suite) testProcReadOnly(t *testing.T) {
	r := s.run(t, sh("echo 1 > /proc/sys/kernel/domainname"), nil)
	if r.err == nil {
		t.Error("writing /proc/sys succeeded, want it read-only")
	}
	r = s.mustRun(t, sh("for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do test -e $f && cat $f; done; true"), nil)
	if r.stdout != "" {
		t.Errorf("masked /proc files are readable: %q", r.stdout)
	}
}

func (s *suite) testManyLayers(t *testing.T) {
	const n = 120
	lowers := []string{s.bin}
	for i := range n {
		dir := t.TempDir()
		WriteFiles(t, dir, map[string]string{fmt.Sprintf("layers/f%03d", i): strconv.Itoa(i)})
		lowers = append(lowers, dir)
	}
	// The top layer wins.
	WriteFiles(t, lowers[n], map[string]string{"layers/f000": "top"})
	r := s.mustRun(t, sh("ls /layers | wc -l; cat /layers/f000 /layers/f119"), func(sp *executor.Spec) { sp.Rootfs.LowerDirs = lowers })
	if want := fmt.Sprintf("%d\ntop119", n); r.stdout != want {
		t.Errorf("output %q, want %q", r.stdout, want)
	}
}

func (s *suite) testReadOnly(t *testing.T) {
	r := s.run(t, sh("touch /x"), func(sp *executor.Spec) { sp.Rootfs.ReadOnly = true })
	if r.err == nil {
		t.Fatal("touch on a read-only root filesystem succeeded")
	}
	if !strings.Contains(r.stderr, "Read-only file system") {
		t.Errorf("stderr %q, want EROFS", r.stderr)
	}
	s.mustRun(t, sh("echo ok > /dev/shm/x && cat /dev/shm/x >/dev/null"), func(sp *executor.Spec) { sp.Rootfs.ReadOnly = true })
}

func (s *suite) funcSpec(t *testing.T, name string, payload any, stdout *bytes.Buffer, inputs ...executor.Input) executor.Spec {
	t.Helper()
	data, ok := payload.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(payload); err != nil {
			t.Fatal(err)
		}
	}
	spec := executor.Spec{
		Rootfs: NewRootfs(t, s.bin, s.etc),
		Func:   &executor.Func{Name: name, Payload: data},
		Inputs: inputs,
	}
	if stdout != nil {
		spec.Func.Stdout = stdout
	}
	return spec
}

func (s *suite) testFunc(t *testing.T) {
	ctxDir := t.TempDir()
	WriteFiles(t, ctxDir, map[string]string{"src/hello.txt": "hello from the context\n"})
	var stdout bytes.Buffer
	spec := s.funcSpec(t, CopyHandlerName, CopyPayload{Src: "src/hello.txt", Dst: "/hello.txt"}, &stdout, executor.Input{Dir: ctxDir})
	if err := s.exec.Run(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(spec.Rootfs.UpperDir, "hello.txt"))
	if err != nil || string(got) != "hello from the context\n" {
		t.Errorf("copied file = %q, %v", got, err)
	}
	if stdout.String() != "copied /hello.txt\n" {
		t.Errorf("stdout %q", stdout.String())
	}
	if files := upperFiles(t, spec.Rootfs.UpperDir); strings.Join(files, " ") != "hello.txt" {
		t.Errorf("upper = %q, want only hello.txt", files)
	}
	// The input is read-only and outside the root filesystem.
	spec = s.funcSpec(t, CopyHandlerName, CopyPayload{Src: "src/hello.txt", Dst: filepath.Join(ctxDir, "escaped")}, nil, executor.Input{Dir: ctxDir})
	if err := s.exec.Run(t.Context(), spec); err == nil {
		t.Error("Func wrote to a host path")
	}
	if _, err := os.Stat(filepath.Join(ctxDir, "escaped")); err == nil {
		t.Error("Func escaped the chroot")
	}
}

func (s *suite) testFuncError(t *testing.T) {
	spec := s.funcSpec(t, FailHandlerName, []byte("copy /nope: no such file"), nil)
	err := s.exec.Run(t.Context(), spec)
	if err == nil || err.Error() != "copy /nope: no such file" {
		t.Errorf("error = %v, want the handler's message verbatim", err)
	}
	spec = s.funcSpec(t, "no-such-handler", []byte("x"), nil)
	if err := s.exec.Run(t.Context(), spec); err == nil || !strings.Contains(err.Error(), "no-such-handler") {
		t.Errorf("unknown handler: error = %v", err)
	}
}

func (s *suite) testFuncLowerInputs(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	WriteFiles(t, a, map[string]string{"f": "bottom", "only-a": "a"})
	WriteFiles(t, b, map[string]string{"f": "top"})
	for _, tt := range []struct {
		name   string
		lowers []string
		src    string
		want   string
	}{
		{"two", []string{a, b}, "f", "top"},
		{"two below", []string{a, b}, "only-a", "a"},
		{"one", []string{a}, "f", "bottom"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spec := s.funcSpec(t, CopyHandlerName, CopyPayload{Input: 1, Src: tt.src, Dst: "/out"}, nil,
				executor.Input{}, executor.Input{LowerDirs: tt.lowers})
			if err := s.exec.Run(t.Context(), spec); err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(filepath.Join(spec.Rootfs.UpperDir, "out")); err != nil || string(got) != tt.want {
				t.Errorf("out = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// testLayersMounts mounts overlay stacks (another stage's filesystem, as
// RUN --mount=type=bind,from=... does): a subdirectory read-only, a symlink
// that must resolve inside the stack, a read-write one whose writes are
// discarded, and an empty stack.
func (s *suite) testLayersMounts(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	WriteFiles(t, a, map[string]string{"data/f": "bottom", "data/only-a": "a", "etc/marker": "stack etc"})
	WriteFiles(t, b, map[string]string{"data/f": "top"})
	if err := os.Symlink("/etc", filepath.Join(b, "data", "etc-link")); err != nil {
		t.Fatal(err)
	}
	res := s.mustRun(t, []string{"sh", "-c", `cat /m/ro/f /m/ro/only-a; echo;
		echo x > /m/ro/x 2>/dev/null && echo ro-writable;
		cat /m/link/marker; echo;
		echo new > /m/rw/data/new && cat /m/rw/data/new /m/rw/data/f; echo;
		ls -A /m/empty | wc -l; echo e > /m/empty/e && cat /m/empty/e`}, func(spec *executor.Spec) {
		spec.Mounts = []executor.Mount{
			{Type: "layers", LowerDirs: []string{a, b}, Source: "/data", Target: "/m/ro", ReadOnly: true},
			{Type: "layers", LowerDirs: []string{a, b}, Source: "data/etc-link", Target: "/m/link", ReadOnly: true},
			{Type: "layers", LowerDirs: []string{a, b}, Target: "/m/rw"},
			{Type: "layers", Target: "/m/empty"},
		}
	})
	if want := "topa\nstack etc\nnew\ntop\n0\ne\n"; res.stdout != want {
		t.Errorf("output %q, want %q (stderr %q)", res.stdout, want, res.stderr)
	}
	for _, p := range []string{filepath.Join(a, "data", "new"), filepath.Join(b, "data", "new"), filepath.Join(b, "data", "x")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was written into a layer", p)
		}
	}
	if files := upperFiles(t, res.rootfs.UpperDir); len(files) != 0 {
		t.Errorf("upper = %q, want empty: mount points and mounted writes stay out of the layer", files)
	}
	// KeepMountPoint leaves the dirs made as mount points, not a file.
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	res = s.mustRun(t, []string{"true"}, func(spec *executor.Spec) {
		spec.Mounts = []executor.Mount{
			{Type: "layers", LowerDirs: []string{a}, Target: "/k/a/b", KeepMountPoint: true},
			{Type: "bind", Source: file, Target: "/kf/file", KeepMountPoint: true},
			{Type: "tmpfs", Target: "/gone"},
		}
	})
	if got, want := strings.Join(upperFiles(t, res.rootfs.UpperDir), " "), "k k/a k/a/b kf"; got != want {
		t.Errorf("upper with kept mount points = %q, want %q", got, want)
	}
	// A source missing from the stack is an error that names it.
	res = s.run(t, []string{"true"}, func(spec *executor.Spec) {
		spec.Mounts = []executor.Mount{{Type: "layers", LowerDirs: []string{a}, Source: "/nope", Target: "/m"}}
	})
	if res.err == nil || !strings.Contains(res.err.Error(), "/nope") {
		t.Errorf("missing source: %v, want an error naming /nope", res.err)
	}
}

// testFileMount mounts a file given as data (a build secret): its content,
// mode and owner as asked, read-only, and nothing of it left behind.
func (s *suite) testFileMount(t *testing.T) {
	res := s.mustRun(t, []string{"sh", "-c", `cat /run/secrets/tok; stat -c '%a %u %g' /run/secrets/tok;
		echo x > /run/secrets/tok 2>/dev/null && echo writable; grep -c " /run/secrets/tok tmpfs " /proc/mounts`}, func(spec *executor.Spec) {
		spec.Mounts = []executor.Mount{{Type: "file", Data: []byte("s3cret\n"), Target: "/run/secrets/tok", Options: []string{"mode=0440", "uid=7", "gid=8"}}}
	})
	if want := "s3cret\n440 7 8\n1\n"; res.stdout != want {
		t.Errorf("output %q, want %q (stderr %q)", res.stdout, want, res.stderr)
	}
	if files := upperFiles(t, res.rootfs.UpperDir); len(files) != 0 {
		t.Errorf("upper = %q, want empty", files)
	}
	res = s.run(t, []string{"true"}, func(spec *executor.Spec) {
		spec.Mounts = []executor.Mount{{Type: "file", Data: []byte("x"), Target: "/f", Options: []string{"mode=9z"}}}
	})
	if res.err == nil {
		t.Error("a bad file mode was accepted")
	}
}

func (s *suite) testParallel(t *testing.T) {
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			var out bytes.Buffer
			spec := executor.Spec{
				Rootfs:   NewRootfs(t, s.bin, s.etc),
				Hostname: fmt.Sprintf("c%d", i),
				Process:  &executor.Process{Args: []string{"hostname"}, Stdout: &out},
			}
			err := s.exec.Run(t.Context(), spec)
			if err == nil && out.String() != spec.Hostname+"\n" {
				err = fmt.Errorf("container %d: hostname %q", i, out.String())
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func (s *suite) testNoLowerDirs(t *testing.T) {
	in := t.TempDir()
	WriteFiles(t, in, map[string]string{"f": "x"})
	spec := s.funcSpec(t, CopyHandlerName, CopyPayload{Src: "f", Dst: "/f"}, nil, executor.Input{Dir: in})
	spec.Rootfs = NewRootfs(t)
	if err := s.exec.Run(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	if files := upperFiles(t, spec.Rootfs.UpperDir); strings.Join(files, " ") != "f" {
		t.Errorf("upper = %q, want [f]", files)
	}
	// A process whose binaries are prepared in the upper dir.
	r := s.mustRun(t, []string{"/bin/echo", "ok"}, func(sp *executor.Spec) {
		sp.Rootfs = NewRootfs(t)
		if err := os.CopyFS(sp.Rootfs.UpperDir, os.DirFS(s.bin)); err != nil {
			t.Fatal(err)
		}
	})
	if r.stdout != "ok\n" {
		t.Errorf("stdout %q", r.stdout)
	}
}
