package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestBlobRoundTrip(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	tests := []struct {
		name     string
		data     []byte
		expected bool
	}{
		{"empty", nil, false},
		{"small", []byte("hello, kiln"), true},
		{"large", bytes.Repeat([]byte("0123456789abcdef"), 1<<16), true},
		{"again", []byte("hello, kiln"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := digest.FromBytes(tt.data)
			var exp digest.Digest
			if tt.expected {
				exp = want
			}
			d, n, err := s.WriteBlob(ctx, bytes.NewReader(tt.data), exp)
			if err != nil {
				t.Fatalf("WriteBlob: %v", err)
			}
			if d != want || n != int64(len(tt.data)) {
				t.Fatalf("WriteBlob = %s, %d; want %s, %d", d, n, want, len(tt.data))
			}
			size, err := s.StatBlob(ctx, d)
			if err != nil || size != n {
				t.Fatalf("StatBlob = %d, %v; want %d", size, err, n)
			}
			got, err := s.ReadBlob(ctx, d)
			if err != nil || !bytes.Equal(got, tt.data) {
				t.Fatalf("ReadBlob = %d bytes, %v", len(got), err)
			}
			rc, err := s.OpenBlob(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			got, err = io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, tt.data) {
				t.Fatalf("OpenBlob read = %d bytes, %v", len(got), err)
			}
			fi, err := os.Stat(filepath.Join(s.Root(), blobsDir, d.Encoded()))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o444 {
				t.Errorf("blob mode = %v, want read-only", fi.Mode())
			}
		})
	}
	if left := tmpLeftovers(t, s); len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func TestBlobNotFound(t *testing.T) {
	s := openStore(t, "")
	d := digest.FromString("nothing")
	if _, err := s.StatBlob(t.Context(), d); !errors.Is(err, ErrNotFound) {
		t.Errorf("StatBlob error = %v, want ErrNotFound", err)
	}
	if _, err := s.OpenBlob(t.Context(), d); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenBlob error = %v, want ErrNotFound", err)
	}
	if _, err := s.ReadBlob(t.Context(), d); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReadBlob error = %v, want ErrNotFound", err)
	}
}

func TestInvalidDigests(t *testing.T) {
	s := openStore(t, "")
	good := digest.FromString("x")
	tests := []struct {
		name string
		d    digest.Digest
	}{
		{"traversal", "sha256:../../../../etc/passwd"},
		{"sha512", digest.Digest("sha512:" + strings.Repeat("ab", 64))},
		{"uppercase", digest.Digest(strings.ToUpper(string(good)))},
		{"short", good[:20]},
		{"long", good + "00"},
		{"no algorithm", digest.Digest(good.Encoded())},
		{"slash", digest.Digest("sha256:" + strings.Repeat("a", 31) + "/" + strings.Repeat("a", 32))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.StatBlob(t.Context(), tt.d); err == nil || errors.Is(err, ErrNotFound) {
				t.Errorf("StatBlob(%q) error = %v, want invalid digest", tt.d, err)
			}
			if _, err := s.OpenBlob(t.Context(), tt.d); err == nil {
				t.Errorf("OpenBlob(%q) succeeded", tt.d)
			}
			if _, _, err := s.WriteBlob(t.Context(), strings.NewReader("x"), tt.d); err == nil {
				t.Errorf("WriteBlob(expected %q) succeeded", tt.d)
			}
		})
	}
	if got := listDir(t, filepath.Join(s.Root(), blobsDir)); len(got) != 0 {
		t.Errorf("blobs stored: %v", got)
	}
}

func TestWriteBlobMismatchStoresNothing(t *testing.T) {
	s := openStore(t, "")
	wrong := digest.FromString("something else")
	_, _, err := s.WriteBlob(t.Context(), strings.NewReader("content"), wrong)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("WriteBlob error = %v, want ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), short(wrong)) {
		t.Errorf("error %q does not name the expected digest", err)
	}
	if got := listDir(t, filepath.Join(s.Root(), blobsDir)); len(got) != 0 {
		t.Errorf("blobs stored: %v", got)
	}
	if left := tmpLeftovers(t, s); len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func TestCorruptBlobDetected(t *testing.T) {
	s := openStore(t, "")
	ctx := t.Context()
	data := bytes.Repeat([]byte("kiln"), 1000)
	d, _, err := s.WriteBlob(ctx, bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, s, d, 1234)

	_, err = s.ReadBlob(ctx, d)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReadBlob error = %v, want ErrCorrupt", err)
	}
	want := "blob " + short(d) + " is corrupt: content does not match its digest"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	rc, err := s.OpenBlob(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrCorrupt) {
		t.Errorf("OpenBlob read error = %v, want ErrCorrupt", err)
	}
	// Reading again keeps failing.
	if _, err := rc.Read(make([]byte, 1)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("second read error = %v, want ErrCorrupt", err)
	}

	// Writing the right content again repairs the blob.
	if _, _, err := s.WriteBlob(ctx, bytes.NewReader(data), d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadBlob(ctx, d); err != nil {
		t.Errorf("ReadBlob after rewrite: %v", err)
	}
}

func TestWriteBlobHonoursContext(t *testing.T) {
	s := openStore(t, "")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := s.WriteBlob(ctx, strings.NewReader("x"), ""); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteBlob error = %v, want context.Canceled", err)
	}
	if left := tmpLeftovers(t, s); len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}
