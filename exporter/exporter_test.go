package exporter

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
)

func TestWriteRead(t *testing.T) {
	ctx := t.Context()
	store := openStore(t)
	chain := cache.Chain{
		addLayer(t, store, map[string]string{"a": "1"}),
		addLayer(t, store, map[string]string{"b": "2"}),
	}
	cfg := testConfig()
	img, err := Write(ctx, store, chain, cfg)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}

	if got, want := img.Config.RootFS.Type, "layers"; got != want {
		t.Errorf("rootfs type = %q, want %q", got, want)
	}
	if len(img.Config.RootFS.DiffIDs) != 2 || img.Config.RootFS.DiffIDs[1].String() != string(chain[1].DiffID) {
		t.Errorf("diff IDs = %v, want those of %v", img.Config.RootFS.DiffIDs, chain)
	}
	if img.Config.Architecture != "amd64" || img.Config.OS != "linux" {
		t.Errorf("platform = %s/%s, want linux/amd64", img.Config.OS, img.Config.Architecture)
	}
	if len(img.Config.History) != 2 || !img.Config.History[1].EmptyLayer {
		t.Errorf("history not kept: %+v", img.Config.History)
	}
	m := img.Manifest
	if m.SchemaVersion != 2 || m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("manifest header = %d %s %s", m.SchemaVersion, m.MediaType, m.Config.MediaType)
	}
	for i, l := range m.Layers {
		if l.Digest.String() != string(chain[i].Digest) || l.Size != chain[i].Size || l.MediaType != types.OCILayer {
			t.Errorf("layer %d descriptor = %+v, want %+v", i, l, chain[i])
		}
	}

	raw, err := store.ReadBlob(ctx, img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(raw) != img.ID || m.Config.Digest.String() != string(img.ID) || m.Config.Size != int64(len(raw)) {
		t.Errorf("ID %s and config descriptor %+v do not match the stored config", img.ID, m.Config)
	}

	got, err := Read(ctx, store, img.ManifestDigest)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if got.ID != img.ID || got.ManifestDigest != img.ManifestDigest || !slices.Equal(got.Chain, img.Chain) {
		t.Errorf("Read = %+v\nwant %+v", got, img)
	}
	if !slices.Equal(got.Config.Config.Env, cfg.Config.Env) || !got.Config.Created.Equal(cfg.Created.Time) {
		t.Errorf("Read config = %+v, want %+v", got.Config.Config, cfg.Config)
	}

	validateStored(t, store, img.ManifestDigest)

	again, err := Write(ctx, store, chain, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != img.ID || again.ManifestDigest != img.ManifestDigest {
		t.Errorf("Write is not deterministic: %s %s then %s %s", img.ID, img.ManifestDigest, again.ID, again.ManifestDigest)
	}
	cfg.Config.Cmd = []string{"true"}
	other, err := Write(ctx, store, chain, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == img.ID || other.ManifestDigest == img.ManifestDigest {
		t.Errorf("a different config gave the same image %s", other.ID)
	}
}

func TestWriteVariants(t *testing.T) {
	tests := []struct {
		name   string
		layers []map[string]string
		cfg    v1.ConfigFile
		check  func(t *testing.T, img *Image, rawConfig, rawManifest []byte)
	}{
		{
			name: "no layers",
			check: func(t *testing.T, img *Image, rawConfig, rawManifest []byte) {
				if !bytes.Contains(rawConfig, []byte(`"diff_ids":[]`)) {
					t.Errorf("config of an empty image should list no diff IDs as []: %s", rawConfig)
				}
				if !bytes.Contains(rawManifest, []byte(`"layers":[]`)) {
					t.Errorf("manifest of an empty image should list no layers as []: %s", rawManifest)
				}
			},
		},
		{
			name:   "platform kept",
			layers: []map[string]string{{"x": "y"}},
			cfg:    v1.ConfigFile{Architecture: "arm64", OS: "linux", Variant: "v8"},
			check: func(t *testing.T, img *Image, rawConfig, _ []byte) {
				if img.Config.Architecture != "arm64" || img.Config.Variant != "v8" {
					t.Errorf("platform = %s/%s, want arm64/v8", img.Config.Architecture, img.Config.Variant)
				}
			},
		},
		{
			name:   "stale rootfs replaced",
			layers: []map[string]string{{"x": "y"}},
			cfg:    v1.ConfigFile{RootFS: v1.RootFS{Type: "bogus", DiffIDs: []v1.Hash{{Algorithm: "sha256", Hex: testHex}, {Algorithm: "sha256", Hex: testHex}}}},
			check: func(t *testing.T, img *Image, _, _ []byte) {
				if len(img.Config.RootFS.DiffIDs) != 1 || img.Config.RootFS.Type != "layers" {
					t.Errorf("rootfs = %+v, want one layer", img.Config.RootFS)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			store := openStore(t)
			img := writeImage(t, store, "", tt.cfg, tt.layers...)
			rawConfig, err := store.ReadBlob(ctx, img.ID)
			if err != nil {
				t.Fatal(err)
			}
			rawManifest, err := store.ReadBlob(ctx, img.ManifestDigest)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, img, rawConfig, rawManifest)
			validateStored(t, store, img.ManifestDigest)
		})
	}
}

func TestReadErrors(t *testing.T) {
	ctx := t.Context()
	store := openStore(t)
	layer := addLayer(t, store, map[string]string{"a": "1"})
	img, err := Write(ctx, store, cache.Chain{layer}, v1.ConfigFile{})
	if err != nil {
		t.Fatal(err)
	}
	put := func(v any) digest.Digest {
		t.Helper()
		d, _, err := store.WriteBlob(ctx, bytes.NewReader(mustJSON(t, v)), "")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tooFew := img.Manifest
	tooFew.Layers = []v1.Descriptor{}
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
	v1Manifest := img.Manifest
	v1Manifest.SchemaVersion = 1

	tests := []struct {
		name     string
		manifest digest.Digest
		want     string
		notFound bool
	}{
		{"missing", digest.FromString("nothing"), "read image manifest", true},
		{"layer count", put(tooFew), "inconsistent", false},
		{"index", put(index), "image index", false},
		{"schema 1", put(v1Manifest), "schema version", false},
		{"not json", put("just a string"), "not a valid manifest", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(ctx, store, tt.manifest)
			if err == nil {
				t.Fatal("Read succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if errors.Is(err, cache.ErrNotFound) != tt.notFound {
				t.Errorf("errors.Is(%v, ErrNotFound) = %v, want %v", err, !tt.notFound, tt.notFound)
			}
		})
	}
}

// TestReadDockerManifest checks that Docker schema 2 manifests are read,
// their layer media types mapped to the OCI ones.
func TestReadDockerManifest(t *testing.T) {
	ctx := t.Context()
	store := openStore(t)
	img := writeImage(t, store, "", v1.ConfigFile{}, map[string]string{"a": "1"})
	m := img.Manifest
	m.MediaType = types.DockerManifestSchema2
	m.Config.MediaType = types.DockerConfigJSON
	m.Layers = []v1.Descriptor{m.Layers[0]}
	m.Layers[0].MediaType = types.DockerLayer
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	md, _, err := store.WriteBlob(ctx, bytes.NewReader(raw), "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Read(ctx, store, md)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if got.ID != img.ID || got.Chain[0].MediaType != cache.MediaTypeLayerGzip {
		t.Errorf("Read = %+v", got)
	}
	validateStored(t, store, md)
}
