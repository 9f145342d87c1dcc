package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache/layer"
	"github.com/kiln-build/kiln/exporter"
)

// Output is a parsed --output flag: type=image (the default: tag in the
// store), type=oci|docker,dest=FILE (an archive), type=local,dest=DIR (the
// root filesystem) or type=registry,name=REF (push).
type Output struct {
	Type string
	Dest string
	Name string
}

// ParseOutput parses "type=oci,dest=out.tar" (docker's syntax); a bare path
// means type=local,dest=PATH, "-" an archive on stdout.
func ParseOutput(s string) (Output, error) {
	if !strings.Contains(s, "=") {
		return Output{Type: "local", Dest: s}, nil
	}
	var o Output
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return o, fmt.Errorf("--output %q: %q is not KEY=VALUE", s, kv)
		}
		switch strings.TrimSpace(k) {
		case "type":
			o.Type = v
		case "dest":
			o.Dest = v
		case "name":
			o.Name = v
		case "push", "compression", "oci-mediatypes":
			// accepted; kiln's archives are OCI and docker at once
		default:
			return o, fmt.Errorf("--output %q: unknown key %q", s, k)
		}
	}
	switch o.Type {
	case "image":
	case "oci", "docker", "tar", "local":
		if o.Dest == "" {
			return o, fmt.Errorf("--output type=%s needs dest=PATH", o.Type)
		}
	case "registry":
		if o.Name == "" {
			return o, errors.New("--output type=registry needs name=REF")
		}
	case "":
		return o, fmt.Errorf("--output %q: missing type=", s)
	default:
		return o, fmt.Errorf("--output type=%s: want image, oci, docker, local or registry", o.Type)
	}
	return o, nil
}

// WriteOutput writes img where o says (not for image and registry).
func (a *App) WriteOutput(ctx context.Context, img *exporter.Image, tags []string, o Output) error {
	switch o.Type {
	case "oci", "docker", "tar":
		return a.saveFile(o.Dest, func(w io.Writer) error { return exporter.SaveImage(ctx, a.Store, w, img, tags) })
	case "local":
		return a.exportRootfs(ctx, img, o.Dest)
	}
	return nil
}

// SaveFile writes the named images (see exporter.Save) to path through a
// temp file and a rename, so a failure leaves no half-written archive.
func (a *App) SaveFile(ctx context.Context, path string, names []string) error {
	return a.saveFile(path, func(w io.Writer) error { return exporter.Save(ctx, a.Store, w, names) })
}

// saveFile writes path atomically with write.
func (a *App) saveFile(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// exportRootfs applies the image's layers, in order, to dir.
func (a *App) exportRootfs(ctx context.Context, img *exporter.Image, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--output type=local: %w", err)
	}
	for i, l := range img.Chain {
		if err := a.applyLayer(ctx, l.Digest, dir); err != nil {
			return fmt.Errorf("--output type=local: layer %d: %w", i+1, err)
		}
	}
	return nil
}

func (a *App) applyLayer(ctx context.Context, d digest.Digest, dir string) error {
	rc, err := a.Store.OpenBlob(ctx, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	tr, err := layer.Decompress(rc)
	if err != nil {
		return err
	}
	defer tr.Close()
	return layer.Unpack(ctx, tr, dir, layer.UnpackOptions{})
}
