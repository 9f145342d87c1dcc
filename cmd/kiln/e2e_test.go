package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cmd/internal/initbin"
)

// The end-to-end tests build the kiln binary, make a busybox base image from
// the host's static /bin/busybox, and drive the CLI like a user.

var (
	kilnOnce sync.Once
	kilnBin  string
	kilnErr  error
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root for namespaces and overlayfs; run as root: go test ./cmd/kiln/")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("requires /bin/busybox (apt-get install busybox-static)")
	}
}

// kiln returns the path of a freshly built kiln binary, with the
// kiln-init and kiln-shim built beside it as `make kiln` does, so the tests run the
// containers the way a user's kiln does.
func kiln(t testing.TB) string {
	t.Helper()
	kilnOnce.Do(func() {
		// One directory per test process, so concurrent runs do not
		// collide; directories of earlier runs go after an hour.
		base := filepath.Join(os.TempDir(), "kiln-e2e-bin")
		if kilnErr = os.MkdirAll(base, 0o755); kilnErr != nil {
			return
		}
		old, _ := filepath.Glob(filepath.Join(base, "*"))
		for _, o := range old {
			if fi, err := os.Stat(o); err == nil && time.Since(fi.ModTime()) > time.Hour {
				os.RemoveAll(o)
			}
		}
		dir := filepath.Join(base, fmt.Sprint(os.Getpid()))
		if kilnErr = os.MkdirAll(dir, 0o755); kilnErr != nil {
			return
		}
		token := fmt.Sprintf("e2e%x", time.Now().UnixNano())
		if kilnErr = goBuild(filepath.Join(dir, "kiln"), ".", token); kilnErr != nil {
			return
		}
		if kilnErr = goBuild(filepath.Join(dir, initbin.Name), "../kiln-init", token); kilnErr != nil {
			return
		}
		if kilnErr = goBuild(filepath.Join(dir, initbin.ShimName), "../kiln-shim", token); kilnErr != nil {
			return
		}
		kilnBin = filepath.Join(dir, "kiln")
	})
	if kilnErr != nil {
		t.Fatalf("build kiln: %v", kilnErr)
	}
	return kilnBin
}

// goBuild builds the package pkg into out with the build token, as the
// Makefile does.
func goBuild(out, pkg, token string) error {
	ldflags := "-X github.com/kiln-build/kiln/cmd/internal/initbin.buildToken=" + token
	cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// busyboxRootfs is a root filesystem tar with busybox and its applet links.
func busyboxRootfs(t testing.TB) []byte {
	t.Helper()
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	dir := func(name string, mode int64) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: mtime})
	}
	file := func(name string, mode int64, data []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime})
		tw.Write(data)
	}
	dir("bin", 0o755)
	dir("etc", 0o755)
	dir("tmp", 0o1777)
	dir("root", 0o700)
	file("bin/busybox", 0o755, bin)
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", ModTime: mtime})
		}
	}
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	file("etc/group", 0o644, []byte("root:x:0:\n"))
	tw.Close()
	return buf.Bytes()
}

// env is a kiln store with the busybox base loaded.
type env struct {
	t    testing.TB
	bin  string
	root string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	requireRoot(t)
	e := &env{t: t, bin: kiln(t), root: t.TempDir()}
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(tarPath, busyboxRootfs(t), 0o644); err != nil {
		t.Fatal(err)
	}
	e.must("import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "--change", `CMD ["sh"]`, tarPath, "busybox:latest")
	return e
}

type result struct {
	stdout, stderr string
	code           int
}

func (e *env) kiln(args ...string) result {
	e.t.Helper()
	cmd := exec.Command(e.bin, append([]string{"--root", e.root}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "CI=1")
	err := cmd.Run()
	code := 0
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		code = xe.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

func (e *env) must(args ...string) result {
	e.t.Helper()
	r := e.kiln(args...)
	if r.code != 0 {
		e.t.Fatalf("kiln %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

type want struct {
	BuildArgs map[string]string `json:"build_args"`
	Target    string            `json:"target"`
	Fails     []string          `json:"fails"`
	ExitCode  int               `json:"exit_code"`
	Checks    []struct {
		Cmd []string `json:"cmd"`
		Out string   `json:"out"`
	} `json:"checks"`
	Config map[string]any `json:"config"`
}

func TestBuildCases(t *testing.T) {
	e := newEnv(t)
	cases, err := filepath.Glob("../../testdata/*/want.json")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases in testdata: %v", err)
	}
	for _, wf := range cases {
		dir := filepath.Dir(wf)
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			var w want
			b, err := os.ReadFile(wf)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &w); err != nil {
				t.Fatalf("%s: %v", wf, err)
			}
			tag := "e2e/" + name
			args := []string{"build", "--progress=plain", "-t", tag}
			for k, v := range w.BuildArgs {
				args = append(args, "--build-arg", k+"="+v)
			}
			if w.Target != "" {
				args = append(args, "--target", w.Target)
			}
			r := e.kiln(append(args, dir)...)
			if len(w.Fails) > 0 {
				if r.code == 0 {
					t.Fatalf("build succeeded, want failure")
				}
				for _, s := range w.Fails {
					if !strings.Contains(r.stderr, s) {
						t.Errorf("error output lacks %q:\n%s", s, r.stderr)
					}
				}
				if w.ExitCode != 0 && r.code != w.ExitCode {
					t.Errorf("exit code %d, want %d", r.code, w.ExitCode)
				}
				return
			}
			if r.code != 0 {
				t.Fatalf("build failed (%d):\n%s", r.code, r.stderr)
			}
			for _, c := range w.Checks {
				out := e.must(append([]string{"run", "--rm", tag}, c.Cmd...)...)
				if out.stdout != c.Out {
					t.Errorf("run %q: got %q, want %q", c.Cmd, out.stdout, c.Out)
				}
			}
			if len(w.Config) > 0 {
				var insp []struct{ Config map[string]any }
				if err := json.Unmarshal([]byte(e.must("inspect", tag).stdout), &insp); err != nil {
					t.Fatal(err)
				}
				for k, v := range w.Config {
					if !reflect.DeepEqual(insp[0].Config[k], v) {
						t.Errorf("config %s = %v, want %v", k, insp[0].Config[k], v)
					}
				}
			}
		})
	}
}

func writeCtx(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRebuildIsCached(t *testing.T) {
	e := newEnv(t)
	ctx := writeCtx(t, map[string]string{
		"Dockerfile": "FROM busybox\nRUN echo run >> /runs\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n",
		"a.txt":      "one\n",
	})
	first := e.must("build", "--progress=plain", "-t", "c:1", ctx)
	id1 := e.must("build", "-q", "-t", "c:1", ctx).stdout
	second := e.must("build", "--progress=plain", "-t", "c:1", ctx)
	if strings.Contains(second.stderr, "DONE") || strings.Count(second.stderr, "CACHED") != 4 {
		t.Errorf("no-op rebuild was not all CACHED:\n%s\n(first:\n%s)", second.stderr, first.stderr)
	}
	if id2 := e.must("build", "-q", "-t", "c:1", ctx).stdout; id1 != id2 {
		t.Errorf("no-op rebuild changed the image ID: %s -> %s", id1, id2)
	}
	// Touching a file without changing it keeps the cache; changing it
	// reruns only the steps from the COPY on.
	now := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(ctx, "a.txt"), now, now)
	if r := e.must("build", "--progress=plain", "-t", "c:1", ctx); strings.Contains(r.stderr, "DONE") {
		t.Errorf("mtime change invalidated the cache:\n%s", r.stderr)
	}
	os.WriteFile(filepath.Join(ctx, "a.txt"), []byte("two\n"), 0o644)
	r := e.must("build", "--progress=plain", "-t", "c:1", ctx)
	if strings.Count(r.stderr, "DONE") != 2 || !strings.Contains(r.stderr, "RUN echo run >> /runs\n#2 CACHED") {
		t.Errorf("edit did not rerun exactly COPY and the RUN after it:\n%s", r.stderr)
	}
	if out := e.must("run", "--rm", "c:1", "cat", "/b.txt", "/runs").stdout; out != "two\nrun\n" {
		t.Errorf("image content %q", out)
	}
	if r := e.must("build", "--progress=plain", "--no-cache", "-t", "c:1", ctx); strings.Count(r.stderr, "DONE") != 3 {
		t.Errorf("--no-cache used the cache:\n%s", r.stderr)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo saved > /saved\n"})
	id := strings.TrimSpace(e.must("build", "-q", "-t", "s:1", ctx).stdout)
	tarPath := filepath.Join(t.TempDir(), "s.tar")
	e.must("save", "s:1", "-o", tarPath)
	e2 := &env{t: t, bin: e.bin, root: t.TempDir()}
	out := e2.must("load", "-i", tarPath).stdout
	if !strings.Contains(out, "Loaded image: s:1") {
		t.Errorf("load printed %q", out)
	}
	if got := e2.must("run", "--rm", "s:1", "cat", "/saved").stdout; got != "saved\n" {
		t.Errorf("loaded image content %q", got)
	}
	var insp []struct{ Id string }
	json.Unmarshal([]byte(e2.must("inspect", "s:1").stdout), &insp)
	if len(insp) != 1 || insp[0].Id != id {
		t.Errorf("loaded image ID %v, want %s", insp, id)
	}
}

func TestRunExitCodes(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"busybox", "true"}, 0},
		{[]string{"busybox", "sh", "-c", "exit 3"}, 3},
		{[]string{"busybox", "no-such-command"}, 127},
		{[]string{"busybox", "/etc/passwd"}, 126},
		{[]string{"no-such-image"}, 125},
	}
	for _, tc := range tests {
		r := e.kiln(append([]string{"run", "--rm", "--network", "none"}, tc.args...)...)
		if r.code != tc.code {
			t.Errorf("run %q: exit %d, want %d (%s)", tc.args, r.code, tc.code, r.stderr)
		}
	}
}

func TestConcurrentBuilds(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	errs := make([]string, 2)
	for i := range 2 {
		ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo shared > /s\nRUN sleep 0.2 && echo " + string(rune('a'+i)) + " > /x\n"})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := e.kiln("build", "--progress=plain", "-t", "p:"+string(rune('a'+i)), ctx); r.code != 0 {
				errs[i] = r.stderr
			}
		}()
	}
	wg.Wait()
	for _, s := range errs {
		if s != "" {
			t.Errorf("concurrent build failed:\n%s", s)
		}
	}
}

func TestKilledBuildLeavesUsableStore(t *testing.T) {
	e := newEnv(t)
	ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo before > /f && sleep 30\n"})
	cmd := exec.Command(e.bin, "--root", e.root, "build", "--progress=plain", "-t", "k:1", ctx)
	var out bytes.Buffer
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "RUN echo") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	ctx2 := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo after > /f\n"})
	e.must("build", "-t", "k:2", ctx2)
	if got := e.must("run", "--rm", "k:2", "cat", "/f").stdout; got != "after\n" {
		t.Errorf("got %q", got)
	}
	e.must("prune", "--all")
	if got := e.must("run", "--rm", "k:2", "cat", "/f").stdout; got != "after\n" {
		t.Errorf("after prune: got %q", got)
	}
}

func TestBuildContextFromStdin(t *testing.T) {
	e := newEnv(t)
	ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY x /x\n", "x": "stdin\n"})
	tarOut, err := exec.Command("tar", "-C", ctx, "-cf", "-", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e.bin, "--root", e.root, "build", "-q", "-t", "in:1", "-")
	cmd.Stdin = bytes.NewReader(tarOut)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := e.must("run", "--rm", "in:1", "cat", "/x").stdout; got != "stdin\n" {
		t.Errorf("got %q", got)
	}
	// Gzipped, too.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarOut)
	zw.Close()
	cmd = exec.Command(e.bin, "--root", e.root, "build", "-q", "-t", "in:2", "-")
	cmd.Stdin = &gz
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gzipped context: %v: %s", err, out)
	}
	// Not an archive: the Dockerfile itself (docker build - < Dockerfile),
	// with an empty context; -f does not change that, as under docker.
	for _, args := range [][]string{{"-t", "in:3", "-"}, {"-f", filepath.Join(ctx, "Dockerfile"), "-t", "in:3", "-"}} {
		cmd = exec.Command(e.bin, append([]string{"--root", e.root, "build", "-q"}, args...)...)
		cmd.Stdin = strings.NewReader("FROM busybox\nRUN echo dockerfile-on-stdin > /y\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("Dockerfile on stdin (%q): %v: %s", args, err, out)
		}
		if got := e.must("run", "--rm", "in:3", "cat", "/y").stdout; got != "dockerfile-on-stdin\n" {
			t.Errorf("Dockerfile on stdin (%q): got %q", args, got)
		}
	}
}

// BenchmarkNoopRebuild measures a rebuild where every step is cached: the
// build-edit-rebuild loop's floor.
func BenchmarkNoopRebuild(b *testing.B) {
	e := newEnv(b)
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nCOPY . /src\nRUN ls /src > /list\nRUN echo done > /done\n"), 0o644)
	for i := range 50 {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), bytes.Repeat([]byte{byte(i)}, 1000), 0o644)
	}
	e.must("build", "-q", "-t", "bench:1", dir)
	b.ResetTimer()
	for b.Loop() {
		e.must("build", "-q", "-t", "bench:1", dir)
	}
}

func TestAddURL(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
		io.WriteString(w, "downloaded "+r.URL.Path+"\n")
	}))
	defer srv.Close()
	ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nADD " + srv.URL + "/files/a.txt /dl/\nADD " + srv.URL + "/b.txt /named.txt\n"})
	e.must("build", "--progress=plain", "-t", "url:1", ctx)
	out := e.must("run", "--rm", "url:1", "sh", "-c", "cat /dl/a.txt /named.txt; stat -c '%a %u' /dl/a.txt").stdout
	if out != "downloaded /files/a.txt\ndownloaded /b.txt\n600 0\n" {
		t.Errorf("got %q", out)
	}
	if r := e.must("build", "--progress=plain", "-t", "url:1", ctx); strings.Count(r.stderr, "DONE") != 0 {
		t.Errorf("unchanged download was not cached:\n%s", r.stderr)
	}
}

func TestOnbuildTriggers(t *testing.T) {
	e := newEnv(t)
	parent := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nONBUILD RUN echo triggered > /t\nONBUILD COPY x /x\n"})
	e.must("build", "-t", "parent:1", parent)
	if out := e.kiln("run", "--rm", "parent:1", "cat", "/t"); out.code == 0 {
		t.Errorf("trigger ran in the stage that declares it")
	}
	child := writeCtx(t, map[string]string{"Dockerfile": "FROM parent:1\nRUN cat /t /x > /both\n", "x": "copied\n"})
	e.must("build", "-t", "child:1", child)
	if out := e.must("run", "--rm", "child:1", "cat", "/both").stdout; out != "triggered\ncopied\n" {
		t.Errorf("got %q", out)
	}
	var insp []struct{ Config struct{ OnBuild []string } }
	json.Unmarshal([]byte(e.must("inspect", "child:1").stdout), &insp)
	if len(insp) != 1 || len(insp[0].Config.OnBuild) != 0 {
		t.Errorf("triggers were inherited by the child: %+v", insp)
	}
}

func TestPruneAndDf(t *testing.T) {
	e := newEnv(t)
	ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nRUN head -c 100000 /dev/urandom > /r\n"})
	e.must("build", "-t", "gone:1", ctx)
	if out := e.must("df").stdout; !strings.Contains(out, "Build cache entries   1") {
		t.Errorf("df:\n%s", out)
	}
	e.must("rmi", "gone:1")
	out := e.must("prune", "--all").stdout
	if !strings.Contains(out, "Deleted 1 cache entries") {
		t.Errorf("prune: %s", out)
	}
	if r := e.kiln("run", "--rm", "gone:1", "true"); r.code != 125 {
		t.Errorf("removed image still runs")
	}
	if out := e.must("run", "--rm", "busybox", "echo", "ok").stdout; out != "ok\n" {
		t.Errorf("base image damaged by prune: %q", out)
	}
}

func TestBuildOutputs(t *testing.T) {
	e := newEnv(t)
	ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nRUN mkdir -p /out && echo local > /out/f && rm /bin/vi\n"})
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "img.tar")
	rootfs := filepath.Join(dir, "rootfs")
	e.must("build", "-q", "-o", "type=oci,dest="+tarPath, "-o", "type=local,dest="+rootfs, ctx)
	if b, err := os.ReadFile(filepath.Join(rootfs, "out", "f")); err != nil || string(b) != "local\n" {
		t.Errorf("local output: %q %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "bin", "vi")); !os.IsNotExist(err) {
		t.Errorf("deleted file present in the local output (%v)", err)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "bin", "sh")); err != nil {
		t.Errorf("base file missing from the local output: %v", err)
	}
	e2 := &env{t: t, bin: e.bin, root: t.TempDir()}
	if out := e2.must("load", "-i", tarPath).stdout; !strings.Contains(out, "Loaded image") {
		t.Errorf("load of --output type=oci: %q", out)
	}
}
