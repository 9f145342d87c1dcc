package registry

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/exporter"
)

// pushRandom puts a random image (docker schema 2, gzip layers) at ref and
// returns it.
func pushRandom(t *testing.T, ref string, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(4096, layers)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	return img
}

func mustDigest(t *testing.T, img v1.Image) (manifest, config string) {
	t.Helper()
	md, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	cd, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return md.String(), cd.String()
}

func TestPullRoundTrip(t *testing.T) {
	reg := newRegistry(t, nil)
	src := pushRandom(t, reg+"/test/src:1", 3)
	wantManifest, wantID := mustDigest(t, src)

	store := newStore(t)
	img, err := Pull(t.Context(), store, reg+"/test/src:1", testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if string(img.ManifestDigest) != wantManifest || string(img.ID) != wantID {
		t.Errorf("pulled manifest %s, ID %s; want %s, %s", img.ManifestDigest, img.ID, wantManifest, wantID)
	}
	if len(img.Chain) != 3 {
		t.Errorf("chain has %d layers, want 3", len(img.Chain))
	}
	got, err := exporter.Lookup(t.Context(), store, reg+"/test/src:1")
	if err != nil {
		t.Fatalf("pulled image is not tagged: %v", err)
	}
	if got.ManifestDigest != img.ManifestDigest {
		t.Errorf("tag points at %s, want %s", got.ManifestDigest, img.ManifestDigest)
	}
	checkStore(t, store, 1)

	// Push it to another repository; the digest stays, and a second store
	// pulls the same image back.
	d, err := Push(t.Context(), store, img, reg+"/test/copy:2", testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if string(d) != wantManifest {
		t.Errorf("push returned %s, want %s", d, wantManifest)
	}
	store2 := newStore(t)
	img2, err := Pull(t.Context(), store2, reg+"/test/copy:2", testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if img2.ID != img.ID || img2.ManifestDigest != img.ManifestDigest {
		t.Errorf("round trip changed the image: %s/%s -> %s/%s", img.ManifestDigest, img.ID, img2.ManifestDigest, img2.ID)
	}
}

func TestPushBuiltImage(t *testing.T) {
	reg := newRegistry(t, nil)
	store := newStore(t)
	img := writeImage(t, store, layerBlob(t, 1, 10000, gzip.BestSpeed), layerBlob(t, 2, 20000, gzip.BestSpeed))
	d, err := Push(t.Context(), store, img, reg+"/built/app:1", testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if d != img.ManifestDigest {
		t.Errorf("push returned %s, want the local manifest digest %s", d, img.ManifestDigest)
	}
	ref, _ := name.ParseReference(reg + "/built/app:1")
	rimg, err := remote.Image(ref, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(rimg); err != nil {
		t.Errorf("pushed image is not valid: %v", err)
	}
	if rd, _ := rimg.Digest(); rd.String() != string(d) {
		t.Errorf("registry has %s, want %s", rd, d)
	}
	// Pushing again uploads nothing.
	var uploads atomic.Int32
	reg2 := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost || r.Method == http.MethodPatch {
				uploads.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	for i := range 2 {
		if _, err := Push(t.Context(), store, img, reg2+"/built/app:1", testOptions()); err != nil {
			t.Fatal(err)
		}
		if i == 0 && uploads.Load() == 0 {
			t.Fatal("first push uploaded nothing")
		}
		if i == 0 {
			uploads.Store(0)
		}
	}
	if n := uploads.Load(); n != 0 {
		t.Errorf("second push started %d uploads, want 0", n)
	}
}

func TestPushMountsFromOtherRepository(t *testing.T) {
	// ggcr's registry keeps blobs across repositories, so it never needs
	// a mount; check that Push offers them.
	reg := newRegistry(t, nil)
	pushRandom(t, reg+"/base/img:1", 2)
	store := newStore(t)
	img, err := Pull(t.Context(), store, reg+"/base/img:1", testOptions())
	if err != nil {
		t.Fatal(err)
	}
	target, _ := name.ParseReference(reg + "/other/img:1")
	from := mountSources(t.Context(), store, target.Context())
	if len(from) != 2 {
		t.Fatalf("mount sources %v, want the 2 layers of base/img", from)
	}
	for _, l := range img.Chain {
		h, _ := v1.NewHash(string(l.Digest))
		if from[h].RepositoryStr() != "base/img" {
			t.Errorf("layer %s: mount source %q, want base/img", l.Digest, from[h].RepositoryStr())
		}
	}
	same, _ := name.ParseReference(reg + "/base/img:2")
	if n := len(mountSources(t.Context(), store, same.Context())); n != 0 {
		t.Errorf("%d mount sources for the image's own repository, want 0", n)
	}
	if _, err := Push(t.Context(), store, img, reg+"/other/img:1", testOptions()); err != nil {
		t.Fatal(err)
	}
}

func TestPullSkipsStoredLayers(t *testing.T) {
	var blobGets atomic.Int32
	reg := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				blobGets.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	pushRandom(t, reg+"/test/a:1", 3)
	store := newStore(t)
	if _, err := Pull(t.Context(), store, reg+"/test/a:1", testOptions()); err != nil {
		t.Fatal(err)
	}
	if n := blobGets.Load(); n != 4 {
		t.Errorf("first pull fetched %d blobs, want 4 (3 layers and the config)", n)
	}
	blobGets.Store(0)
	if _, err := Pull(t.Context(), store, reg+"/test/a:1", testOptions()); err != nil {
		t.Fatal(err)
	}
	if n := blobGets.Load(); n != 1 {
		t.Errorf("second pull fetched %d blobs, want 1 (the config)", n)
	}
}

func TestPullIndexPicksPlatform(t *testing.T) {
	reg := newRegistry(t, nil)
	amd, _ := random.Image(1024, 1)
	arm, _ := random.Image(1024, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	ref, _ := name.ParseReference(reg + "/multi/img:1")
	if err := remote.WriteIndex(ref, idx, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	store := newStore(t)
	img, err := Pull(t.Context(), store, reg+"/multi/img:1", testOptions())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := amd.Digest()
	if string(img.ManifestDigest) != want.String() {
		t.Errorf("pulled %s, want the linux/amd64 image %s", img.ManifestDigest, want)
	}
	opts := testOptions()
	opts.Platform = &v1.Platform{OS: "linux", Architecture: "s390x"}
	_, err = Pull(t.Context(), newStore(t), reg+"/multi/img:1", opts)
	if err == nil || !strings.Contains(err.Error(), "no image for platform linux/s390x") {
		t.Errorf("pull of a missing platform: got %v", err)
	}
}

func TestPullNotFound(t *testing.T) {
	reg := newRegistry(t, nil)
	pushRandom(t, reg+"/test/a:1", 1)
	store := newStore(t)
	for _, ref := range []string{reg + "/test/a:2", reg + "/test/nope:1"} {
		_, err := Pull(t.Context(), store, ref, testOptions())
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("pull %s: got %v, want ErrNotFound", ref, err)
			continue
		}
		if !strings.Contains(err.Error(), reg) {
			t.Errorf("error does not name the registry: %v", err)
		}
	}
	checkStore(t, store, 0)
}

// corrupt returns a handler wrapper that hands GET requests matching
// match to fn with the inner handler's recorded response.
func corrupt(match func(*http.Request) bool, fn func(w http.ResponseWriter, rec *httptest.ResponseRecorder)) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !match(r) {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK {
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				w.Write(rec.Body.Bytes())
				return
			}
			fn(w, rec)
		})
	}
}

func copyHeader(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
}

func TestPullMisbehavingRegistry(t *testing.T) {
	isManifest := func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/manifests/") }
	var layer string // digest of the image's first layer, set below
	var config string
	isLayer := func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/blobs/"+layer) }
	isConfig := func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/blobs/"+config) }

	otherManifest := func(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
		copyHeader(w, rec)
		body := append(rec.Body.Bytes(), ' ')
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}
	truncated := func(keepLength bool) func(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
		return func(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
			copyHeader(w, rec)
			body := rec.Body.Bytes()
			if !keepLength {
				w.Header().Del("Content-Length")
			}
			w.Write(body[:len(body)/2])
		}
	}
	otherBytes := func(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
		copyHeader(w, rec)
		body := bytes.Clone(rec.Body.Bytes())
		for i := len(body) / 2; i < len(body); i++ {
			body[i] ^= 0x55
		}
		w.Write(body)
	}
	unauthorized := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Basic realm="kiln-test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		})
	}

	tests := []struct {
		name     string
		wrap     func(http.Handler) http.Handler
		byDigest bool
		wantIs   error
		want     string
	}{
		{"manifest other than the announced digest", corrupt(isManifest, otherManifest), false, ErrDigestMismatch, "Docker-Content-Digest"},
		{"manifest other than the requested digest", corrupt(isManifest, otherManifest), true, ErrDigestMismatch, "requested"},
		{"truncated layer with content length", corrupt(isLayer, truncated(true)), false, ErrTruncated, "try again"},
		{"truncated layer", corrupt(isLayer, truncated(false)), false, ErrTruncated, "try again"},
		{"other bytes for a layer", corrupt(isLayer, otherBytes), false, ErrDigestMismatch, "other bytes"},
		{"truncated config", corrupt(isConfig, truncated(false)), false, ErrTruncated, "image config"},
		{"other bytes for the config", corrupt(isConfig, otherBytes), false, ErrDigestMismatch, "image config"},
		{"unauthorized", unauthorized, false, ErrUnauthorized, "kiln login"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wrap func(http.Handler) http.Handler
			reg := newRegistry(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if wrap != nil {
						wrap(h).ServeHTTP(w, r)
						return
					}
					h.ServeHTTP(w, r)
				})
			})
			src := pushRandom(t, reg+"/test/bad:1", 2)
			ls, _ := src.Layers()
			ld, _ := ls[0].Digest()
			layer = ld.String()
			cn, _ := src.ConfigName()
			config = cn.String()
			md, _ := src.Digest()
			wrap = tt.wrap

			ref := reg + "/test/bad:1"
			if tt.byDigest {
				ref = reg + "/test/bad@" + md.String()
			}
			store := newStore(t)
			_, err := Pull(t.Context(), store, ref, testOptions())
			if err == nil {
				t.Fatal("pull succeeded")
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("error is not %v: %v", tt.wantIs, err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), reg) || !strings.Contains(err.Error(), "test/bad") {
				t.Errorf("error lacks %q, the registry or the image: %v", tt.want, err)
			}
			checkStore(t, store, 0)
		})
	}
}

// basicAuth wraps a registry so it wants user:pass.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="kiln-test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

// staticKeychain hands out one login for every registry.
type staticKeychain authn.AuthConfig

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.FromConfig(authn.AuthConfig(k)), nil
}

func TestAuth(t *testing.T) {
	reg := newRegistry(t, basicAuth("alice", "s3cret"))
	good := testOptions()
	good.Keychain = staticKeychain{Username: "alice", Password: "s3cret"}
	store := newStore(t)
	img := writeImage(t, store, layerBlob(t, 3, 1000, gzip.BestSpeed))

	if _, err := Push(t.Context(), store, img, reg+"/private/app:1", testOptions()); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("anonymous push: got %v, want ErrUnauthorized", err)
	} else if !strings.Contains(err.Error(), "kiln login "+reg) {
		t.Errorf("error does not say how to log in: %v", err)
	}
	if _, err := Push(t.Context(), store, img, reg+"/private/app:1", good); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(t.Context(), newStore(t), reg+"/private/app:1", testOptions()); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("anonymous pull: got %v, want ErrUnauthorized", err)
	}
	if _, err := Pull(t.Context(), newStore(t), reg+"/private/app:1", good); err != nil {
		t.Fatal(err)
	}

	server, err := ParseServer("http://"+reg+"/", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if server.AuthKey != reg {
		t.Errorf("auth key %q, want %q", server.AuthKey, reg)
	}
	if err := CheckLogin(t.Context(), server, authn.AuthConfig{Username: "alice", Password: "s3cret"}, Options{}); err != nil {
		t.Errorf("good login: %v", err)
	}
	if err := CheckLogin(t.Context(), server, authn.AuthConfig{Username: "alice", Password: "wrong"}, Options{}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("bad login: got %v, want ErrUnauthorized", err)
	}
}

func TestParseServer(t *testing.T) {
	tests := []struct {
		in, registry, key string
	}{
		{"docker.io", "index.docker.io", "https://index.docker.io/v1/"},
		{"https://index.docker.io/v1/", "index.docker.io", "https://index.docker.io/v1/"},
		{"registry-1.docker.io", "index.docker.io", "https://index.docker.io/v1/"},
		{"ghcr.io", "ghcr.io", "ghcr.io"},
		{"https://Registry.Example.com:5000/", "registry.example.com:5000", "registry.example.com:5000"},
		{"127.0.0.1:5000", "127.0.0.1:5000", "127.0.0.1:5000"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := ParseServer(tt.in, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if s.Registry.RegistryStr() != tt.registry || s.AuthKey != tt.key {
				t.Errorf("got %s, %s; want %s, %s", s.Registry.RegistryStr(), s.AuthKey, tt.registry, tt.key)
			}
		})
	}
	if _, err := ParseServer("", Options{}); err == nil {
		t.Error("empty server accepted")
	}
}

func TestInsecure(t *testing.T) {
	o := Options{Insecure: []string{"reg.example:5000", "http://other.example/", "[::1]"}}
	tests := []struct {
		host string
		want bool
	}{
		{"reg.example:5000", true},
		{"REG.example:5000", true},
		{"reg.example:5001", false},
		{"other.example", true},
		{"other.example:443", true},
		{"[::1]:5000", true},
		{"third.example", false},
	}
	for _, tt := range tests {
		if got := o.insecure(tt.host); got != tt.want {
			t.Errorf("insecure(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestPullUnreachable(t *testing.T) {
	// A port nothing listens on.
	srv := httptest.NewServer(http.NotFoundHandler())
	host := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	_, err := Pull(t.Context(), newStore(t), host+"/x/y:1", testOptions())
	if err == nil || !strings.Contains(err.Error(), "cannot reach registry "+host) {
		t.Errorf("got %v, want a 'cannot reach' error", err)
	}
}

func TestBlobReader(t *testing.T) {
	data := []byte("hello, registry")
	d := digest.FromBytes(data)
	refused := errors.New("checksum mismatch")
	tests := []struct {
		name   string
		body   io.Reader
		size   int64
		wantIs error
	}{
		{"ok", bytes.NewReader(data), int64(len(data)), nil},
		{"short", bytes.NewReader(data[:5]), int64(len(data)), ErrTruncated},
		{"short and failed", io.MultiReader(bytes.NewReader(data[:5]), iotest.ErrReader(io.ErrUnexpectedEOF)), int64(len(data)), ErrTruncated},
		{"long", bytes.NewReader(append(bytes.Clone(data), '!')), int64(len(data)), ErrDigestMismatch},
		{"other", io.MultiReader(bytes.NewReader(data), iotest.ErrReader(refused)), int64(len(data)), ErrDigestMismatch},
		{"canceled", io.MultiReader(bytes.NewReader(data[:5]), iotest.ErrReader(context.Canceled)), int64(len(data)), context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bytes.NewBuffer(nil).ReadFrom(newBlobReader(tt.body, d, tt.size))
			if tt.wantIs == nil && err != nil || tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("got %v, want %v", err, tt.wantIs)
			}
		})
	}
}
