package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestRunMount builds with every kind of RUN --mount kiln supports and
// checks what the commands saw, that nothing of the mounts reaches the
// image, and how they take part in caching.
func TestRunMount(t *testing.T) {
	e := newEnv(t)
	ctx := writeCtx(t, map[string]string{
		"Dockerfile": `FROM busybox AS tools
RUN mkdir -p /opt/tools && echo tool > /opt/tools/t

FROM busybox
WORKDIR /w
RUN --mount=type=cache,target=/cache echo run >> /cache/log && wc -l < /cache/log > /cachecount
RUN --mount=type=bind,source=sub,target=sub cat sub/s.txt > /fromctx && (touch sub/x 2>/dev/null && echo writable || echo ro) >> /fromctx
RUN --mount=type=bind,target=/ctx ls /ctx > /ctxlist
RUN --mount=type=bind,from=tools,source=/opt/tools,target=/tools,rw cat /tools/t > /fromstage && echo w > /tools/new
RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/x && grep -c " /scratch tmpfs " /proc/mounts > /tmpfs
RUN --mount=type=secret,id=tok,mode=0440,gid=7 stat -c '%a %u %g' /run/secrets/tok > /secretmode && wc -c < /run/secrets/tok > /secretlen
RUN --mount=type=cache,target=/x1,id=dup,sharing=locked --mount=type=cache,target=/x2,id=dup,sharing=locked sh -c 'echo d > /x1/d && cat /x2/d > /dup'
`,
		"sub/s.txt":     "subfile\n",
		"ignored.txt":   "not in the context\n",
		".dockerignore": "ignored.txt\n",
	})
	secret := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(secret, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.must("build", "--secret", "id=tok,src="+secret, "-t", "m:1", ctx)
	for file, want := range map[string]string{
		"/cachecount": "1\n",
		"/fromctx":    "subfile\nro\n",
		"/fromstage":  "tool\n",
		"/tmpfs":      "1\n",
		"/secretmode": "440 0 7\n",
		"/secretlen":  "8\n",
		"/dup":        "d\n", // one lock for both mounts of one id: no wait on itself
	} {
		if got := e.must("run", "--rm", "m:1", "cat", file).stdout; got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if got := e.must("run", "--rm", "m:1", "cat", "/ctxlist").stdout; strings.Contains(got, "ignored.txt") || !strings.Contains(got, "sub") {
		t.Errorf("context bind listed %q: want the context as COPY sees it (.dockerignore applied)", got)
	}
	// What was mounted stays out of the image; the directories made as
	// mount points stay, empty, as Docker 20.10's builder leaves them
	// (the secret's file mount point goes).
	if out := e.must("run", "--rm", "m:1", "sh", "-c", "cd / && find w run tools scratch cache ctx | sort").stdout; out != "cache\nctx\nrun\nrun/secrets\nscratch\ntools\nw\nw/sub\n" {
		t.Errorf("image has:\n%s", out)
	}

	// The secret's content is not part of the cache key, its presence is
	// checked when the step runs, and a cache mount keeps its content
	// across builds (even with --no-cache).
	if err := os.WriteFile(secret, []byte("other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := e.must("build", "--progress=plain", "--secret", "id=tok,src="+secret, "-t", "m:2", ctx).stderr
	if strings.Contains(out, "DONE") || !strings.Contains(out, "CACHED") {
		t.Errorf("rebuild with another secret: want every step cached\n%s", out)
	}
	e.must("build", "--no-cache", "--secret", "id=tok,src="+secret, "-t", "m:3", ctx)
	if got := e.must("run", "--rm", "m:3", "cat", "/cachecount").stdout; got != "2\n" {
		t.Errorf("cache mount after a second run: count %q, want 2", got)
	}
	r := e.kiln("build", "--no-cache", "-t", "m:4", ctx)
	if r.code == 0 || !strings.Contains(r.stderr, `secret "tok"`) && !strings.Contains(r.stderr, "/run/secrets/tok") {
		t.Errorf("build without the secret: exit %d\n%s", r.code, r.stderr)
	}
	if out := e.must("prune", "--all").stdout; !strings.Contains(out, "2 cache mounts") {
		t.Errorf("prune --all: %q, want both cache mounts removed", out)
	}
}

// TestRunMountSSH forwards an agent socket given with --ssh: a step (also
// as a non-root user the mount names) reaches the agent through it, and
// the socket's path and content stay out of the image and the cache key.
func TestRunMountSSH(t *testing.T) {
	e := newEnv(t)
	// Fake agents: they answer each request with "pong" and what they read.
	fakeAgent := func() string {
		sock := filepath.Join(t.TempDir(), "agent.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					buf := make([]byte, 4)
					if _, err := io.ReadFull(c, buf); err == nil {
						c.Write(append([]byte("pong "), buf...))
					}
				}()
			}
		}()
		return sock
	}
	agent := fakeAgent()
	// A static client to run in the image (busybox has none for unix
	// sockets).
	src := writeCtx(t, map[string]string{
		"go.mod": "module ping\n\ngo 1.24\n",
		"main.go": `package main

import (
	"io"
	"net"
	"os"
)

func main() {
	c, err := net.Dial("unix", os.Getenv("SSH_AUTH_SOCK"))
	if err != nil {
		os.Stdout.WriteString("dial: " + err.Error() + "\n")
		os.Exit(1)
	}
	c.Write([]byte("ping"))
	b, _ := io.ReadAll(c)
	os.Stdout.Write(append(b, '\n'))
}
`,
	})
	ctx := writeCtx(t, map[string]string{
		"Dockerfile": `FROM busybox
COPY ping /ping
RUN --mount=type=ssh,required=true stat -c '%a %u %g' $SSH_AUTH_SOCK > /sock && /ping > /reply
RUN mkdir /out && chown 1000 /out
USER 1000
RUN --mount=type=ssh,id=deploy,uid=1000,mode=0660,target=/tmp/agent stat -c '%a %u' /tmp/agent > /out/sock && /ping > /out/reply
`,
	})
	cmd := exec.Command("go", "build", "-o", filepath.Join(ctx, "ping"), ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the client: %v\n%s", err, out)
	}
	r := e.kiln("build", "--ssh", "deploy="+agent, "-t", "s:1", ctx)
	if r.code == 0 || !strings.Contains(r.stderr, `no SSH key "default"`) {
		t.Fatalf("build without the default agent: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Setenv("SSH_AUTH_SOCK", agent)
	e.must("build", "--ssh", "default", "--ssh", "deploy="+agent, "-t", "s:1", ctx)
	for file, want := range map[string]string{
		"/sock":      "600 0 0\n",
		"/reply":     "pong ping\n",
		"/out/sock":  "660 1000\n",
		"/out/reply": "pong ping\n",
	} {
		if got := e.must("run", "--rm", "s:1", "cat", file).stdout; got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	// Another agent (another socket path) for the same ids: all cached.
	other := fakeAgent()
	out := e.must("build", "--progress=plain", "--ssh", "default="+other, "--ssh", "deploy="+other, "-t", "s:2", ctx).stderr
	if strings.Count(out, "CACHED") != 5 {
		t.Errorf("rebuild with other agent sockets: want every step cached\n%s", out)
	}
	// A key file is served by an agent of kiln's own, forwarded alike.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	df := filepath.Join(t.TempDir(), "Dockerfile.key")
	os.WriteFile(df, []byte("FROM busybox\nRUN --mount=type=ssh,required=true test -S \"$SSH_AUTH_SOCK\" && echo agent > /key\n"), 0o644)
	e.must("build", "--ssh", "default="+keyFile, "-f", df, "-t", "s:key", ctx)
	if got := e.must("run", "--rm", "s:key", "cat", "/key").stdout; got != "agent\n" {
		t.Errorf("/key = %q", got)
	}
	if r := e.kiln("build", "--ssh", "default="+filepath.Join(ctx, "Dockerfile"), ctx); r.code == 0 || !strings.Contains(r.stderr, "not a private key") {
		t.Errorf("--ssh with a key file: exit %d\n%s", r.code, r.stderr)
	}
}

// TestBuildAddHost: kiln build --add-host reaches every RUN step's
// /etc/hosts, and the docker build habits --rm and --force-rm are taken.
func TestBuildAddHost(t *testing.T) {
	e := newEnv(t)
	ctx := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nRUN grep reg /etc/hosts > /h\n"})
	e.must("build", "--rm", "--force-rm", "--add-host", "reg:10.9.9.9", "-t", "ah:1", ctx)
	if got := e.must("run", "--rm", "ah:1", "cat", "/h").stdout; got != "10.9.9.9\treg\n" {
		t.Errorf("/h = %q", got)
	}
}
