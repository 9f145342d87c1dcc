package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/exporter"
	"github.com/kiln-build/kiln/exporter/registry"
)

func (c *cli) pushCommand() *cobra.Command {
	var (
		insecure []string
		quiet    bool
		compress string
		level    int
	)
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] NAME[:TAG]",
		Short: "Upload an image to a registry",
		Long: `Upload a local image to the registry its name points at. Name it first
with kiln tag (or kiln build -t) when it has no such name yet. The registry
stores the digest printed. Layers go up gzip-compressed unless
--compression says otherwise; the compressed blobs are kept, so pushing
again does not compress again.`,
		Example: `  kiln tag app:1 127.0.0.1:5000/team/app:1
  kiln push 127.0.0.1:5000/team/app:1
  kiln login ghcr.io && kiln push ghcr.io/me/app:1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name, err := exporter.NormalizeName(args[0])
			if err != nil {
				return err
			}
			a, err := c.open(ctx)
			if err != nil {
				return err
			}
			defer a.Close()
			d, err := a.Push(ctx, args[0], registry.Options{Insecure: insecure, Compression: compress, CompressionLevel: level})
			if err != nil {
				return err
			}
			if quiet {
				fmt.Fprintln(c.stdout, d)
				return nil
			}
			size, _ := a.Store.StatBlob(ctx, d)
			fmt.Fprintf(c.stdout, "%s: digest: %s size: %d\n", exporter.FamiliarName(name), d, size)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&insecure, "insecure-registry", nil, insecureFlagUsage)
	fl.BoolVarP(&quiet, "quiet", "q", false, "print only the manifest digest")
	fl.StringVar(&compress, "compression", "gzip", "layer compression: gzip, zstd or none")
	fl.IntVar(&level, "compression-level", 0, "compression level (0: the algorithm's default)")
	return cmd
}
