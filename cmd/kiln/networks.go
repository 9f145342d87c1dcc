package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/cmd/internal/app"
	"github.com/kiln-build/kiln/executor/network"
)

func (c *cli) networkCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Manage networks",
		Args:  cobra.NoArgs,
	}
	manager := func(cmd *cobra.Command) (*network.Manager, error) {
		a, err := c.open(cmd.Context())
		if err != nil {
			return nil, err
		}
		defer a.Close()
		return a.Networks()
	}
	var subnet string
	create := &cobra.Command{
		Use:   "create [--subnet CIDR] NAME",
		Short: "Create a bridge network",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := manager(cmd)
			if err != nil {
				return asKilnError(err)
			}
			n, err := m.Create(cmd.Context(), args[0], subnet)
			if err != nil {
				return asKilnError(err)
			}
			fmt.Fprintln(c.stdout, n.ID)
			return nil
		},
	}
	create.Flags().StringVar(&subnet, "subnet", "", "subnet in CIDR form (default: a free private /24)")
	create.Flags().StringP("driver", "d", "bridge", "driver (only bridge)")
	var quiet bool
	var format string
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := manager(cmd)
			if err != nil {
				return asKilnError(err)
			}
			nets, err := m.List(cmd.Context())
			if err != nil {
				return asKilnError(err)
			}
			if quiet {
				for _, n := range nets {
					fmt.Fprintln(c.stdout, shortNetID(n.ID))
				}
				return nil
			}
			if format != "" {
				rows := make([]any, len(nets))
				for i, n := range nets {
					rows[i] = map[string]string{"ID": shortNetID(n.ID), "Name": n.Name, "Driver": n.Driver, "Scope": "local", "Subnet": prefixString(n)}
				}
				return c.writeFormatted(format, map[string]string{"ID": "NETWORK ID"}, rows)
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "NETWORK ID\tNAME\tDRIVER\tSUBNET")
			for _, n := range nets {
				sub := ""
				if n.Subnet.IsValid() {
					sub = n.Subnet.String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", shortNetID(n.ID), n.Name, n.Driver, sub)
			}
			return tw.Flush()
		},
	}
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show IDs")
	ls.Flags().StringVar(&format, "format", "", "Go template over each network, as docker's (e.g. '{{.Name}}'; table, json)")
	rm := &cobra.Command{
		Use:     "rm NETWORK [NETWORK...]",
		Aliases: []string{"remove"},
		Short:   "Remove networks",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := manager(cmd)
			if err != nil {
				return asKilnError(err)
			}
			var last error
			for _, name := range args {
				if err := m.Remove(cmd.Context(), name); err != nil {
					if last != nil {
						fmt.Fprintln(c.stderr, "ERROR: "+last.Error())
					}
					last = err
					continue
				}
				fmt.Fprintln(c.stdout, name)
			}
			return asKilnError(last)
		},
	}
	inspect := &cobra.Command{
		Use:   "inspect NETWORK [NETWORK...]",
		Short: "Show networks' details as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := manager(cmd)
			if err != nil {
				return asKilnError(err)
			}
			nets, err := m.List(cmd.Context())
			if err != nil {
				return asKilnError(err)
			}
			out := []map[string]any{}
			for _, name := range args {
				found := false
				for _, n := range nets {
					if n.Name == name || n.ID == name {
						found = true
						out = append(out, map[string]any{"Name": n.Name, "Id": n.ID, "Driver": n.Driver, "Bridge": n.Bridge,
							"IPAM": map[string]any{"Config": []map[string]string{{"Subnet": prefixString(n), "Gateway": gwString(n)}}}})
					}
				}
				if !found {
					return asKilnError(fmt.Errorf("network %s not found", name))
				}
			}
			enc := json.NewEncoder(c.stdout)
			enc.SetIndent("", "    ")
			return enc.Encode(out)
		},
	}
	prune := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove the user networks no container names",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withApp(cmd, func(ctx context.Context, a *app.App) error {
				nets, err := a.PruneNetworks(ctx)
				c.printList("Deleted Networks:", nets)
				return err
			})
		},
	}
	cmd.AddCommand(create, ls, rm, inspect, prune)
	forceFlag(cmd.Commands())
	return cmd
}

func shortNetID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func prefixString(n network.Network) string {
	if n.Subnet.IsValid() {
		return n.Subnet.String()
	}
	return ""
}

func gwString(n network.Network) string {
	if n.Gateway.IsValid() {
		return n.Gateway.String()
	}
	return ""
}
