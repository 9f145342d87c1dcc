package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/executor/containers"
)

func (c *cli) volumeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Manage volumes",
		Args:  cobra.NoArgs,
	}
	var labels []string
	create := &cobra.Command{
		Use:   "create [NAME]",
		Short: "Create a volume",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cs, err := c.containerStore(ctx)
			if err != nil {
				return asKilnError(err)
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			l := map[string]string{}
			for _, kv := range labels {
				k, v, _ := strings.Cut(kv, "=")
				l[k] = v
			}
			v, err := cs.CreateVolume(ctx, name, l)
			if err != nil {
				return asKilnError(err)
			}
			fmt.Fprintln(c.stdout, v.Name)
			return nil
		},
	}
	create.Flags().StringArrayVar(&labels, "label", nil, "set a label KEY=VALUE")
	var quiet bool
	var format string
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cs, err := c.containerStore(ctx)
			if err != nil {
				return asKilnError(err)
			}
			vols, err := cs.Volumes(ctx)
			if err != nil {
				return asKilnError(err)
			}
			if quiet {
				for _, v := range vols {
					fmt.Fprintln(c.stdout, v.Name)
				}
				return nil
			}
			if format != "" {
				rows := make([]any, len(vols))
				for i, v := range vols {
					rows[i] = map[string]string{"Name": v.Name, "Driver": v.Driver, "Mountpoint": v.Mountpoint, "Scope": "local"}
				}
				return c.writeFormatted(format, map[string]string{"Name": "VOLUME NAME"}, rows)
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "DRIVER\tVOLUME NAME")
			for _, v := range vols {
				fmt.Fprintf(tw, "%s\t%s\n", v.Driver, v.Name)
			}
			return tw.Flush()
		},
	}
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show names")
	ls.Flags().StringVar(&format, "format", "", "Go template over each volume, as docker's (e.g. '{{.Name}}'; table, json)")
	inspect := &cobra.Command{
		Use:   "inspect VOLUME [VOLUME...]",
		Short: "Show volumes' details as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cs, err := c.containerStore(ctx)
			if err != nil {
				return asKilnError(err)
			}
			out := []*containers.Volume{}
			for _, name := range args {
				v, err := cs.Volume(ctx, name)
				if err != nil {
					return asKilnError(err)
				}
				out = append(out, v)
			}
			enc := json.NewEncoder(c.stdout)
			enc.SetIndent("", "    ")
			return enc.Encode(out)
		},
	}
	var force bool
	rm := &cobra.Command{
		Use:     "rm VOLUME [VOLUME...]",
		Aliases: []string{"remove"},
		Short:   "Remove volumes no container uses",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return c.eachContainer(ctx, args, true, func(cs *containers.Store, name string) error {
				return cs.RemoveVolume(ctx, name)
			})
		},
	}
	rm.Flags().BoolVarP(&force, "force", "f", false, "accepted for docker compatibility; volumes in use are never removed")
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove every volume no container uses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cs, err := c.containerStore(ctx)
			if err != nil {
				return asKilnError(err)
			}
			removed, err := cs.PruneVolumes(ctx)
			if len(removed) > 0 {
				fmt.Fprintln(c.stdout, "Deleted Volumes:")
				for _, n := range removed {
					fmt.Fprintln(c.stdout, n)
				}
			}
			return asKilnError(err)
		},
	}
	prune.Flags().BoolP("force", "f", false, "do not prompt (kiln never prompts)")
	cmd.AddCommand(create, ls, inspect, rm, prune)
	return cmd
}
