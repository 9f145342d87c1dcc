package cache

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// crashEnv makes the test binary act as a kiln process that gets killed.
const crashEnv = "KILN_CACHE_TEST_CRASH_ROOT"

// TestKilledProcessLeftovers starts a child process that opens the store,
// prepares a layer and starts writing a blob, kills it with SIGKILL in the
// middle, and checks that the next Open cleans up after it.
func TestKilledProcessLeftovers(t *testing.T) {
	if root := os.Getenv(crashEnv); root != "" {
		crashChild(root)
		return
	}
	root := t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestKilledProcessLeftovers$")
	cmd.Env = append(os.Environ(), crashEnv+"="+root)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child said %q, %v", line, err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	left := listDir(t, filepath.Join(root, tmpDir))
	if len(left) != 1 {
		t.Fatalf("child left tmp/ = %v, want its own dir", left)
	}
	if got := listDir(t, filepath.Join(root, tmpDir, left[0])); len(got) < 3 {
		t.Fatalf("child's temp dir holds %v, want owner, ingest and active dirs", got)
	}

	s := openStore(t, root)
	if got := listDir(t, filepath.Join(root, tmpDir)); len(got) != 1 || got[0] != filepath.Base(s.tmp) {
		t.Errorf("tmp/ after Open = %v, want only %s", got, filepath.Base(s.tmp))
	}
	// Usable without repair: the prune lock is free too.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := s.Prune(ctx, PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	importTar(t, s, map[string]string{"after": "crash"})
}

// crashChild is the child of TestKilledProcessLeftovers; it never returns.
func crashChild(root string) {
	ctx := context.Background()
	s, err := Open(ctx, root, Options{})
	if err != nil {
		panic(err)
	}
	a, err := s.Prepare(ctx, nil)
	if err != nil {
		panic(err)
	}
	if err := os.WriteFile(filepath.Join(a.UpperDir, "file"), []byte("half done"), 0o644); err != nil {
		panic(err)
	}
	pr, pw := io.Pipe()
	go func() {
		_, _, _ = s.WriteBlob(ctx, pr, "")
	}()
	if _, err := pw.Write([]byte("partial blob")); err != nil {
		panic(err)
	}
	os.Stdout.WriteString("ready\n")
	select {}
}

func TestOpenWaitsForPrune(t *testing.T) {
	root := t.TempDir()
	openStore(t, root).Close()
	// Another process pruning holds the root lock exclusively.
	f, err := os.OpenFile(filepath.Join(root, lockFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := flockTry(f, lockExclusive); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := Open(ctx, root, Options{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open during a prune: %v, want DeadlineExceeded", err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		f.Close()
	}()
	openStore(t, root)
}
