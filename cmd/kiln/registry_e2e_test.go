package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// The registry end-to-end tests push to and pull from a real registry,
// Debian's docker-registry (the CNCF distribution registry), and check the
// result with skopeo.

// requireTool returns the path of a command, installing its Debian package
// when it is missing and we are root; it skips the test when neither works.
func requireTool(t *testing.T, cmd, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(cmd); err == nil {
		return p
	}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("apt-get"); err == nil {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			c := exec.CommandContext(ctx, "apt-get", "install", "-y", "-qq", pkg)
			c.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := c.CombinedOutput(); err != nil {
				t.Logf("apt-get install %s: %v\n%s", pkg, err, out)
			}
		}
		if p, err := exec.LookPath(cmd); err == nil {
			return p
		}
	}
	t.Skipf("requires %s: apt-get install %s (as root) and run again", cmd, pkg)
	return ""
}

// startRegistry runs docker-registry on a free loopback port with its
// storage in a temp dir, waits for /v2/ to answer and stops it when the
// test ends. It returns host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	bin := requireTool(t, "docker-registry", "docker-registry")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start docker-registry: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("docker-registry log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		select {
		case err := <-done:
			t.Fatalf("docker-registry exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry does not answer on %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// skopeo runs skopeo and returns its stdout.
func skopeo(t *testing.T, args ...string) []byte {
	t.Helper()
	bin := requireTool(t, "skopeo", "skopeo")
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

// inspectID returns the image ID kiln inspect reports.
func (e *env) inspectID(ref string) string {
	e.t.Helper()
	var insp []struct{ Id string }
	if err := json.Unmarshal([]byte(e.must("inspect", ref).stdout), &insp); err != nil || len(insp) != 1 {
		e.t.Fatalf("kiln inspect %s: %v", ref, err)
	}
	return insp[0].Id
}

func TestRegistryPushPull(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t)
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials of the host's user
	ref := reg + "/test/app:1"

	dir := writeCtx(t, map[string]string{
		"Dockerfile": "FROM busybox\nRUN echo hello from the registry > /hello\nCMD [\"cat\", \"/hello\"]\n",
	})
	id := strings.TrimSpace(e.must("build", "-q", "-t", ref, dir).stdout)

	out := e.must("push", ref).stdout
	var name, pushed string
	var size int
	if _, err := fmt.Sscanf(out, "%s digest: %s size: %d", &name, &pushed, &size); err != nil {
		t.Fatalf("kiln push printed %q: %v", out, err)
	}
	if name != ref+":" {
		t.Errorf("kiln push printed name %q, want %q", name, ref)
	}

	// skopeo sees the manifest kiln pushed and the config with the image ID.
	var insp struct{ Digest string }
	if err := json.Unmarshal(skopeo(t, "inspect", "--tls-verify=false", "docker://"+ref), &insp); err != nil {
		t.Fatal(err)
	}
	if insp.Digest != pushed {
		t.Errorf("registry has manifest %s, kiln push said %s", insp.Digest, pushed)
	}
	rawManifest := skopeo(t, "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
	if d := digest.FromBytes(rawManifest); string(d) != pushed {
		t.Errorf("raw manifest has digest %s, want %s", d, pushed)
	}
	rawConfig := skopeo(t, "inspect", "--config", "--raw", "--tls-verify=false", "docker://"+ref)
	if d := digest.FromBytes(rawConfig); string(d) != id {
		t.Errorf("registry's config has digest %s, want the image ID %s", d, id)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	skopeo(t, "copy", "--src-tls-verify=false", "docker://"+ref, "oci:"+layout+":app")
	if _, err := os.Stat(filepath.Join(layout, "index.json")); err != nil {
		t.Errorf("skopeo copy wrote no OCI layout: %v", err)
	}

	// A second store pulls the same image, and it runs.
	e2 := &env{t: t, bin: e.bin, root: t.TempDir()}
	pulled := e2.must("pull", ref).stdout
	if !strings.Contains(pulled, "Downloaded newer image for "+ref) {
		t.Errorf("kiln pull printed:\n%s", pulled)
	}
	if got := e2.inspectID(ref); got != id {
		t.Errorf("pulled image ID %s, want %s", got, id)
	}
	if got := e2.must("run", "--rm", ref).stdout; got != "hello from the registry\n" {
		t.Errorf("kiln run printed %q", got)
	}
	if again := e2.must("pull", ref).stdout; !strings.Contains(again, "Image is up to date") {
		t.Errorf("second kiln pull printed:\n%s", again)
	}

	// A fresh store builds FROM the registry image: it is pulled.
	e3 := &env{t: t, bin: e.bin, root: t.TempDir()}
	dir2 := writeCtx(t, map[string]string{
		"Dockerfile": "FROM " + ref + "\nRUN cp /hello /copy\nCMD [\"cat\", \"/copy\"]\n",
	})
	e3.must("build", "-t", "derived:1", dir2)
	if got := e3.must("run", "--rm", "derived:1").stdout; got != "hello from the registry\n" {
		t.Errorf("derived image printed %q", got)
	}
	if got := e3.inspectID(ref); got != id {
		t.Errorf("build pulled image ID %s, want %s", got, id)
	}

	// --pull=never does not pull, and says which image it lacks.
	e4 := &env{t: t, bin: e.bin, root: t.TempDir()}
	r := e4.kiln("build", "--pull=never", dir2)
	if r.code == 0 || !strings.Contains(r.stderr, ref) {
		t.Errorf("build --pull=never in an empty store: exit %d\n%s", r.code, r.stderr)
	}

	// build --push pushes each tag; the base layers are already there.
	ref2 := reg + "/test/derived:2"
	e3.must("build", "--push", "-t", ref2, dir2)
	var insp2 struct{ Digest string }
	if err := json.Unmarshal(skopeo(t, "inspect", "--tls-verify=false", "docker://"+ref2), &insp2); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(insp2.Digest, "sha256:") {
		t.Errorf("build --push: registry has %q", insp2.Digest)
	}

	// Errors name the image and the registry.
	r = e2.kiln("pull", reg+"/test/app:nope")
	if r.code == 0 || !strings.Contains(r.stderr, "not found") || !strings.Contains(r.stderr, reg) {
		t.Errorf("pull of a missing tag: exit %d\n%s", r.code, r.stderr)
	}
}

func TestRegistryLoginLogout(t *testing.T) {
	e := &env{t: t, bin: kiln(t), root: t.TempDir()}
	reg := startRegistry(t)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	// The registry wants no credentials, so any login passes the check
	// and is saved the way docker saves it; logout removes it.
	e.must("login", "-u", "me", "-p", "secret", reg)
	b, err := os.ReadFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Auths[reg].Auth; got != "bWU6c2VjcmV0" { // base64("me:secret")
		t.Errorf("config.json auths[%s].auth = %q, want base64 of me:secret", reg, got)
	}
	if out := e.must("logout", reg).stdout; !strings.Contains(out, "Removing login credentials for "+reg) {
		t.Errorf("kiln logout printed %q", out)
	}
	if out := e.must("logout", reg).stdout; !strings.Contains(out, "Not logged in") {
		t.Errorf("second kiln logout printed %q", out)
	}
}
