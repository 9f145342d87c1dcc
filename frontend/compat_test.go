package frontend

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops"
	"github.com/kiln-build/kiln/solver/ops/fileop"
)

// TestChmod20 reads --chmod as Docker 20.10 does: as written, permission
// bits only, anything that is not an octal number ignored with a warning.
func TestChmod20(t *testing.T) {
	tests := []struct {
		flag, want string
		warn       bool
	}{
		{"755", "0755", false},
		{"0600", "0600", false},
		{"0", "0000", false},
		{"4755", "0755", true},
		{"7777", "0777", true},
		{"777777", "0777", true},
		{"u+x", "", true},
		{"a=rwx", "", true},
		{"999", "", true},
		{"99999999999", "", true},
		{"$MODE", "", true}, // taken as written, not expanded
	}
	for _, tc := range tests {
		t.Run(tc.flag, func(t *testing.T) {
			ctx := t.TempDir()
			if err := os.WriteFile(filepath.Join(ctx, "f"), []byte("f"), 0o644); err != nil {
				t.Fatal(err)
			}
			var warnings []string
			p, err := convert(t, "FROM busybox\nCOPY --chmod="+tc.flag+" f /f\n", Options{
				ContextDir: ctx,
				Warn:       func(s string) { warnings = append(warnings, s) },
			})
			if err != nil {
				t.Fatal(err)
			}
			cp := copyOp(t, p.Target)
			if cp.Chmod != tc.want {
				t.Errorf("chmod %q, want %q", cp.Chmod, tc.want)
			}
			if got := len(warnings) > 0; got != tc.warn {
				t.Errorf("warnings %q, want some: %v", warnings, tc.warn)
			}
			for _, w := range warnings {
				if !strings.Contains(w, ":2: COPY --chmod="+tc.flag) {
					t.Errorf("warning %q does not name the line and flag", w)
				}
			}
		})
	}
}

// TestFlags20InTriggers refuses an unknown flag in an ONBUILD trigger when
// the trigger runs, as Docker 20.10 does.
func TestFlags20InTriggers(t *testing.T) {
	df := "FROM busybox AS base\nONBUILD RUN --network=none true\nFROM base\n"
	_, err := convert(t, df, Options{})
	if err == nil || !strings.Contains(err.Error(), "unknown flag RUN --network") {
		t.Fatalf("trigger with RUN --network: %v", err)
	}
	if _, err := convert(t, "FROM busybox\nONBUILD RUN --network=none true\n", Options{}); err != nil {
		t.Errorf("recording the trigger: %v", err)
	}
}

// copyOp returns the copy action of the File op at v.
func copyOp(t *testing.T, v *solver.Vertex) *fileop.Copy {
	t.Helper()
	f, ok := v.Op.(*ops.File)
	if !ok || f.Action.Copy == nil {
		t.Fatalf("target is %T, not a COPY", v.Op)
	}
	return f.Action.Copy
}

// TestCheckSubstitutions accepts the ${...} forms Docker 20.10 knows and
// refuses the others, outside quotes and escapes only.
func TestCheckSubstitutions(t *testing.T) {
	tests := []struct {
		word   string
		escape rune
		err    string
	}{
		{"plain $A ${A} ${A:-x} ${A:+y} ${A:-${B:+z}}", '\\', ""},
		{"${1} ${_x9}", '\\', ""},
		{"${A-x}", '\\', "missing ':'"},
		{"${A+x}", '\\', "missing ':'"},
		{"${A?x}", '\\', "missing ':'"},
		{"${A#x}", '\\', "missing ':'"},
		{"${A/x/y}", '\\', "missing ':'"},
		{"${A:?x}", '\\', "unsupported modifier (?)"},
		{"${A:=x}", '\\', "unsupported modifier (=)"},
		{"${A:-${B#x}}", '\\', "missing ':'"},
		{`"${A%x}"`, '\\', "missing ':'"},
		{`'${A%x}'`, '\\', ""},
		{`\${A%x}`, '\\', ""},
		{"`${A%x}", '`', ""},
		{`\${A%x}`, '`', "missing ':'"},
		{`"it's ${A%x}"`, '\\', "missing ':'"},
		{"${A", '\\', ""},
	}
	for _, tc := range tests {
		err := checkSubstitutions(tc.word, tc.escape)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.word, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: got %v, want %q", tc.word, err, tc.err)
		}
	}
}

// TestSubstitutionsLeftToTheShell keeps the check off words the frontend
// does not expand: RUN, CMD and ENTRYPOINT in shell form are the shell's.
func TestSubstitutionsLeftToTheShell(t *testing.T) {
	df := "FROM busybox\nENV A=xay\nRUN echo ${A#x}\nCMD echo ${A%y}\nENTRYPOINT echo ${A/a/b}\n"
	if _, err := convert(t, df, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := convert(t, "FROM busybox\nENV A=xay\nWORKDIR /${A#x}\n", Options{}); err == nil || !strings.Contains(err.Error(), ":3:") {
		t.Errorf("WORKDIR /${A#x}: %v", err)
	}
}

func FuzzCheckSubstitutions(f *testing.F) {
	for _, s := range []string{"${A:-x}", "${A#x}", `'${A}'`, `"\${A"`, "${", "${1x}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, word string) {
		_ = checkSubstitutions(word, '\\') // must not panic
		_ = checkSubstitutions(word, '`')
	})
}

// TestProxyEnv sets proxy build args as Docker 20.10 does: both cases,
// any spelling of the name, only with a value, ALL_PROXY not among them,
// and out of the cache key.
func TestProxyEnv(t *testing.T) {
	args := map[string]string{"HTTP_PROXY": "y", "Ftp_Proxy": "ff", "ALL_PROXY": "a", "no_proxy": ""}
	p, err := convert(t, "FROM busybox\nENV HTTP_PROXY=x\nRUN true\n", Options{BuildArgs: args})
	if err != nil {
		t.Fatal(err)
	}
	rs := runs(p.Target)
	if len(rs) != 1 {
		t.Fatalf("%d RUN steps", len(rs))
	}
	want := []string{"HTTP_PROXY=y", "http_proxy=y", "FTP_PROXY=ff", "ftp_proxy=ff"}
	if !slices.Equal(rs[0].Proxy, want) {
		t.Errorf("proxy env %q, want %q", rs[0].Proxy, want)
	}
	if !slices.Contains(rs[0].Env, "HTTP_PROXY=x") {
		t.Errorf("env %q lost the ENV value (the image keeps it)", rs[0].Env)
	}
	if k1, k2 := runKey(t, "FROM busybox\nRUN true\n", Options{BuildArgs: args}), runKey(t, "FROM busybox\nRUN true\n", Options{}); k1 != k2 {
		t.Errorf("proxy build args changed the cache key")
	}
}

// TestWorkdirAsWritten records an absolute WORKDIR as written and a
// relative one joined and cleaned, as Docker 20.10 does; the directory made
// is the cleaned path.
func TestWorkdirAsWritten(t *testing.T) {
	tests := []struct{ df, want string }{
		{"WORKDIR /x/y/", "/x/y/"},
		{"WORKDIR /a/../b", "/a/../b"},
		{"WORKDIR //x/./y", "//x/./y"},
		{"WORKDIR /p/q/\nWORKDIR r/", "/p/q/r"},
		{"WORKDIR rel", "/rel"},
	}
	for _, tc := range tests {
		p, err := convert(t, "FROM busybox\n"+tc.df+"\n", Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Config.Config.WorkingDir; got != tc.want {
			t.Errorf("%q: WorkingDir %q, want %q", tc.df, got, tc.want)
		}
	}
	p, err := convert(t, "FROM busybox\nWORKDIR /a/../b\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, ok := p.Target.Op.(*ops.File)
	if !ok || f.Action.Mkdir == nil || f.Action.Mkdir.Path != "/b" {
		t.Errorf("WORKDIR /a/../b made %+v, want /b", p.Target.Op)
	}
}

// TestExposeWords expands EXPOSE words as Docker 20.10 does, keeping the
// text before a ${NAME:+w} or ${NAME:-w} (BuildKit's ProcessWords drops it)
// and splitting expanded values at white space.
func TestExposeWords(t *testing.T) {
	tests := []struct {
		df   string
		want []string
	}{
		{"ARG P=udp\nEXPOSE 80${P:+80} 90${Q:-91}", []string{"8080/tcp", "9091/tcp"}},
		{"ENV P=\"80 443/udp\"\nEXPOSE $P", []string{"443/udp", "80/tcp"}},
		{"ARG P=udp\nEXPOSE 53/${P}", []string{"53/udp"}},
	}
	for _, tc := range tests {
		p, err := convert(t, "FROM busybox\n"+tc.df+"\n", Options{})
		if err != nil {
			t.Fatalf("%q: %v", tc.df, err)
		}
		var got []string
		for k := range p.Config.Config.ExposedPorts {
			got = append(got, k)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: ports %q, want %q", tc.df, got, tc.want)
		}
	}
}

// TestUnterminatedHeredoc runs a RUN whose "<<EOF" is never terminated as
// the plain command Docker 20.10 (which knew no heredocs) ran, with the
// instructions after it kept; terminated heredocs stay heredocs.
func TestUnterminatedHeredoc(t *testing.T) {
	df := "FROM busybox\nRUN cat <<EOF > /f || \\\n  true\nRUN echo after\n"
	p, err := convert(t, df, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := runs(p.Target)
	if len(rs) != 2 || rs[0].Args[2] != "cat <<EOF > /f ||   true" || rs[1].Args[2] != "echo after" {
		var got [][]string
		for _, r := range rs {
			got = append(got, r.Args)
		}
		t.Fatalf("runs %q", got)
	}
	p, err = convert(t, "FROM busybox\nRUN cat <<EOF > /f\nhello\nEOF\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rs := runs(p.Target); len(rs) != 1 || len(rs[0].Args) < 3 || !strings.Contains(strings.Join(rs[0].Args, " "), "hello") {
		t.Errorf("terminated heredoc: %q", runs(p.Target)[0].Args)
	}
}
