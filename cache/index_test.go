package cache

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// importTar stores a plain tar layer made of files.
func importTar(t testing.TB, s *Store, files map[string]string) Layer {
	t.Helper()
	l, err := s.ImportLayer(t.Context(), bytes.NewReader(makeTar(t, files)), "", "")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestKeys(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	l1 := importTar(t, s, map[string]string{"a": "1"})
	l2 := importTar(t, s, map[string]string{"b": "2"})
	chain := Chain{l1, l2}
	key := digest.FromString("key")

	if _, err := s.LookupKey(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LookupKey of a new key: %v, want ErrNotFound", err)
	}
	if err := s.RecordKey(ctx, key, chain); err != nil {
		t.Fatal(err)
	}
	got, err := s.LookupKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if got.ChainID() != chain.ChainID() || len(got) != 2 || got[1] != l2 {
		t.Errorf("LookupKey = %v, want %v", got, chain)
	}

	empty := digest.FromString("scratch")
	if err := s.RecordKey(ctx, empty, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LookupKey(ctx, empty); err != nil || len(got) != 0 {
		t.Errorf("LookupKey(empty chain) = %v, %v", got, err)
	}

	// A chain whose blob is gone is a miss, so the step is rebuilt.
	if err := os.Remove(filepath.Join(s.Root(), blobsDir, l2.Digest.Encoded())); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupKey(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupKey with a missing blob: %v, want ErrNotFound", err)
	}
	if err := s.RecordKey(ctx, digest.FromString("k2"), chain); !errors.Is(err, ErrNotFound) {
		t.Errorf("RecordKey with a missing blob: %v, want ErrNotFound", err)
	}
	if err := s.RecordKey(ctx, "bogus", chain); err == nil {
		t.Error("RecordKey accepted an invalid key")
	}
}

func TestLookupKeyTouches(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s, err := Open(t.Context(), t.TempDir(), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	key := digest.FromString("k")
	if err := s.RecordKey(ctx, key, nil); err != nil {
		t.Fatal(err)
	}
	lastUsed := func() int64 {
		inv, err := s.readInventory(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return inv.keys[0].rec.LastUsed
	}
	now = now.Add(time.Hour)
	if _, err := s.LookupKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); got != now.UnixNano() {
		t.Errorf("last use = %v, want %v", time.Unix(0, got), now)
	}
}

func TestImages(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	m1, _, err := s.WriteBlob(ctx, bytes.NewReader([]byte(`{"m":1}`)), "")
	if err != nil {
		t.Fatal(err)
	}
	m2, _, err := s.WriteBlob(ctx, bytes.NewReader([]byte(`{"m":2}`)), "")
	if err != nil {
		t.Fatal(err)
	}
	const app = "docker.io/library/app:1"
	if _, err := s.Resolve(ctx, app); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Resolve of a new name: %v", err)
	}
	if err := s.Tag(ctx, app, m1); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag(ctx, "example.com/x:latest", m1); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag(ctx, app, m2); err != nil { // moves the tag
		t.Fatal(err)
	}
	if d, err := s.Resolve(ctx, app); err != nil || d != m2 {
		t.Errorf("Resolve = %s, %v; want %s", d, err, m2)
	}
	all, err := s.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]digest.Digest{app: m2, "example.com/x:latest": m1}
	if !maps.Equal(all, want) {
		t.Errorf("Images = %v, want %v", all, want)
	}
	if err := s.Untag(ctx, app); err != nil {
		t.Fatal(err)
	}
	if err := s.Untag(ctx, app); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Untag: %v, want ErrNotFound", err)
	}
	if _, err := s.Resolve(ctx, app); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve after Untag: %v", err)
	}

	for _, tc := range []struct {
		name string
		m    digest.Digest
	}{
		{"", m1},
		{"bad name", m1},
		{"x:1", digest.FromString("not stored")},
		{"x:1", "sha256:nope"},
	} {
		if err := s.Tag(ctx, tc.name, tc.m); err == nil {
			t.Errorf("Tag(%q, %s) succeeded", tc.name, tc.m)
		}
	}
}
