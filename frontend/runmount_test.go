package frontend

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/solver/ops"
)

func TestRunMounts(t *testing.T) {
	df := `FROM busybox AS tools
RUN echo t > /t

FROM busybox
WORKDIR /w
ARG CACHE=/root/.cache
RUN --mount=type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=1 \
    --mount=type=bind,source=src,target=rel \
    --mount=type=bind,from=tools,source=/t,target=/opt/t,rw \
    --mount=type=tmpfs,target=/tmp/x \
    --mount=type=secret,id=tok \
    --mount=type=secret,target=/etc/key,required \
    --mount=type=secret,source=a/src \
    --mount=type=ssh,target=rel/agent,required \
    --mount=type=ssh,id=b \
    --mount=type=cache,target=/seeded,from=tools,source=t \
    true
`
	plan, err := convert(t, df, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := runs(plan.Target)
	r := rs[len(rs)-1]
	want := []ops.RunMount{
		{Type: "cache", Target: "/root/.cache", CacheID: "/root/.cache", Sharing: "locked", Mode: 0o700, UID: 1},
		{Type: "bind", Target: "/w/rel", ReadOnly: true, Input: 1, Source: mountSourceDir},
		{Type: "bind", Target: "/opt/t", Input: 2, Source: "/t"},
		{Type: "tmpfs", Target: "/tmp/x"},
		{Type: "secret", Target: "/run/secrets/tok", ReadOnly: true, Source: "tok", Mode: 0o400},
		{Type: "secret", Target: "/etc/key", ReadOnly: true, Source: "key", Mode: 0o400, Required: true},
		{Type: "secret", Target: "/run/secrets/src", ReadOnly: true, Source: "a/src", Mode: 0o400},
		{Type: "ssh", Target: "rel/agent", CacheID: "default", Required: true, Mode: 0o600},
		{Type: "ssh", Target: "/run/buildkit/ssh_agent.1", CacheID: "b", Mode: 0o600},
		{Type: "cache", Target: "/seeded", CacheID: "/seeded", Mode: 0o755, Input: 3, Source: "/t"},
	}
	if len(r.Mounts) != len(want) {
		t.Fatalf("mounts = %+v", r.Mounts)
	}
	for i := range want {
		if r.Mounts[i] != want[i] {
			t.Errorf("mount %d = %+v, want %+v", i, r.Mounts[i], want[i])
		}
	}
	v := plan.Target
	if len(v.Inputs) != 4 || v.Inputs[3] != v.Inputs[2] {
		t.Fatalf("RUN has %d inputs, want the stage, the context source and the tools stage twice", len(v.Inputs))
	}
	if f, ok := v.Inputs[1].Op.(*ops.File); !ok || f.ContextDir == "" || f.Action.Copy.Sources[0] != "src" {
		t.Errorf("input 1 = %#v, want a copy of src from the context", v.Inputs[1].Op)
	}
	if r2, ok := v.Inputs[2].Op.(*ops.Run); !ok || !strings.Contains(strings.Join(r2.Args, " "), "echo t") {
		t.Errorf("input 2 = %#v, want the tools stage", v.Inputs[2].Op)
	}
}

func TestRunMountErrors(t *testing.T) {
	for _, tt := range []struct{ df, want string }{
		{"FROM busybox\nRUN --mount=type=cache true\n", "needs a target"},
		{"FROM busybox\nRUN --mount=type=bind,from=nope,target=/x true\n", "RUN --mount from=nope"},
		{"FROM busybox\nRUN --mount=type=bind,source=a*,target=/x true\n", "wildcards"},
		{"FROM busybox\nRUN --mount=type=cache,target=/c,from=nope true\n", "RUN --mount from=nope"},
		{"FROM busybox\nRUN --mount=type=bogus,target=/c true\n", "bogus"},
		{"FROM busybox\nRUN --mount=type=secret,required true\n", "source"},
		{"FROM busybox\nRUN --mount=type=tmpfs,target=/t,size=1m true\n", `unexpected key "size"`},
		{"FROM busybox\nRUN --mount=type=secret,id=a,env=A true\n", `unexpected key "env"`},
	} {
		_, err := convert(t, tt.df, Options{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error containing %q", tt.df, err, tt.want)
		}
	}
}

// TestRunMountNoExpansion takes --mount options as written, as Docker
// 20.10 does: target=$T mounts at "$T" below the working directory.
func TestRunMountNoExpansion(t *testing.T) {
	p, err := convert(t, "FROM busybox\nARG T=/x\nRUN --mount=type=tmpfs,target=$T true\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := runs(p.Target)
	if m := rs[len(rs)-1].Mounts; len(m) != 1 || m[0].Target != "/$T" {
		t.Errorf("mounts %+v, want a tmpfs at /$T", m)
	}
}
