package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/api"
)

func init() {
	addCommand(func() *cobra.Command {
		var all bool
		var addr string
		c := &cobra.Command{
			Use:   "rotate [--all | ID]",
			Short: "Rotate one executor (or all, at most c* at a time) now: start a fresh one, drain and stop the old",
			Args:  cobra.MaximumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if all == (len(args) == 1) {
					return fmt.Errorf("%w: give exactly one of --all or an executor ID (see proteus status)", errUsage)
				}
				c, err := api.NewClient(globals.dataDir, addr)
				if err != nil {
					return err
				}
				if all {
					if err := c.RotateAll(cmd.Context()); err != nil {
						return err
					}
					fmt.Fprintln(cmd.OutOrStdout(), "rotated all executors")
					return nil
				}
				if err := c.Rotate(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "rotated %s\n", args[0])
				return nil
			},
		}
		c.Flags().BoolVar(&all, "all", false, "rotate every executor")
		apiFlag(c, &addr)
		return c
	})
	addCommand(func() *cobra.Command {
		var addr string
		c := &cobra.Command{
			Use:   "quarantine ID",
			Short: "Take an executor out of service, freeze it and keep its work directory for forensics",
			Args: func(cmd *cobra.Command, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("%w: quarantine needs exactly one executor ID (see proteus status)", errUsage)
				}
				return nil
			},
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := api.NewClient(globals.dataDir, addr)
				if err != nil {
					return err
				}
				if err := c.Quarantine(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "quarantined %s (work directory kept)\n", args[0])
				return nil
			},
		}
		apiFlag(c, &addr)
		return c
	})
	addCommand(func() *cobra.Command {
		var addr string
		c := &cobra.Command{
			Use:   "reset-learned",
			Short: "Make the running agent's voting gateway forget the noise it learned (it compares those fields again)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := api.NewClient(globals.dataDir, addr)
				if err != nil {
					return err
				}
				if err := c.ResetLearned(cmd.Context()); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "learned noise reset")
				return nil
			},
		}
		apiFlag(c, &addr)
		return c
	})
}
