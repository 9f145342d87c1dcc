package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func (c *cli) attachCommand() *cobra.Command {
	var noStdin, sigProxy bool
	var flagKeys string
	cmd := &cobra.Command{
		Use:   "attach [OPTIONS] CONTAINER",
		Short: "Attach to a running container's input and output",
		Long: `attach streams a running container's output (and, if it was started with
-i, sends it input) until it exits, then exits with its status, as docker
attach.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cs, r, err := c.container(ctx, args[0])
			if err != nil {
				return asKilnError(err)
			}
			if !r.Running() {
				return asKilnError(errors.New("you cannot attach to a stopped container, start it first"))
			}
			stdin := r.Config.OpenStdin && !noStdin
			keys, err := detachKeys(flagKeys, stdin && r.Config.Tty)
			if err != nil {
				return asKilnError(err)
			}
			sess, err := cs.Attach(ctx, r.Config.ID, stdin)
			if err != nil {
				return asKilnError(err)
			}
			return c.streamExit(ctx, sess, r.Config.Tty, stdin, sigProxy, keys, false)
		},
	}
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "do not attach stdin")
	cmd.Flags().BoolVar(&sigProxy, "sig-proxy", true, "forward the signals kiln receives to the container")
	addDetachKeysFlag(cmd, &flagKeys)
	return cmd
}
