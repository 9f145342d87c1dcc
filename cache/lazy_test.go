package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// treeTime is the modification time writeTree gives everything.
var treeTime = time.Unix(1_700_000_000, 0)

// writeTree fills an upper dir with a tree that exercises every kind of tar
// entry Diff writes: nested dirs, a 300 kB random file, an empty file, a
// symlink, a hard link, a user xattr (where the filesystem has them) and,
// as root, a whiteout and an opaque dir. tag makes the content unique. It
// returns the regular files and their content.
func writeTree(t testing.TB, dir, tag string) map[string]string {
	t.Helper()
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	random := make([]byte, 300_000)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	files := map[string]string{
		"app/main.go":      "package main // " + tag,
		"app/data/random":  string(random),
		"app/data/empty":   "",
		"etc/app.conf":     "tag=" + tag,
		"usr/lib/liba.so1": "lib",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("liba.so1", filepath.Join(dir, "usr/lib/liba.so")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "app/main.go"), filepath.Join(dir, "app/main.go.bak")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(dir, "etc/app.conf"), "user.kiln", []byte("x"), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Mknod(filepath.Join(dir, "etc/removed"), unix.S_IFCHR, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(dir, "var"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Setxattr(filepath.Join(dir, "var"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
			t.Fatal(err)
		}
	}
	// Children before parents, so the dir times stick.
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(treeTime.UnixNano()), unix.NsecToTimespec(treeTime.UnixNano())}
	for _, p := range slices.Backward(paths) {
		if p == dir {
			continue
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// commitTree commits writeTree(tag) on parent.
func commitTree(t testing.TB, s *Store, parent Chain, tag string) (Chain, map[string]string) {
	t.Helper()
	a, err := s.Prepare(t.Context(), parent)
	if err != nil {
		t.Fatal(err)
	}
	files := writeTree(t, a.UpperDir, tag)
	chain, err := a.Commit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != len(parent)+1 {
		t.Fatalf("Commit = %v, want a new layer on %v", chain, parent)
	}
	return chain, files
}

func blobFile(s *Store, d digest.Digest) string {
	return filepath.Join(s.Root(), blobsDir, d.Encoded())
}

func TestCommitLazy(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	base := importGzip(t, s, map[string]string{"etc/os-release": "kiln"})
	chain, files := commitTree(t, s, Chain{base}, "lazy")
	l := chain[1]
	if l.MediaType != MediaTypeLayerTar || l.Digest != l.DiffID || l.Size <= 0 {
		t.Fatalf("layer = %+v, want an uncompressed tar with Digest == DiffID", l)
	}
	if exists(blobFile(s, l.Digest)) {
		t.Fatal("Commit wrote a blob file")
	}

	// Present without being written.
	if size, err := s.StatBlob(ctx, l.Digest); err != nil || size != l.Size {
		t.Errorf("StatBlob = %d, %v; want %d", size, err, l.Size)
	}
	key := digest.FromString("RUN lazy")
	if err := s.RecordKey(ctx, key, chain); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LookupKey(ctx, key); err != nil || got.ChainID() != chain.ChainID() {
		t.Errorf("LookupKey = %v, %v", got, err)
	}
	if got, err := s.LayerByDiffID(ctx, l.DiffID); err != nil || got != l {
		t.Errorf("LayerByDiffID = %+v, %v", got, err)
	}
	if exists(blobFile(s, l.Digest)) {
		t.Fatal("StatBlob, RecordKey or LookupKey wrote the blob file")
	}

	// The first read writes the blob.
	blob, err := s.ReadBlob(ctx, l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if got := digest.FromBytes(blob); got != l.DiffID || int64(len(blob)) != l.Size {
		t.Errorf("blob hashes to %s (%d bytes), want %s (%d bytes)", got, len(blob), l.DiffID, l.Size)
	}
	entries := readTar(t, blob)
	for name, content := range files {
		if entries[name] != content {
			t.Errorf("layer tar: %s = %.20q, want %.20q", name, entries[name], content)
		}
	}
	wantOther := map[string]string{"usr/lib/liba.so": "<2>", "app/main.go.bak": "<1>"}
	if os.Geteuid() == 0 {
		wantOther["etc/.wh.removed"] = ""
		wantOther["var/.wh..wh..opq"] = ""
	}
	for name, want := range wantOther {
		if got, ok := entries[name]; !ok || got != want {
			t.Errorf("layer tar: %s = %q, %v; want %q", name, got, ok, want)
		}
	}
	if _, ok := entries["etc/os-release"]; ok {
		t.Error("layer tar holds a file of the base layer")
	}
	fi, err := os.Stat(blobFile(s, l.Digest))
	if err != nil {
		t.Fatalf("no blob file after the first read: %v", err)
	}
	if fi.Mode().Perm() != 0o444 || fi.Size() != l.Size {
		t.Errorf("blob file: mode %v, size %d", fi.Mode(), fi.Size())
	}

	// Deterministic: without the file, the same bytes again.
	if err := os.Remove(blobFile(s, l.Digest)); err != nil {
		t.Fatal(err)
	}
	if size, err := s.StatBlob(ctx, l.Digest); err != nil || size != l.Size {
		t.Errorf("StatBlob after removing the file = %d, %v", size, err)
	}
	again, err := s.ReadBlob(ctx, l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, blob) {
		t.Error("second materialization gave different bytes")
	}

	// The snapshot is the upper dir: nothing to unpack.
	dirs, err := s.Snapshot(ctx, chain)
	if err != nil {
		t.Fatal(err)
	}
	if dirs[1] != s.snapshotPath(chain.ChainID()) || readFile(t, filepath.Join(dirs[1], "etc/app.conf")) != "tag=lazy" {
		t.Errorf("Snapshot = %v", dirs)
	}
	if left := tmpLeftovers(t, s); len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

// countHandler counts log records with a given message.
type countHandler struct {
	msg string
	n   *atomic.Int32
}

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

func TestLazyBlobConcurrent(t *testing.T) {
	root := t.TempDir()
	var writes atomic.Int32
	logger := slog.New(countHandler{msg: "writing the blob of a committed layer", n: &writes})
	first, err := Open(t.Context(), root, Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Close() })
	stores := []*Store{first, openStore(t, root)} // two "processes"

	for _, only := range []bool{true, false} {
		t.Run(fmt.Sprintf("one store %v", only), func(t *testing.T) {
			writes.Store(0)
			chain, _ := commitTree(t, stores[0], nil, fmt.Sprint(only))
			l := chain[0]
			var wg sync.WaitGroup
			blobs := make([][]byte, 16)
			errs := make([]error, 16)
			for i := range blobs {
				s := stores[0]
				if !only {
					s = stores[i%2]
				}
				wg.Go(func() { blobs[i], errs[i] = s.ReadBlob(t.Context(), l.Digest) })
			}
			wg.Wait()
			for i := range blobs {
				if errs[i] != nil {
					t.Fatalf("goroutine %d: %v", i, errs[i])
				}
				if digest.FromBytes(blobs[i]) != l.Digest {
					t.Errorf("goroutine %d read a blob that hashes to %s", i, digest.FromBytes(blobs[i]))
				}
			}
			if n := writes.Load(); only && n != 1 {
				t.Errorf("the blob was written %d times, want once", n)
			}
			for _, s := range stores {
				if left := tmpLeftovers(t, s); len(left) > 0 {
					t.Errorf("temp files left behind: %v", left)
				}
			}
		})
	}
}

func TestLazyBlobSnapshotGone(t *testing.T) {
	for _, written := range []bool{false, true} {
		t.Run(fmt.Sprintf("blob written %v", written), func(t *testing.T) {
			s := openStore(t, "")
			ctx := t.Context()
			chain, files := commitTree(t, s, nil, "gone")
			l := chain[0]
			key := digest.FromString("RUN gone")
			if err := s.RecordKey(ctx, key, chain); err != nil {
				t.Fatal(err)
			}
			if written {
				if _, err := s.ReadBlob(ctx, l.Digest); err != nil {
					t.Fatal(err)
				}
			}
			if err := removeAll(s.snapshotPath(chain.ChainID())); err != nil {
				t.Fatal(err)
			}

			if written {
				// An ordinary blob now: the snapshot is unpacked again.
				if _, err := s.LookupKey(ctx, key); err != nil {
					t.Fatalf("LookupKey: %v", err)
				}
				dirs, err := s.Snapshot(ctx, chain)
				if err != nil {
					t.Fatal(err)
				}
				if got := readFile(t, filepath.Join(dirs[0], "app/main.go")); got != files["app/main.go"] {
					t.Errorf("unpacked again: app/main.go = %q", got)
				}
				return
			}
			// A cache miss, not a broken chain.
			if _, err := s.LookupKey(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Errorf("LookupKey: %v, want ErrNotFound", err)
			}
			if _, err := s.StatBlob(ctx, l.Digest); !errors.Is(err, ErrNotFound) {
				t.Errorf("StatBlob: %v, want ErrNotFound", err)
			}
			if _, err := s.OpenBlob(ctx, l.Digest); !errors.Is(err, ErrNotFound) {
				t.Errorf("OpenBlob: %v, want ErrNotFound", err)
			}
			if _, err := s.Snapshot(ctx, chain); !errors.Is(err, ErrNotFound) {
				t.Errorf("Snapshot: %v, want ErrNotFound", err)
			}
			if err := s.RecordKey(ctx, key, chain); !errors.Is(err, ErrNotFound) {
				t.Errorf("RecordKey: %v, want ErrNotFound", err)
			}
			rep, err := s.Prune(ctx, PruneOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.RemovedKeys != 1 || rep.RemovedBlobs != 0 {
				t.Errorf("Prune report = %+v, want the key dropped", rep)
			}
			if n := lazyCount(t, s); n != 0 {
				t.Errorf("%d lazy records left", n)
			}
			if left := tmpLeftovers(t, s); len(left) > 0 {
				t.Errorf("temp files left behind: %v", left)
			}
		})
	}
}

func TestLazyBlobCorrupt(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	chain, _ := commitTree(t, s, nil, "corrupt")
	l := chain[0]
	// Damage the snapshot, keeping the size and time.
	p := filepath.Join(s.snapshotPath(chain.ChainID()), "etc/app.conf")
	if err := os.WriteFile(p, []byte("tag=CORRUPT"[:len("tag=corrupt")]), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, treeTime, treeTime); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenBlob(ctx, l.Digest); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("OpenBlob of a changed snapshot: %v, want ErrCorrupt", err)
	}
	if exists(blobFile(s, l.Digest)) {
		t.Error("a blob file was stored")
	}
	if left := tmpLeftovers(t, s); len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

// TestCommitOverUnpackedSnapshot commits a layer whose snapshot exists
// already, unpacked from a gzip blob with the same diff ID: that directory
// is not known to give the same tar, so Commit writes the blob itself.
func TestCommitOverUnpackedSnapshot(t *testing.T) {
	ctx := t.Context()
	first := openStore(t, "")
	chain, _ := commitTree(t, first, nil, "same")
	tarball, err := first.ReadBlob(ctx, chain[0].Digest)
	if err != nil {
		t.Fatal(err)
	}

	s := openStore(t, "")
	pulled, err := s.ImportLayer(ctx, bytes.NewReader(gzipBytes(t, tarball)), MediaTypeLayerGzip, "")
	if err != nil {
		t.Fatal(err)
	}
	if pulled.DiffID != chain[0].DiffID {
		t.Fatalf("imported diff ID %s, committed %s", pulled.DiffID, chain[0].DiffID)
	}
	if _, err := s.Snapshot(ctx, Chain{pulled}); err != nil {
		t.Fatal(err)
	}
	got, _ := commitTree(t, s, nil, "same")
	if got[0] != chain[0] {
		t.Errorf("Commit = %+v, want %+v", got[0], chain[0])
	}
	b, err := os.ReadFile(blobFile(s, got[0].Digest))
	if err != nil {
		t.Fatalf("Commit over an unpacked snapshot wrote no blob file: %v", err)
	}
	if !bytes.Equal(b, tarball) {
		t.Error("blob differs from the first store's")
	}
	if n := lazyCount(t, s); n != 0 {
		t.Errorf("%d lazy records, want none", n)
	}

	// Over a committed snapshot, the layer stays lazy.
	again, _ := commitTree(t, first, nil, "same")
	if again[0] != chain[0] {
		t.Errorf("second Commit = %+v, want %+v", again[0], chain[0])
	}
	if left := tmpLeftovers(t, s); len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

// lazyCount counts the lazy records in the index.
func lazyCount(t testing.TB, s *Store) int {
	t.Helper()
	n := 0
	err := s.view(t.Context(), func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketLazy).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPruneLazy(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	keyed, _ := commitTree(t, s, nil, "keyed")
	orphan, _ := commitTree(t, s, nil, "orphan")
	tagged, _ := commitTree(t, s, nil, "tagged")
	leased, _ := commitTree(t, s, nil, "leased")
	key := digest.FromString("RUN keyed")
	if err := s.RecordKey(ctx, key, keyed); err != nil {
		t.Fatal(err)
	}
	manifest, config := writeImage(t, s, tagged...)
	if err := s.Tag(ctx, "docker.io/library/lazy:1", manifest); err != nil {
		t.Fatal(err)
	}
	release := s.Lease(leased)
	defer release()

	usage, err := s.DiskUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if usage.BlobCount != 2 || usage.SnapshotCount != 4 || usage.Reclaimable != dirSize(s.snapshotPath(orphan.ChainID())) {
		t.Errorf("DiskUsage = %+v", usage)
	}
	rep, err := s.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := state{
		blobs:     hexes(manifest, config),
		snapshots: hexes(chainIDs(keyed, tagged, leased)...),
	}
	if got := storeState(t, s); !slices.Equal(got.blobs, want.blobs) || !slices.Equal(got.snapshots, want.snapshots) {
		t.Errorf("after Prune:\n%v\nwant\n%v", got, want)
	}
	if rep.RemovedKeys != 0 || rep.RemovedBlobs != 1 || rep.RemovedSnapshots != 1 || rep.Reclaimed != usage.Reclaimable {
		t.Errorf("report = %+v", rep)
	}
	if _, err := s.StatBlob(ctx, orphan[0].Digest); !errors.Is(err, ErrNotFound) {
		t.Errorf("StatBlob of the pruned layer: %v", err)
	}
	if _, err := s.LayerByDiffID(ctx, orphan[0].DiffID); !errors.Is(err, ErrNotFound) {
		t.Errorf("layer record of the pruned layer: %v", err)
	}
	for _, c := range []Chain{keyed, tagged, leased} {
		if _, err := s.StatBlob(ctx, c[0].Digest); err != nil {
			t.Errorf("kept layer: %v", err)
		}
	}

	// Written out, the blob of the keyed layer is an ordinary file; with
	// its key gone, it goes with its snapshot.
	if _, err := s.ReadBlob(ctx, keyed[0].Digest); err != nil {
		t.Fatal(err)
	}
	rep, err = s.Prune(ctx, PruneOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	want = state{
		blobs:     hexes(manifest, config),
		snapshots: hexes(chainIDs(tagged, leased)...),
	}
	if got := storeState(t, s); !slices.Equal(got.blobs, want.blobs) || !slices.Equal(got.snapshots, want.snapshots) {
		t.Errorf("after Prune(All):\n%v\nwant\n%v", got, want)
	}
	if rep.RemovedKeys != 1 || rep.RemovedBlobs != 1 || rep.RemovedSnapshots != 1 {
		t.Errorf("report = %+v", rep)
	}
	if n := lazyCount(t, s); n != 2 {
		t.Errorf("%d lazy records, want 2", n)
	}

	// The tagged image's layers still export.
	if b, err := s.ReadBlob(ctx, tagged[0].Digest); err != nil || digest.FromBytes(b) != tagged[0].Digest {
		t.Errorf("tagged layer: %v", err)
	}

	release()
	if err := s.Untag(ctx, "docker.io/library/lazy:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(ctx, PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := storeState(t, s); len(got.blobs)+len(got.snapshots) != 0 {
		t.Errorf("after untag, release and Prune: %v", got)
	}
	if n := lazyCount(t, s); n != 0 {
		t.Errorf("%d lazy records left", n)
	}
}

// TestIndexUpgrade opens a store whose index has format version 1 (no lazy
// bucket).
func TestIndexUpgrade(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	l := importTar(t, s, map[string]string{"a": "1"})
	if err := s.RecordKey(t.Context(), digest.FromString("k"), Chain{l}); err != nil {
		t.Fatal(err)
	}
	err := s.update(t.Context(), func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketLazy); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put([]byte("version"), []byte("1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, root)
	if _, err := s.LookupKey(t.Context(), digest.FromString("k")); err != nil {
		t.Errorf("key lost in the upgrade: %v", err)
	}
	var version string
	err = s.view(t.Context(), func(tx *bolt.Tx) error {
		version = string(tx.Bucket(bucketMeta).Get([]byte("version")))
		return nil
	})
	if err != nil || version != indexVersion {
		t.Errorf("version after upgrade = %q, %v", version, err)
	}
	commitTree(t, s, nil, "after upgrade")
}

// TestPruneLazyOtherParent commits the same change on two parents: one lazy
// blob, whose record names the snapshot of the second commit. A key that
// uses it on the first parent keeps that snapshot too.
func TestPruneLazyOtherParent(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	p1 := Chain{importTar(t, s, map[string]string{"p": "1"})}
	p2 := Chain{importTar(t, s, map[string]string{"p": "2"})}
	c1, _ := commitTree(t, s, p1, "same")
	c2, _ := commitTree(t, s, p2, "same")
	if c1[1] != c2[1] || c1.ChainID() == c2.ChainID() {
		t.Fatalf("commits = %v, %v; want one layer on two chains", c1, c2)
	}
	key := digest.FromString("RUN on p1")
	if err := s.RecordKey(ctx, key, c1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(ctx, PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupKey(ctx, key); err != nil {
		t.Fatalf("LookupKey after Prune: %v", err)
	}
	if b, err := s.ReadBlob(ctx, c1[1].Digest); err != nil || digest.FromBytes(b) != c1[1].Digest {
		t.Errorf("ReadBlob after Prune: %v", err)
	}
}
