package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/api"
)

func init() {
	addCommand(func() *cobra.Command {
		var output, addr string
		c := &cobra.Command{
			Use:   "status [-o json]",
			Short: "Show the running agent's executors (id, variant, address, age, state)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if output != "table" && output != "json" {
					return fmt.Errorf("%w: -o must be table or json, got %q", errUsage, output)
				}
				c, err := api.NewClient(globals.dataDir, addr)
				if err != nil {
					return err
				}
				st, err := c.Status(cmd.Context())
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if output == "json" {
					enc := json.NewEncoder(out)
					enc.SetIndent("", "  ")
					return enc.Encode(st)
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tVARIANT\tADDRESS\tAGE\tSTATE\tIN-FLIGHT")
				for _, x := range st.Executors {
					age := (time.Duration(x.AgeSeconds*10) * time.Second / 10).String()
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", x.ID, x.Variant, x.Address, age, x.State, x.InFlight)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(out, "c* = %d, reconfiguration rate = %.4f/s\n", st.CStar, st.RotationRate)
				return nil
			},
		}
		c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
		c.Flags().StringVar(&addr, "api", "", "agent API host:port (default: the address the agent wrote to the data dir)")
		return c
	})
}
