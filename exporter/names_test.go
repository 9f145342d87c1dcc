package exporter

import (
	"regexp"
	"strings"
	"testing"
)

const testHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestNormalizeName(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"busybox", "docker.io/library/busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36"},
		{"app:1", "docker.io/library/app:1"},
		{"foo/bar", "docker.io/foo/bar:latest"},
		{"foo/bar:1", "docker.io/foo/bar:1"},
		{"library/busybox", "docker.io/library/busybox:latest"},
		{"docker.io/busybox", "docker.io/library/busybox:latest"},
		{"docker.io/library/busybox:latest", "docker.io/library/busybox:latest"},
		{"index.docker.io/library/busybox:latest", "docker.io/library/busybox:latest"},
		{"localhost:5000/x", "localhost:5000/x:latest"},
		{"localhost/x:2", "localhost/x:2"},
		{"ghcr.io/a/b/c:v1.2_3-rc", "ghcr.io/a/b/c:v1.2_3-rc"},
		{"Registry.Example.com/app", "Registry.Example.com/app:latest"},
		{"conformance/copy-chown:latest", "docker.io/conformance/copy-chown:latest"},
		{"busybox@sha256:" + testHex, "docker.io/library/busybox@sha256:" + testHex},
		{"busybox:1@sha256:" + testHex, "docker.io/library/busybox@sha256:" + testHex},
		{"localhost:5000/x@sha256:" + testHex, "localhost:5000/x@sha256:" + testHex},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeName(tt.in)
			if err != nil {
				t.Fatalf("NormalizeName(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("NormalizeName(%q) = %q, want %q", tt.in, got, tt.want)
			}
			again, err := NormalizeName(got)
			if err != nil || again != got {
				t.Errorf("NormalizeName is not idempotent: %q -> %q, %v", got, again, err)
			}
		})
	}
}

func TestNormalizeNameErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // in the error message
	}{
		{"empty", "", "empty"},
		{"upper case", "Busybox", "lowercase"},
		{"upper case path", "foo/Bar:1", "lowercase"},
		{"bad character", "bad name", `"bad name"`},
		{"empty tag", "busybox:", `"busybox:"`},
		{"bad tag", "busybox:a/b", `"busybox:a/b"`},
		{"short digest", "busybox@sha256:abc", `"busybox@sha256:abc"`},
		{"image ID", testHex, "image ID"},
		{"scheme", "https://example.com/x", "URL scheme"},
		{"empty path component", "foo//bar", `""`},
		{"leading separator", "foo/-bar", `"-bar"`},
		{"tag starts with dot", "busybox:.x", `".x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeName(tt.in)
			if err == nil {
				t.Fatalf("NormalizeName(%q) = %q, want an error", tt.in, got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NormalizeName(%q) error %q does not mention %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestFamiliarName(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"docker.io/library/busybox:latest", "busybox:latest"},
		{"docker.io/foo/bar:1", "foo/bar:1"},
		{"docker.io/library/foo/bar:1", "library/foo/bar:1"},
		{"docker.io/library/busybox@sha256:" + testHex, "busybox@sha256:" + testHex},
		{"localhost:5000/x:latest", "localhost:5000/x:latest"},
		{"ghcr.io/library/x:1", "ghcr.io/library/x:1"},
		{"docker.io/library/busybox", "busybox"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := FamiliarName(tt.in); got != tt.want {
				t.Errorf("FamiliarName(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestNormalizeFamiliarRoundTrip checks that a familiar name normalizes back
// to the name it came from.
func TestNormalizeFamiliarRoundTrip(t *testing.T) {
	for _, n := range []string{
		"docker.io/library/busybox:latest",
		"docker.io/foo/bar:1",
		"docker.io/library/foo/bar:1",
		"localhost:5000/x:latest",
		"docker.io/library/busybox@sha256:" + testHex,
	} {
		t.Run(n, func(t *testing.T) {
			got, err := NormalizeName(FamiliarName(n))
			if err != nil || got != n {
				t.Errorf("NormalizeName(FamiliarName(%q)) = %q, %v", n, got, err)
			}
		})
	}
}

// TestNameGrammar checks the hand-written grammar checks against the
// regular expressions they replace.
func TestNameGrammar(t *testing.T) {
	pathRE := regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRE := regexp.MustCompile(`^\w[\w.-]{0,127}$`)
	cases := []string{"", "a", "abc", "a.b", "a..b", "a_b", "a__b", "a___b", "a-b", "a--b", "a-", "-a", ".a", "a.", "_a",
		"a_", "A", "a/b", "a b", "1.0", "v1.2-rc_3", "x__y.z-w", "é", strings.Repeat("a", 128), strings.Repeat("a", 129), "a.-b", "a-.b"}
	for _, c := range cases {
		if got, want := validPathComponent(c), pathRE.MatchString(c); got != want {
			t.Errorf("validPathComponent(%q) = %v, regexp says %v", c, got, want)
		}
		if got, want := validTag(c), tagRE.MatchString(c); got != want {
			t.Errorf("validTag(%q) = %v, regexp says %v", c, got, want)
		}
	}
}

func FuzzNameGrammar(f *testing.F) {
	pathRE := regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRE := regexp.MustCompile(`^\w[\w.-]{0,127}$`)
	for _, s := range []string{"a__b", "a-b", "v1.0", "x.y_z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validPathComponent(s), pathRE.MatchString(s); got != want {
			t.Errorf("validPathComponent(%q) = %v, regexp says %v", s, got, want)
		}
		if got, want := validTag(s), tagRE.MatchString(s); got != want {
			t.Errorf("validTag(%q) = %v, regexp says %v", s, got, want)
		}
	})
}
