package cache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

// FuzzIngest writes random bytes with a random, right or wrong expected
// digest and checks that no blob is ever stored under a name its content
// does not hash to.
func FuzzIngest(f *testing.F) {
	f.Add([]byte("hello"), "", false)
	f.Add([]byte("hello"), "", true)
	f.Add([]byte{}, string(digest.FromString("other")), false)
	f.Add([]byte("x"), string(digest.FromString("x")), false)
	f.Add([]byte("x"), "sha256:../../../etc/passwd", false)
	f.Add(bytes.Repeat([]byte{0}, 70000), "sha512:00", false)
	s, err := Open(f.Context(), f.TempDir(), Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, data []byte, expected string, useRight bool) {
		exp := digest.Digest(expected)
		right := digest.FromBytes(data)
		if useRight {
			exp = right
		}
		d, n, err := s.WriteBlob(t.Context(), bytes.NewReader(data), exp)
		switch {
		case exp == "" || exp == right:
			if err != nil || d != right || n != int64(len(data)) {
				t.Fatalf("WriteBlob(expected %q) = %s, %d, %v; want %s", exp, d, n, err, right)
			}
		case checkDigest(exp) == nil:
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("WriteBlob with mismatching expected %q: %v, want ErrCorrupt", exp, err)
			}
		default:
			if err == nil {
				t.Fatalf("WriteBlob accepted invalid expected %q", exp)
			}
		}
		// Whatever is stored under either name hashes to that name.
		for _, cand := range []digest.Digest{exp, right} {
			if checkDigest(cand) != nil {
				continue
			}
			b, err := os.ReadFile(filepath.Join(s.Root(), blobsDir, cand.Encoded()))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := digest.FromBytes(b); got != cand {
				t.Fatalf("blob %s holds content hashing to %s", cand, got)
			}
		}
		if left := tmpLeftovers(t, s); len(left) > 0 {
			t.Fatalf("temp files left behind: %v", left)
		}
	})
}
