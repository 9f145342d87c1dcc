package frontend

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/solver/ops"
)

func TestCopyHeredoc(t *testing.T) {
	plan, err := convert(t, "FROM busybox\nARG X=1\nCOPY <<A <<'B' /d/\n$X\nA\n$X\nB\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	v := plan.Target
	f, ok := v.Op.(*ops.File)
	if !ok || len(v.Inputs) != 2 {
		t.Fatalf("COPY heredoc: %#v with %d inputs", v.Op, len(v.Inputs))
	}
	if cp := f.Action.Copy; strings.Join(cp.Sources, ",") != "A,B" || cp.Dest != "/d/" || f.ContextDir != "" {
		t.Errorf("copy = %+v", cp)
	}
	in, ok := v.Inputs[1].Op.(*ops.Inline)
	if !ok || len(in.Files) != 2 || in.Files[0].Data != "1\n" || in.Files[1].Data != "$X\n" || in.Files[0].Mode != 0o644 {
		t.Errorf("inline = %+v, want A expanded and B (quoted) not", v.Inputs[1].Op)
	}
	if h := plan.History[len(plan.History)-1].CreatedBy; h != "COPY <<A <<B /d/ # buildkit" {
		t.Errorf("history %q", h)
	}
	for _, tt := range []struct{ df, want string }{
		{"FROM busybox\nCOPY f <<A /d/\nx\nA\n", "both files and heredocs"},
		{"FROM busybox\nCOPY <<A <<B /d\nx\nA\ny\nB\n", "ending in /"},
	} {
		if _, err := convert(t, tt.df, Options{}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.df, err, tt.want)
		}
	}
}

func TestRunHeredocShebang(t *testing.T) {
	plan, err := convert(t, "FROM busybox\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\nRUN <<-EOF\n\techo hi\nEOF\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := runs(plan.Target)
	script, plain := rs[len(rs)-2], rs[len(rs)-1]
	if got := strings.Join(script.Args, " "); got != "/bin/sh -c /dev/pipes/EOF" || len(script.Mounts) != 1 || script.Mounts[0].Target != "/dev/pipes" {
		t.Errorf("shebang heredoc: args %q mounts %+v", got, script.Mounts)
	}
	if got := plain.Args[len(plain.Args)-1]; got != "echo hi\n" || len(plain.Mounts) != 0 {
		t.Errorf("<<- heredoc: script %q mounts %+v, want the body without its tab", got, plain.Mounts)
	}
}
