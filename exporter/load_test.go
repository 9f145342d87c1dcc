package exporter

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
)

// TestLoadBusybox loads the conformance suite's docker save archive, saves
// it and loads the result into a second store: the image ID and manifest
// digest survive, and the conformance normalizer reads both archives the
// same way.
func TestLoadBusybox(t *testing.T) {
	ctx := t.Context()
	path := busyboxTar(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, files := readArchive(t, data)
	var entries []dockerManifestEntry
	if err := json.Unmarshal(files["manifest.json"], &entries); err != nil {
		t.Fatal(err)
	}
	wantID := digest.FromBytes(files[entries[0].Config])

	store := openStore(t)
	names, err := Load(ctx, store, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !slices.Equal(names, []string{"busybox:latest"}) {
		t.Errorf("Load names = %q, want busybox:latest", names)
	}
	img, err := Lookup(ctx, store, "busybox")
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != wantID || img.ID.Encoded()+".json" != entries[0].Config {
		t.Errorf("image ID = %s, want %s (the archive's config)", img.ID, wantID)
	}
	validateStored(t, store, img.ManifestDigest)

	var saved bytes.Buffer
	if err := Save(ctx, store, &saved, []string{"busybox"}); err != nil {
		t.Fatalf("Save: %v", err)
	}
	savedPath := filepath.Join(t.TempDir(), "saved.tar")
	if err := os.WriteFile(savedPath, saved.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := normalize(t, savedPath), normalize(t, path); got != want {
		t.Errorf("normalize.py reads the saved archive differently:\n%s\nwant\n%s", got, want)
	}

	store2 := openStore(t)
	names, err = Load(ctx, store2, bytes.NewReader(saved.Bytes()))
	if err != nil {
		t.Fatalf("Load saved archive: %v", err)
	}
	if !slices.Equal(names, []string{"busybox:latest"}) {
		t.Errorf("Load names = %q, want busybox:latest", names)
	}
	img2, err := Lookup(ctx, store2, "busybox:latest")
	if err != nil {
		t.Fatal(err)
	}
	if img2.ID != img.ID || img2.ManifestDigest != img.ManifestDigest {
		t.Errorf("after save and load: ID %s manifest %s, want %s %s", img2.ID, img2.ManifestDigest, img.ID, img.ManifestDigest)
	}
	var saved2 bytes.Buffer
	if err := Save(ctx, store2, &saved2, []string{"busybox"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(saved.Bytes(), saved2.Bytes()) {
		t.Error("saving the reloaded image gave a different archive")
	}
}

// loadCase is an archive to load and what loading it should give.
type loadCase struct {
	name      string
	archive   []byte
	wantNames []string
	// wantID and wantManifest are checked when set.
	wantID       digest.Digest
	wantManifest digest.Digest
}

func TestLoadFormats(t *testing.T) {
	img, err := random.Image(300, 2)
	if err != nil {
		t.Fatal(err)
	}
	imgID := hashDigest(t, img.ConfigName)
	imgDigest := hashDigest(t, img.Digest)

	var cases []loadCase

	// A docker-archive written by ggcr: config "sha256:<hex>", gzip layers.
	var dockerArchive bytes.Buffer
	tag, err := name.NewTag("example.com/r:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.Write(tag, img, &dockerArchive); err != nil {
		t.Fatal(err)
	}
	cases = append(cases,
		loadCase{name: "ggcr docker-archive", archive: dockerArchive.Bytes(), wantNames: []string{"example.com/r:1"}, wantID: imgID},
		loadCase{name: "gzip compressed", archive: gzipOf(t, dockerArchive.Bytes()), wantNames: []string{"example.com/r:1"}, wantID: imgID},
	)

	// OCI layouts written by ggcr, tarred in both directions.
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{annotationRefName: "example.com/r:2"})); err != nil {
		t.Fatal(err)
	}
	cases = append(cases,
		loadCase{name: "OCI layout", archive: tarDir(t, dir, false), wantNames: []string{"example.com/r:2"}, wantID: imgID, wantManifest: imgDigest},
		loadCase{name: "OCI layout, index last", archive: tarDir(t, dir, true), wantNames: []string{"example.com/r:2"}, wantID: imgID, wantManifest: imgDigest},
	)

	dir = t.TempDir()
	if p, err = layout.Write(dir, empty.Index); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{annotationRefName: "latest"})); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, loadCase{name: "ref name without repository", archive: tarDir(t, dir, false), wantNames: []string{string(imgID)}, wantManifest: imgDigest})

	idx, err := random.Index(200, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	if p, err = layout.Write(dir, empty.Index); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{annotationCtrName: "docker.io/library/multi:latest"})); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, loadCase{name: "nested index", archive: tarDir(t, dir, false), wantNames: []string{"multi:latest"},
		wantManifest: digest.Digest(im.Manifests[0].Digest.String())})

	// A legacy docker-archive whose second image links to the first one's
	// layer, as old docker versions wrote them, entries in an odd order.
	layerTar := tarOf(t, map[string]string{"etc/hello": "hi"})
	cfgA := legacyConfig(t, "a", layerTar)
	cfgB := legacyConfig(t, "b", layerTar)
	manifest := mustJSON(t, []dockerManifestEntry{
		{Config: "a.json", RepoTags: []string{"a:1", "a:2"}, Layers: []string{"l1/layer.tar"}},
		{Config: "b.json", RepoTags: []string{"b"}, Layers: []string{"l2/layer.tar"}},
	})
	var legacy bytes.Buffer
	tw := tar.NewWriter(&legacy)
	for _, e := range []struct {
		name, link string
		data       []byte
	}{
		{name: "manifest.json", data: manifest},
		{name: "l2/layer.tar", link: "../l1/layer.tar"},
		{name: "./l1/layer.tar", data: layerTar},
		{name: "a.json", data: cfgA},
		{name: "b.json", data: cfgB},
	} {
		hdr := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}
		if e.link != "" {
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.link
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, loadCase{name: "legacy docker-archive with links", archive: legacy.Bytes(),
		wantNames: []string{"a:1", "a:2", "b:latest"}, wantID: digest.FromBytes(cfgA)})

	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			store := openStore(t)
			names, err := Load(ctx, store, bytes.NewReader(tt.archive))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !slices.Equal(names, tt.wantNames) {
				t.Errorf("Load names = %q, want %q", names, tt.wantNames)
			}
			var got *Image
			if strings.HasPrefix(tt.wantNames[0], "sha256:") {
				// Untagged: the store lists only named images, so read the
				// manifest directly.
				got, err = Read(ctx, store, tt.wantManifest)
			} else {
				got, err = Lookup(ctx, store, tt.wantNames[0])
			}
			if err != nil {
				t.Fatalf("find loaded image %s: %v", tt.wantNames[0], err)
			}
			if tt.wantID != "" && got.ID != tt.wantID {
				t.Errorf("image ID = %s, want %s", got.ID, tt.wantID)
			}
			if tt.wantManifest != "" && got.ManifestDigest != tt.wantManifest {
				t.Errorf("manifest digest = %s, want %s", got.ManifestDigest, tt.wantManifest)
			}
			validateStored(t, store, got.ManifestDigest)
		})
	}
}

func TestLoadErrors(t *testing.T) {
	layerTar := tarOf(t, map[string]string{"f": "x"})
	goodCfg := legacyConfig(t, "good", layerTar)
	badCfg := legacyConfig(t, "bad", tarOf(t, map[string]string{"f": "other"}))
	entry := func(cfg string, tags ...string) dockerManifestEntry {
		return dockerManifestEntry{Config: cfg, RepoTags: tags, Layers: []string{"layer.tar"}}
	}
	docker := func(entries ...dockerManifestEntry) []byte {
		return archiveOf(t,
			archiveEntry{"manifest.json", mustJSON(t, entries)},
			archiveEntry{"layer.tar", layerTar},
			archiveEntry{"good.json", goodCfg},
			archiveEntry{"bad.json", badCfg},
		)
	}

	// A valid saved archive to damage.
	src := openStore(t)
	writeImage(t, src, "busybox", testConfig(), map[string]string{"a": strings.Repeat("data", 1000)})
	var saved bytes.Buffer
	if err := Save(t.Context(), src, &saved, []string{"busybox"}); err != nil {
		t.Fatal(err)
	}
	hdrs, files := readArchive(t, saved.Bytes())
	img, err := Lookup(t.Context(), src, "busybox")
	if err != nil {
		t.Fatal(err)
	}
	var corrupt []archiveEntry
	for _, h := range hdrs {
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data := files[h.Name]
		if h.Name == blobPath(img.Chain[0].Digest) {
			data = gzipOf(t, tarOf(t, map[string]string{"a": "tampered"}))
		}
		corrupt = append(corrupt, archiveEntry{h.Name, data})
	}
	withoutLayer := slices.DeleteFunc(slices.Clone(corrupt), func(e archiveEntry) bool {
		return e.name == blobPath(img.Chain[0].Digest) || e.name == "manifest.json"
	})

	tests := []struct {
		name    string
		archive []byte
		want    string
	}{
		{"empty", nil, "neither index.json"},
		{"not a tar", bytes.Repeat([]byte("not a tar "), 100), "not a tar archive"},
		{"truncated", saved.Bytes()[:saved.Len()/2], "truncated"},
		{"truncated gzip", gzipOf(t, saved.Bytes())[:200], "truncated"},
		{"diff ID mismatch", docker(entry("good.json", "x:1"), entry("bad.json", "y:1")), "diff ID"},
		{"layer count", archiveOf(t,
			archiveEntry{"manifest.json", mustJSON(t, []dockerManifestEntry{{Config: "good.json", Layers: nil}})},
			archiveEntry{"good.json", goodCfg}), "0 layers but its config lists 1"},
		{"missing config", docker(entry("nothere.json")), "no file nothere.json"},
		{"bad tag", docker(entry("good.json", "Bad:1")), "lowercase"},
		{"no images", archiveOf(t, archiveEntry{"manifest.json", []byte("[]")}), "lists no images"},
		{"corrupt layer blob", archiveOf(t, corrupt...), "layer 1"},
		{"missing layer blob", archiveOf(t, withoutLayer...), "no file " + blobPath(img.Chain[0].Digest)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			store := openStore(t)
			names, err := Load(ctx, store, bytes.NewReader(tt.archive))
			if err == nil {
				t.Fatalf("Load = %q, want an error", names)
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load error %q does not mention %q", err, tt.want)
			}
			all, err := store.Images(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 0 {
				t.Errorf("a failed Load left names behind: %v", all)
			}
		})
	}
}

// legacyConfig returns a docker image config for one uncompressed layer.
func legacyConfig(t *testing.T, author string, layer []byte) []byte {
	t.Helper()
	cfg := map[string]any{
		"architecture":     "amd64",
		"os":               "linux",
		"author":           author,
		"container_config": map[string]any{"Hostname": ""},
		"config":           map[string]any{"Env": []string{"PATH=/bin"}},
		"rootfs":           map[string]any{"type": "layers", "diff_ids": []string{string(digest.FromBytes(layer))}},
	}
	return mustJSON(t, cfg)
}

// tarDir tars the files under dir, in path order or reversed.
func tarDir(t *testing.T, dir string, reverse bool) []byte {
	t.Helper()
	var entries []archiveEntry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		entries = append(entries, archiveEntry{filepath.ToSlash(rel), data})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if reverse {
		slices.Reverse(entries)
	}
	return archiveOf(t, entries...)
}

// hashDigest converts the result of a ggcr accessor to a digest.
func hashDigest(t *testing.T, f func() (v1.Hash, error)) digest.Digest {
	t.Helper()
	h, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}
