package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/executor/containers"
)

func (c *cli) updateCommand() *cobra.Command {
	var f containerFlags
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Change the resource limits of one or more containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			patch, err := f.resources()
			if err != nil {
				return asKilnError(err)
			}
			if len(patch.IOThrottles) > 0 {
				return asKilnError(errors.New("kiln update does not change device I/O limits (as docker update); recreate the container"))
			}
			a, err := c.open(ctx)
			if err != nil {
				return asKilnError(err)
			}
			defer a.Close()
			return c.eachContainer(ctx, args, true, func(_ *containers.Store, ref string) error {
				return a.UpdateContainer(ctx, ref, patch)
			})
		},
	}
	f.addLimitFlags(cmd.Flags())
	f.swappiness = -1 // unset; kiln update does not change it
	return cmd
}
