package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/cmd/internal/app"
)

func (c *cli) pruneCommand() *cobra.Command {
	var all bool
	var keep string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove build cache and data no image uses",
		Long: `prune removes blobs and snapshots that no cache entry and no tagged image
uses. --all also drops every cache entry; --keep-storage drops the least
recently used entries until the store is at most that big.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := cache.PruneOptions{All: all}
			if keep != "" {
				n, err := parseSize(keep)
				if err != nil {
					return fmt.Errorf("--keep-storage: %w", err)
				}
				opts.KeepStorage = n
			}
			return c.withApp(cmd, func(ctx context.Context, a *app.App) error {
				rep, err := a.PruneStore(ctx, opts)
				if err != nil {
					return err
				}
				c.printPruneReport(rep)
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "drop every cache entry and every RUN --mount=type=cache directory")
	cmd.Flags().StringVar(&keep, "keep-storage", "", "keep at most this much (e.g. 10GB)")
	cmd.Flags().BoolP("force", "f", false, "do not prompt (kiln never prompts)")
	return cmd
}

// printPruneReport says what a store prune removed.
func (c *cli) printPruneReport(rep cache.PruneReport) {
	fmt.Fprintf(c.stdout, "Deleted %d cache entries, %d blobs, %d snapshots", rep.RemovedKeys, rep.RemovedBlobs, rep.RemovedSnapshots)
	if rep.RemovedCacheMounts > 0 {
		fmt.Fprintf(c.stdout, ", %d cache mounts", rep.RemovedCacheMounts)
	}
	fmt.Fprintf(c.stdout, "\nTotal reclaimed space: %s\n", humanSize(rep.Reclaimed))
}

func (c *cli) dfCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "df",
		Short: "Show the store's disk usage",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withApp(cmd, func(ctx context.Context, a *app.App) error {
				u, err := a.Store.DiskUsage(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 8, 3, ' ', 0)
				fmt.Fprintln(tw, "TYPE\tCOUNT\tSIZE")
				fmt.Fprintf(tw, "Images\t%d\t\n", u.Images)
				fmt.Fprintf(tw, "Build cache entries\t%d\t\n", u.Keys)
				fmt.Fprintf(tw, "Blobs\t%d\t%s\n", u.BlobCount, humanSize(u.Blobs))
				fmt.Fprintf(tw, "Snapshots\t%d\t%s\n", u.SnapshotCount, humanSize(u.Snapshots))
				fmt.Fprintf(tw, "Reclaimable\t\t%s\n", humanSize(u.Reclaimable))
				return tw.Flush()
			})
		},
	}
}

// parseSize parses "512MB", "10GB", "1.5GiB" or a byte count.
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.m
			break
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%q is not a size like 10GB", s)
	}
	return int64(f * float64(mult)), nil
}
