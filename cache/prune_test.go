package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// writeImage stores a config and a manifest for layers and returns the
// manifest digest.
func writeImage(t testing.TB, s *Store, layers ...Layer) (manifest, config digest.Digest) {
	t.Helper()
	ctx := t.Context()
	cfg := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"rootfs":       map[string]any{"type": "layers", "diff_ids": Chain(layers).DiffIDs()},
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	config, size, err := s.WriteBlob(ctx, bytes.NewReader(raw), "")
	if err != nil {
		t.Fatal(err)
	}
	type desc struct {
		MediaType string        `json:"mediaType"`
		Digest    digest.Digest `json:"digest"`
		Size      int64         `json:"size"`
	}
	m := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{2, "application/vnd.oci.image.manifest.v1+json", desc{"application/vnd.oci.image.config.v1+json", config, size}, []desc{}}
	for _, l := range layers {
		m.Layers = append(m.Layers, desc{l.MediaType, l.Digest, l.Size})
	}
	raw, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	manifest, _, err = s.WriteBlob(ctx, bytes.NewReader(raw), "")
	if err != nil {
		t.Fatal(err)
	}
	return manifest, config
}

// fakeSnapshot creates the snapshot dir of chain by hand (no unpacking).
func fakeSnapshot(t testing.TB, s *Store, chain Chain) {
	t.Helper()
	dir := filepath.Join(s.Root(), snapshotsDir, chain.ChainID().Encoded())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "content"), bytes.Repeat([]byte("s"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
}

// state lists the blobs and snapshots of a store.
type state struct {
	blobs, snapshots []string
}

func storeState(t testing.TB, s *Store) state {
	t.Helper()
	return state{listDir(t, filepath.Join(s.Root(), blobsDir)), listDir(t, filepath.Join(s.Root(), snapshotsDir))}
}

func hexes(ds ...digest.Digest) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Encoded()
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func chainIDs(chains ...Chain) []digest.Digest {
	out := make([]digest.Digest, len(chains))
	for i, c := range chains {
		out[i] = c.ChainID()
	}
	return out
}

func TestPrune(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	l1 := importTar(t, s, map[string]string{"base": "1"})
	l2 := importGzip(t, s, map[string]string{"image": "2"})
	l3 := importTar(t, s, map[string]string{"key": "3"})
	l4 := importTar(t, s, map[string]string{"orphan": "4"})
	l5 := importTar(t, s, map[string]string{"untagged": "5"})

	// A tagged image {l1, l2}, unpacked.
	manifest, config := writeImage(t, s, l1, l2)
	if err := s.Tag(ctx, "docker.io/library/app:1", manifest); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(ctx, Chain{l1, l2}); err != nil {
		t.Fatal(err)
	}
	// A cache key {l1, l3}.
	key := digest.FromString("RUN make")
	if err := s.RecordKey(ctx, key, Chain{l1, l3}); err != nil {
		t.Fatal(err)
	}
	fakeSnapshot(t, s, Chain{l1, l3})
	// Garbage: an unreferenced layer with a snapshot, an untagged image,
	// a stray blob, a snapshot of a chain nobody knows.
	fakeSnapshot(t, s, Chain{l4})
	m2, c2 := writeImage(t, s, l5)
	junk, _, err := s.WriteBlob(ctx, bytes.NewReader([]byte("junk")), "")
	if err != nil {
		t.Fatal(err)
	}
	fakeSnapshot(t, s, Chain{l4, l5})

	usage, err := s.DiskUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if usage.Keys != 1 || usage.Images != 1 || usage.BlobCount != 10 || usage.SnapshotCount != 5 {
		t.Errorf("DiskUsage = %+v", usage)
	}
	if usage.Reclaimable <= 0 || usage.Reclaimable >= usage.Blobs+usage.Snapshots {
		t.Errorf("Reclaimable = %d of %d", usage.Reclaimable, usage.Blobs+usage.Snapshots)
	}

	rep, err := s.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := state{
		blobs:     hexes(l1.Digest, l2.Digest, l3.Digest, manifest, config),
		snapshots: hexes(chainIDs(Chain{l1}, Chain{l1, l2}, Chain{l1, l3})...),
	}
	if got := storeState(t, s); !slices.Equal(got.blobs, want.blobs) || !slices.Equal(got.snapshots, want.snapshots) {
		t.Errorf("after Prune:\n%v\nwant\n%v", got, want)
	}
	if rep.RemovedKeys != 0 || rep.RemovedBlobs != 5 || rep.RemovedSnapshots != 2 {
		t.Errorf("report = %+v", rep)
	}
	if rep.Reclaimed != usage.Reclaimable {
		t.Errorf("reclaimed %d bytes, DiskUsage promised %d", rep.Reclaimed, usage.Reclaimable)
	}
	for _, d := range []digest.Digest{m2, c2, junk} {
		if _, err := s.StatBlob(ctx, d); !errors.Is(err, ErrNotFound) {
			t.Errorf("blob %s still there", d)
		}
	}
	if _, err := s.LayerByDiffID(ctx, l4.DiffID); !errors.Is(err, ErrNotFound) {
		t.Errorf("layer record of a removed blob: %v", err)
	}
	if _, err := s.LookupKey(ctx, key); err != nil {
		t.Errorf("key lost: %v", err)
	}

	// All: keys go, tagged images stay.
	rep, err = s.Prune(ctx, PruneOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	want = state{
		blobs:     hexes(l1.Digest, l2.Digest, manifest, config),
		snapshots: hexes(chainIDs(Chain{l1}, Chain{l1, l2})...),
	}
	if got := storeState(t, s); !slices.Equal(got.blobs, want.blobs) || !slices.Equal(got.snapshots, want.snapshots) {
		t.Errorf("after Prune(All):\n%v\nwant\n%v", got, want)
	}
	if rep.RemovedKeys != 1 || rep.RemovedBlobs != 1 || rep.RemovedSnapshots != 1 {
		t.Errorf("report = %+v", rep)
	}
	if _, err := s.LookupKey(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("key after Prune(All): %v", err)
	}

	// Untagged, the image goes too.
	if err := s.Untag(ctx, "docker.io/library/app:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(ctx, PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := storeState(t, s); len(got.blobs)+len(got.snapshots) != 0 {
		t.Errorf("after untag and Prune: %v", got)
	}
	usage, err = s.DiskUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if usage != (Usage{}) {
		t.Errorf("DiskUsage of an empty store = %+v", usage)
	}
}

func TestPruneKeepStorage(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s, err := Open(t.Context(), t.TempDir(), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	big := func(name string) Layer {
		return importTar(t, s, map[string]string{name: string(bytes.Repeat([]byte(name), 10_000))})
	}
	// Three keys, recorded an hour apart; the middle one used last.
	var keys []digest.Digest
	var layers []Layer
	for _, name := range []string{"a", "b", "c"} {
		l := big(name)
		layers = append(layers, l)
		k := digest.FromString(name)
		keys = append(keys, k)
		now = now.Add(time.Hour)
		if err := s.RecordKey(ctx, k, Chain{l}); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Hour)
	if _, err := s.LookupKey(ctx, keys[1]); err != nil {
		t.Fatal(err)
	}
	// Room for two layers: the oldest use (a) goes.
	rep, err := s.Prune(ctx, PruneOptions{KeepStorage: 2*layers[0].Size + 100})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RemovedKeys != 1 || rep.RemovedBlobs != 1 {
		t.Errorf("report = %+v", rep)
	}
	for i, want := range []bool{false, true, true} {
		_, err := s.LookupKey(ctx, keys[i])
		if (err == nil) != want {
			t.Errorf("key %d kept = %v, want %v", i, err == nil, want)
		}
	}
	// Room for one: c (older use than b) goes.
	if _, err := s.Prune(ctx, PruneOptions{KeepStorage: layers[0].Size + 100}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupKey(ctx, keys[1]); err != nil {
		t.Errorf("most recently used key dropped: %v", err)
	}
	if _, err := s.LookupKey(ctx, keys[2]); !errors.Is(err, ErrNotFound) {
		t.Errorf("key c kept: %v", err)
	}
	// Room for nothing: all go.
	if _, err := s.Prune(ctx, PruneOptions{KeepStorage: 1}); err != nil {
		t.Fatal(err)
	}
	if got := storeState(t, s); len(got.blobs) != 0 {
		t.Errorf("blobs left: %v", got.blobs)
	}
}

func TestPruneKeepsActiveAndLease(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	l1 := importTar(t, s, map[string]string{"a": "1"})
	l2 := importTar(t, s, map[string]string{"b": "2"})
	a, err := s.Prepare(ctx, Chain{l1})
	if err != nil {
		t.Fatal(err)
	}
	release := s.Lease(Chain{l2})
	if _, err := s.Prune(ctx, PruneOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	if got := storeState(t, s); len(got.blobs) != 2 || len(got.snapshots) != 1 {
		t.Errorf("Prune removed pinned content: %v", got)
	}
	if _, err := os.Stat(a.LowerDirs[0]); err != nil {
		t.Errorf("lower dir of an Active removed: %v", err)
	}
	if err := a.Discard(); err != nil {
		t.Fatal(err)
	}
	release()
	release()
	if _, err := s.Prune(ctx, PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := storeState(t, s); len(got.blobs)+len(got.snapshots) != 0 {
		t.Errorf("after release and Prune: %v", got)
	}
}

func TestPruneDropsBrokenKeys(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	l := importTar(t, s, map[string]string{"a": "1"})
	key := digest.FromString("k")
	if err := s.RecordKey(ctx, key, Chain{l}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(s.Root(), blobsDir, l.Digest.Encoded())); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RemovedKeys != 1 {
		t.Errorf("report = %+v, want the broken key dropped", rep)
	}
}
