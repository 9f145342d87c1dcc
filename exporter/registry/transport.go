package registry

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"
)

// ErrDigestMismatch: the registry sent content whose digest is not the one
// asked for or announced. Callers check it with errors.Is.
var ErrDigestMismatch = errors.New("content does not match its digest")

// digestTransport sends requests for Insecure registries through a
// transport without certificate checks, and checks every manifest it
// receives against the digest it was requested by and against the digest
// the registry announces in Docker-Content-Digest. (ggcr checks the first
// only, and not for tags.)
type digestTransport struct {
	base http.RoundTripper
	// skipVerify is used for insecure hosts; nil when there are none.
	skipVerify http.RoundTripper
	insecure   func(host string) bool
}

// RoundTrip implements http.RoundTripper.
func (t *digestTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := t.base
	if t.skipVerify != nil && t.insecure(req.URL.Host) {
		rt = t.skipVerify
	}
	resp, err := rt.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	_, ident, ok := strings.Cut(req.URL.Path, "/manifests/")
	if !ok || !strings.HasPrefix(req.URL.Path, "/v2/") {
		return resp, nil
	}
	if strings.Contains(resp.Header.Get("Content-Type"), "manifest.v1+") {
		// Signed schema 1 manifests have digests of their own kind; Pull
		// refuses them anyway.
		return resp, nil
	}
	var want []check
	if d, err := digest.Parse(ident); err == nil && d.Algorithm() == digest.SHA256 {
		want = append(want, check{d, "requested"})
	}
	if d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil && d.Algorithm() == digest.SHA256 {
		want = append(want, check{d, "announced in its Docker-Content-Digest header"})
	}
	if len(want) > 0 {
		resp.Body = &digestChecker{rc: resp.Body, want: want, h: sha256.New(), host: req.URL.Host}
	}
	return resp, nil
}

// check is one digest a manifest must have, and where it comes from.
type check struct {
	d     digest.Digest
	where string
}

// digestChecker hashes a manifest as it is read and fails at EOF when the
// digest is not the expected one.
type digestChecker struct {
	rc   io.ReadCloser
	want []check
	h    hash.Hash
	host string
	err  error
}

func (c *digestChecker) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.rc.Read(p)
	c.h.Write(p[:n])
	if err == io.EOF {
		got := digest.NewDigest(digest.SHA256, c.h)
		for _, w := range c.want {
			if got != w.d {
				c.err = fmt.Errorf("registry %s sent a manifest with digest %s, not the digest %s (%s): the registry or a proxy on the way is broken: %w",
					c.host, got, w.d, w.where, ErrDigestMismatch)
				return n, c.err
			}
		}
	}
	return n, err
}

func (c *digestChecker) Close() error { return c.rc.Close() }
