package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/cmd/internal/app"
	"github.com/kiln-build/kiln/exporter"
)

// The docker management commands (docker container ls, docker image rm,
// docker system prune...): groups of the top-level commands under the
// names docker gives them, and the prunes docker has there.

// renamed returns cmd used as sub under another name (and aliases).
func renamed(cmd *cobra.Command, use string, aliases ...string) *cobra.Command {
	cmd.Use = use
	cmd.Aliases = aliases
	return cmd
}

func (c *cli) containerCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "container", Short: "Manage containers (docker container ...)", Args: cobra.NoArgs}
	cmd.AddCommand(
		renamed(c.psCommand(), "ls [OPTIONS]", "list", "ps"),
		renamed(c.rmCommand(), "rm [OPTIONS] CONTAINER [CONTAINER...]", "remove"),
		renamed(c.inspectCommand(), "inspect CONTAINER [CONTAINER...]"),
		c.createCommand(), c.runCommand(), c.startCommand(), c.stopCommand(), c.restartCommand(), c.killCommand(),
		c.pauseCommand(), c.unpauseCommand(), c.waitCommand(), c.renameCommand(), c.logsCommand(), c.execCommand(),
		c.portCommand(), c.topCommand(), c.statsCommand(), c.updateCommand(), c.attachCommand(), c.cpCommand(), c.diffCommand(), c.exportCommand(), c.commitCommand(),
		&cobra.Command{
			Use:   "prune [OPTIONS]",
			Short: "Remove every container that is not running",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				return c.withApp(cmd, func(ctx context.Context, a *app.App) error { return c.pruneContainers(ctx, a) })
			},
		},
	)
	forceFlag(cmd.Commands())
	return cmd
}

func (c *cli) imageCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Manage images (docker image ...)", Args: cobra.NoArgs}
	var all bool
	prune := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove image data no named image uses (-a: also the names no container uses)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withApp(cmd, func(ctx context.Context, a *app.App) error { return c.pruneImages(ctx, a, all) })
		},
	}
	prune.Flags().BoolVarP(&all, "all", "a", false, "also remove the names of images no container was made from")
	cmd.AddCommand(
		renamed(c.imagesCommand(), "ls [OPTIONS] [REPOSITORY[:TAG]]", "list"),
		renamed(c.rmiCommand(), "rm [OPTIONS] IMAGE [IMAGE...]", "remove"),
		renamed(c.inspectCommand(), "inspect IMAGE [IMAGE...]"),
		c.buildCommand(), c.tagCommand(), c.historyCommand(), c.saveCommand(), c.loadCommand(), c.importCommand(),
		c.pullCommand(), c.pushCommand(), prune,
	)
	forceFlag(cmd.Commands())
	return cmd
}

func (c *cli) builderCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "builder", Short: "Manage the build cache (docker builder ...)", Args: cobra.NoArgs}
	cmd.AddCommand(c.buildCommand(), c.pruneCommand())
	return cmd
}

func (c *cli) systemCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "system", Short: "Manage kiln's store (docker system ...)", Args: cobra.NoArgs}
	var all, volumes bool
	prune := &cobra.Command{
		Use: "prune [OPTIONS]",
		Short: "Remove stopped containers, unused networks, unnamed image data and build cache " +
			"(-a: also image names no container uses, and the whole build cache)",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withApp(cmd, func(ctx context.Context, a *app.App) error {
				errs := []error{c.pruneContainers(ctx, a)}
				nets, err := a.PruneNetworks(ctx)
				c.printList("Deleted Networks:", nets)
				errs = append(errs, err)
				if volumes {
					cs, err := a.Containers()
					if err == nil {
						var vols []string
						vols, err = cs.PruneVolumes(ctx)
						c.printList("Deleted Volumes:", vols)
					}
					errs = append(errs, err)
				}
				if all {
					names, err := a.UntagUnusedImages(ctx)
					c.printUntagged(names)
					errs = append(errs, err)
				}
				rep, err := a.PruneStore(ctx, cache.PruneOptions{All: all})
				if err == nil {
					c.printPruneReport(rep)
				}
				return errors.Join(append(errs, err)...)
			})
		},
	}
	prune.Flags().BoolVarP(&all, "all", "a", false, "also remove image names no container uses, and every build cache entry")
	prune.Flags().BoolVar(&volumes, "volumes", false, "also remove the volumes no container uses")
	cmd.AddCommand(renamed(c.dfCommand(), "df"), c.infoCommand(), prune)
	forceFlag(cmd.Commands())
	return cmd
}

// forceFlag gives the prune commands among cmds docker's -f, which kiln
// does not need: it never prompts.
func forceFlag(cmds []*cobra.Command) {
	for _, cmd := range cmds {
		if cmd.Name() == "prune" && cmd.Flags().Lookup("force") == nil {
			cmd.Flags().BoolP("force", "f", false, "do not prompt (kiln never prompts)")
		}
	}
}

// pruneContainers removes the containers that are not running and lists
// them.
func (c *cli) pruneContainers(ctx context.Context, a *app.App) error {
	ids, err := a.PruneContainers(ctx)
	c.printList("Deleted Containers:", ids)
	return err
}

// pruneImages untags (with all) the images no container uses and prunes
// the store, keeping the build cache.
func (c *cli) pruneImages(ctx context.Context, a *app.App, all bool) error {
	if all {
		names, err := a.UntagUnusedImages(ctx)
		c.printUntagged(names)
		if err != nil {
			return err
		}
	}
	rep, err := a.PruneStore(ctx, cache.PruneOptions{})
	if err != nil {
		return err
	}
	c.printPruneReport(rep)
	return nil
}

// printList prints a heading and the items, nothing without items.
func (c *cli) printList(heading string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintln(c.stdout, heading)
	for _, it := range items {
		fmt.Fprintln(c.stdout, it)
	}
	fmt.Fprintln(c.stdout)
}

// printUntagged lists image names removed, as docker image prune does.
func (c *cli) printUntagged(names []string) {
	if len(names) == 0 {
		return
	}
	fmt.Fprintln(c.stdout, "Deleted Images:")
	for _, n := range names {
		fmt.Fprintf(c.stdout, "untagged: %s\n", exporter.FamiliarName(n))
	}
	fmt.Fprintln(c.stdout)
}
