package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/api"
)

// `proteus dashboard` prints a one-time login link for the running agent's dashboard.
func init() {
	addCommand(func() *cobra.Command {
		var addr string
		c := &cobra.Command{
			Use:   "dashboard",
			Short: "Print a one-time login link to the running agent's web dashboard (valid 5 minutes, one use)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := api.NewTCPClient(globals.dataDir, addr) // the link names the address it was asked on
				if err != nil {
					return err
				}
				l, err := c.LoginLink(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), l.URL)
				return nil
			},
		}
		apiFlag(c, &addr)
		return c
	})
}
