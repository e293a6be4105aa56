package main

import (
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
		// No subcommand or an unknown one is a usage error (exit 2): markUsageErrors.
	}
	for _, f := range gameSubcommands {
		c.AddCommand(f())
	}
	return c
}

func init() { addCommand(newGameCmd) }
