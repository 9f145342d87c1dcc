// Package executortest holds the conformance tests every executor.Executor
// must pass, plus helpers to build small busybox root filesystems. The tests
// need root (namespaces, overlayfs) and /bin/busybox; they skip otherwise.
//
// An implementation runs the suite from its own tests:
//
//	func TestConformance(t *testing.T) {
//		executortest.Suite(t, func(t *testing.T) executor.Executor { ... })
//	}
//
// Func tests need CopyHandler and FailHandler registered with the
// executor's init under CopyHandlerName and FailHandlerName.
package executortest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/executor"
)

// Busybox is the static busybox binary the test root filesystems are built from.
const Busybox = "/bin/busybox"

// rootReason is the skip message of tests that need root.
const rootReason = "requires root for namespaces and overlayfs; run as root: go test ./executor/..."

// RequireRoot skips the test unless it runs as root with /bin/busybox.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip(rootReason)
	}
	if _, err := os.Stat(Busybox); err != nil {
		t.Skipf("requires a static %s to build test root filesystems: %v", Busybox, err)
	}
}

// applets are linked to busybox in BinLayer.
var applets = []string{
	"sh", "cat", "chmod", "chown", "cut", "echo", "env", "false", "grep", "head", "hostname", "id",
	"ip", "kill", "ln", "ls", "mkdir", "pwd", "readlink", "rm", "seq", "sleep", "stat", "stty", "tail",
	"test", "touch", "tr", "true", "tty", "wc",
}

// BinLayer returns a new lower dir holding only /bin/busybox and /bin
// symlinks to it for common applets (sh, echo, cat, ls, id, ...): no /etc,
// /proc or /dev.
func BinLayer(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(Busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(bin, a)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// EtcLayer returns a new lower dir with /etc/passwd (root and
// app:x:1000:1000 with home /home/app), /etc/group and /etc/motd, but no
// /etc/hosts, /etc/resolv.conf or /etc/hostname.
func EtcLayer(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	WriteFiles(t, dir, map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\nwheel:x:10:root\napp:x:1000:\nstaff:x:50:app\n",
		"etc/motd":   "welcome\n",
	})
	return dir
}

// WriteFiles writes files (slash-separated path → content) under dir,
// creating parent directories. A path ending in "*" is made executable
// (the star is dropped).
func WriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		mode := os.FileMode(0o644)
		if n := len(name); n > 0 && name[n-1] == '*' {
			name, mode = name[:n-1], 0o755
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// NewRootfs returns a Rootfs over lowers (bottom first) with a new, empty
// upper and work dir.
func NewRootfs(t testing.TB, lowers ...string) executor.Rootfs {
	t.Helper()
	dir := t.TempDir()
	r := executor.Rootfs{
		LowerDirs: lowers,
		UpperDir:  filepath.Join(dir, "upper"),
		WorkDir:   filepath.Join(dir, "work"),
	}
	for _, d := range []string{r.UpperDir, r.WorkDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// Names the Func tests' handlers must be registered under.
const (
	CopyHandlerName = "executortest-copy"
	FailHandlerName = "executortest-fail"
)

// CopyPayload is the JSON payload of CopyHandler.
type CopyPayload struct {
	// Src is a path in inputs[Input]; Dst a path in the root filesystem.
	Input int    `json:"input"`
	Src   string `json:"src"`
	Dst   string `json:"dst"`
}

// CopyHandler copies a file from an input into the root filesystem (it runs
// chrooted, so Dst is resolved in the container) and prints "copied <dst>".
func CopyHandler(ctx context.Context, inputs []*os.Root, payload []byte) error {
	var p CopyPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return err
	}
	if p.Input >= len(inputs) {
		return fmt.Errorf("no input %d", p.Input)
	}
	src, err := inputs[p.Input].Open(p.Src)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(p.Dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	fmt.Printf("copied %s\n", p.Dst)
	return nil
}

// FailHandler returns an error whose message is the payload.
func FailHandler(ctx context.Context, inputs []*os.Root, payload []byte) error {
	return errors.New(string(payload))
}
