package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kiln-build/kiln/cmd/internal/app"
	"github.com/kiln-build/kiln/exporter"
	"github.com/kiln-build/kiln/frontend"
)

func (c *cli) saveCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save [OPTIONS] IMAGE [IMAGE...]",
		Short: "Write images to a tar that is both a docker-archive and an OCI layout",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withApp(cmd, func(ctx context.Context, a *app.App) error {
				if output == "" || output == "-" {
					if f, ok := c.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
						return fmt.Errorf("refusing to write an archive to a terminal: use -o FILE or redirect stdout")
					}
					return exporter.Save(ctx, a.Store, c.stdout, args)
				}
				return a.SaveFile(ctx, output, args)
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	return cmd
}

func (c *cli) loadCommand() *cobra.Command {
	var input string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [OPTIONS]",
		Short: "Load images from a docker-archive or OCI layout tar",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withApp(cmd, func(ctx context.Context, a *app.App) error {
				var r io.Reader = c.stdin
				if input != "" && input != "-" {
					f, err := os.Open(input)
					if err != nil {
						return err
					}
					defer f.Close()
					r = f
				}
				names, err := exporter.Load(ctx, a.Store, r)
				if err != nil {
					return err
				}
				if !quiet {
					for _, n := range names {
						if strings.HasPrefix(n, "sha256:") {
							fmt.Fprintf(c.stdout, "Loaded image ID: %s\n", n)
						} else {
							fmt.Fprintf(c.stdout, "Loaded image: %s\n", exporter.FamiliarName(n))
						}
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "read from this file instead of stdin")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing")
	return cmd
}

func (c *cli) importCommand() *cobra.Command {
	var changes []string
	var message string
	cmd := &cobra.Command{
		Use:   "import [OPTIONS] FILE|- [REPOSITORY[:TAG]]",
		Short: "Make an image from a root filesystem tarball",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg := v1.ConfigFile{Architecture: "amd64", OS: "linux"}
			if len(changes) > 0 {
				var err error
				cfg, err = frontend.ApplyChanges(ctx, cfg, changes)
				if err != nil {
					return err
				}
			}
			if message != "" {
				cfg.History = []v1.History{{Comment: message, CreatedBy: "kiln import"}}
			}
			a, err := c.open(ctx)
			if err != nil {
				return err
			}
			defer a.Close()
			var r io.Reader = c.stdin
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			img, err := exporter.Import(ctx, a.Store, r, cfg)
			if err != nil {
				return err
			}
			if len(args) == 2 {
				name, err := exporter.NormalizeName(args[1])
				if err != nil {
					return err
				}
				if err := a.Store.Tag(ctx, name, img.ManifestDigest); err != nil {
					return err
				}
			}
			fmt.Fprintln(c.stdout, img.ID)
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&changes, "change", "c", nil, "apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL, ONBUILD)")
	cmd.Flags().StringVarP(&message, "message", "m", "", "commit message for the imported image")
	return cmd
}
