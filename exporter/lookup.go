package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
)

// minIDPrefix is the shortest image ID prefix Lookup accepts.
const minIDPrefix = 4

// NotFoundError is returned by Lookup when no local image matches. It
// wraps cache.ErrNotFound.
type NotFoundError struct {
	// Ref is the name or ID as the user gave it.
	Ref string
}

// Error reads "no such image: REF".
func (e *NotFoundError) Error() string { return "no such image: " + e.Ref }

// Unwrap returns cache.ErrNotFound.
func (e *NotFoundError) Unwrap() error { return cache.ErrNotFound }

// Lookup finds a local image by name ("busybox", "app:1",
// "localhost:5000/x@sha256:...") or by ID or unique ID prefix; wraps
// cache.ErrNotFound when there is none.
//
// The forms, in the order they are tried:
//   - "sha256:<64 hex>" or 64 bare hex digits: the image ID (config digest);
//   - a name, normalized with NormalizeName and resolved in the store; a
//     name@digest reference also matches a tagged image of the same
//     repository whose manifest has that digest;
//   - at least 4 hex digits: a prefix of exactly one image ID. Only tagged
//     images are searched.
func Lookup(ctx context.Context, store *cache.Store, ref string) (*Image, error) {
	img, _, err := lookup(ctx, store, ref)
	return img, err
}

// lookup is Lookup that also returns the normalized tag name when ref named
// the image by tag ("" when it was found by ID or digest).
func lookup(ctx context.Context, store *cache.Store, ref string) (*Image, string, error) {
	if hex, ok := strings.CutPrefix(ref, string(digest.SHA256)+":"); ok || isFullHexID(ref) {
		if !ok {
			hex = ref
		}
		if !isFullHexID(hex) {
			return nil, "", fmt.Errorf("invalid image ID %q: want sha256: and 64 hexadecimal digits", ref)
		}
		img, err := lookupID(ctx, store, ref, hex)
		return img, "", err
	}
	normalized, nameErr := NormalizeName(ref)
	if nameErr == nil {
		img, err := lookupName(ctx, store, normalized)
		if err != nil {
			return nil, "", fmt.Errorf("look up image %s: %w", ref, err)
		}
		if img != nil {
			if _, tag := splitName(normalized); tag == "" {
				normalized = ""
			}
			return img, normalized, nil
		}
	}
	if len(ref) >= minIDPrefix && isHex(ref) {
		img, err := lookupID(ctx, store, ref, ref)
		return img, "", err
	}
	if nameErr != nil {
		return nil, "", nameErr
	}
	return nil, "", &NotFoundError{Ref: ref}
}

// lookupName resolves a normalized name; a name@digest reference also
// matches any stored name of the same repository with that manifest digest.
// It returns nil and no error when no name matches; an error means a name
// matched but its image could not be read.
func lookupName(ctx context.Context, store *cache.Store, normalized string) (*Image, error) {
	d, err := store.Resolve(ctx, normalized)
	if err == nil {
		return Read(ctx, store, d)
	}
	if !errors.Is(err, cache.ErrNotFound) {
		return nil, err
	}
	repo, want, ok := strings.Cut(normalized, "@")
	if !ok {
		return nil, nil
	}
	all, err := store.Images(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if r, _ := splitName(n); r == repo && string(all[n]) == want {
			return Read(ctx, store, all[n])
		}
	}
	return nil, nil
}

// lookupID finds the one tagged image whose ID starts with hexPrefix.
func lookupID(ctx context.Context, store *cache.Store, ref, hexPrefix string) (*Image, error) {
	all, err := store.Images(ctx)
	if err != nil {
		return nil, fmt.Errorf("look up image %s: %w", ref, err)
	}
	manifests := make([]digest.Digest, 0, len(all))
	for _, md := range all {
		manifests = append(manifests, md)
	}
	slices.Sort(manifests)
	manifests = slices.Compact(manifests)

	var found digest.Digest
	ids := map[digest.Digest]bool{}
	for _, md := range manifests {
		id, err := configDigest(ctx, store, md)
		if errors.Is(err, cache.ErrNotFound) {
			continue // a dangling name cannot match an ID
		}
		if err != nil {
			return nil, fmt.Errorf("look up image %s: %w", ref, err)
		}
		if strings.HasPrefix(id.Encoded(), hexPrefix) && !ids[id] {
			ids[id] = true
			if found == "" {
				found = md
			}
		}
	}
	switch len(ids) {
	case 0:
		return nil, &NotFoundError{Ref: ref}
	case 1:
		return Read(ctx, store, found)
	default:
		return nil, fmt.Errorf("image ID prefix %q is ambiguous: it matches %d images; give more digits", ref, len(ids))
	}
}

// configDigest reads only the manifest blob md and returns its config digest.
func configDigest(ctx context.Context, store *cache.Store, md digest.Digest) (digest.Digest, error) {
	raw, err := store.ReadBlob(ctx, md)
	if err != nil {
		return "", err
	}
	var m struct {
		Config v1.Descriptor `json:"config"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("read image manifest %s: %w", md, err)
	}
	return fromHash(m.Config.Digest)
}
