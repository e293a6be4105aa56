package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/engine"
	"github.com/proteus-defense/proteus/store"
)

// `proteus decisions` asks the running agent (GET /api/v1/decisions); with --offline it reads
// the engine's audit store in the data dir (DATA-DIR/audit.db) itself instead, which works
// after the agent stopped (and while it runs: SQLite WAL).
func init() {
	addCommand(func() *cobra.Command {
		var since, source, asset, output, addr string
		var offline bool
		c := &cobra.Command{
			Use:   "decisions [--since DURATION|TIME] [--source ADDR] [--asset NAME] [-o table|json]",
			Short: "List the engine's decisions (verdict, Pr(attack), α, β, stage, strategy, signal, countermeasures, evidence)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := checkFormat(output, "table"); err != nil {
					return err
				}
				if err := checkSource(cmd, offline); err != nil {
					return err
				}
				q := url.Values{"since": {since}, "source": {source}, "asset": {asset}}
				f, err := decisionFilter(q, time.Now())
				if err != nil {
					return err
				}
				var ds []store.Decision
				if offline {
					if ds, err = offlineDecisions(cmd, f); err != nil {
						return err
					}
				} else {
					cl, err := decisionsClient(cmd, addr)
					if err != nil {
						return err
					}
					for k, v := range q {
						if v[0] == "" {
							delete(q, k)
						}
					}
					if ds, err = cl.Decisions(cmd.Context(), q); err != nil {
						return err
					}
				}
				out := cmd.OutOrStdout()
				if output == "json" {
					store.Brief(ds) // `decisions show ID` has the whole story
					return printJSON(out, struct {
						Decisions []store.Decision `json:"decisions"`
					}{ds})
				}
				tw := newTable(out)
				fmt.Fprintln(tw, "ID\tTIME\tASSET\tSOURCE\tVERDICT\tP\tALPHA\tBETA\tSTAGE\tATTACK\tSTRATEGY\tSIGNAL\tCOUNTERMEASURES\tEVIDENCE")
				for _, d := range ds {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.3f\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%d\n", cell(d.ID), d.Time.Format(time.RFC3339), cell(d.Asset),
						cell(dash(d.Source)), cell(d.Verdict), d.Probability, d.Alpha, d.Beta, cell(dash(d.StageID)), cell(dash(d.Attack)), cell(dash(d.Strategy)),
						cell(dash(d.Signal)), cell(countermeasureList(d.Countermeasures)), len(d.Evidence))
				}
				return tw.Flush()
			},
		}
		c.Flags().StringVar(&since, "since", "", "only decisions since a duration ago (e.g. 2h) or an RFC 3339 time")
		c.Flags().StringVar(&source, "source", "", "only decisions about this source address")
		c.Flags().StringVar(&asset, "asset", "", "only decisions about this asset")
		formatFlag(c, &output, "table")
		decisionsSourceFlags(c, &addr, &offline)
		c.AddCommand(newDecisionsShowCmd(), newDecisionsRevertCmd())
		return c
	})
}

// decisionsSourceFlags adds --api and --offline, where the decisions commands read from.
func decisionsSourceFlags(c *cobra.Command, addr *string, offline *bool) {
	apiFlag(c, addr)
	c.Flags().BoolVar(offline, "offline", false, "read DATA-DIR/audit.db directly instead of asking the running agent (for an agent that stopped)")
}

// checkSource refuses --api with --offline.
func checkSource(cmd *cobra.Command, offline bool) error {
	if offline && cmd.Flags().Changed("api") {
		return fmt.Errorf("%w: --offline reads the data dir, --api names an agent: give one of them", errUsage)
	}
	return nil
}

// decisionsClient is the API client of the decisions commands; without an agent it says
// how to read a stopped agent's decisions.
func decisionsClient(cmd *cobra.Command, addr string) (*api.Client, error) {
	cl, err := api.NewClient(globals.dataDir, addr)
	if errors.Is(err, api.ErrNoAgent) {
		return nil, fmt.Errorf("%w (for the decisions of a stopped agent: %s --offline)", err, cmd.CommandPath())
	}
	return cl, err
}

// offlineDecisions lists the decisions matching f from the audit store in the data dir.
func offlineDecisions(cmd *cobra.Command, f store.Filter) ([]store.Decision, error) {
	st, err := store.OpenExisting(globals.dataDir)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.List(cmd.Context(), f)
}

// cell is printable text for one table cell: no control characters, and no tab either,
// which would shift the columns.
func cell(s string) string { return strings.ReplaceAll(printable(s), "\t", " ") }

func newDecisionsShowCmd() *cobra.Command {
	var output, addr string
	var offline bool
	c := &cobra.Command{
		Use:   "show ID [-o text|json]",
		Short: "The whole story of one decision: each event, the numbers, the game's solution for its stage",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(output, "text"); err != nil {
				return err
			}
			if err := checkSource(cmd, offline); err != nil {
				return err
			}
			var d store.Decision
			if offline {
				st, err := store.OpenExisting(globals.dataDir)
				if err != nil {
					return err
				}
				defer st.Close()
				if d, err = st.Get(cmd.Context(), args[0]); err != nil {
					return err
				}
			} else {
				cl, err := decisionsClient(cmd, addr)
				if err != nil {
					return err
				}
				if d, err = cl.Decision(cmd.Context(), args[0]); err != nil {
					return err
				}
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), d)
			}
			return writeDecision(cmd.OutOrStdout(), d)
		},
	}
	formatFlag(c, &output, "text")
	decisionsSourceFlags(c, &addr, &offline)
	return c
}

func newDecisionsRevertCmd() *cobra.Command {
	var addr string
	c := &cobra.Command{
		Use:   "revert ID ACTION",
		Short: "Revert one countermeasure of a decision now (ACTION: its action ID, from decisions show); the agent records who and when",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := api.NewClient(globals.dataDir, addr)
			if err != nil {
				return err
			}
			r, err := c.RevertDecision(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reverted %s of decision %s at %s (%s)\n", printable(r.Revert.Action), printable(r.Decision),
				r.Revert.Time.Format(time.RFC3339), printable(r.Revert.By))
			return nil
		},
	}
	apiFlag(c, &addr)
	return c
}

// decisionFilter parses the list flags, as the API parses the same query parameters.
func decisionFilter(q url.Values, now time.Time) (store.Filter, error) {
	f, err := api.ParseDecisionFilter(q, now)
	if err != nil {
		return f, fmt.Errorf("%w: --%v", errUsage, err)
	}
	return f, nil
}

// printable drops control characters from text that came from evidence (a file name, a log
// line), so a hostile one cannot forge lines or move the cursor in a terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, s)
}

func countermeasureList(cms []store.Countermeasure) string {
	if len(cms) == 0 {
		return "-"
	}
	var parts []string
	for _, c := range cms {
		s := c.Kind
		if c.Target != "" {
			s += " " + printable(c.Target)
		}
		if c.Error != "" {
			s += " (failed)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func writeDecision(w io.Writer, d store.Decision) error {
	p := func(s string) string { return printable(dash(s)) }
	fmt.Fprintf(w, "decision %s at %s\n", p(d.ID), d.Time.Format(time.RFC3339Nano))
	fmt.Fprintf(w, "  asset %s, source %s\n", p(d.Asset), p(d.Source))
	fmt.Fprintf(w, "  Pr(attack) = %.4f; thresholds α = %.4f, β = %.4f → %s\n", d.Probability, d.Alpha, d.Beta, p(d.Verdict))
	fmt.Fprintf(w, "  stage %d (%s), observed attack %s\n", d.Stage, p(d.StageID), p(d.Attack))
	fmt.Fprintf(w, "  strategy %s, signal %s\n", p(d.Strategy), p(d.Signal))
	var det engine.Detail
	if len(d.Detail) > 0 {
		if err := json.Unmarshal(d.Detail, &det); err != nil {
			return fmt.Errorf("decisions: detail of %s: %w", p(d.ID), err)
		}
		fmt.Fprintf(w, "  rule %s (event %d of this source and asset; %.2f events/min)\n", p(det.Rule), det.Events, det.ObservedRate)
		if t := det.Transition; t != nil {
			fmt.Fprintf(w, "  stage change %s → %s (η-path probability %.3f)\n", p(t.From), p(t.To), t.Path)
		}
		if det.Live.CStar > 0 {
			fmt.Fprintf(w, "  live parameters: c* = %d, reconfiguration rate a = %.2f, attack intensity π = %.2f\n", det.Live.CStar, det.Live.Rate, det.Live.Intensity)
		} else {
			fmt.Fprintln(w, "  live parameters: none (the model's own)")
		}
		fmt.Fprintf(w, "  model reading: %s\n", p(det.Reading.String()))
		if c := det.Choice; c != nil {
			fmt.Fprintf(w, "  game: defender type %s plays %s with signal %s against %s; gains defense %.1f, attack %.1f\n",
				p(c.DefenderType), p(c.Defense), p(c.Signal), p(c.Attack), c.DefenseGain, c.AttackGain)
		}
		if det.Unmapped {
			fmt.Fprintln(w, "  the strategy has no countermeasures in engine.strategies: vigilance raised instead")
		}
	}
	fmt.Fprintln(w, "countermeasures:")
	if len(d.Countermeasures) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, c := range d.Countermeasures {
		fmt.Fprintf(w, "  %s %s", p(c.Kind), p(c.Target))
		if !c.Expires.IsZero() {
			fmt.Fprintf(w, " until %s", c.Expires.Format(time.RFC3339))
		}
		if by, _, ok := strings.Cut(c.ID, "/"); ok {
			fmt.Fprintf(w, " by %s", printable(by)) // the actuator: nftables, the gateway's blocklist, ...
		}
		if c.Error != "" {
			fmt.Fprintf(w, " FAILED: %s", printable(c.Error))
		}
		if c.ID != "" {
			fmt.Fprintf(w, " [action %s]", printable(c.ID))
		}
		fmt.Fprintln(w)
		for _, r := range d.Reverts {
			if r.Action == c.ID {
				fmt.Fprintf(w, "    reverted early at %s by %s\n", r.Time.Format(time.RFC3339), printable(r.By))
			}
		}
	}
	fmt.Fprintln(w, "evidence:")
	for _, e := range d.Evidence {
		fmt.Fprintf(w, "  %s %s %s: %s\n", e.Time.Format(time.RFC3339Nano), printable(e.Sensor), printable(e.Kind), printable(e.Summary))
		if e.Excerpt != "" {
			fmt.Fprintf(w, "    %s\n", printable(e.Excerpt))
		}
	}
	if det.Solution != nil {
		fmt.Fprintln(w, "the game's solution for this stage (as `proteus game solve -o json` gives it for these parameters):")
		raw, _ := json.MarshalIndent(det.Solution, "  ", "  ")
		fmt.Fprintf(w, "  %s\n", raw)
	}
	return nil
}
