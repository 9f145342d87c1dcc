package frontend

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops"
)

// fakeResolver knows one image, "busybox".
type fakeResolver struct{}

func (fakeResolver) ResolveImage(_ context.Context, ref string) (*Image, error) {
	if ref != "busybox" && ref != "busybox:latest" {
		return nil, fmt.Errorf("no such image: %s: %w", ref, cache.ErrNotFound)
	}
	d := digest.FromString("busybox-layer")
	cfg := v1.ConfigFile{Architecture: "amd64", OS: "linux"}
	cfg.Config.Env = []string{"PATH=/bin"}
	cfg.Config.Cmd = []string{"sh"}
	return &Image{Ref: "docker.io/library/busybox:latest", Manifest: digest.FromString("m"), Config: cfg,
		Chain: cache.Chain{{DiffID: d, Digest: d}}}, nil
}

func convert(t *testing.T, df string, opts Options) (*Plan, error) {
	t.Helper()
	opts.Resolver = fakeResolver{}
	if opts.ContextDir == "" {
		opts.ContextDir = t.TempDir()
	}
	return Convert(t.Context(), []byte(df), opts)
}

// runs lists the RUN ops of the target lineage, bottom first.
func runs(v *solver.Vertex) []*ops.Run {
	var out []*ops.Run
	for ; v != nil; v = first(v.Inputs) {
		if r, ok := v.Op.(*ops.Run); ok {
			out = append([]*ops.Run{r}, out...)
		}
	}
	return out
}

func first(vs []*solver.Vertex) *solver.Vertex {
	if len(vs) == 0 {
		return nil
	}
	return vs[0]
}

func TestConvertConfig(t *testing.T) {
	tests := []struct {
		name string
		df   string
		opts Options
		want func(c v1.Config) any
		val  any
	}{
		{"cmd shell form", "FROM busybox\nCMD echo hi", Options{}, func(c v1.Config) any { return c.Cmd }, []string{"/bin/sh", "-c", "echo hi"}},
		{"cmd exec form", "FROM busybox\nCMD [\"a\",\"b\"]", Options{}, func(c v1.Config) any { return c.Cmd }, []string{"a", "b"}},
		{"entrypoint resets inherited cmd", "FROM busybox\nENTRYPOINT [\"x\"]", Options{}, func(c v1.Config) any { return c.Cmd }, []string(nil)},
		{"entrypoint keeps own cmd", "FROM busybox\nCMD [\"y\"]\nENTRYPOINT [\"x\"]", Options{}, func(c v1.Config) any { return c.Cmd }, []string{"y"}},
		{"env replaces in place", "FROM busybox\nENV A=1 PATH=/x:$PATH", Options{}, func(c v1.Config) any { return c.Env }, []string{"PATH=/x:/bin", "A=1"}},
		{"env legacy form", "FROM busybox\nENV A hello world", Options{}, func(c v1.Config) any { return c.Env }, []string{"PATH=/bin", "A=hello world"}},
		{"arg not in env", "FROM busybox\nARG A=1", Options{}, func(c v1.Config) any { return c.Env }, []string{"PATH=/bin"}},
		{"env after arg wins", "FROM busybox\nARG V=arg\nENV V=env\nLABEL v=$V", Options{BuildArgs: map[string]string{"V": "cli"}}, func(c v1.Config) any { return c.Labels["v"] }, "env"},
		{"build arg overrides", "FROM busybox\nARG V=def\nLABEL v=$V", Options{BuildArgs: map[string]string{"V": "cli"}}, func(c v1.Config) any { return c.Labels["v"] }, "cli"},
		{"global arg redeclared", "ARG V=g\nFROM busybox\nARG V\nLABEL v=$V", Options{}, func(c v1.Config) any { return c.Labels["v"] }, "g"},
		{"global arg not redeclared", "ARG V=g\nFROM busybox\nLABEL v=[$V]", Options{}, func(c v1.Config) any { return c.Labels["v"] }, "[]"},
		{"workdir relative", "FROM busybox\nWORKDIR /a\nWORKDIR b\nWORKDIR ../c", Options{}, func(c v1.Config) any { return c.WorkingDir }, "/a/c"},
		{"expose", "FROM busybox\nEXPOSE 80 53/udp 8000-8001", Options{}, func(c v1.Config) any { return len(c.ExposedPorts) }, 4},
		{"user", "FROM busybox\nARG U=app\nUSER $U:1", Options{}, func(c v1.Config) any { return c.User }, "app:1"},
		{"shell", "FROM busybox\nSHELL [\"/bin/bash\", \"-c\"]\nCMD x", Options{}, func(c v1.Config) any { return c.Cmd }, []string{"/bin/bash", "-c", "x"}},
		{"onbuild recorded", "FROM busybox\nONBUILD RUN echo hi", Options{}, func(c v1.Config) any { return c.OnBuild }, []string{"RUN echo hi"}},
		{"label flag", "FROM busybox", Options{Labels: map[string]string{"k": "v"}}, func(c v1.Config) any { return c.Labels["k"] }, "v"},
		{"scratch path", "FROM scratch", Options{}, func(c v1.Config) any { return c.Env }, []string{"PATH=" + DefaultPath}},
		{"stopsignal", "FROM busybox\nSTOPSIGNAL SIGINT", Options{}, func(c v1.Config) any { return c.StopSignal }, "SIGINT"},
		{"volume", "FROM busybox\nVOLUME [\"/data\"]", Options{}, func(c v1.Config) any { _, ok := c.Volumes["/data"]; return ok }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := convert(t, tc.df, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := tc.want(p.Config.Config)
			if !reflect.DeepEqual(got, tc.val) {
				t.Errorf("got %#v, want %#v", got, tc.val)
			}
		})
	}
}

func TestConvertRun(t *testing.T) {
	p, err := convert(t, "FROM busybox\nARG X=1\nENV Y=2\nWORKDIR /w\nUSER 5\nRUN echo $X\nRUN [\"ls\", \"$Y\"]\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := runs(p.Target)
	if len(rs) != 2 {
		t.Fatalf("%d RUN ops, want 2", len(rs))
	}
	if !reflect.DeepEqual(rs[0].Args, []string{"/bin/sh", "-c", "echo $X"}) {
		t.Errorf("shell form args = %q", rs[0].Args)
	}
	if !reflect.DeepEqual(rs[1].Args, []string{"ls", "$Y"}) {
		t.Errorf("exec form args = %q (no expansion expected)", rs[1].Args)
	}
	if !reflect.DeepEqual(rs[0].Env, []string{"PATH=/bin", "X=1", "Y=2"}) {
		t.Errorf("env = %q", rs[0].Env)
	}
	if rs[0].Cwd != "/w" || rs[0].User != "5" {
		t.Errorf("cwd %q user %q", rs[0].Cwd, rs[0].User)
	}
}

// runKey is the cache key of the n-th RUN op.
func runKey(t *testing.T, df string, opts Options) digest.Digest {
	t.Helper()
	p, err := convert(t, df, opts)
	if err != nil {
		t.Fatal(err)
	}
	rs := runs(p.Target)
	k, err := rs[0].CacheKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestConvertKeys(t *testing.T) {
	base := runKey(t, "FROM busybox\nARG A\nRUN true\n", Options{})
	same := []struct {
		name string
		df   string
		opts Options
	}{
		{"config-only instruction before", "FROM busybox\nLABEL x=y\nCMD z\nEXPOSE 80\nARG A\nRUN true\n", Options{}},
		{"undeclared build arg", "FROM busybox\nARG A\nRUN true\n", Options{BuildArgs: map[string]string{"OTHER": "1"}}},
		{"proxy build arg", "FROM busybox\nARG A\nRUN true\n", Options{BuildArgs: map[string]string{"HTTP_PROXY": "http://p"}}},
	}
	for _, tc := range same {
		t.Run(tc.name, func(t *testing.T) {
			if k := runKey(t, tc.df, tc.opts); k != base {
				t.Errorf("key changed")
			}
		})
	}
	if k := runKey(t, "FROM busybox\nARG A\nRUN true\n", Options{BuildArgs: map[string]string{"A": "1"}}); k == base {
		t.Errorf("a declared build arg did not change the key")
	}
	if k := runKey(t, "FROM busybox\nRUN true\nARG A\n", Options{BuildArgs: map[string]string{"A": "1"}}); k == runKey(t, "FROM busybox\nRUN true\n", Options{}) {
		// the arg is declared after the RUN: same key expected
	} else {
		t.Errorf("an ARG declared after the RUN changed its key")
	}
}

func TestConvertStages(t *testing.T) {
	df := "FROM busybox AS a\nRUN echo a\nFROM busybox AS b\nRUN echo b\nFROM a\nCOPY --from=b /x /y\nCOPY --from=1 /x /z\n"
	p, err := convert(t, df, Options{})
	if err != nil {
		t.Fatal(err)
	}
	top := p.Target
	if len(top.Inputs) != 2 {
		t.Fatalf("COPY --from has %d inputs, want 2", len(top.Inputs))
	}
	p2, err := convert(t, df, Options{Target: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if rs := runs(p2.Target); len(rs) != 1 || rs[0].Args[2] != "echo b" {
		t.Errorf("--target b built %v", rs)
	}
}

// TestStepNames checks that steps are numbered as BuildKit numbers them:
// only RUN, COPY, ADD and WORKDIR (and an image base, as step 1) count,
// a stage built on another stage starts at RUN 1, and the base's ONBUILD
// triggers are counted in.
func TestStepNames(t *testing.T) {
	df := "FROM busybox AS a\nENV X=1\nRUN true\nUSER 1\nWORKDIR /w\nONBUILD RUN echo t\nONBUILD ENV Y=2\n" +
		"FROM a AS b\nLABEL l=1\nRUN echo b\nFROM scratch\nCOPY --from=b /w /w\n"
	p, err := convert(t, df, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	seen := map[*solver.Vertex]bool{}
	var walk func(v *solver.Vertex)
	walk = func(v *solver.Vertex) {
		if seen[v] {
			return
		}
		seen[v] = true
		for _, in := range v.Inputs {
			walk(in)
		}
		names = append(names, v.Name)
	}
	walk(p.Target)
	want := []string{"FROM scratch", "[a 1/3] FROM busybox", "[a 2/3] RUN true", "[a 3/3] WORKDIR /w",
		"[b 1/3] RUN echo t", "[b 2/3] RUN echo b", "[stage-2 1/1] COPY --from=b /w /w"}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Errorf("step names:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
}

func TestConvertErrors(t *testing.T) {
	tests := []struct {
		name string
		df   string
		opts Options
		line int
		msg  string
	}{
		{"empty", "", Options{}, 0, "no instructions"},
		{"comments only", "# nothing\n", Options{}, 1, "no instructions"},
		{"instruction before from", "RUN x\nFROM busybox", Options{}, 1, ""},
		{"unknown instruction", "FROM busybox\nRUNN x", Options{}, 2, "did you mean RUN"},
		{"unknown target", "FROM busybox AS a", Options{Target: "nope"}, 0, "nope"},
		{"unknown image", "FROM busybox\nRUN x\nFROM nosuch", Options{}, 3, "nosuch"},
		{"copy from unknown", "FROM busybox\nCOPY --from=nosuch /a /b", Options{}, 2, "nosuch"},
		{"platform", "FROM --platform=linux/arm64 busybox", Options{}, 1, "linux/amd64"},
		{"run network", "FROM busybox\nRUN --network=none true", Options{}, 2, "unknown flag RUN --network"},
		{"run security", "FROM busybox\n\nRUN --security=insecure true", Options{}, 3, "unknown flag RUN --security"},
		{"copy link", "FROM busybox\nCOPY --link a b", Options{}, 2, "unknown flag COPY --link"},
		{"add checksum", "FROM busybox\nADD --checksum=sha256:00 a b", Options{}, 2, "unknown flag ADD --checksum"},
		{"add from", "FROM busybox\nADD --from=x a b", Options{}, 2, "unknown flag ADD --from"},
		{"healthcheck start-interval", "FROM busybox\nHEALTHCHECK --start-interval=1s CMD true", Options{}, 2, "--start-interval"},
		{"bad expose", "FROM busybox\nEXPOSE abc", Options{}, 2, "invalid port"},
		{"expose with a sign", "FROM busybox\nEXPOSE +80", Options{}, 2, "invalid port"},
		{"expose range end with a sign", "FROM busybox\nEXPOSE 80-+90", Options{}, 2, "invalid port range"},
		{"from stage in capitals", "FROM busybox AS Base\nFROM Base", Options{}, 2, "in lowercase (FROM base)"},
		{"from scratch in capitals", "FROM SCRATCH", Options{}, 1, "SCRATCH"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := convert(t, tc.df, tc.opts)
			if err == nil {
				t.Fatal("no error")
			}
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *frontend.Error", err)
			}
			if fe.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", fe.Line, tc.line, err)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "Dockerfile") {
				t.Errorf("error %q does not name the file or mention %q", err, tc.msg)
			}
		})
	}
}

func TestApplyChanges(t *testing.T) {
	cfg, err := ApplyChanges(t.Context(), v1.ConfigFile{}, []string{"ENV A=1", `CMD ["sh"]`, "WORKDIR /app", "EXPOSE 80"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Config.Env, []string{"A=1"}) || cfg.Config.WorkingDir != "/app" || len(cfg.Config.Cmd) != 1 {
		t.Errorf("config %+v", cfg.Config)
	}
	if _, err := ApplyChanges(t.Context(), v1.ConfigFile{}, []string{"RUN x"}); err == nil {
		t.Error("RUN accepted as a change")
	}
}

func FuzzConvert(f *testing.F) {
	for _, s := range []string{
		"FROM busybox\nRUN echo hi\n",
		"ARG A=1\nFROM busybox AS x\nENV B=$A\nCOPY --from=x /a /b\n",
		"# escape=`\nFROM busybox\nRUN echo `\n hi\n",
		"FROM scratch\nCOPY . /\nCMD [\"x\"]\n",
		"FROM busybox\nHEALTHCHECK --interval=5s CMD true\nONBUILD RUN x\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, df string) {
		_, err := Convert(context.Background(), []byte(df), Options{Resolver: fakeResolver{}, ContextDir: "/nonexistent"})
		if err == nil {
			return
		}
		var fe *Error
		if !errors.As(err, &fe) {
			t.Fatalf("error %v is not a *frontend.Error", err)
		}
	})
}
