package exporter

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Docker Hub as it appears in normalized names, and the namespace of its
// official images.
const (
	dockerHub       = "docker.io"
	officialLibrary = "library/"
)

// validPathComponent checks Docker's grammar for a path component of a
// name, stricter than ggcr's: lowercase alphanumerics joined by single
// separators ('.', '_', '__' or one or more '-'), as the regular expression
// [a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)* says. (Written out: compiling the
// expressions cost every kiln process, container inits included, 0.7 ms.)
func validPathComponent(c string) bool {
	alnum := func(b byte) bool { return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' }
	i := 0
	for {
		start := i
		for i < len(c) && alnum(c[i]) {
			i++
		}
		if i == start {
			return false // empty run of alphanumerics
		}
		if i == len(c) {
			return true
		}
		switch {
		case c[i] == '.':
			i++
		case c[i] == '_':
			i++
			if i < len(c) && c[i] == '_' {
				i++
			}
		case c[i] == '-':
			for i < len(c) && c[i] == '-' {
				i++
			}
		default:
			return false
		}
	}
}

// validTag checks Docker's tag grammar: a word character, then up to 127
// word characters, dots and dashes.
func validTag(tag string) bool {
	word := func(b byte) bool {
		return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_'
	}
	if tag == "" || len(tag) > 128 || !word(tag[0]) {
		return false
	}
	for i := 1; i < len(tag); i++ {
		if b := tag[i]; !word(b) && b != '.' && b != '-' {
			return false
		}
	}
	return true
}

// NormalizeName turns a user's image name into the stored form, like Docker:
// "busybox" -> "docker.io/library/busybox:latest".
//
// A name without a registry is on docker.io, a docker.io name without a
// namespace is in library/, and a name without tag or digest gets the tag
// "latest". A digest is kept ("busybox@sha256:..." ->
// "docker.io/library/busybox@sha256:..."); when both a tag and a digest are
// given, the digest wins and the tag is dropped. Names docker would refuse
// (upper case, bad characters, 64-hex strings that look like image IDs) are
// refused with an error that says why.
func NormalizeName(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("invalid image name: the name is empty")
	}
	if isFullHexID(s) {
		return "", fmt.Errorf("invalid image name %q: 64-character hexadecimal strings are image IDs, not names", s)
	}
	if strings.ContainsFunc(repositoryPart(s), isUpper) {
		return "", fmt.Errorf("invalid image name %q: repository names must be lowercase", s)
	}
	if strings.Contains(s, "://") {
		return "", fmt.Errorf("invalid image name %q: leave out the URL scheme", s)
	}
	for _, c := range strings.Split(repositoryPart(s), "/") {
		if !validPathComponent(c) {
			return "", fmt.Errorf("invalid image name %q: %q must be lowercase letters and digits, separated by '.', '_', '__' or '-'", s, c)
		}
	}
	var ref name.Reference
	var err error
	if strings.Contains(s, "@") {
		ref, err = name.NewDigest(s)
	} else {
		ref, err = name.NewTag(s)
	}
	if err != nil {
		return "", fmt.Errorf("invalid image name %q: %w", s, err)
	}
	repo := ref.Context()
	reg := repo.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = dockerHub
	}
	full := reg + "/" + repo.RepositoryStr()
	if d, ok := ref.(name.Digest); ok {
		return full + "@" + d.DigestStr(), nil
	}
	if tag := ref.Identifier(); !validTag(tag) {
		return "", fmt.Errorf("invalid image name %q: tag %q must start with a letter, digit or '_'", s, tag)
	}
	return full + ":" + ref.Identifier(), nil
}

// repositoryPart returns s without its tag or digest, for error checks.
func repositoryPart(s string) string {
	if i := strings.IndexByte(s, '@'); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, ':'); i > strings.LastIndexByte(s, '/') {
		s = s[:i]
	}
	// The registry host may be written in any case; only the path matters.
	if i := strings.IndexByte(s, '/'); i >= 0 {
		if host := s[:i]; host == "localhost" || strings.ContainsAny(host, ".:") {
			s = s[i+1:]
		}
	}
	return s
}

func isUpper(r rune) bool { return 'A' <= r && r <= 'Z' }

// FamiliarName is the inverse for display: "docker.io/library/busybox:latest" -> "busybox:latest".
//
// Only the docker.io registry and its library/ namespace are shortened
// ("docker.io/foo/bar:1" -> "foo/bar:1"); other names are returned as they
// are.
func FamiliarName(s string) string {
	rest, ok := strings.CutPrefix(s, dockerHub+"/")
	if !ok {
		return s
	}
	if short, ok := strings.CutPrefix(rest, officialLibrary); ok && !strings.Contains(repositoryPart(short), "/") {
		return short
	}
	return rest
}

// splitName splits a normalized name into its repository and, when it is a
// tag reference, the tag ("docker.io/library/busybox:latest" ->
// "docker.io/library/busybox", "latest"). Digest references return no tag.
func splitName(normalized string) (repo, tag string) {
	if i := strings.IndexByte(normalized, '@'); i >= 0 {
		return normalized[:i], ""
	}
	if i := strings.LastIndexByte(normalized, ':'); i > strings.LastIndexByte(normalized, '/') {
		return normalized[:i], normalized[i+1:]
	}
	return normalized, ""
}

// isHex reports whether s is non-empty lowercase hexadecimal.
func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if ('0' > c || c > '9') && ('a' > c || c > 'f') {
			return false
		}
	}
	return true
}

// isFullHexID reports whether s is a bare 64-character image ID.
func isFullHexID(s string) bool { return len(s) == 64 && isHex(s) }
