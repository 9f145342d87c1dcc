package ops

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/solver"
)

// HTTP downloads a URL (ADD https://...) into a one-file tree: the file,
// named Filename (or after the URL's last path element), mode 0600, mtime from
// Last-Modified. Its cache key covers the downloaded content, so the file is
// fetched when the key is computed and reused by Run.
type HTTP struct {
	URL string
	// Client does the request; nil means a client with a 10 minute timeout.
	Client *http.Client

	mu       sync.Mutex
	tmp      string
	name     string
	sum      digest.Digest
	modified time.Time
}

// Kind implements solver.Op.
func (o *HTTP) Kind() string { return "http" }

// Filename is the name the download gets: the server's Content-Disposition
// filename, else the URL's last path element, else "index.html".
func (o *HTTP) Filename() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.name != "" {
		return o.name
	}
	return urlFilename(o.URL)
}

func urlFilename(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "index.html"
	}
	base := path.Base(u.Path)
	if base == "/" || base == "." || base == "" {
		return "index.html"
	}
	return base
}

// CacheKey implements solver.Op; it downloads the file.
func (o *HTTP) CacheKey(ctx context.Context) (digest.Digest, error) {
	if err := o.fetch(ctx); err != nil {
		return "", err
	}
	return digest.FromString("http\x00" + o.URL + "\x00" + o.name + "\x00" + string(o.sum)), nil
}

func (o *HTTP) fetch(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tmp != "" {
		return nil
	}
	client := o.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Minute}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
	if err != nil {
		return fmt.Errorf("ADD %s: %w", o.URL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("ADD %s: download: %w", o.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ADD %s: download: server answered %s", o.URL, resp.Status)
	}
	f, err := os.CreateTemp("", "kiln-add-")
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), resp.Body); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("ADD %s: download: %w", o.URL, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	o.tmp = f.Name()
	o.sum = digest.NewDigest(digest.SHA256, h)
	o.name = urlFilename(o.URL)
	if _, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); err == nil {
		if fn := path.Base(params["filename"]); params["filename"] != "" && fn != "/" && fn != "." && fn != ".." {
			o.name = fn
		}
	}
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		o.modified = lm
	}
	return nil
}

// Cleanup implements solver.Cleaner: it removes the downloaded file.
func (o *HTTP) Cleanup() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tmp != "" {
		os.Remove(o.tmp)
		o.tmp = ""
	}
}

// Run implements solver.Op.
func (o *HTTP) Run(ctx context.Context, rc *solver.RunContext, _ []solver.Result) (solver.Result, error) {
	if err := o.fetch(ctx); err != nil {
		return solver.Result{}, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	active, err := rc.Store.Prepare(ctx, nil)
	if err != nil {
		return solver.Result{}, err
	}
	defer active.Discard()
	dst := filepath.Join(active.UpperDir, o.name)
	if err := copyFile(o.tmp, dst, 0o600); err != nil {
		return solver.Result{}, fmt.Errorf("ADD %s: %w", o.URL, err)
	}
	mt := o.modified
	if mt.IsZero() {
		mt = time.Unix(0, 0)
	}
	if err := os.Chtimes(dst, mt, mt); err != nil {
		return solver.Result{}, err
	}
	chain, err := active.Commit(ctx)
	if err != nil {
		return solver.Result{}, fmt.Errorf("commit layer: %w", err)
	}
	return solver.Result{Chain: chain}, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, cerr := io.Copy(out, in)
	return errors.Join(cerr, out.Close(), os.Chmod(dst, mode))
}
