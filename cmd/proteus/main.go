// Command proteus is the single Proteus binary: the agent and every tool around it, as
// cobra subcommands. Each subcommand lives in its own file and registers itself in init()
// through addCommand, so adding one never touches this file.
//
// Exit codes: 0 success, 1 runtime failure, 2 invalid input (config, model file, CSV, flags).
//
// It wires the packages together and may import every one of them; no package may import it.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/strictyaml"
)

// errUsage marks errors caused by bad flags or arguments (exit code 2).
var errUsage = errors.New("usage")

var commandFactories []func() *cobra.Command

// addCommand registers a subcommand factory; called from init() in each subcommand file.
func addCommand(f func() *cobra.Command) { commandFactories = append(commandFactories, f) }

// globalFlags are the flags every subcommand accepts.
type globalFlags struct {
	dataDir string
}

var globals globalFlags

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "proteus",
		Short:         "Proteus: an autonomous active-defense agent (mimic defense, moving target defense, game-theoretic decisions, enclaves)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&globals.dataDir, "data-dir", defaultDataDir(), "directory for state (keys, tokens, audit log)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w: %v", errUsage, err)
	})
	for _, f := range commandFactories {
		root.AddCommand(f())
	}
	markUsageErrors(root)
	return root
}

// markUsageErrors makes cobra's own argument errors usage errors (exit 2) in c and every
// command below it: a wrong number of arguments, an unknown subcommand and none at all
// (cobra prints the help of a command group and exits 0 when it gets an argument it does not
// know, or none).
func markUsageErrors(c *cobra.Command) {
	if !c.Runnable() && c.HasSubCommands() {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("%w: unknown command %q for %q (see %s --help)", errUsage, args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			// No subcommand is a usage error too (exit 2); the help goes to stderr. --help
			// still prints it on stdout and exits 0.
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return fmt.Errorf("%w: %s needs a command", errUsage, cmd.CommandPath())
		}
	} else if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil && !errors.Is(err, errUsage) {
				return fmt.Errorf("%w: %v (see %s --help)", errUsage, err, cmd.CommandPath())
			} else if err != nil {
				return err
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markUsageErrors(sub)
	}
}

// defaultDataDir is $PROTEUS_DATA_DIR, else $XDG_STATE_HOME/proteus, else ~/.local/state/proteus.
func defaultDataDir() string {
	if d := os.Getenv("PROTEUS_DATA_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "proteus")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "proteus")
	}
	return filepath.Join(os.TempDir(), "proteus")
}

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, strictyaml.ErrInvalid):
		return 2
	default:
		return 1
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err != nil {
		fmt.Fprintln(stderr, "proteus:", err)
	}
	return exitCode(err)
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }
