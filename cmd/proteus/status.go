package main

import (
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/api"
)

func init() {
	addCommand(func() *cobra.Command {
		var output, addr string
		var intensity float64
		c := &cobra.Command{
			Use:   "status [-o json] [--attack-intensity π]",
			Short: "Show the running agent's executors (id, variant, address, age, state), c*, the reconfiguration rate and the defense success β_y",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := checkFormat(output, "table"); err != nil {
					return err
				}
				if intensity != 0 && !(intensity > 0 && intensity <= 1) {
					return fmt.Errorf("%w: --attack-intensity must be in (0, 1], got %v", errUsage, intensity)
				}
				c, err := api.NewClient(globals.dataDir, addr)
				if err != nil {
					return err
				}
				st, err := c.StatusFor(cmd.Context(), intensity)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if output == "json" {
					return printJSON(out, st)
				}
				tw := newTable(out)
				fmt.Fprintln(tw, "ID\tVARIANT\tADDRESS\tAGE\tSTATE\tIN-FLIGHT\tTRUST\tDISSENTS\tISOLATION")
				var isolations []string // distinct, in order, printed in full below the table
				for _, x := range st.Executors {
					iso, _, _ := strings.Cut(x.Isolation, " ")
					if iso == "" {
						iso = "-"
					}
					if general := isolationGeneral(x.Isolation); general != "" && !slices.Contains(isolations, general) {
						isolations = append(isolations, general)
					}
					age := (time.Duration(x.AgeSeconds*10) * time.Second / 10).String()
					trust, dissents := "-", "-"
					if v := x.Vote; v != nil {
						trust, dissents = fmt.Sprintf("%.2f", v.Trust), fmt.Sprintf("%d/%d", v.Dissents, v.Requests)
						if !v.EjectedUntil.IsZero() {
							trust += " (ejected until " + v.EjectedUntil.Format(time.TimeOnly) + ")"
						}
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", x.ID, x.Variant, x.Address, age, x.State, x.InFlight, trust, dissents, iso)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				for _, iso := range isolations {
					fmt.Fprintf(out, "executor isolation: %s\n", iso)
				}
				fmt.Fprintf(out, "c* = %d, reconfiguration rate a = %.4f/s\n", st.CStar, st.RotationRate)
				printDefenseSuccess(out, st)
				printAgentState(out, st)
				return nil
			},
		}
		formatFlag(c, &output, "table")
		c.Flags().Float64Var(&intensity, "attack-intensity", 0, "attack intensity π in (0,1] for β_y (default: the agent's --attack-intensity)")
		apiFlag(c, &addr)
		return c
	})
}

// printDefenseSuccess prints β_y with what it means, its inputs and, when it is low, why.
func printDefenseSuccess(out io.Writer, st *api.Status) {
	fmt.Fprintf(out, "defense success β_y = %.4f: the game model's odds that moving the target defeats an attack\n", st.DefenseSuccess)
	fmt.Fprintln(out, `  (a gauge for comparing settings; docs/operations.md, "How the MTD knobs feed the game model"):`)
	fmt.Fprintf(out, "  tanh(c*·a/(2π)) with c* = %d, a = %.4f reconfigurations/s measured, attack intensity π = %.2f\n", st.CStar, st.RotationRate, st.AttackIntensity)
	switch n := len(st.Executors); {
	case st.RotationRate <= 0:
		fmt.Fprintln(out, "  0 because no executor was rebuilt in the measuring window yet; it rises as they rotate")
	case st.DefenseSuccess < 0.5 && n > 0:
		every := time.Duration(float64(n) / st.RotationRate * float64(time.Second)).Round(time.Second)
		fmt.Fprintf(out, "  low because each executor is rebuilt only about every %s; a higher pool.max_concurrent (c*) or a shorter pool.rotation raises it\n", every)
	}
}

var isolationUID = regexp.MustCompile(`uid\+gid [0-9]+`)

// isolationGeneral is an executor's isolation summary without what is its own (its uid), so
// executors confined alike share one line.
func isolationGeneral(s string) string { return isolationUID.ReplaceAllString(s, "own uid+gid") }

// printAgentState prints the vigilance level with what it tightens, and the sensors.
func printAgentState(out io.Writer, st *api.Status) {
	if v := st.Vigilance; v != nil {
		rebuild := "never rebuilds"
		if v.RebuildThreshold > 0 {
			rebuild = fmt.Sprintf("rebuild after %d dissents", v.RebuildThreshold)
		}
		fmt.Fprintf(out, "vigilance level %d: k = %d per vote, %s, rotation interval ×%.3g (now %s)\n", v.Level, v.K, rebuild, v.RotationScale, v.Rotation)
	}
	if len(st.Sensors) == 0 {
		return
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "SENSOR\tSTATE\tSINCE\tRESTARTS\tCOUNTS\tLAST-ERROR")
	for _, s := range st.Sensors {
		keys := slices.Sorted(maps.Keys(s.Counters))
		counts := make([]string, 0, len(keys))
		for _, k := range keys {
			counts = append(counts, fmt.Sprintf("%s=%d", k, s.Counters[k]))
		}
		c := strings.Join(counts, " ")
		if c == "" {
			c = "-"
		}
		lastErr := s.LastError
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", printable(s.Name), s.State, s.Since.UTC().Format(time.RFC3339), s.Restarts, c, printable(lastErr))
	}
	_ = tw.Flush()
}
