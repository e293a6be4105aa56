package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/engine"
)

// loadAgentConfig is config.Load plus what the agent checks at start about the engine: its
// model file and the rules' references into it.
func loadAgentConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := engine.Check(cfg, path); err != nil {
		return nil, err
	}
	return cfg, nil
}

// validators are the config loaders by the command that reads the file: the agent needs
// every section, the standalone gateway and enclave node only theirs.
var validators = map[string]func(path string) (*config.Config, error){
	"agent":   loadAgentConfig,
	"gateway": config.LoadStandaloneGateway,
	"enclave": config.LoadStandaloneEnclave,
}

func init() {
	addCommand(func() *cobra.Command {
		var forCmd string
		c := &cobra.Command{
			Use:   "validate FILE",
			Short: "Check a config file without starting anything (exit 2 when invalid)",
			Long: `Check a config file strictly without starting anything. --for says which command will read it:
agent (the default) needs every section, gateway (proteus gateway -c) and enclave (proteus enclave
run -c) only their own, version and log.`,
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				load, ok := validators[forCmd]
				if !ok {
					return fmt.Errorf("%w: --for must be agent, gateway or enclave, got %q", errUsage, forCmd)
				}
				if _, err := load(args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (for %s)\n", args[0], forCmd)
				return nil
			},
		}
		c.Flags().StringVar(&forCmd, "for", "agent", "the command that reads the file: agent, gateway or enclave")
		return c
	})
}
