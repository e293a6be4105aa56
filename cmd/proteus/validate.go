package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/config"
)

func init() {
	addCommand(func() *cobra.Command {
		return &cobra.Command{
			Use:   "validate FILE",
			Short: "Check an agent config file without starting anything (exit 2 when invalid)",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := config.Load(args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
				return nil
			},
		}
	})
}
