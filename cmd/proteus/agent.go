package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/engine/agent"
)

// agentContext is the context `proteus agent` runs under; tests replace it.
var agentContext = untilSignal

// GatewayAddrFile is where the agent records the client-facing address it listens on.
const GatewayAddrFile = agent.GatewayAddrFile

type agentFlags struct {
	configFile string
	listen     string
	api        string
	vote       bool
	proxy      bool
	intensity  float64
}

func init() {
	addCommand(func() *cobra.Command {
		var f agentFlags
		c := &cobra.Command{
			Use:   "agent [-c FILE]",
			Short: "Run the agent: executors from known-good images behind the gateway, rotated on schedule, with the local API",
			Long: `Run the Proteus agent. Without -c it runs the embedded default configuration: three executors
of the built-in demo shop (net/http, fasthttp and a raw HTTP/1.1 server, all inside this binary)
behind the mimic voting gateway on 127.0.0.1:8080 (every read goes to all three, the majority
answer is returned, a dissenting executor is rebuilt), each rotated every 30-90 s, with the
local API on 127.0.0.1:9090. The API token is written to DATA-DIR/api.token (mode 0600);
proteus status, rotate, quarantine, block and unblock read it from there.`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return runAgent(cmd, f) },
		}
		c.Flags().StringVarP(&f.configFile, "config", "c", "", "agent config file (default: the embedded default config)")
		c.Flags().StringVar(&f.listen, "listen", "", "client-facing host:port (overrides gateway.listen)")
		c.Flags().StringVar(&f.api, "api", "", "local API host:port (overrides api.listen)")
		c.Flags().BoolVar(&f.vote, "vote", false, "serve through the mimic voting gateway (the gateway: section; the default unless gateway.frontend is proxy)")
		c.Flags().BoolVar(&f.proxy, "proxy", false, "serve through the plain round-robin proxy (one executor per request, no vote) instead of the voting gateway")
		c.Flags().Float64Var(&f.intensity, "attack-intensity", api.DefaultAttackIntensity, "attack intensity π in (0,1] for the defense success β_y = tanh(c*·a/(2π)) that status reports")
		return c
	})
}

// agentConfig loads the config with the flags' overrides and validates it (agent.Check too)
// before anything starts.
func agentConfig(cmd *cobra.Command, f agentFlags) (*config.Config, string, error) {
	file := "embedded default.yaml"
	var cfg *config.Config
	var err error
	if f.configFile != "" {
		file = f.configFile
		cfg, err = config.Load(f.configFile)
	} else {
		cfg, err = config.Parse(file, config.DefaultYAML())
	}
	if err != nil {
		return nil, "", err
	}
	if f.listen != "" {
		cfg.Gateway.Listen = f.listen
	}
	if f.api != "" {
		cfg.API.Listen = f.api
	}
	switch {
	case f.vote && f.proxy:
		return nil, "", fmt.Errorf("%w: give at most one of --vote and --proxy", errUsage)
	case f.vote:
		cfg.Gateway.Frontend = config.FrontendVote
	case f.proxy:
		cfg.Gateway.Frontend = config.FrontendProxy
	}
	if !(f.intensity > 0 && f.intensity <= 1) {
		return nil, "", fmt.Errorf("%w: --attack-intensity must be in (0, 1], got %v", errUsage, f.intensity)
	}
	if err := cfg.Problems().Err(file); err != nil {
		return nil, "", err
	}
	if _, err := agent.Check(cfg, f.configFile); err != nil {
		return nil, "", err
	}
	return cfg, dataDirFor(cmd, cfg), nil
}

func runAgent(cmd *cobra.Command, f agentFlags) error {
	cfg, dataDir, err := agentConfig(cmd, f)
	if err != nil {
		return err
	}
	ctx, stop := agentContext(cmd.Context())
	defer stop()
	return agent.Run(ctx, agent.Options{Config: cfg, ConfigFile: f.configFile, DataDir: dataDir,
		Logger: newLogger(cmd.ErrOrStderr(), cfg.Log), AttackIntensity: f.intensity,
		Ready: func(r agent.Ready) {
			how := "voting gateway"
			if !r.Voting {
				how = "round-robin proxy"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "proteus agent: serving http://%s through the %s (api http://%s, token in %s)\n",
				r.Gateway, how, r.API, r.TokenFile)
		}})
}
