package main

import (
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/exporter"
	"github.com/kiln-build/kiln/exporter/registry"
)

// insecureFlagUsage is the help of --insecure-registry, shared by the
// commands that talk to registries.
const insecureFlagUsage = "allow this registry (host[:port]) over plain http or https without certificate checks; repeatable (loopback registries may always use http)"

func (c *cli) pullCommand() *cobra.Command {
	var (
		insecure []string
		platform string
		quiet    bool
	)
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Download an image from a registry",
		Example: `  kiln pull alpine:3.20
  kiln pull 127.0.0.1:5000/team/app:1
  kiln pull --insecure-registry registry.lan:5000 registry.lan:5000/app@sha256:...`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			opts := registry.Options{Insecure: insecure}
			if platform != "" {
				p, err := v1.ParsePlatform(platform)
				if err != nil {
					return fmt.Errorf("--platform=%s: %w", platform, err)
				}
				opts.Platform = p
			}
			name, err := exporter.NormalizeName(args[0])
			if err != nil {
				return err
			}
			a, err := c.open(ctx)
			if err != nil {
				return err
			}
			defer a.Close()
			before, err := a.Store.Resolve(ctx, name)
			if err != nil && !errors.Is(err, cache.ErrNotFound) {
				return err
			}
			img, err := a.Pull(ctx, args[0], opts)
			if err != nil {
				return err
			}
			shown := exporter.FamiliarName(name)
			if !quiet {
				fmt.Fprintf(c.stdout, "Digest: %s\n", img.ManifestDigest)
				if before == img.ManifestDigest {
					fmt.Fprintf(c.stdout, "Status: Image is up to date for %s\n", shown)
				} else {
					fmt.Fprintf(c.stdout, "Status: Downloaded newer image for %s\n", shown)
				}
			}
			fmt.Fprintln(c.stdout, shown)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&insecure, "insecure-registry", nil, insecureFlagUsage)
	fl.StringVar(&platform, "platform", "", "pick this platform (os/arch[/variant]) from a multi-platform image (default linux/amd64)")
	fl.BoolVarP(&quiet, "quiet", "q", false, "print only the image name")
	return cmd
}
