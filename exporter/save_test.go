package exporter

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"
)

func TestSaveFormat(t *testing.T) {
	ctx := t.Context()
	store := openStore(t)
	base := map[string]string{"bin/sh": "shell"}
	a := writeImage(t, store, "busybox", testConfig(), base, map[string]string{"a": "1"})
	b := writeImage(t, store, "localhost:5000/b:2", v1.ConfigFile{Author: "b"}, base)
	if err := store.Tag(ctx, "docker.io/library/busybox:1", a.ManifestDigest); err != nil {
		t.Fatal(err)
	}
	untagged, err := Write(ctx, store, b.Chain, v1.ConfigFile{Author: "untagged"})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Tag(ctx, "docker.io/library/untagged:1", untagged.ManifestDigest); err != nil {
		t.Fatal(err)
	}

	names := []string{"busybox", "localhost:5000/b:2", "busybox:1", "busybox", untagged.ID.Encoded()[:12]}
	var out bytes.Buffer
	if err := Save(ctx, store, &out, names); err != nil {
		t.Fatalf("Save: %v", err)
	}
	var again bytes.Buffer
	if err := Save(ctx, store, &again, names); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), again.Bytes()) {
		t.Error("saving the same images twice gave different archives")
	}

	hdrs, files := readArchive(t, out.Bytes())
	var order []string
	for _, h := range hdrs {
		order = append(order, h.Name)
		wantMode := int64(fileMode)
		if h.Typeflag == tar.TypeDir {
			wantMode = dirMode
		}
		if h.Mode != wantMode || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) || h.Uname != "" {
			t.Errorf("entry %s: mode %o uid %d gid %d mtime %v uname %q; want fixed values", h.Name, h.Mode, h.Uid, h.Gid, h.ModTime, h.Uname)
		}
	}
	if len(slices.Compact(slices.Sorted(slices.Values(order)))) != len(order) {
		t.Errorf("archive has repeated entries: %v", order)
	}
	// Every blob once: 3 configs, 2 layers (the base is shared), 3 manifests.
	if got := len(order) - 2 - 4; got != 8 {
		t.Errorf("archive has %d blobs, want 8: %v", got, order)
	}
	for n, data := range files {
		if hex, ok := strings.CutPrefix(n, "blobs/sha256/"); ok {
			if got := digest.FromBytes(data).Encoded(); got != hex {
				t.Errorf("blob %s has digest %s", n, got)
			}
		}
	}

	if got := string(files["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %s", got)
	}

	var manifest []dockerManifestEntry
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatal(err)
	}
	wantManifest := []dockerManifestEntry{
		{Config: blobPath(a.ID), RepoTags: []string{"busybox:latest", "busybox:1"}, Layers: []string{blobPath(a.Chain[0].Digest), blobPath(a.Chain[1].Digest)}},
		{Config: blobPath(b.ID), RepoTags: []string{"localhost:5000/b:2"}, Layers: []string{blobPath(b.Chain[0].Digest)}},
		{Config: blobPath(untagged.ID), Layers: []string{blobPath(b.Chain[0].Digest)}},
	}
	if got, want := string(mustJSON(t, manifest)), string(mustJSON(t, wantManifest)); got != want {
		t.Errorf("manifest.json =\n%s\nwant\n%s", got, want)
	}

	var repos map[string]map[string]string
	if err := json.Unmarshal(files["repositories"], &repos); err != nil {
		t.Fatal(err)
	}
	if repos["busybox"]["latest"] != a.Chain[1].Digest.Encoded() || repos["localhost:5000/b"]["2"] == "" {
		t.Errorf("repositories = %v", repos)
	}

	var index v1.IndexManifest
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	type ref struct{ digest, refName, fullName string }
	var refs []ref
	for _, d := range index.Manifests {
		refs = append(refs, ref{d.Digest.String(), d.Annotations[annotationRefName], d.Annotations[annotationCtrName]})
		if d.Platform == nil || d.Platform.OS != "linux" {
			t.Errorf("descriptor %s has platform %v", d.Digest, d.Platform)
		}
	}
	wantRefs := []ref{
		{string(a.ManifestDigest), "latest", "docker.io/library/busybox:latest"},
		{string(a.ManifestDigest), "1", "docker.io/library/busybox:1"},
		{string(b.ManifestDigest), "2", "localhost:5000/b:2"},
		{string(untagged.ManifestDigest), "", ""},
	}
	if !slices.Equal(refs, wantRefs) {
		t.Errorf("index.json refs = %v, want %v", refs, wantRefs)
	}

	// ggcr reads the archive both ways and finds valid images.
	dir := t.TempDir()
	extract(t, out.Bytes(), dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("read saved archive as an OCI layout: %v", err)
	}
	if err := validate.Index(idx); err != nil {
		t.Errorf("validate.Index: %v", err)
	}
	tarPath := filepath.Join(t.TempDir(), "saved.tar")
	if err := os.WriteFile(tarPath, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag("localhost:5000/b:2")
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(tarPath, &tag)
	if err != nil {
		t.Fatalf("read saved archive as a docker-archive: %v", err)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("validate.Image of the docker-archive view: %v", err)
	}
	if id, _ := img.ConfigName(); id.String() != string(b.ID) {
		t.Errorf("docker-archive view has image ID %s, want %s", id, b.ID)
	}
	normalize(t, tarPath)
}

func TestSaveErrors(t *testing.T) {
	store := openStore(t)
	writeImage(t, store, "busybox", v1.ConfigFile{}, map[string]string{"a": "1"})
	tests := []struct {
		name  string
		names []string
		want  string
	}{
		{"no names", nil, "no images"},
		{"unknown", []string{"busybox", "nothere"}, "no such image: nothere"},
		{"invalid", []string{"Bad"}, "lowercase"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Save(t.Context(), store, &out, tt.names)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Save(%q) error = %v, want one mentioning %q", tt.names, err, tt.want)
			}
			if out.Len() != 0 {
				t.Errorf("Save wrote %d bytes before finding the error", out.Len())
			}
		})
	}
}

// extract unpacks a test archive into dir (entry names are trusted here).
func extract(t *testing.T, data []byte, dir string) {
	t.Helper()
	_, files := readArchive(t, data)
	for n, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// normalize runs the conformance suite's normalizer on an archive and
// returns its output, or skips when it or python3 is not there.
func normalize(t *testing.T, archive string) string {
	t.Helper()
	script := filepath.Join(filepath.Dir(busyboxTar(t)), "normalize.py")
	if _, err := os.Stat(script); err != nil {
		t.Skipf("conformance normalizer not found: %v", err)
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is needed to run the conformance normalizer")
	}
	out, err := exec.CommandContext(t.Context(), python, script, "--no-base", archive).CombinedOutput()
	if err != nil {
		t.Fatalf("normalize.py --no-base %s: %v\n%s", archive, err, out)
	}
	return string(out)
}
