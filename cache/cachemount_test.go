package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCacheMount(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := context.Background()

	dir, release, err := s.CacheMount(ctx, "/root/.cache", CacheMountOptions{Mode: 0o700, UID: 5, GID: 6})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o700 || (os.Geteuid() == 0 && (st.Uid != 5 || st.Gid != 6)) {
		t.Errorf("new cache mount: mode %v owner %d:%d, want 0700 5:6", fi.Mode().Perm(), st.Uid, st.Gid)
	}
	if err := os.WriteFile(filepath.Join(dir, "kept"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Shared: a second user gets the same directory at once, content kept,
	// the options of later users do not change it.
	dir2, release2, err := s.CacheMount(ctx, "/root/.cache", CacheMountOptions{Mode: 0o755})
	if err != nil || dir2 != dir {
		t.Fatalf("shared second use: %s, %v; want %s", dir2, err, dir)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("reuse changed the mode to %v", fi.Mode().Perm())
	}
	release2()
	release()

	// Locked: the second waits for the first.
	_, releaseL, err := s.CacheMount(ctx, "locked", CacheMountOptions{Sharing: SharingLocked})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, _, err := s.CacheMount(short, "locked", CacheMountOptions{Sharing: SharingLocked}); err == nil {
		t.Error("a locked cache mount in use was handed out again")
	}
	releaseL()
	if _, r, err := s.CacheMount(ctx, "locked", CacheMountOptions{Sharing: SharingLocked}); err != nil {
		t.Errorf("locked cache mount after release: %v", err)
	} else {
		r()
	}

	// Private: a busy one gives another instance.
	p1, r1, err := s.CacheMount(ctx, "private", CacheMountOptions{Sharing: SharingPrivate})
	if err != nil {
		t.Fatal(err)
	}
	p2, r2, err := s.CacheMount(ctx, "private", CacheMountOptions{Sharing: SharingPrivate})
	if err != nil || p2 == p1 {
		t.Errorf("private cache mount in use: %s, %v; want another instance than %s", p2, err, p1)
	}
	r1()
	r2()
	if _, _, err := s.CacheMount(ctx, "x", CacheMountOptions{Sharing: "sometimes"}); err == nil {
		t.Error("an unknown sharing mode was accepted")
	}

	rep, err := s.Prune(ctx, PruneOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RemovedCacheMounts != 4 {
		t.Errorf("Prune All removed %d cache mounts, want 4", rep.RemovedCacheMounts)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cache mount still there after Prune All: %v", err)
	}
}

// TestCacheMountSeed fills a new cache once; a seed that fails leaves no
// cache and no temporary directories behind.
func TestCacheMountSeed(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := context.Background()
	calls := 0
	seed := func(_ context.Context, dir, work string) error {
		calls++
		if fi, err := os.Stat(work); err != nil || !fi.IsDir() {
			t.Errorf("no work dir: %v", err)
		}
		return os.WriteFile(filepath.Join(dir, "seeded"), []byte("s"), 0o644)
	}
	for range 2 {
		dir, release, err := s.CacheMount(ctx, "seeded", CacheMountOptions{Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "seeded")); string(b) != "s" {
			t.Errorf("seeded file: %q, %v", b, err)
		}
		release()
	}
	if calls != 1 {
		t.Errorf("seeded %d times, want once", calls)
	}

	before, _ := os.ReadDir(s.tmp)
	failing := func(_ context.Context, dir, _ string) error {
		os.WriteFile(filepath.Join(dir, "half"), []byte("h"), 0o644)
		return errors.New("copy failed")
	}
	if _, _, err := s.CacheMount(ctx, "broken", CacheMountOptions{Seed: failing}); err == nil || !strings.Contains(err.Error(), "copy failed") {
		t.Fatalf("failing seed: %v", err)
	}
	if entries, _ := os.ReadDir(s.tmp); len(entries) != len(before) {
		t.Errorf("temporary dirs left: %v, before %v", entries, before)
	}
	dir, release, err := s.CacheMount(ctx, "broken", CacheMountOptions{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := os.Stat(filepath.Join(dir, "half")); !os.IsNotExist(err) {
		t.Errorf("a failed seed's file is in the cache: %v", err)
	}
}
