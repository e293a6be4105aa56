package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/proteus-defense/proteus/game"
)

// The Figure 7 commands: montecarlo (the comparison under one or more readings) and readings
// (the docs/model.md table of every reading).

func init() {
	addGameCommand(newGameMonteCarloCmd)
	addGameCommand(newGameReadingsCmd)
}

func newGameMonteCarloCmd() *cobra.Command {
	var runs int
	var seed uint64
	var outPath, format string
	var reading []string
	c := &cobra.Command{
		Use:   "montecarlo FILE --runs N --seed S [--reading AXIS=V1,V2 | all]... [--out F.png] [-o json]",
		Short: "Compare the defense benefit of MTTEGDM with a traditional evolutionary game (Figure 7), under one or more readings of the paper",
		Long: `Compare the defense benefit of MTTEGDM with a traditional evolutionary game (Figure 7).

Without --reading the model file's reading and montecarlo scoring are used. Each --reading
AXIS=V1,V2 (or AXIS=all) lists values for one axis, "all" every value of every axis; the
cells are the cross product, all evaluated on the same draws. Axes:
  signal-cost       printed, swapped, false-signal-only, none
  deception-cost    defense-cost, type-conditional
  scoring           common, own
  discount          none, path
  traditional-beta  zero, table8
See docs/model.md, "Readings of the paper".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "table"); err != nil {
				return err
			}
			if runs < 2 {
				return fmt.Errorf("%w: --runs must be >= 2 (a confidence interval needs two runs), got %d", errUsage, runs)
			}
			ext := strings.ToLower(filepath.Ext(outPath))
			if outPath != "" && ext != ".png" && ext != ".svg" {
				return fmt.Errorf("%w: --out must name a .png or .svg file, got %q", errUsage, outPath)
			}
			m, err := loadModel(args[0])
			if err != nil {
				return err
			}
			space, err := game.NewReadingSpace(game.Cell{Reading: m.Reading, Evaluation: m.MonteCarlo.Evaluation()}, reading)
			if err != nil {
				return fmt.Errorf("%w: --reading: %v", errUsage, err)
			}
			rep, err := game.MonteCarlo(m, runs, seed, space.Cells())
			if err != nil {
				return err
			}
			if outPath != "" {
				if err := plotMonteCarlo(rep, outPath); err != nil {
					return err
				}
			}
			w := cmd.OutOrStdout()
			if format == "json" {
				return printJSON(w, rep)
			}
			if err := writeMonteCarloTable(w, rep); err != nil {
				return err
			}
			if outPath != "" {
				fmt.Fprintf(w, "wrote %s\n", outPath)
			}
			return nil
		},
	}
	c.Flags().IntVar(&runs, "runs", 50, "number of Monte Carlo runs (>= 2)")
	c.Flags().Uint64Var(&seed, "seed", 1, "random seed (the same seed gives the same result)")
	c.Flags().StringVar(&outPath, "out", "", "write a plot (.png or .svg): cumulative benefit per run and per stage for one cell, the differences with their intervals for several")
	c.Flags().StringArrayVar(&reading, "reading", nil, "AXIS=V1,V2, AXIS=all or all (repeatable): the readings to cross")
	formatFlag(c, &format, "table")
	return c
}

func writeMonteCarloTable(w io.Writer, rep *game.MonteCarloReport) error {
	fmt.Fprintf(w, "runs %d, seed %d, noise %.2f; benefit per run; difference = MTTEGDM − traditional, paired, 95%% t interval\n\n", rep.Runs, rep.Seed, rep.Noise)
	if len(rep.Cells) == 1 {
		c := rep.Cells[0]
		fmt.Fprintf(w, "reading: %s\n", c.Name)
		fmt.Fprintf(w, "mean defense benefit per run: MTTEGDM %.1f, traditional %.1f\n", c.MeanMTTEGDM, c.MeanTraditional)
		fmt.Fprintf(w, "difference %s; MTTEGDM higher in %d runs, ties %d, lower %d\n", interval(c.Difference), c.Wins, c.Ties, c.Losses)
		fmt.Fprintf(w, "cumulative after %d runs: MTTEGDM %.0f, traditional %.0f\n", rep.Runs, c.CumMTTEGDM[rep.Runs-1], c.CumTraditional[rep.Runs-1])
		fmt.Fprintf(w, "cumulative over stages %s, mean per run: MTTEGDM %s; traditional %s\n", strings.Join(rep.Stages, " "), series(c.CumStageMTTEGDM), series(c.CumStageTraditional))
		fmt.Fprintf(w, "signal camouflage cost paid by MTTEGDM per run: %.1f (the traditional model sends no signal)\n", c.MeanSignalCost)
		fmt.Fprintf(w, "MTTEGDM's defenses without signals: %.1f per run (net effect of its signals %+.1f: changed attacks minus signal cost)\n",
			c.MeanUnsignalled, c.MeanMTTEGDM-c.MeanUnsignalled)
		fmt.Fprintf(w, "MTTEGDM's signal/defense per stage and type: %s\n", strings.Join(c.MTTEGDMDecisions, "; "))
		fmt.Fprintf(w, "traditional model's defenses per stage: %s\n", strings.Join(c.TraditionalDefenses, " "))
		return nil
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "signal cost\tdeception cost\tscoring\tdiscount\ttrad. beta\tMTTEGDM\ttraditional\tdifference [95% CI]\twins/ties/losses\tdifference per stage")
	for _, c := range rep.Cells {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%s\t%d/%d/%d\t%s\n", c.Reading.SignalCost, c.Reading.DeceptionCost,
			c.Evaluation.Scoring, c.Evaluation.Discount, c.Evaluation.TraditionalBeta, c.MeanMTTEGDM, c.MeanTraditional,
			interval(c.Difference), c.Wins, c.Ties, c.Losses, stageDiffs(c))
	}
	return tw.Flush()
}

func interval(i game.Interval) string {
	return fmt.Sprintf("%+.1f [%+.1f, %+.1f]", i.Mean, i.Low, i.High)
}

func series(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.1f", x)
	}
	return strings.Join(s, " ")
}

// stageDiffs is the mean difference earned in each stage, e.g. "−62 −8 −43 −31 −25".
func stageDiffs(c game.CellResult) string {
	s := make([]string, len(c.StageMTTEGDM))
	for k := range c.StageMTTEGDM {
		s[k] = fmt.Sprintf("%+.0f", c.StageMTTEGDM[k]-c.StageTraditional[k])
	}
	return strings.Join(s, " ")
}

// plotMonteCarlo draws one cell as its cumulative benefit over runs and over stages (the two
// readings of Figure 7's x-axis), several cells as their differences with 95 % intervals.
func plotMonteCarlo(rep *game.MonteCarloReport, path string) error {
	if len(rep.Cells) > 1 {
		return plotDifferences(rep, path)
	}
	c := rep.Cells[0]
	cum := func(v []float64) []float64 {
		out := make([]float64, len(v))
		var s float64
		for i, x := range v {
			s += x
			out[i] = s
		}
		return out
	}
	byRun := plot.New()
	byRun.Title.Text = fmt.Sprintf("Cumulative benefit over %d runs (seed %d)", rep.Runs, rep.Seed)
	byRun.X.Label.Text = "run"
	byRun.Y.Label.Text = "cumulative defense benefit"
	byStage := plot.New()
	byStage.Title.Text = "Cumulative benefit over stages, mean per run"
	byStage.X.Label.Text = "stage"
	byStage.Y.Label.Text = "cumulative defense benefit"
	ticks := make([]plot.Tick, len(rep.Stages))
	for k, id := range rep.Stages {
		ticks[k] = plot.Tick{Value: float64(k + 1), Label: id}
	}
	byStage.X.Tick.Marker = plot.ConstantTicks(ticks)
	for _, p := range []*plot.Plot{byRun, byStage} {
		p.Legend.Top, p.Legend.Left = true, true
		p.Add(plotter.NewGrid())
	}
	lines := []struct {
		name         string
		runs, stages []float64
	}{
		{"MTTEGDM", c.CumMTTEGDM, c.CumStageMTTEGDM},
		{"traditional evolutionary game", c.CumTraditional, c.CumStageTraditional},
		{"MTTEGDM defenses without signals", cum(c.Unsignalled), nil},
	}
	for i, l := range lines {
		for _, panel := range []struct {
			p *plot.Plot
			v []float64
		}{{byRun, l.runs}, {byStage, l.stages}} {
			if panel.v == nil {
				continue
			}
			pts := make(plotter.XYs, len(panel.v))
			for k, v := range panel.v {
				pts[k] = plotter.XY{X: float64(k + 1), Y: v}
			}
			ln, sc, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			ln.Color, sc.Color = plotutilColor(i), plotutilColor(i)
			ln.Width = vg.Points(1.5)
			sc.Shape, sc.Radius = draw.CircleGlyph{}, vg.Points(2)
			panel.p.Add(ln, sc)
			panel.p.Legend.Add(l.name, ln, sc)
		}
	}
	head := fmt.Sprintf("MTTEGDM against a traditional evolutionary game: %s", c.Name)
	return savePanels(path, head, [][]*plot.Plot{{byRun, byStage}}, 14*vg.Inch, 6*vg.Inch)
}

// plotDifferences draws each cell's paired difference with its 95 % interval, one row per cell.
func plotDifferences(rep *game.MonteCarloReport, path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("MTTEGDM − traditional, mean per run with 95%% interval (%d runs, seed %d)", rep.Runs, rep.Seed)
	p.X.Label.Text = "difference in defense benefit per run"
	n := len(rep.Cells)
	pts := make(plotter.XYs, n)
	errs := make(plotter.XErrors, n)
	ticks := make([]plot.Tick, n)
	lo, hi := 0.0, 0.0
	for i, c := range rep.Cells {
		lo, hi = min(lo, c.Difference.Low), max(hi, c.Difference.High)
		y := float64(n - i)
		d := c.Difference
		pts[i] = plotter.XY{X: d.Mean, Y: y}
		errs[i] = struct{ Low, High float64 }{d.Mean - d.Low, d.High - d.Mean}
		ticks[i] = plot.Tick{Value: y, Label: strings.Join([]string{c.Reading.SignalCost, c.Reading.DeceptionCost,
			c.Evaluation.Scoring, c.Evaluation.Discount, c.Evaluation.TraditionalBeta}, " / ")}
	}
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	p.Y.Min, p.Y.Max = 0.3, float64(n)+0.7
	pad := 0.05 * (hi - lo)
	p.X.Min, p.X.Max = lo-pad, hi+pad
	p.Add(plotter.NewGrid())
	zero, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0.3}, {X: 0, Y: float64(n) + 0.7}})
	if err != nil {
		return err
	}
	zero.Color = plotutilColor(1)
	bars, err := plotter.NewXErrorBars(struct {
		plotter.XYs
		plotter.XErrors
	}{pts, errs})
	if err != nil {
		return err
	}
	sc, err := plotter.NewScatter(pts)
	if err != nil {
		return err
	}
	sc.Shape, sc.Radius = draw.CircleGlyph{}, vg.Points(2.5)
	p.Add(zero, bars, sc)
	h := vg.Length(n)*0.22*vg.Inch + 1.5*vg.Inch
	if err := p.Save(12*vg.Inch, h, path); err != nil {
		return fmt.Errorf("game: plot: %w", err)
	}
	return nil
}

func newGameReadingsCmd() *cobra.Command {
	var runs int
	var seed uint64
	c := &cobra.Command{
		Use:   "readings FILE [--runs N] [--seed S]",
		Short: "Print the markdown table of every reading of the paper: decisions against Table 11 and the Figure 7 comparison (docs/model.md)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if runs < 2 {
				return fmt.Errorf("%w: --runs must be >= 2, got %d", errUsage, runs)
			}
			m, err := loadModel(args[0])
			if err != nil {
				return err
			}
			space, err := game.NewReadingSpace(game.Cell{}, []string{"all"})
			if err != nil {
				return err
			}
			rep, err := game.MonteCarlo(m, runs, seed, space.Cells())
			if err != nil {
				return err
			}
			var sols []readingSolve
			seen := map[game.Reading]bool{}
			for _, c := range rep.Cells {
				if seen[c.Reading] {
					continue
				}
				seen[c.Reading] = true
				mm := *m
				mm.Reading = c.Reading
				sol, err := game.Solve(&mm)
				if err != nil {
					return err
				}
				sols = append(sols, readingSolve{sol: sol, agree: game.CompareExpected(m, sol)})
			}
			cmdline := fmt.Sprintf("proteus game readings %s --runs %d --seed %d", filepath.ToSlash(args[0]), runs, seed)
			return writeReadingsMarkdown(cmd.OutOrStdout(), cmdline, m, sols, rep)
		},
	}
	c.Flags().IntVar(&runs, "runs", 50, "Monte Carlo runs per cell (>= 2)")
	c.Flags().Uint64Var(&seed, "seed", 1, "random seed (the same seed gives the same table)")
	return c
}

type readingSolve struct {
	sol   *game.Solution
	agree game.Agreement
}

func yesNo(b bool) string {
	if b {
		return "**yes**"
	}
	return "no"
}

// writeReadingsMarkdown prints the two tables of docs/model.md's "Readings of the paper".
func writeReadingsMarkdown(w io.Writer, cmdline string, m *game.Model, sols []readingSolve, rep *game.MonteCarloReport) error {
	engine := game.Cell{Reading: game.EngineReading, Evaluation: game.DefaultEvaluation}
	fmt.Fprintf(w, "<!-- generated by `%s`; TestReadingsTableInDocs keeps it current -->\n\n", cmdline)
	var paper []string
	for _, st := range m.Stages {
		if e := st.Expected; e != nil {
			paper = append(paper, fmt.Sprintf("%s %s %s %s %s", st.ID, e.Type, e.Signal, e.Defense, e.Attack))
		}
	}
	fmt.Fprintf(w, "**Decisions per reading** (`proteus game solve FILE --reading ...`): the chosen defender type, signal, defense and attack per stage. Paper (Table 11): %s. Table 11 is reproduced when type and signal agree in every stage and the defense wherever the paper's is one of the stage's.\n\n", strings.Join(paper, "; "))
	fmt.Fprint(w, "| signal cost | deception cost |")
	for _, st := range m.Stages {
		fmt.Fprintf(w, " %s |", st.ID)
	}
	fmt.Fprint(w, " signals as Table 11 | defenses as Table 11 | reproduces Table 11 |\n|---|---|")
	for range m.Stages {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprint(w, "---|---|---|\n")
	for _, s := range sols {
		fmt.Fprintf(w, "| %s | %s |", s.sol.Reading.SignalCost, s.sol.Reading.DeceptionCost)
		for _, st := range s.sol.Stages {
			fmt.Fprintf(w, " %s %s %s %s |", st.DefenderType, st.Signal, st.Defense, st.Attack)
		}
		a := s.agree
		fmt.Fprintf(w, " %d of %d | %d of %d | %s |\n", a.Signals, a.Stages, a.Defenses, a.Comparable, yesNo(a.Reproduces()))
	}
	fmt.Fprintf(w, "\n**Figure 7 per cell** (`proteus game montecarlo FILE --reading all --runs %d --seed %d`): mean defense benefit per run over %d runs (noise ±%.0f%%), the paired difference MTTEGDM − traditional with its 95%% t interval, runs MTTEGDM wins / ties / loses, and the mean difference earned in each stage (%s). Figure 7 is reproduced when the interval lies above 0. The engine's cell is in bold.\n\n",
		rep.Runs, rep.Seed, rep.Runs, 100*rep.Noise, strings.Join(rep.Stages, ", "))
	fmt.Fprint(w, "| signal cost | deception cost | scoring | discount | traditional β | MTTEGDM | traditional | difference [95% CI] | wins / ties / losses | difference per stage | reproduces Figure 7 |\n")
	fmt.Fprint(w, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range rep.Cells {
		b := ""
		if c.Cell == engine {
			b = "**"
		}
		fmt.Fprintf(w, "| %s%s%s | %s | %s | %s | %s | %.1f | %.1f | %s | %d / %d / %d | %s | %s |\n", b, c.Reading.SignalCost, b,
			c.Reading.DeceptionCost, c.Evaluation.Scoring, c.Evaluation.Discount, c.Evaluation.TraditionalBeta,
			c.MeanMTTEGDM, c.MeanTraditional, interval(c.Difference), c.Wins, c.Ties, c.Losses, stageDiffs(c), yesNo(c.Difference.Low > 0))
	}
	return nil
}
