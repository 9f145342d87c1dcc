package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/cmd/internal/app"
	"github.com/kiln-build/kiln/exporter"
)

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.3g%cB", float64(n)/float64(div), "kMGTPE"[exp])
}

func humanAgo(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "Less than a minute ago"
	case d < time.Hour:
		return fmt.Sprintf("%d minutes ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%d days ago", int(d.Hours()/24))
	}
}

// imageRow is an image as docker images --format sees it.
type imageRow struct {
	ID, Repository, Tag, Digest, CreatedSince, CreatedAt, Size string
}

// imageHeaders are docker's table headers of imageRow's fields.
func imageHeaders() map[string]string {
	return map[string]string{"ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT"}
}

func (c *cli) imagesCommand() *cobra.Command {
	var quiet bool
	var format string
	cmd := &cobra.Command{
		Use:     "images [REPOSITORY[:TAG]]",
		Aliases: []string{"image ls"},
		Short:   "List images",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withApp(cmd, func(ctx context.Context, a *app.App) error {
				names, err := a.Store.Images(ctx)
				if err != nil {
					return err
				}
				keys := make([]string, 0, len(names))
				for n := range names {
					keys = append(keys, n)
				}
				sort.Strings(keys)
				tw := tabwriter.NewWriter(c.stdout, 0, 8, 3, ' ', 0)
				if !quiet && format == "" {
					fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
				}
				var rows []any
				for _, n := range keys {
					img, err := exporter.Read(ctx, a.Store, names[n])
					if err != nil {
						fmt.Fprintf(c.stderr, "WARNING: %s: %v\n", n, err)
						continue
					}
					fam := exporter.FamiliarName(n)
					if len(args) == 1 && !matchRepo(fam, args[0]) {
						continue
					}
					if quiet {
						fmt.Fprintln(tw, shortID(string(img.ID)))
						continue
					}
					repo, tag := splitTag(fam)
					var size int64
					for _, l := range img.Chain {
						size += l.Size
					}
					if format != "" {
						rows = append(rows, imageRow{ID: shortID(string(img.ID)), Repository: repo, Tag: tag, Digest: string(img.ManifestDigest),
							CreatedSince: humanAgo(img.Config.Created.Time), CreatedAt: img.Config.Created.Time.Format("2006-01-02 15:04:05 -0700 MST"), Size: humanSize(size)})
						continue
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", repo, tag, shortID(string(img.ID)), humanAgo(img.Config.Created.Time), humanSize(size))
				}
				if format != "" && !quiet {
					return c.writeFormatted(format, imageHeaders(), rows)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	cmd.Flags().StringVar(&format, "format", "", "Go template over each image, as docker's (e.g. '{{.Repository}}:{{.Tag}}'; table, json)")
	return cmd
}

func matchRepo(fam, want string) bool {
	repo, tag := splitTag(fam)
	wrepo, wtag := splitTag(want)
	if !strings.Contains(want, ":") {
		return repo == want
	}
	return repo == wrepo && tag == wtag
}

func splitTag(fam string) (string, string) {
	if i := strings.LastIndex(fam, "@"); i >= 0 {
		return fam[:i], fam[i+1:]
	}
	i := strings.LastIndex(fam, ":")
	if i < 0 || strings.Contains(fam[i:], "/") {
		return fam, "latest"
	}
	return fam[:i], fam[i+1:]
}

func (c *cli) tagCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE TARGET_IMAGE",
		Short: "Give an image another name",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withApp(cmd, func(ctx context.Context, a *app.App) error {
				img, err := exporter.Lookup(ctx, a.Store, args[0])
				if err != nil {
					return err
				}
				name, err := exporter.NormalizeName(args[1])
				if err != nil {
					return err
				}
				return a.Store.Tag(ctx, name, img.ManifestDigest)
			})
		},
	}
}

func (c *cli) rmiCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rmi IMAGE [IMAGE...]",
		Short: "Remove image names (the data goes with the next prune)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withApp(cmd, func(ctx context.Context, a *app.App) error {
				var errs []error
				for _, ref := range args {
					if err := c.rmi(cmd, a.Store, ref, force); err != nil {
						errs = append(errs, err)
					}
				}
				return errors.Join(errs...)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove every name of an image given by ID")
	return cmd
}

func (c *cli) rmi(cmd *cobra.Command, store *cache.Store, ref string, force bool) error {
	ctx := cmd.Context()
	img, err := exporter.Lookup(ctx, store, ref)
	if err != nil {
		return err
	}
	names, err := store.Images(ctx)
	if err != nil {
		return err
	}
	if name, err := exporter.NormalizeName(ref); err == nil {
		if d, ok := names[name]; ok && d == img.ManifestDigest {
			fmt.Fprintf(c.stdout, "Untagged: %s\n", exporter.FamiliarName(name))
			return store.Untag(ctx, name)
		}
	}
	var tagged []string
	for n, d := range names {
		if d == img.ManifestDigest {
			tagged = append(tagged, n)
		}
	}
	if len(tagged) > 1 && !force {
		return fmt.Errorf("image %s is referenced by %d names; remove them one by one or use -f", shortID(string(img.ID)), len(tagged))
	}
	sort.Strings(tagged)
	for _, n := range tagged {
		if err := store.Untag(ctx, n); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Untagged: %s\n", exporter.FamiliarName(n))
	}
	fmt.Fprintf(c.stdout, "Deleted: %s\n", img.ID)
	return nil
}

// inspectOutput is close to docker image inspect.
type inspectOutput struct {
	ID           string            `json:"Id"`
	RepoTags     []string          `json:"RepoTags"`
	RepoDigests  []string          `json:"RepoDigests"`
	Created      time.Time         `json:"Created"`
	Author       string            `json:"Author,omitempty"`
	Config       any               `json:"Config"`
	Architecture string            `json:"Architecture"`
	Os           string            `json:"Os"`
	Size         int64             `json:"Size"`
	RootFS       map[string]any    `json:"RootFS"`
	Metadata     map[string]string `json:"Metadata,omitempty"`
	Descriptor   map[string]any    `json:"Descriptor"`
}

func (c *cli) inspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect CONTAINER|IMAGE [CONTAINER|IMAGE...]",
		Short: "Show containers' or images' details as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withApp(cmd, func(ctx context.Context, a *app.App) error {
				names, err := a.Store.Images(ctx)
				if err != nil {
					return err
				}
				cs, err := a.Containers()
				if err != nil {
					return err
				}
				out := []any{}
				for _, ref := range args {
					// Like docker: a container of that name or ID first.
					if r, err := cs.Get(ctx, ref); err == nil {
						out = append(out, containerJSON(r))
						continue
					}
					img, err := exporter.Lookup(ctx, a.Store, ref)
					if err != nil {
						return fmt.Errorf("no such object: %s", ref)
					}
					o := inspectOutput{
						ID: string(img.ID), RepoTags: []string{}, RepoDigests: []string{},
						Created: img.Config.Created.Time, Author: img.Config.Author, Config: img.Config.Config,
						Architecture: img.Config.Architecture, Os: img.Config.OS,
						RootFS:     map[string]any{"Type": "layers", "Layers": img.Chain.DiffIDs()},
						Descriptor: map[string]any{"mediaType": img.Manifest.MediaType, "digest": img.ManifestDigest},
					}
					for _, l := range img.Chain {
						o.Size += l.Size
					}
					for n, d := range names {
						if d == img.ManifestDigest {
							o.RepoTags = append(o.RepoTags, exporter.FamiliarName(n))
						}
					}
					sort.Strings(o.RepoTags)
					out = append(out, o)
				}
				if format != "" {
					return c.writeFormatted(format, nil, out)
				}
				enc := json.NewEncoder(c.stdout)
				enc.SetIndent("", "    ")
				return enc.Encode(out)
			})
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Go template over each object, as docker's (e.g. '{{.State.Status}}')")
	return cmd
}

func (c *cli) historyCommand() *cobra.Command {
	var noTrunc bool
	cmd := &cobra.Command{
		Use:   "history IMAGE",
		Short: "Show the history of an image",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withApp(cmd, func(ctx context.Context, a *app.App) error {
				img, err := exporter.Lookup(ctx, a.Store, args[0])
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 8, 3, ' ', 0)
				fmt.Fprintln(tw, "IMAGE\tCREATED\tCREATED BY\tSIZE\tCOMMENT")
				layer := len(img.Chain) - 1
				hist := img.Config.History
				for i := len(hist) - 1; i >= 0; i-- {
					h := hist[i]
					size := int64(0)
					if !h.EmptyLayer && layer >= 0 {
						size = img.Chain[layer].Size
						layer--
					}
					id := "<missing>"
					if i == len(hist)-1 {
						id = shortID(string(img.ID))
					}
					by := h.CreatedBy
					if !noTrunc && len(by) > 45 {
						by = by[:44] + "…"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", id, humanAgo(h.Created.Time), by, humanSize(size), h.Comment)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not truncate output")
	return cmd
}
