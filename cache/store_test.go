package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestOpenCreatesLayout(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	s := openStore(t, root)
	for _, p := range []string{blobsDir, snapshotsDir, tmpDir, indexFile, lockFile} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("missing %s: %v", p, err)
		}
	}
	if filepath.Dir(s.tmp) != filepath.Join(root, tmpDir) {
		t.Errorf("temp dir %s is not under tmp/", s.tmp)
	}
	if _, err := os.Stat(filepath.Join(s.tmp, ownerFile)); err != nil {
		t.Errorf("no owner file: %v", err)
	}
}

func TestOpenRemovesLeftovers(t *testing.T) {
	root := t.TempDir()
	live := openStore(t, root) // its temp dir must survive

	tmp := filepath.Join(root, tmpDir)
	mk := func(name string, withOwner bool, age time.Duration) {
		dir := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Join(dir, "active-1", "upper", "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ingest-1"), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if withOwner {
			if err := os.WriteFile(filepath.Join(dir, ownerFile), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Now().Add(-age)
		if err := os.Chtimes(dir, old, old); err != nil {
			t.Fatal(err)
		}
	}
	mk("1234-dead", true, 0)                 // killed -9: owner unlocked
	mk("1235-noowner-old", false, time.Hour) // killed before its owner file
	mk("1236-noowner-new", false, 0)         // maybe opening right now
	if err := os.WriteFile(filepath.Join(tmp, "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	s := openStore(t, root)
	got := listDir(t, tmp)
	want := []string{"1236-noowner-new", filepath.Base(live.tmp), filepath.Base(s.tmp)}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("tmp/ after Open = %v, want %v", got, want)
	}
	// The new store works.
	if _, _, err := s.WriteBlob(t.Context(), bytes.NewReader([]byte("x")), ""); err != nil {
		t.Fatal(err)
	}
}

func TestCloseRemovesTemp(t *testing.T) {
	root := t.TempDir()
	s, err := Open(t.Context(), root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Prepare(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := os.Stat(a.UpperDir); !os.IsNotExist(err) {
		t.Errorf("upper dir still there after Close: %v", err)
	}
	if got := listDir(t, filepath.Join(root, tmpDir)); len(got) != 0 {
		t.Errorf("tmp/ after Close = %v", got)
	}
	if _, _, err := s.WriteBlob(t.Context(), bytes.NewReader(nil), ""); err == nil {
		t.Error("WriteBlob on a closed store succeeded")
	}
}

// TestTwoStores opens the same root twice, as two kiln processes would
// (flock locks belong to open file descriptions, so this behaves like two
// processes) and interleaves their operations.
func TestTwoStores(t *testing.T) {
	root := t.TempDir()
	a := openStore(t, root)
	b := openStore(t, root)
	ctx := t.Context()

	la := importTar(t, a, map[string]string{"a": "from a"})
	lb := importTar(t, b, map[string]string{"b": "from b"})
	if err := a.RecordKey(ctx, digest.FromString("ka"), Chain{la, lb}); err != nil {
		t.Fatal(err)
	}
	if got, err := b.LookupKey(ctx, digest.FromString("ka")); err != nil || len(got) != 2 {
		t.Fatalf("b.LookupKey = %v, %v", got, err)
	}
	if l, err := a.LayerByDiffID(ctx, lb.DiffID); err != nil || l != lb {
		t.Fatalf("a.LayerByDiffID = %v, %v", l, err)
	}

	// Both hammer the index at once.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			key := digest.FromString(fmt.Sprint("key", i))
			if err := s.RecordKey(ctx, key, Chain{la}); err != nil {
				errs <- err
				return
			}
			if _, err := s.LookupKey(ctx, key); err != nil {
				errs <- err
			}
			if err := s.Tag(ctx, fmt.Sprint("img:", i), la.Digest); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	imgs, err := a.Images(ctx)
	if err != nil || len(imgs) != 16 {
		t.Errorf("Images = %d, %v; want 16", len(imgs), err)
	}

	// Prune waits for the other store to close.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := a.Prune(short, PruneOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Prune with another store open: %v, want DeadlineExceeded", err)
	}
	// a still holds its shared lock and works.
	if _, err := a.LookupKey(ctx, digest.FromString("ka")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := a.Prune(ctx, PruneOptions{})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Prune finished while b is open: %v", err)
	default:
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Prune still waiting after b closed")
	}
	// Open waits while a prune holds the lock: it is over now.
	c := openStore(t, root)
	if _, err := c.LookupKey(ctx, digest.FromString("ka")); err != nil {
		t.Fatal(err)
	}
}

func TestTrashDefersDeletion(t *testing.T) {
	root := t.TempDir()
	var handed []string
	s, err := Open(t.Context(), root, Options{Trash: func(dir string) { handed = append(handed, dir) }})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Prepare(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 { // more than a few files: too many to delete in place
		os.WriteFile(filepath.Join(a.UpperDir, fmt.Sprint("f", i)), []byte("x"), 0o644)
	}
	if err := a.Discard(); err != nil {
		t.Fatal(err)
	}
	if len(handed) != 1 || !strings.HasPrefix(handed[0], filepath.Join(root, trashDir)+"/") {
		t.Fatalf("trash got %v", handed)
	}
	if _, err := os.Stat(handed[0]); err != nil {
		t.Fatalf("the discarded dir should wait in the trash: %v", err)
	}
	if _, err := s.Prune(t.Context(), PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(handed[0]); !os.IsNotExist(err) {
		t.Errorf("prune left the trash: %v", err)
	}
	s.Close()
}

// TestSmallDiscardInPlace checks that a layer of a few files is deleted at
// once instead of through the trash.
func TestSmallDiscardInPlace(t *testing.T) {
	var handed []string
	s, err := Open(t.Context(), t.TempDir(), Options{Trash: func(dir string) { handed = append(handed, dir) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, err := s.Prepare(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(a.UpperDir, "d/e"), 0o755)
	os.WriteFile(filepath.Join(a.UpperDir, "d/e/f"), []byte("x"), 0o644)
	if err := a.Discard(); err != nil {
		t.Fatal(err)
	}
	if len(handed) != 0 {
		t.Fatalf("a three-entry layer went to the trash: %v", handed)
	}
	if _, err := os.Stat(a.UpperDir); !os.IsNotExist(err) {
		t.Fatalf("the discarded layer is still there: %v", err)
	}
}
