package main

import (
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
	fl := cmd.Flags()
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit (e.g. 256m)")
	fl.StringVar(&f.memorySwap, "memory-swap", "", "memory plus swap limit (-1: unlimited)")
	fl.StringVar(&f.memoryRes, "memory-reservation", "", "memory soft limit")
	fl.Float64Var(&f.cpus, "cpus", 0, "number of CPUs (e.g. 1.5)")
	fl.Int64VarP(&f.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	fl.Int64Var(&f.cpuPeriod, "cpu-period", 0, "CPU CFS period in microseconds")
	fl.Int64Var(&f.cpuQuota, "cpu-quota", 0, "CPU CFS quota in microseconds")
	fl.StringVar(&f.cpusetCPUs, "cpuset-cpus", "", "CPUs the container may use (0-3, 0,1)")
	fl.StringVar(&f.cpusetMems, "cpuset-mems", "", "memory nodes the container may use")
	fl.Int64Var(&f.pidsLimit, "pids-limit", 0, "limit the number of processes")
	f.swappiness = -1 // unset; kiln update does not change it
	return cmd
}
