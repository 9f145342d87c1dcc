package exporter

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
)

func TestLookup(t *testing.T) {
	store := openStore(t)
	busybox := writeImage(t, store, "busybox", v1.ConfigFile{}, map[string]string{"bin/sh": "x"})
	app := writeImage(t, store, "app:1", v1.ConfigFile{Author: "me"}, map[string]string{"app": "y"})
	local := writeImage(t, store, "localhost:5000/x", v1.ConfigFile{Author: "local"}, map[string]string{"x": "z"})
	if err := store.Tag(t.Context(), "docker.io/foo/bar:1", app.ManifestDigest); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		ref  string
		want *Image
	}{
		{"busybox", busybox},
		{"busybox:latest", busybox},
		{"docker.io/library/busybox:latest", busybox},
		{"app:1", app},
		{"foo/bar:1", app},
		{"localhost:5000/x", local},
		{"localhost:5000/x@" + string(local.ManifestDigest), local},
		{"busybox@" + string(busybox.ManifestDigest), busybox},
		{string(app.ID), app},
		{app.ID.Encoded(), app},
		{app.ID.Encoded()[:12], app},
		{busybox.ID.Encoded()[:minIDPrefix], busybox},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := Lookup(t.Context(), store, tt.ref)
			if err != nil {
				t.Fatalf("Lookup(%q): %v", tt.ref, err)
			}
			if got.ManifestDigest != tt.want.ManifestDigest || got.ID != tt.want.ID {
				t.Errorf("Lookup(%q) = %s, want %s", tt.ref, got.ID, tt.want.ID)
			}
		})
	}
}

func TestLookupNotFound(t *testing.T) {
	store := openStore(t)
	img := writeImage(t, store, "busybox", v1.ConfigFile{}, map[string]string{"a": "b"})
	otherHex := strings.Repeat("0", 64)
	if img.ID.Encoded() == otherHex {
		t.Fatal("unlucky image ID")
	}
	tests := []struct {
		ref      string
		notFound bool
		want     string
	}{
		{"nothere", true, "no such image: nothere"},
		{"busybox:2", true, "no such image: busybox:2"},
		{"sha256:" + otherHex, true, "no such image: sha256:" + otherHex},
		{otherHex, true, "no such image: " + otherHex},
		{"ffff", true, "no such image: ffff"},
		// A digest of the right image under another repository.
		{"other@" + string(img.ManifestDigest), true, "no such image: other@"},
		{"busybox@" + string(digest.FromString("x")), true, "no such image: busybox@"},
		{"sha256:abc", false, "invalid image ID"},
		{"Busybox", false, "lowercase"},
		{"abc", true, "no such image: abc"}, // too short for an ID prefix
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := Lookup(t.Context(), store, tt.ref)
			if err == nil {
				t.Fatalf("Lookup(%q) = %s, want an error", tt.ref, got.ID)
			}
			if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Lookup(%q) error %q does not mention %q", tt.ref, err, tt.want)
			}
			if tt.want != "" && errors.Is(err, cache.ErrNotFound) != tt.notFound {
				t.Errorf("Lookup(%q): errors.Is(%v, ErrNotFound) = %v, want %v", tt.ref, err, !tt.notFound, tt.notFound)
			}
		})
	}
}

// TestLookupAmbiguousPrefix makes two images whose IDs share their first
// four hex digits and checks that the prefix is refused while a longer one
// works.
func TestLookupAmbiguousPrefix(t *testing.T) {
	store := openStore(t)
	seen := map[string]v1.ConfigFile{}
	var a, b v1.ConfigFile
	for i := 0; ; i++ {
		cfg := v1.ConfigFile{Author: strconv.Itoa(i)}
		_, raw, err := imageConfig(nil, cfg)
		if err != nil {
			t.Fatal(err)
		}
		p := digest.FromBytes(raw).Encoded()[:minIDPrefix]
		if prev, ok := seen[p]; ok {
			a, b = prev, cfg
			break
		}
		seen[p] = cfg
	}
	imgA := writeImage(t, store, "a", a)
	imgB := writeImage(t, store, "b", b)
	prefix := imgA.ID.Encoded()[:minIDPrefix]
	if !strings.HasPrefix(imgB.ID.Encoded(), prefix) {
		t.Fatalf("IDs %s and %s do not share a prefix; imageConfig and Write disagree", imgA.ID, imgB.ID)
	}
	_, err := Lookup(t.Context(), store, prefix)
	if err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("Lookup(%q) error = %v, want ambiguous", prefix, err)
	}
	got, err := Lookup(t.Context(), store, imgB.ID.Encoded()[:32])
	if err != nil || got.ID != imgB.ID {
		t.Errorf("Lookup of a long prefix = %v, %v, want %s", got, err, imgB.ID)
	}
}
