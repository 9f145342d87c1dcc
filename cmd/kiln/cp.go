package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/cmd/internal/app"
	"github.com/kiln-build/kiln/executor/containers"
)

// splitContainerPath splits "CONTAINER:PATH"; ok is false for a host path.
func splitContainerPath(s string) (ctr, p string, ok bool) {
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") || s == "-" {
		return "", s, false
	}
	ctr, p, ok = strings.Cut(s, ":")
	if !ok || ctr == "" {
		return "", s, false
	}
	return ctr, p, true
}

func (c *cli) cpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cp CONTAINER:SRC_PATH DEST_PATH|-\n  kiln cp SRC_PATH|- CONTAINER:DEST_PATH",
		Short: "Copy files between a container and the host",
		Long: `cp copies files or directories out of a container or into it; the
container may be running or stopped. "-" streams a tar archive on stdout
(copying out) or reads one from stdin (copying in).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			srcCtr, src, srcIn := splitContainerPath(args[0])
			dstCtr, dst, dstIn := splitContainerPath(args[1])
			if srcIn == dstIn {
				return asKilnError(errors.New("cp: exactly one of the paths must be CONTAINER:PATH"))
			}
			cs, err := c.containerStore(ctx)
			if err != nil {
				return asKilnError(err)
			}
			if srcIn {
				r, err := cs.Get(ctx, srcCtr)
				if err != nil {
					return asKilnError(err)
				}
				if _, err := containers.StatPath(r, src); err != nil {
					return asKilnError(fmt.Errorf("cp: %s:%s: %w", srcCtr, src, err))
				}
				base := path.Base(path.Clean("/" + src))
				if dst == "-" {
					return asKilnError(containers.CopyFrom(ctx, r, src, base, c.stdout))
				}
				destDir, name := dst, base
				if fi, err := os.Stat(dst); err != nil || !fi.IsDir() {
					destDir, name = filepath.Dir(dst), filepath.Base(dst)
				}
				pr, pw := io.Pipe()
				go func() { pw.CloseWithError(containers.CopyFrom(ctx, r, src, name, pw)) }()
				err = containers.ExtractTar(ctx, pr, func(n string) (string, error) { return securejoin.SecureJoin(destDir, n) })
				pr.CloseWithError(err)
				return asKilnError(err)
			}
			r, err := cs.Get(ctx, dstCtr)
			if err != nil {
				return asKilnError(err)
			}
			if src == "-" {
				return asKilnError(containers.CopyTo(ctx, r, dst, c.stdin))
			}
			fi, err := os.Lstat(src)
			if err != nil {
				return asKilnError(fmt.Errorf("cp: %w", err))
			}
			_ = fi
			destDir, name := dst, filepath.Base(src)
			if dfi, err := containers.StatPath(r, dst); err != nil || !dfi.IsDir() {
				if err != nil && !errors.Is(err, fs.ErrNotExist) {
					return asKilnError(err)
				}
				destDir, name = path.Dir(path.Clean("/"+dst)), path.Base(path.Clean("/"+dst))
			}
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(containers.WriteHostTar(ctx, src, name, pw)) }()
			err = containers.CopyTo(ctx, r, destDir, pr)
			pr.CloseWithError(err)
			return asKilnError(err)
		},
	}
}

func (c *cli) diffCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "diff CONTAINER",
		Short: "List the files a container added (A), changed (C) or deleted (D)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			_, r, err := c.container(ctx, args[0])
			if err != nil {
				return asKilnError(err)
			}
			changes, err := r.Layers().Changes()
			if err != nil {
				return asKilnError(err)
			}
			for _, ch := range changes {
				fmt.Fprintln(c.stdout, ch.Kind, ch.Path)
			}
			return nil
		},
	}
}

func (c *cli) exportCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export [-o FILE] CONTAINER",
		Short: "Write a container's root filesystem as a tar archive",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			_, r, err := c.container(ctx, args[0])
			if err != nil {
				return asKilnError(err)
			}
			w := c.stdout
			if output != "" {
				f, err := os.Create(output)
				if err != nil {
					return asKilnError(err)
				}
				defer f.Close()
				w = f
			} else if isTerminal(c.stdoutReader()) {
				return asKilnError(errors.New("export: refusing to write a tar archive to a terminal; use -o FILE or redirect"))
			}
			return asKilnError(r.Layers().WriteTar(ctx, "", "", w))
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to FILE instead of stdout")
	return cmd
}

// stdoutReader returns stdout when it is a file (for terminal checks).
func (c *cli) stdoutReader() io.Reader {
	if f, ok := c.stdout.(*os.File); ok {
		return f
	}
	return nil
}

func (c *cli) commitCommand() *cobra.Command {
	var req app.CommitRequest
	cmd := &cobra.Command{
		Use:   "commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
		Short: "Make an image from a container's changes",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			req.Container = args[0]
			if len(args) == 2 {
				req.Tag = args[1]
			}
			a, err := c.open(ctx)
			if err != nil {
				return asKilnError(err)
			}
			defer a.Close()
			img, err := a.CommitContainer(ctx, req)
			if err != nil {
				return asKilnError(err)
			}
			fmt.Fprintln(c.stdout, img.ID)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&req.Message, "message", "m", "", "commit message")
	fl.StringVarP(&req.Author, "author", "a", "", "author")
	fl.StringArrayVarP(&req.Changes, "change", "c", nil, "apply a Dockerfile instruction to the image config")
	fl.BoolVarP(&req.Pause, "pause", "p", true, "pause the container while committing")
	return cmd
}
