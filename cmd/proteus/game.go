package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// gameSubcommands are the factories of the `proteus game ...` subcommands. Each game
// subcommand file registers itself with addGameCommand in init(), like top-level commands do
// with addCommand, so no file owns the whole list.
var gameSubcommands []func() *cobra.Command

// addGameCommand registers a `proteus game` subcommand factory; call it from init().
func addGameCommand(f func() *cobra.Command) { gameSubcommands = append(gameSubcommands, f) }

// newGameCmd builds the `game` parent command with every registered subcommand.
func newGameCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "game",
		Short: "The MTTEGDM decision engine and its numerical tools (replicator dynamics, Nash equilibria)",
		Args:  cobra.ArbitraryArgs,
		// Without a subcommand print help; an unknown subcommand is a usage error (exit 2).
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("%w: unknown command %q for %q", errUsage, args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	for _, f := range gameSubcommands {
		c.AddCommand(f())
	}
	return c
}

func init() { addCommand(newGameCmd) }
