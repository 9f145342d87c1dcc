package exporter

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// maxMetadataSize bounds the JSON files (manifests, configs, index.json)
// Load reads into memory.
const maxMetadataSize = 32 << 20

// maxLinkDepth bounds how many links inside an archive are followed.
const maxLinkDepth = 20

// archive is an image tar spooled to a temporary directory so that its
// entries can be read in any order. Entry names are only map keys: the
// spooled files are numbered, so no entry name is ever used as a path.
type archive struct {
	// files maps a cleaned entry name to the spooled copy of a regular file.
	files map[string]string
	// links maps a cleaned entry name to the cleaned name it links to
	// (hard links and symlinks alike; docker-archives link duplicate layers).
	links map[string]string
}

// spoolArchive reads a tar (gzip-compressed as a whole or not) from r into
// files under dir. A stream that is not a tar or ends inside an entry is an
// error.
func spoolArchive(ctx context.Context, r io.Reader, dir string) (*archive, error) {
	br := bufio.NewReader(withContext(ctx, r))
	var src io.Reader = br
	if head, _ := br.Peek(len(gzipMagic)); bytes.Equal(head, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("read compressed image archive: %w", err)
		}
		defer zr.Close()
		src = zr
	}
	arc := &archive{files: map[string]string{}, links: map[string]string{}}
	tr := tar.NewReader(src)
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, archiveError("image archive", err)
		}
		name := cleanEntryName(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg:
			p := filepath.Join(dir, strconv.Itoa(i))
			if err := spoolFile(p, tr); err != nil {
				return nil, fmt.Errorf("read %s: %w", hdr.Name, archiveError("image archive", err))
			}
			arc.files[name] = p
			delete(arc.links, name)
		case tar.TypeLink:
			arc.links[name] = cleanEntryName(hdr.Linkname)
			delete(arc.files, name)
		case tar.TypeSymlink:
			arc.links[name] = cleanEntryName(path.Join(path.Dir(name), hdr.Linkname))
			delete(arc.files, name)
		}
	}
	return arc, nil
}

// archiveError words tar reading errors for users; what names the tar
// ("image archive").
func archiveError(what string, err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s is truncated: %w", what, err)
	case errors.Is(err, tar.ErrHeader):
		return fmt.Errorf("%s is not a tar archive or is corrupt: %w", what, err)
	default:
		return fmt.Errorf("read %s: %w", what, err)
	}
}

func spoolFile(p string, r io.Reader) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cleanEntryName turns "./a//b" and "/a/b" into "a/b".
func cleanEntryName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// resolve follows links to the spooled file of name.
func (a *archive) resolve(name string) (string, bool) {
	name = cleanEntryName(name)
	for range maxLinkDepth {
		if p, ok := a.files[name]; ok {
			return p, true
		}
		target, ok := a.links[name]
		if !ok {
			return "", false
		}
		name = target
	}
	return "", false
}

// has reports whether name is a file in the archive.
func (a *archive) has(name string) bool {
	_, ok := a.resolve(name)
	return ok
}

// open opens the file name in the archive.
func (a *archive) open(name string) (*os.File, error) {
	p, ok := a.resolve(name)
	if !ok {
		return nil, fmt.Errorf("image archive has no file %s", name)
	}
	return os.Open(p)
}

// readFile reads a small file of the archive into memory.
func (a *archive) readFile(name string) ([]byte, error) {
	f, err := a.open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s from image archive: %w", name, err)
	}
	if len(data) > maxMetadataSize {
		return nil, fmt.Errorf("%s in image archive is larger than %d bytes; not image metadata", name, maxMetadataSize)
	}
	return data, nil
}

// readBlob reads a small blob of an OCI layout and checks its digest and,
// when size is not negative, its size.
func (a *archive) readBlob(d digest.Digest, size int64) ([]byte, error) {
	data, err := a.readFile(blobPath(d))
	if err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("invalid blob digest %q in image archive: %w", d, err)
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		return nil, fmt.Errorf("blob %s in image archive has digest %s; the archive is corrupt", d, got)
	}
	if size >= 0 && int64(len(data)) != size {
		return nil, fmt.Errorf("blob %s in image archive is %d bytes, but its descriptor says %d", d, len(data), size)
	}
	return data, nil
}
