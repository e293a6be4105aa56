package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/countermeasure"
)

// The operator's countermeasure commands against a running agent: block, unblock and the list
// of active actions. Like rotate, they use the API token in the data dir.
func init() {
	addCommand(func() *cobra.Command {
		var addr, reason string
		var ttl time.Duration
		c := &cobra.Command{
			Use:   "block ADDR|CIDR --ttl 10m [--reason TEXT]",
			Short: "Block a client address or CIDR at the gateway (403 before any executor sees the request) until the TTL passes",
			Args: func(cmd *cobra.Command, args []string) error {
				if err := checkTargetArg("block", args); err != nil {
					return err
				}
				if !cmd.Flags().Changed("ttl") {
					return fmt.Errorf("%w: --ttl is required (how long the block lasts, e.g. --ttl 10m)", errUsage)
				}
				if ttl <= 0 || ttl > api.MaxBlockTTL {
					return fmt.Errorf("%w: --ttl must be in (0, %s], got %s", errUsage, api.MaxBlockTTL, ttl)
				}
				return nil
			},
			RunE: func(cmd *cobra.Command, args []string) error {
				cl, err := api.NewClient(globals.dataDir, addr)
				if err != nil {
					return err
				}
				a, err := cl.Block(cmd.Context(), args[0], ttl, reason)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "blocked %s until %s (%s)\n", a.Target, a.Expires.UTC().Format(time.RFC3339), a.ID)
				return nil
			},
		}
		c.Flags().DurationVar(&ttl, "ttl", 0, "how long the block lasts (required), e.g. 10m; the agent lifts it then, also across restarts")
		c.Flags().StringVar(&reason, "reason", "", "why (kept in the journal and the countermeasure.applied event)")
		apiFlag(c, &addr)
		return c
	})
	addCommand(func() *cobra.Command {
		var addr string
		c := &cobra.Command{
			Use:   "unblock ADDR|CIDR",
			Short: "Lift every active block on exactly this address or CIDR (the operator's and the enclave's)",
			Args:  func(cmd *cobra.Command, args []string) error { return checkTargetArg("unblock", args) },
			RunE: func(cmd *cobra.Command, args []string) error {
				cl, err := api.NewClient(globals.dataDir, addr)
				if err != nil {
					return err
				}
				rev, err := cl.Unblock(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				for _, a := range rev {
					fmt.Fprintf(cmd.OutOrStdout(), "unblocked %s (%s)\n", a.Target, a.ID)
				}
				return nil
			},
		}
		apiFlag(c, &addr)
		return c
	})
	addCommand(func() *cobra.Command {
		var addr, output string
		c := &cobra.Command{
			Use:   "countermeasures [-o json]",
			Short: "List the running agent's active countermeasures (blocks, vigilance) with their expiry",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := checkFormat(output, "table"); err != nil {
					return err
				}
				cl, err := api.NewClient(globals.dataDir, addr)
				if err != nil {
					return err
				}
				acts, err := cl.Actions(cmd.Context())
				if err != nil {
					return err
				}
				if acts == nil {
					acts = []countermeasure.Action{}
				}
				out := cmd.OutOrStdout()
				if output == "json" {
					return printJSON(out, acts)
				}
				tw := newTable(out)
				fmt.Fprintln(tw, "KIND\tTARGET\tEXPIRES\tLEFT\tSOURCE\tREASON")
				now := time.Now()
				for _, a := range acts {
					left := a.Expires.Sub(now).Round(time.Second)
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Kind, a.Target, a.Expires.UTC().Format(time.RFC3339), left, a.Source, a.Reason)
				}
				return tw.Flush()
			},
		}
		formatFlag(c, &output, "table")
		apiFlag(c, &addr)
		return c
	})
}

// checkTargetArg is the argument check of block and unblock: exactly one address or CIDR.
func checkTargetArg(command string, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: %s needs exactly one address or CIDR", errUsage, command)
	}
	if _, err := api.ParseTarget(args[0]); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}
