package registry

import (
	"github.com/kiln-build/kiln/exporter"

	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// DefaultJobs is how many blobs Pull and Push move at the same time when
// Options.Jobs is 0.
const DefaultJobs = 4

// userAgent is sent with every request.
const userAgent = "kiln"

// dockerHub is how Docker Hub appears in names and messages; ggcr calls it
// index.docker.io.
const dockerHub = "docker.io"

// Errors callers check with errors.Is.
var (
	// ErrNotFound: the registry has no such image (or repository).
	ErrNotFound = errors.New("not found in the registry")
	// ErrUnauthorized: the registry wants credentials, or refused the ones
	// kiln sent.
	ErrUnauthorized = errors.New("authentication required")
)

// Options configures Pull, Push and CheckLogin.
type Options struct {
	// Insecure lists registries ("host" or "host:port") that may be
	// reached over plain http or https without certificate checks, like
	// Docker's --insecure-registry. Registries on loopback addresses
	// (localhost, 127.0.0.0/8, [::1]) may always use plain http.
	Insecure []string
	// Platform is the image Pull picks from an image index; nil means
	// linux/amd64.
	Platform *v1.Platform
	// Jobs bounds how many blobs move at the same time; 0 means
	// DefaultJobs.
	Jobs int
	// Keychain finds credentials; nil means authn.DefaultKeychain (the
	// Docker config file and its credential helpers).
	Keychain authn.Keychain
	// Transport is the HTTP transport under authentication and retries;
	// nil means a clone of remote.DefaultTransport.
	Transport http.RoundTripper
	// Compression of the layers Push uploads: "gzip" (the default, as
	// docker), "zstd" or "none" (as stored: kiln keeps built layers
	// uncompressed). CompressionLevel 0 is the algorithm's default.
	Compression      string
	CompressionLevel int
}

func (o Options) compression() string {
	if o.Compression == "" {
		return exporter.CompressionGzip
	}
	return o.Compression
}

func (o Options) jobs() int {
	if o.Jobs > 0 {
		return o.Jobs
	}
	return DefaultJobs
}

func (o Options) platform() v1.Platform {
	if o.Platform != nil {
		return *o.Platform
	}
	return v1.Platform{OS: "linux", Architecture: "amd64"}
}

func (o Options) keychain() authn.Keychain {
	if o.Keychain != nil {
		return o.Keychain
	}
	return authn.DefaultKeychain
}

// insecure reports whether host ("host" or "host:port") is listed in
// Options.Insecure, with or without its port.
func (o Options) insecure(host string) bool {
	host = strings.ToLower(host)
	bare := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		bare = h
	}
	for _, e := range o.Insecure {
		e = cleanHost(e)
		if e == host || e == bare || e == "["+bare+"]" {
			return true
		}
	}
	return false
}

// cleanHost turns what a user may write for a registry ("https://r:5000/",
// "R:5000") into "r:5000".
func cleanHost(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, p := range []string{"https://", "http://"} {
		s = strings.TrimPrefix(s, p)
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	return s
}

// transport returns the HTTP transport for registry requests: certificate
// checks are off for Insecure registries, and manifests are checked against
// the digest the registry announces.
func (o Options) transport() http.RoundTripper {
	base := o.Transport
	if base == nil {
		base = remote.DefaultTransport.(*http.Transport).Clone()
	}
	var skipVerify http.RoundTripper
	if ht, ok := base.(*http.Transport); ok && len(o.Insecure) > 0 {
		c := ht.Clone()
		if c.TLSClientConfig == nil {
			c.TLSClientConfig = &tls.Config{}
		}
		c.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // only for registries the user called insecure
		skipVerify = c
	}
	return &digestTransport{base: base, skipVerify: skipVerify, insecure: o.insecure}
}

// remoteOptions are the ggcr options shared by pulls and pushes.
func (o Options) remoteOptions() []remote.Option {
	return []remote.Option{
		remote.WithAuthFromKeychain(o.keychain()),
		remote.WithTransport(o.transport()),
		remote.WithJobs(o.jobs()),
		remote.WithUserAgent(userAgent),
		remote.WithPlatform(o.platform()),
	}
}

// parseReference parses an image reference like Docker does ("busybox" is
// docker.io/library/busybox:latest), allowing plain http for registries
// listed as insecure.
func parseReference(ref string, o Options) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	if o.insecure(r.Context().RegistryStr()) {
		r, err = name.ParseReference(ref, name.Insecure)
		if err != nil {
			return nil, fmt.Errorf("invalid image reference %q: %w", ref, err)
		}
	}
	return r, nil
}

// registryName is how a registry is shown to users: "docker.io" for
// Docker Hub, host[:port] otherwise.
func registryName(reg name.Registry) string {
	if reg.RegistryStr() == name.DefaultRegistry {
		return dockerHub
	}
	return reg.RegistryStr()
}

// explain adds what the user can do to a registry error: log in, check the
// name, allow plain http. what names the thing asked for ("image app:1").
func explain(err error, reg string, what string) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.Request != nil && te.Request.URL.Path == "/v2/" && te.StatusCode != http.StatusUnauthorized:
			return fmt.Errorf("%s does not answer like a registry (GET /v2/ failed): check the host and port: %w", reg, err)
		case te.StatusCode == http.StatusUnauthorized || hasCode(te, transport.UnauthorizedErrorCode):
			return fmt.Errorf("%w: log in with 'kiln login %s', or check the credentials the Docker config has for it: %w",
				ErrUnauthorized, reg, err)
		case te.StatusCode == http.StatusForbidden || hasCode(te, transport.DeniedErrorCode):
			return fmt.Errorf("access to %s denied: check that 'kiln login %s' used an account allowed to use it: %w",
				what, reg, err)
		case te.StatusCode == http.StatusNotFound || hasCode(te, transport.ManifestUnknownErrorCode) ||
			hasCode(te, transport.NameUnknownErrorCode) || hasCode(te, transport.BlobUnknownErrorCode):
			return fmt.Errorf("%s %w: check the name and tag: %w", what, ErrNotFound, err)
		case te.StatusCode == http.StatusTooManyRequests:
			return fmt.Errorf("the registry limits the rate of requests: wait and try again, or log in with 'kiln login %s': %w", reg, err)
		}
		return err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("the registry speaks plain http, not https: allow it with --insecure-registry %s: %w", reg, err)
	case strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:"):
		return fmt.Errorf("the TLS connection failed; if you trust the registry, allow it with --insecure-registry %s: %w", reg, err)
	}
	var oe *net.OpError
	var de *net.DNSError
	if errors.As(err, &de) || errors.As(err, &oe) {
		return fmt.Errorf("cannot reach registry %s: %w", reg, err)
	}
	return err
}

func hasCode(te *transport.Error, code transport.ErrorCode) bool {
	for _, d := range te.Errors {
		if d.Code == code {
			return true
		}
	}
	return false
}
