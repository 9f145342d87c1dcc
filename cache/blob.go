package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// copyBufferSize is the buffer used to stream blobs.
const copyBufferSize = 256 << 10

// checkDigest accepts only sha256 digests in canonical form, the only kind
// ever turned into a path.
func checkDigest(d digest.Digest) error {
	hexPart, ok := strings.CutPrefix(string(d), "sha256:")
	if ok && len(hexPart) == 64 && isLowerHex(hexPart) {
		return nil
	}
	shown := string(d)
	if len(shown) > 80 {
		shown = shown[:80] + "…"
	}
	return fmt.Errorf("invalid digest %q: want sha256: followed by 64 lowercase hex digits", shown)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (s *Store) blobPath(d digest.Digest) (string, error) {
	if err := checkDigest(d); err != nil {
		return "", err
	}
	return filepath.Join(s.root, blobsDir, d.Encoded()), nil
}

func corruptBlob(d digest.Digest) error {
	return fmt.Errorf("blob %s is corrupt: %w", short(d), ErrCorrupt)
}

func missingBlob(d digest.Digest) error {
	return fmt.Errorf("blob %s: %w", short(d), ErrNotFound)
}

// WriteBlob stores r as a blob; when expected is not empty the bytes must
// match it or nothing is stored (the error wraps ErrCorrupt). Returns digest
// and size.
//
// The bytes go to a temp file, hashed on the way; the file is made
// read-only and renamed into place (fsync'ed first, and its directory
// after, with Options.Durable). A blob that is already stored is
// replaced by the fresh, verified copy, which also repairs a damaged one.
func (s *Store) WriteBlob(ctx context.Context, r io.Reader, expected digest.Digest) (digest.Digest, int64, error) {
	if expected != "" {
		if err := checkDigest(expected); err != nil {
			return "", 0, fmt.Errorf("write blob: %w", err)
		}
	}
	done, err := s.begin()
	if err != nil {
		return "", 0, err
	}
	defer done()
	t, err := s.newIngest()
	if err != nil {
		return "", 0, fmt.Errorf("write blob: %w", err)
	}
	defer t.cleanup()
	buf := make([]byte, copyBufferSize)
	if _, err := io.CopyBuffer(t, ctxReader(ctx, r), buf); err != nil {
		return "", 0, fmt.Errorf("write blob: %w", err)
	}
	d, err := t.commit(expected)
	if err != nil {
		return "", 0, err
	}
	return d, t.size, nil
}

// ingest is a blob being written: a temp file plus the running digest.
type ingest struct {
	s    *Store
	f    *os.File
	h    hash.Hash
	size int64
	done bool
}

func (s *Store) newIngest() (*ingest, error) {
	f, err := os.CreateTemp(s.tmp, "ingest-")
	if err != nil {
		return nil, err
	}
	return &ingest{s: s, f: f, h: sha256.New()}, nil
}

// Write writes to the temp file and the hash.
func (t *ingest) Write(p []byte) (int, error) {
	n, err := t.f.Write(p)
	t.h.Write(p[:n])
	t.size += int64(n)
	return n, err
}

func (t *ingest) digest() digest.Digest {
	return digest.NewDigest(digest.SHA256, t.h)
}

// commit verifies and moves the blob into place.
func (t *ingest) commit(expected digest.Digest) (digest.Digest, error) {
	d := t.digest()
	if expected != "" && d != expected {
		return "", fmt.Errorf("blob %s: the content received has digest %s: %w", short(expected), short(d), ErrCorrupt)
	}
	dst, err := t.s.blobPath(d)
	if err != nil {
		return "", err
	}
	if t.s.opts.Durable {
		if err := t.f.Sync(); err != nil {
			return "", fmt.Errorf("write blob %s: %w", short(d), err)
		}
	}
	if err := t.f.Chmod(0o444); err != nil {
		return "", fmt.Errorf("write blob %s: %w", short(d), err)
	}
	if err := t.f.Close(); err != nil {
		return "", fmt.Errorf("write blob %s: %w", short(d), err)
	}
	if err := os.Rename(t.f.Name(), dst); err != nil {
		return "", fmt.Errorf("write blob %s: %w", short(d), err)
	}
	t.done = true
	if t.s.opts.Durable {
		if err := syncDir(filepath.Dir(dst)); err != nil {
			return "", fmt.Errorf("write blob %s: %w", short(d), err)
		}
	}
	return d, nil
}

// cleanup removes the temp file unless it was committed.
func (t *ingest) cleanup() {
	if t.done {
		return
	}
	_ = t.f.Close()
	_ = os.Remove(t.f.Name())
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// OpenBlob opens a stored blob. Reading it to EOF verifies the digest and
// returns an error wrapping ErrCorrupt on mismatch. A missing blob is
// ErrNotFound.
//
// A lazy layer blob (see Active.Commit) is written from its snapshot on
// first use, which takes a pass over the snapshot; it is then an ordinary
// blob file. If the snapshot no longer gives the recorded digest, the error
// wraps ErrCorrupt and nothing is stored.
func (s *Store) OpenBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	rc, err := s.openFile(ctx, d)
	if !errors.Is(err, ErrNotFound) {
		return rc, err
	}
	done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	return s.openBlob(ctx, d)
}

// openBlob is OpenBlob for callers that hold s.gc (begin or Prune).
func (s *Store) openBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	rc, err := s.openFile(ctx, d)
	if !errors.Is(err, ErrNotFound) {
		return rc, err
	}
	if err := s.materialize(ctx, d); err != nil {
		return nil, err
	}
	return s.openFile(ctx, d)
}

// openFile opens the file of blob d (ErrNotFound when there is none, even
// if d is a lazy blob).
func (s *Store) openFile(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, missingBlob(d)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", short(d), err)
	}
	return &verifier{f: f, d: d, h: sha256.New()}, nil
}

// verifier hashes a blob as it is read and turns EOF into an ErrCorrupt
// error when the content does not match.
type verifier struct {
	f   *os.File
	d   digest.Digest
	h   hash.Hash
	err error // sticky result at EOF
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if digest.NewDigest(digest.SHA256, v.h) != v.d {
			v.err = corruptBlob(v.d)
			return n, v.err
		}
		v.err = io.EOF
	} else if err != nil {
		err = fmt.Errorf("read blob %s: %w", short(v.d), err)
	}
	return n, err
}

func (v *verifier) Close() error { return v.f.Close() }

// ReadBlob reads a whole (small) blob, verified.
func (s *Store) ReadBlob(ctx context.Context, d digest.Digest) ([]byte, error) {
	rc, err := s.OpenBlob(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// readFile reads a whole (small) blob file, verified, without
// materializing lazy blobs (for Prune, which reads only manifests and
// configs).
func (s *Store) readFile(ctx context.Context, d digest.Digest) ([]byte, error) {
	rc, err := s.openFile(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// StatBlob returns the size of a stored blob or ErrNotFound. A lazy layer
// blob (see Active.Commit) counts as stored while its snapshot exists; its
// recorded size is returned without materializing it.
func (s *Store) StatBlob(ctx context.Context, d digest.Digest) (int64, error) {
	size, err := s.statFile(d)
	if !errors.Is(err, ErrNotFound) {
		return size, err
	}
	rec, err := s.lazyBlob(ctx, d)
	if err != nil {
		return 0, err
	}
	return rec.Size, nil
}

// statFile returns the size of the file of blob d (ErrNotFound when there
// is none, even if d is a lazy blob).
func (s *Store) statFile(d digest.Digest) (int64, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return 0, fmt.Errorf("stat blob: %w", err)
	}
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, missingBlob(d)
	}
	if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", short(d), err)
	}
	return fi.Size(), nil
}
