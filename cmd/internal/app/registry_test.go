package app

import (
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/exporter/registry"
)

func TestParsePullPolicy(t *testing.T) {
	tests := []struct {
		in   string
		want PullPolicy
		bad  bool
	}{
		{"", PullMissing, false},
		{"missing", PullMissing, false},
		{"false", PullMissing, false},
		{"always", PullAlways, false},
		{"true", PullAlways, false},
		{"Never", PullNever, false},
		{"sometimes", "", true},
	}
	for _, tt := range tests {
		got, err := ParsePullPolicy(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParsePullPolicy(%q) = %q, %v; want %q (error: %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestResolverPullPolicy(t *testing.T) {
	var manifestGets atomic.Int32
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") {
			manifestGets.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	reg := strings.TrimPrefix(srv.URL, "http://")
	ref := reg + "/base/img:1"
	push := func() string {
		img, err := random.Image(512, 1)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := name.ParseReference(ref)
		if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return d.String()
	}
	first := push()

	store, err := cache.Open(t.Context(), t.TempDir(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	res := func(o RegistryOptions) localResolver { return localResolver{a: &App{Store: store}, opts: o} }
	opts := func(p PullPolicy) RegistryOptions {
		return RegistryOptions{Pull: p, Registry: registry.Options{Keychain: authn.NewMultiKeychain()}}
	}
	resolve := func(p PullPolicy) (string, error) {
		img, err := res(opts(p)).ResolveImage(t.Context(), ref)
		if err != nil {
			return "", err
		}
		return string(img.Manifest), nil
	}

	if _, err := resolve(PullNever); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("never, not stored: got %v, want ErrNotFound", err)
	}
	if n := manifestGets.Load(); n != 0 {
		t.Errorf("never: asked the registry %d times", n)
	}
	if got, err := resolve(PullMissing); err != nil || got != first {
		t.Fatalf("missing, not stored: got %s, %v; want %s", got, err, first)
	}
	second := push()
	manifestGets.Store(0)
	if got, err := resolve(PullMissing); err != nil || got != first {
		t.Errorf("missing, stored: got %s, %v; want the stored %s", got, err, first)
	}
	if got, err := resolve(PullNever); err != nil || got != first {
		t.Errorf("never, stored: got %s, %v; want the stored %s", got, err, first)
	}
	if n := manifestGets.Load(); n != 0 {
		t.Errorf("stored image: asked the registry %d times", n)
	}
	if got, err := resolve(PullAlways); err != nil || got != second {
		t.Errorf("always: got %s, %v; want the registry's %s", got, err, second)
	}

	// Neither stored nor pullable: the error wraps both reasons.
	_, err = res(opts(PullMissing)).ResolveImage(t.Context(), reg+"/base/nope:1")
	if !errors.Is(err, cache.ErrNotFound) || !errors.Is(err, registry.ErrNotFound) || !strings.Contains(err.Error(), reg) {
		t.Errorf("missing everywhere: got %v", err)
	}
}
