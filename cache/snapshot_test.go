package cache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

// importGzip stores a gzip layer made of files.
func importGzip(t testing.TB, s *Store, files map[string]string) Layer {
	t.Helper()
	l, err := s.ImportLayer(t.Context(), bytes.NewReader(gzipBytes(t, makeTar(t, files))), "", "")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSnapshot(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	base := importGzip(t, s, map[string]string{"etc/os-release": "kiln", "bin/sh": "sh"})
	top := importTar(t, s, map[string]string{"etc/app.conf": "x=1"})
	chain := Chain{base, top}

	dirs, err := s.Snapshot(ctx, chain)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		filepath.Join(s.Root(), snapshotsDir, chain[:1].ChainID().Encoded()),
		filepath.Join(s.Root(), snapshotsDir, chain.ChainID().Encoded()),
	}
	if len(dirs) != 2 || dirs[0] != want[0] || dirs[1] != want[1] {
		t.Fatalf("Snapshot = %v, want %v", dirs, want)
	}
	if got := readFile(t, filepath.Join(dirs[0], "etc/os-release")); got != "kiln" {
		t.Errorf("base layer file = %q", got)
	}
	if got := readFile(t, filepath.Join(dirs[1], "etc/app.conf")); got != "x=1" {
		t.Errorf("top layer file = %q", got)
	}
	if _, err := os.Stat(filepath.Join(dirs[1], "bin/sh")); !os.IsNotExist(err) {
		t.Errorf("top snapshot holds a file of the base layer: %v", err)
	}
	// Again: nothing to do, same answer.
	again, err := s.Snapshot(ctx, chain)
	if err != nil || again[1] != dirs[1] {
		t.Fatalf("second Snapshot = %v, %v", again, err)
	}
	if got, err := s.Snapshot(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("Snapshot(empty) = %v, %v", got, err)
	}
	if left := tmpLeftovers(t, s); len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func TestSnapshotCorruptBlob(t *testing.T) {
	files := map[string]string{"etc/passwd": "root:x:0:0::/root:/bin/sh\n", "big": string(bytes.Repeat([]byte("z"), 100_000))}
	tests := []struct {
		name   string
		gzip   bool
		offset int // byte flipped, from the end when negative
	}{
		{"gzip header", true, 4},
		{"gzip body", true, 100},
		{"gzip trailer", true, -2},
		{"tar header", false, 10},
		{"tar content", false, 600},
		{"tar padding", false, -5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, "")
			var l Layer
			if tt.gzip {
				l = importGzip(t, s, files)
			} else {
				l = importTar(t, s, files)
			}
			at := tt.offset
			if at < 0 {
				at += int(l.Size)
			}
			flipByte(t, s, l.Digest, at)
			_, err := s.Snapshot(t.Context(), Chain{l})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Snapshot of a corrupt blob: %v, want ErrCorrupt", err)
			}
			if got := listDir(t, filepath.Join(s.Root(), snapshotsDir)); len(got) != 0 {
				t.Errorf("snapshots after a failed unpack: %v", got)
			}
			if left := tmpLeftovers(t, s); len(left) > 0 {
				t.Errorf("temp files left behind: %v", left)
			}
			if _, err := s.Prepare(t.Context(), Chain{l}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Prepare on a corrupt blob: %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestSnapshotMissingBlob(t *testing.T) {
	s := openStore(t, "")
	l := importTar(t, s, map[string]string{"a": "b"})
	if err := os.Remove(filepath.Join(s.Root(), blobsDir, l.Digest.Encoded())); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(t.Context(), Chain{l}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Snapshot with a missing blob: %v, want ErrNotFound", err)
	}
}

func TestSnapshotConcurrent(t *testing.T) {
	root := t.TempDir()
	stores := []*Store{openStore(t, root), openStore(t, root)} // two "processes"
	files := map[string]string{}
	for i := range 200 {
		files[filepath.Join("d", string(rune('a'+i%26)), digest.FromBytes([]byte{byte(i)}).Encoded()[:8])] = string(bytes.Repeat([]byte{byte(i)}, 1000))
	}
	l := importGzip(t, stores[0], files)
	l2 := importTar(t, stores[0], map[string]string{"top": "t"})
	chain := Chain{l, l2}
	var wg sync.WaitGroup
	results := make([][]string, 8)
	errs := make([]error, 8)
	for i := range results {
		wg.Go(func() {
			results[i], errs[i] = stores[i%2].Snapshot(t.Context(), chain)
		})
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if results[i][1] != results[0][1] {
			t.Errorf("goroutine %d got %v, others %v", i, results[i], results[0])
		}
	}
	if got := listDir(t, filepath.Join(root, snapshotsDir)); len(got) != 2 {
		t.Errorf("snapshots = %v, want 2", got)
	}
	for _, s := range stores {
		if left := tmpLeftovers(t, s); len(left) > 0 {
			t.Errorf("temp files left behind: %v", left)
		}
	}
}

func TestPrepareCommit(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	base := importGzip(t, s, map[string]string{"etc/os-release": "kiln"})
	a, err := s.Prepare(ctx, Chain{base})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.LowerDirs) != 1 || a.UpperDir == "" || a.WorkDir == "" {
		t.Fatalf("Active = %+v", a)
	}
	if !isUnder(a.UpperDir, filepath.Join(s.Root(), tmpDir)) || !isUnder(a.WorkDir, filepath.Join(s.Root(), tmpDir)) {
		t.Errorf("upper %s / work %s not under tmp/", a.UpperDir, a.WorkDir)
	}
	// What a RUN step would write into the upper dir.
	if err := os.MkdirAll(filepath.Join(a.UpperDir, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"app/main.go": "package main", "app/go.mod": "module app"} {
		if err := os.WriteFile(filepath.Join(a.UpperDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	upper := a.UpperDir
	chain, err := a.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 || chain[0] != base {
		t.Fatalf("Commit = %v", chain)
	}
	l := chain[1]
	// A lazy, uncompressed layer (see TestCommitLazy).
	if l.MediaType != MediaTypeLayerTar || l.Digest != l.DiffID {
		t.Errorf("layer = %+v, want an uncompressed tar", l)
	}
	tarball, err := s.ReadBlob(ctx, l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(tarball)) != l.Size {
		t.Errorf("size = %d, blob has %d bytes", l.Size, len(tarball))
	}
	if got := digest.FromBytes(tarball); got != l.DiffID {
		t.Errorf("diff ID = %s, tar hashes to %s", l.DiffID, got)
	}
	entries := readTar(t, tarball)
	if entries["app/main.go"] != "package main" || entries["app/go.mod"] != "module app" {
		t.Errorf("layer tar = %v", entries)
	}
	if _, ok := entries["etc/os-release"]; ok {
		t.Errorf("layer tar holds a base layer file: %v", entries)
	}
	// The upper dir became the new snapshot.
	snap := filepath.Join(s.Root(), snapshotsDir, chain.ChainID().Encoded())
	if got := readFile(t, filepath.Join(snap, "app/main.go")); got != "package main" {
		t.Errorf("snapshot file = %q", got)
	}
	if _, err := os.Stat(upper); !os.IsNotExist(err) {
		t.Errorf("upper dir still there: %v", err)
	}
	if left := tmpLeftovers(t, s); len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
	if got, err := s.LayerByDiffID(ctx, l.DiffID); err != nil || got != l {
		t.Errorf("LayerByDiffID = %v, %v", got, err)
	}
	// The Active is finished.
	if _, err := a.Commit(ctx); err == nil {
		t.Error("second Commit succeeded")
	}
	if err := a.Discard(); err != nil {
		t.Errorf("Discard after Commit: %v", err)
	}

	// The same change on the same parent gives the same chain; the
	// existing snapshot is kept.
	b, err := s.Prepare(ctx, Chain{base})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(b.UpperDir, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"app/main.go": "package main", "app/go.mod": "module app"} {
		if err := os.WriteFile(filepath.Join(b.UpperDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Same mtimes, so the same tar.
	for _, p := range []string{"app", "app/main.go", "app/go.mod"} {
		fi, err := os.Stat(filepath.Join(snap, p))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(b.UpperDir, p), fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	chain2, err := b.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if chain2.ChainID() != chain.ChainID() {
		t.Errorf("same change gave chain %s, first %s", chain2, chain)
	}
	if left := tmpLeftovers(t, s); len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func isUnder(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func TestCommitEmpty(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	base := importTar(t, s, map[string]string{"a": "b"})
	for _, parent := range []Chain{nil, {base}} {
		a, err := s.Prepare(ctx, parent)
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.ChainID() != parent.ChainID() || len(got) != len(parent) {
			t.Errorf("empty Commit on %v = %v, want the parent", parent, got)
		}
	}
	blobs := listDir(t, filepath.Join(s.Root(), blobsDir))
	if len(blobs) != 1 {
		t.Errorf("blobs = %v, want only the base layer", blobs)
	}
	if left := tmpLeftovers(t, s); len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func TestDiscard(t *testing.T) {
	s := openStore(t, "")
	a, err := s.Prepare(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.UpperDir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.Discard(); err != nil {
		t.Fatal(err)
	}
	if err := a.Discard(); err != nil {
		t.Errorf("second Discard: %v", err)
	}
	if left := tmpLeftovers(t, s); len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
	if _, err := a.Commit(t.Context()); err == nil {
		t.Error("Commit after Discard succeeded")
	}
}
