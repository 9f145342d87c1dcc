package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/executor"
)

func TestParseRestartPolicy(t *testing.T) {
	tests := []struct {
		in      string
		want    RestartPolicy
		wantErr bool
	}{
		{"", RestartPolicy{Name: "no"}, false},
		{"no", RestartPolicy{Name: "no"}, false},
		{"always", RestartPolicy{Name: "always"}, false},
		{"unless-stopped", RestartPolicy{Name: "unless-stopped"}, false},
		{"on-failure", RestartPolicy{Name: "on-failure"}, false},
		{"on-failure:3", RestartPolicy{Name: "on-failure", MaxRetries: 3}, false},
		{"on-failure:x", RestartPolicy{}, true},
		{"on-failure:-1", RestartPolicy{}, true},
		{"always:2", RestartPolicy{}, true},
		{"no:1", RestartPolicy{}, true},
		{"sometimes", RestartPolicy{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRestartPolicy(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseRestartPolicy(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestShouldRestart(t *testing.T) {
	tests := []struct {
		name     string
		policy   string
		code     int
		restarts int
		byUser   bool
		want     bool
	}{
		{"no", "no", 1, 0, false, false},
		{"always after success", "always", 0, 5, false, true},
		{"always but stopped", "always", 137, 0, true, false},
		{"on-failure success", "on-failure", 0, 0, false, false},
		{"on-failure failure", "on-failure", 1, 0, false, true},
		{"on-failure unlimited", "on-failure", 1, 100, false, true},
		{"on-failure under max", "on-failure:2", 1, 1, false, true},
		{"on-failure at max", "on-failure:2", 1, 2, false, false},
		{"unless-stopped", "unless-stopped", 0, 0, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseRestartPolicy(tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.ShouldRestart(tc.code, tc.restarts, tc.byUser); got != tc.want {
				t.Errorf("ShouldRestart = %v, want %v", got, tc.want)
			}
		})
	}
	if RestartDelay(0) != 100*time.Millisecond || RestartDelay(3) != 800*time.Millisecond || RestartDelay(100) != time.Minute {
		t.Errorf("RestartDelay: %s %s %s", RestartDelay(0), RestartDelay(3), RestartDelay(100))
	}
}

func TestLogWriterRotation(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "container.log")
	clock := time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	w, err := OpenLog(p, 200, 3, func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		stream := "stdout"
		if i%2 == 1 {
			stream = "stderr"
		}
		if err := w.Write(stream, []byte(fmt.Sprintf("line %02d\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	w.Write("stdout", []byte("partial"))
	w.Close()
	for _, name := range []string{"container.log", "container.log.1", "container.log.2"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fi.Size() > 200 {
			t.Errorf("%s has %d bytes, more than max-size 200", name, fi.Size())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "container.log.3")); err == nil {
		t.Errorf("more than max-file files kept")
	}
	raw, _ := os.ReadFile(p)
	first := strings.SplitN(string(raw), "\n", 2)[0]
	var e LogEntry
	if err := json.Unmarshal([]byte(first), &e); err != nil || !strings.Contains(first, `"time":"2024-01-02T03:04:05.000000006Z"`) {
		t.Errorf("entry not in json-file format: %s (%v)", first, err)
	}

	tests := []struct {
		name string
		tail int
		want []string
	}{
		{"all kept", -1, nil},
		{"tail 3", 3, []string{"line 18\n", "line 19\n", "partial"}},
		{"tail 0", 0, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := ReadLog(t.Context(), p, LogOptions{Tail: tc.tail}, func(e LogEntry) error {
				got = append(got, e.Log)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				// Everything still on disk, in order, ending with the newest.
				if len(got) < 5 || got[len(got)-1] != "partial" || got[len(got)-2] != "line 19\n" {
					t.Errorf("got %q", got)
				}
				for i := 1; i < len(got)-1; i++ {
					if got[i] <= got[i-1] {
						t.Errorf("out of order: %q", got)
					}
				}
				return
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLogFollow(t *testing.T) {
	p := filepath.Join(t.TempDir(), "container.log")
	w, err := OpenLog(p, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write("stdout", []byte("a\n"))
	var mu sync.Mutex
	done := false
	go func() {
		time.Sleep(150 * time.Millisecond)
		w.Write("stderr", []byte("b\n"))
		time.Sleep(150 * time.Millisecond)
		mu.Lock()
		done = true
		mu.Unlock()
	}()
	var got []string
	err = ReadLog(t.Context(), p, LogOptions{Tail: -1, Follow: true, Done: func() bool {
		mu.Lock()
		defer mu.Unlock()
		return done
	}}, func(e LogEntry) error {
		got = append(got, e.Stream+":"+e.Log)
		return nil
	})
	if err != nil || strings.Join(got, "") != "stdout:a\nstderr:b\n" {
		t.Errorf("follow: %q, %v", got, err)
	}
}

func TestNamesAndLookup(t *testing.T) {
	ctx := t.Context()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Create(ctx, &Config{Name: "web", Image: "busybox"})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Config.ID) != 64 || !isHex(a.Config.ID) {
		t.Fatalf("ID %q is not 64 hex digits", a.Config.ID)
	}
	if _, err := s.Create(ctx, &Config{Name: "web"}); !errors.Is(err, ErrNameTaken) {
		t.Errorf("second create of web: %v, want ErrNameTaken", err)
	}
	b, err := s.Create(ctx, &Config{})
	if err != nil || b.Config.Name == "" {
		t.Fatalf("generated name: %q, %v", b.Config.Name, err)
	}
	tests := []struct {
		ref    string
		wantID string
		err    error
	}{
		{"web", a.Config.ID, nil},
		{"/web", a.Config.ID, nil},
		{a.Config.ID, a.Config.ID, nil},
		{a.Config.ID[:12], a.Config.ID, nil},
		{b.Config.Name, b.Config.ID, nil},
		{"nope", "", ErrNotFound},
		{"", "", ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			r, err := s.Get(ctx, tc.ref)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Errorf("Get(%q) error %v, want %v", tc.ref, err, tc.err)
				}
				return
			}
			if err != nil || r.Config.ID != tc.wantID {
				t.Errorf("Get(%q) = %v, %v", tc.ref, r, err)
			}
		})
	}
	for _, bad := range []string{"-x", "a b", "a/b", ""} {
		if err := CheckName(bad); err == nil {
			t.Errorf("CheckName(%q) accepted", bad)
		}
	}
	if err := s.Rename(ctx, "web", b.Config.Name); !errors.Is(err, ErrNameTaken) {
		t.Errorf("rename onto a taken name: %v", err)
	}
	if err := s.Rename(ctx, "web", "web2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "web"); !errors.Is(err, ErrNotFound) {
		t.Errorf("old name still resolves: %v", err)
	}
	if r, err := s.Get(ctx, "web2"); err != nil || r.Config.Name != "web2" {
		t.Errorf("new name: %v %v", r, err)
	}
	if err := s.Delete(ctx, a.Config.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, &Config{Name: "web2"}); err != nil {
		t.Errorf("a removed container's name is not free: %v", err)
	}
	list, _ := s.List(ctx)
	if len(list) != 2 {
		t.Errorf("List has %d containers, want 2", len(list))
	}
}

func TestDeadShimShowsExited(t *testing.T) {
	ctx := t.Context()
	s, _ := Open(t.TempDir())
	r, err := s.Create(ctx, &Config{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	start, _ := ProcStart(os.Getpid())
	tests := []struct {
		name       string
		pid        int
		start      uint64
		wantStatus Status
	}{
		{"alive", os.Getpid(), start, Running},
		{"pid reused", os.Getpid(), start + 1, Exited},
		{"gone", 1 << 22, 1, Exited},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := State{Status: Running, Pid: 42, ShimPid: tc.pid, ShimStart: tc.start}
			if err := s.SaveState(r.Config.ID, &st); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx, "x")
			if err != nil {
				t.Fatal(err)
			}
			if got.State.Status != tc.wantStatus {
				t.Errorf("status %s, want %s", got.State.Status, tc.wantStatus)
			}
			if tc.wantStatus == Exited && got.State.ExitCode != 137 {
				t.Errorf("exit code %d, want 137", got.State.ExitCode)
			}
		})
	}
}

func TestVolumes(t *testing.T) {
	ctx := t.Context()
	s, _ := Open(t.TempDir())
	v, err := s.CreateVolume(ctx, "data", nil)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(v.Mountpoint); err != nil || !fi.IsDir() || filepath.Base(v.Mountpoint) != "_data" {
		t.Fatalf("mountpoint %s: %v", v.Mountpoint, err)
	}
	if again, err := s.CreateVolume(ctx, "data", nil); err != nil || again.Mountpoint != v.Mountpoint {
		t.Errorf("create of an existing volume: %v %v", again, err)
	}
	anon, err := s.CreateVolume(ctx, "", nil)
	if err != nil || !anon.Anonymous || len(anon.Name) != 64 {
		t.Fatalf("anonymous volume: %+v %v", anon, err)
	}
	r, _ := s.Create(ctx, &Config{Name: "c", Mounts: []Mount{
		{Type: MountVolume, Name: "data", Source: v.Mountpoint, Target: "/d"},
		{Type: MountVolume, Name: anon.Name, Anonymous: true, Source: anon.Mountpoint, Target: "/a"},
	}})
	if err := s.RemoveVolume(ctx, "data"); !errors.Is(err, ErrInUse) {
		t.Errorf("remove of a used volume: %v", err)
	}
	if _, err := s.CreateVolume(ctx, "../x", nil); err == nil {
		t.Errorf("a volume name with a slash was accepted")
	}
	if err := s.Remove(ctx, r.Config.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Volume(ctx, anon.Name); !errors.Is(err, ErrNotFound) {
		t.Errorf("anonymous volume survived rm -v: %v", err)
	}
	removed, err := s.PruneVolumes(ctx)
	if err != nil || len(removed) != 1 || removed[0] != "data" {
		t.Errorf("prune: %v %v", removed, err)
	}
}

// fakeContainer is an executor.Container whose process exits when told.
type fakeContainer struct {
	exit    chan int
	signals chan syscall.Signal
	paused  bool
	mu      sync.Mutex
}

func (f *fakeContainer) Pid() int           { return 4242 }
func (f *fakeContainer) Wait() (int, error) { return <-f.exit, nil }
func (f *fakeContainer) Signal(sig syscall.Signal) error {
	f.signals <- sig
	if sig == syscall.SIGTERM || sig == syscall.SIGKILL {
		go func() { f.exit <- 128 + int(sig) }()
	}
	return nil
}
func (f *fakeContainer) Exec(ctx context.Context, p executor.Process) (int, error) {
	fmt.Fprintf(p.Stdout, "exec %s\n", strings.Join(p.Args, " "))
	return 5, nil
}
func (f *fakeContainer) Pause() error                   { f.mu.Lock(); f.paused = true; f.mu.Unlock(); return nil }
func (f *fakeContainer) Resume() error                  { f.mu.Lock(); f.paused = false; f.mu.Unlock(); return nil }
func (f *fakeContainer) Resize(rows, cols uint16) error { return nil }

// fakeStarter starts fake containers that print "hello" and, when
// exitCode >= 0, exit with it at once.
type fakeStarter struct {
	mu       sync.Mutex
	starts   int
	exitCode int
	last     *fakeContainer
	specs    []executor.Spec
}

func (f *fakeStarter) Start(ctx context.Context, spec executor.Spec) (executor.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if spec.Process.Args[0] == "missing" {
		return nil, fmt.Errorf("exec: not found: %w", &executor.ExitError{Code: 127})
	}
	f.starts++
	f.specs = append(f.specs, spec)
	c := &fakeContainer{exit: make(chan int, 1), signals: make(chan syscall.Signal, 8)}
	f.last = c
	spec.Process.Stdout.Write([]byte("hello\n"))
	if f.exitCode >= 0 {
		c.exit <- f.exitCode
	}
	return c, nil
}

// runFakeShim runs a shim for a new container with cfg in a goroutine.
func runFakeShim(t *testing.T, cfg Config, st *fakeStarter) (*Store, *Record, chan error) {
	t.Helper()
	// Short root: the socket path must fit sun_path without the /proc
	// fallback too.
	root, err := os.MkdirTemp("", "kc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	s, _ := Open(root)
	cfg.Network = "none"
	r, err := s.Create(t.Context(), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- RunShim(context.Background(), ShimOptions{Store: s, ID: r.Config.ID, Starter: st, Ready: closer{ready}, StartTimeout: 5 * time.Second})
	}()
	<-ready
	return s, r, done
}

type closer struct{ ch chan struct{} }

func (c closer) Write(p []byte) (int, error) { return len(p), nil }
func (c closer) Close() error                { close(c.ch); return nil }

func startFake(t *testing.T, r *Record, attach bool) (*Session, error) {
	c, err := dial(t.Context(), r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := c.call(t.Context(), request{Op: opStart, Attach: attach})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		c.Close()
		return nil, &StartError{Msg: rep.Error, Code: rep.Code}
	}
	if !attach {
		c.Close()
		return nil, nil
	}
	return &Session{c: c}, nil
}

func TestShimAttachExecStop(t *testing.T) {
	st := &fakeStarter{exitCode: -1}
	s, r, done := runFakeShim(t, Config{Name: "c", Args: []string{"sh"}}, st)
	ctx := t.Context()
	sess, err := startFake(t, r, true)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	codeCh := make(chan int, 1)
	go func() {
		code, _ := sess.Stream(ctx, Streams{Stdout: &out})
		codeCh <- code
	}()
	got, _ := s.Get(ctx, "c")
	if got.State.Status != Running || got.State.Pid != 4242 {
		t.Fatalf("state after start: %+v", got.State)
	}
	// Without --init the container's process is its PID 1, as under docker run.
	if spec := st.specs[0]; spec.Init || spec.CgroupPath != "kiln/"+r.Config.ID || spec.Network != executor.NetworkNone {
		t.Errorf("spec: init %v cgroup %q network %q", spec.Init, spec.CgroupPath, spec.Network)
	}
	es, err := s.Exec(ctx, "c", ExecConfig{Args: []string{"echo", "x"}})
	if err != nil {
		t.Fatal(err)
	}
	var eout strings.Builder
	if code, err := es.Stream(ctx, Streams{Stdout: &eout}); code != 5 || err != nil || eout.String() != "exec echo x\n" {
		t.Errorf("exec: %d %v %q", code, err, eout.String())
	}
	if err := s.Pause(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "c"); got.State.Status != Paused {
		t.Errorf("status after pause: %s", got.State.Status)
	}
	if _, err := s.Exec(ctx, "c", ExecConfig{Args: []string{"true"}}); err == nil {
		t.Errorf("exec in a paused container succeeded")
	}
	if err := s.Unpause(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.simpleCall(ctx, "c", request{Op: opStop, Timeout: 5}); err != nil {
		t.Fatal(err)
	}
	if code := <-codeCh; code != 143 || out.String() != "hello\n" {
		t.Errorf("attached session: code %d output %q", code, out.String())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, _ = s.Get(ctx, "c")
	if got.State.Status != Exited || got.State.ExitCode != 143 || got.State.FinishedAt.IsZero() {
		t.Errorf("state after stop: %+v", got.State)
	}
	var logged []string
	ReadLog(ctx, got.LogPath(), LogOptions{Tail: -1}, func(e LogEntry) error { logged = append(logged, e.Log); return nil })
	if strings.Join(logged, "") != "hello\n" {
		t.Errorf("log: %q", logged)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, sockName)); err == nil {
		t.Errorf("the control socket outlived the shim")
	}
}

func TestShimRestartPolicy(t *testing.T) {
	st := &fakeStarter{exitCode: 1}
	s, _, done := runFakeShim(t, Config{Name: "c", Args: []string{"sh"}, Restart: RestartPolicy{Name: "on-failure", MaxRetries: 2}}, st)
	r, _ := s.Get(t.Context(), "c")
	if _, err := startFake(t, r, false); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(t.Context(), "c")
	if st.starts != 3 || got.State.RestartCount != 2 || got.State.Status != Exited || got.State.ExitCode != 1 {
		t.Errorf("starts %d, state %+v; want 3 starts, 2 restarts, exited 1", st.starts, got.State)
	}
}

// TestShimOnceForAutoRemove mounts the root of a --rm container as used
// once (not flushed at the end) and keeps it for other containers, whose
// upper a restart mounts again.
func TestShimOnceForAutoRemove(t *testing.T) {
	for _, autoRemove := range []bool{false, true} {
		st := &fakeStarter{exitCode: 0}
		s, _, done := runFakeShim(t, Config{Name: "c", Args: []string{"sh"}, AutoRemove: autoRemove}, st)
		r, _ := s.Get(t.Context(), "c")
		if _, err := startFake(t, r, false); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if len(st.specs) != 1 || st.specs[0].Rootfs.Once != autoRemove {
			t.Errorf("AutoRemove %v: %d runs, Rootfs.Once %v", autoRemove, len(st.specs), len(st.specs) > 0 && st.specs[0].Rootfs.Once)
		}
	}
}

func TestShimStartFailure(t *testing.T) {
	st := &fakeStarter{exitCode: -1}
	s, r, done := runFakeShim(t, Config{Name: "c", Args: []string{"missing"}}, st)
	_, err := startFake(t, r, true)
	var se *StartError
	if !errors.As(err, &se) || se.Code != 127 {
		t.Fatalf("start error %v, want a StartError with code 127", err)
	}
	<-done
	got, _ := s.Get(t.Context(), "c")
	if got.State.Status != Created || got.State.ExitCode != 127 || got.State.Error == "" {
		t.Errorf("state after a failed start: %+v", got.State)
	}
}
