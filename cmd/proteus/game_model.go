package main

import (
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	_ "gonum.org/v1/plot/vg/vgimg" // png
	_ "gonum.org/v1/plot/vg/vgsvg" // svg

	"github.com/proteus-defense/proteus/game"
)

// The MTTEGDM model commands: solve, plot, montecarlo. They read a model file (see
// examples/mttegdm-paper.yaml); an invalid model exits 2.

func init() {
	addGameCommand(newGameSolveCmd)
	addGameCommand(newGamePlotCmd)
	addGameCommand(newGameMonteCarloCmd)
}

func loadModel(path string) (*game.Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("game: %w", err)
	}
	return game.ParseModel(path, data)
}

// solveStageJSON is one stage of `game solve -o json`: the solver's result plus the paper's
// published values under "paper" (reference only).
type solveStageJSON struct {
	game.StageResult
	Paper *game.Expected `json:"paper,omitempty"`
}

func newGameSolveCmd() *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "solve FILE",
		Short: "Solve an MTTEGDM model stage by stage (Algorithm 1) and compare with the paper's Table 11",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(out, "table"); err != nil {
				return err
			}
			m, err := loadModel(args[0])
			if err != nil {
				return err
			}
			sol, err := game.Solve(m)
			if err != nil {
				return err
			}
			notes := solveNotes(m, sol)
			w := cmd.OutOrStdout()
			if out == "json" {
				doc := struct {
					Stages []solveStageJSON `json:"stages"`
					Notes  []string         `json:"notes,omitempty"`
				}{Notes: notes}
				for i, s := range sol.Stages {
					doc.Stages = append(doc.Stages, solveStageJSON{StageResult: s, Paper: m.Stages[i].Expected})
				}
				return printJSON(w, doc)
			}
			return writeSolveTable(w, m, sol, notes)
		},
	}
	formatFlag(c, &out, "table")
	return c
}

// solveNotes explains differences from the paper that are not computation results, such as
// Table 11 entries naming strategies the stage does not offer.
func solveNotes(m *game.Model, sol *game.Solution) []string {
	var notes []string
	defined := map[string]bool{}
	for _, d := range m.Defenses {
		defined[d.ID] = true
	}
	for i, st := range m.Stages {
		e := st.Expected
		if e == nil {
			continue
		}
		in := func(list []string, id string) bool {
			for _, v := range list {
				if v == id {
					return true
				}
			}
			return false
		}
		switch {
		case !defined[e.Defense]:
			notes = append(notes, fmt.Sprintf("stage %d: the paper's Table 11 names defense %s, which Table 7 does not define; Proteus cannot deploy it and reports %s from the stage's set %v instead (docs/model.md, \"Table 11\")", i+1, e.Defense, sol.Stages[i].Defense, st.Defenses))
		case !in(st.Defenses, e.Defense):
			notes = append(notes, fmt.Sprintf("stage %d: the paper's Table 11 names defense %s, which is not in this stage's Table 8 set %v", i+1, e.Defense, st.Defenses))
		}
		if e.Attack != "" && !in(st.Attacks, e.Attack) {
			notes = append(notes, fmt.Sprintf("stage %d: the paper's Table 11 names attack %s, which is not in this stage's Table 8 set %v", i+1, e.Attack, st.Attacks))
		}
	}
	return notes
}

func writeSolveTable(w io.Writer, m *game.Model, sol *game.Solution, notes []string) error {
	fmt.Fprintf(w, "%s\nEach cell: Proteus (paper, Tables 10 and 11). Gains are stage payoffs U^k at the stable point.\n\n", m.Name)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "stage\talpha\tbeta\ttype\tsignal\tdefense\tattack\tattack gain\tdefense gain\tequilibrium\tstable+nash")
	for i, s := range sol.Stages {
		e := m.Stages[i].Expected
		if e == nil {
			e = &game.Expected{}
		}
		fmt.Fprintf(tw, "%s\t%.2f (%.2f)\t%.2f (%.2f)\t%s (%s)\t%s (%s)\t%s (%s)\t%s (%s)\t%.0f (%.0f)\t%.0f (%.0f)\t%s\t%v\n",
			s.ID, s.Alpha, e.Alpha, s.Beta, e.Beta, s.DefenderType, dash(e.Type), s.Signal, dash(e.Signal),
			s.Defense, dash(e.Defense), s.Attack, dash(e.Attack), s.AttackGain, e.AttackGain, s.DefenseGain, e.DefenseGain,
			s.Equilibrium, s.Stable && s.Nash)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nNotes:")
		for _, n := range notes {
			fmt.Fprintln(w, "  -", n)
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newGamePlotCmd() *cobra.Command {
	var stage int
	var outPath, typ, signal string
	c := &cobra.Command{
		Use:   "plot FILE --stage K --out F.png|F.svg",
		Short: "Plot the evolution of a stage game from several initial mixes (the paper's Figure 6)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ext := strings.ToLower(filepath.Ext(outPath))
			if outPath == "" || (ext != ".png" && ext != ".svg") {
				return fmt.Errorf("%w: --out must name a .png or .svg file, got %q", errUsage, outPath)
			}
			m, err := loadModel(args[0])
			if err != nil {
				return err
			}
			if stage < 1 || stage > len(m.Stages) {
				return fmt.Errorf("%w: --stage must be in 1..%d, got %d", errUsage, len(m.Stages), stage)
			}
			sol, err := game.Solve(m)
			if err != nil {
				return err
			}
			st := sol.Stages[stage-1]
			if typ == "" {
				typ = st.DefenderType
			}
			if signal == "" {
				signal = st.Signal
			}
			if !knownTypeSignal(m, typ, signal) {
				return fmt.Errorf("%w: unknown --type %q or --signal %q", errUsage, typ, signal)
			}
			mixes := m.Replicator.PlotMixes
			if len(mixes) == 0 {
				mixes = m.Replicator.InitialMixes
			}
			atk, def, trs, err := game.StageEvolution(m, stage, typ, signal, mixes)
			if err != nil {
				return err
			}
			title := fmt.Sprintf("Stage %d, defender %s sending %s: x = P(%s), y = P(%s)", stage, typ, signal, atk[0], def[0])
			if err := plotEvolution(outPath, title, atk[0], def[0], trs); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (stage %d, type %s, signal %s, %d initial mixes)\n", outPath, stage, typ, signal, len(trs))
			return nil
		},
	}
	c.Flags().IntVar(&stage, "stage", 1, "stage number (1-based)")
	c.Flags().StringVar(&outPath, "out", "", "output image (.png or .svg)")
	c.Flags().StringVar(&typ, "type", "", "defender type (default: the solved stage's)")
	c.Flags().StringVar(&signal, "signal", "", "induced signal (default: the solved stage's)")
	return c
}

// plotEvolution draws one panel per initial mix (the layout of Figure 6a–d) and writes the
// figure to path (.png or .svg).
func plotEvolution(path, title, attack, defense string, trs []game.Trajectory) error {
	var tmax float64
	for _, tr := range trs {
		if n := len(tr.T); n > 0 && tr.T[n-1] > tmax {
			tmax = tr.T[n-1]
		}
	}
	if tmax == 0 {
		tmax = 1
	}
	cols := 2
	if len(trs) == 1 {
		cols = 1
	}
	rows := (len(trs) + cols - 1) / cols
	plots := make([][]*plot.Plot, rows)
	ticks := plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "0"}, {Value: 0.25, Label: "0.25"}, {Value: 0.5, Label: "0.5"}, {Value: 0.75, Label: "0.75"}, {Value: 1, Label: "1"}})
	for i, tr := range trs {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("(%c) start x = %.2g, y = %.2g", 'a'+i, tr.X0, tr.Y0)
		p.X.Label.Text = "time (game normalised to payoff range 1)"
		p.Y.Label.Text = "probability"
		p.X.Min, p.X.Max = 0, tmax
		p.Y.Min, p.Y.Max = -0.03, 1.03
		p.Y.Tick.Marker = ticks
		p.Legend.Top = true
		p.Legend.XOffs = -vg.Points(4)
		p.Legend.YOffs = -vg.Points(40)
		p.Add(plotter.NewGrid())
		for j, series := range []struct {
			v    []float64
			name string
		}{{tr.X, "x = P(" + attack + ")"}, {tr.Y, "y = P(" + defense + ")"}} {
			pts := make(plotter.XYs, 0, len(tr.T)+1)
			for k := range tr.T {
				pts = append(pts, plotter.XY{X: tr.T[k], Y: series.v[k]})
			}
			if n := len(tr.T); n > 0 && tr.T[n-1] < tmax {
				pts = append(pts, plotter.XY{X: tmax, Y: series.v[n-1]})
			}
			l, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			l.Color = plotutilColor(j)
			l.Width = vg.Points(2)
			if j == 1 {
				l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
			}
			p.Add(l)
			p.Legend.Add(series.name, l)
		}
		plots[i/cols] = append(plots[i/cols], p)
	}
	for len(plots[rows-1]) < cols {
		plots[rows-1] = append(plots[rows-1], nil)
	}
	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	w, h := 11*vg.Inch, vg.Length(rows)*4*vg.Inch+0.5*vg.Inch
	img, err := draw.NewFormattedCanvas(w, h, format)
	if err != nil {
		return fmt.Errorf("game: plot: %w", err)
	}
	dc := draw.New(img)
	head := plot.New()
	head.Title.Text = title
	headH := 0.5 * vg.Inch
	top := draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{Min: vg.Point{X: 0, Y: h - headH}, Max: vg.Point{X: w, Y: h}}}
	head.HideAxes()
	head.Draw(top)
	body := draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{Min: vg.Point{}, Max: vg.Point{X: w, Y: h - headH}}}
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Points(20), PadY: vg.Points(20), PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(12)}
	canvases := plot.Align(plots, tiles, body)
	for r := range plots {
		for c, p := range plots[r] {
			if p != nil {
				p.Draw(canvases[r][c])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("game: plot: %w", err)
	}
	if _, err := img.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("game: plot: %w", err)
	}
	return f.Close()
}

func knownTypeSignal(m *game.Model, typ, signal string) bool {
	var t, s bool
	for _, tp := range m.Types {
		t = t || tp.ID == typ
		s = s || tp.Signal == signal
	}
	return t && s
}

var palette = []color.RGBA{
	{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, {R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, {R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, {R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
}

func plotutilColor(i int) color.Color { return palette[i%len(palette)] }

func newGameMonteCarloCmd() *cobra.Command {
	var runs int
	var seed uint64
	var outPath, format string
	c := &cobra.Command{
		Use:   "montecarlo FILE --runs N --seed S [--out F.png] [-o json]",
		Short: "Compare the cumulative defense benefit of MTTEGDM with a traditional evolutionary game (Figure 7)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "table"); err != nil {
				return err
			}
			if runs < 1 {
				return fmt.Errorf("%w: --runs must be >= 1, got %d", errUsage, runs)
			}
			ext := strings.ToLower(filepath.Ext(outPath))
			if outPath != "" && ext != ".png" && ext != ".svg" {
				return fmt.Errorf("%w: --out must name a .png or .svg file, got %q", errUsage, outPath)
			}
			m, err := loadModel(args[0])
			if err != nil {
				return err
			}
			res, err := game.MonteCarlo(m, runs, seed)
			if err != nil {
				return err
			}
			if outPath != "" {
				if err := plotMonteCarlo(res, outPath); err != nil {
					return err
				}
			}
			w := cmd.OutOrStdout()
			if format == "json" {
				return printJSON(w, res)
			}
			fmt.Fprintf(w, "runs %d, seed %d, noise %.2f\n", res.Runs, res.Seed, res.Noise)
			fmt.Fprintf(w, "mean defense benefit per run: MTTEGDM %.1f, traditional %.1f\n", res.MeanMTTEGDM, res.MeanTraditional)
			fmt.Fprintf(w, "cumulative after %d runs: MTTEGDM %.0f, traditional %.0f\n", res.Runs, res.CumMTTEGDM[res.Runs-1], res.CumTraditional[res.Runs-1])
			fmt.Fprintf(w, "MTTEGDM higher in %d runs, ties %d, lower %d\n", res.Wins, res.Ties, res.Runs-res.Wins-res.Ties)
			fmt.Fprintf(w, "signal camouflage cost paid by MTTEGDM per run: %.1f (the traditional model sends no signal)\n", res.MeanSignalCost)
			fmt.Fprintf(w, "MTTEGDM's defenses without signals: %.1f per run (net effect of its signals %+.1f: changed attacks minus signal cost)\n",
				res.MeanUnsignalled, res.MeanMTTEGDM-res.MeanUnsignalled)
			fmt.Fprintf(w, "traditional model given Table 8 β for every defense: %.1f per run (MTTEGDM higher in %d runs)\n",
				res.MeanTraditionalTableBeta, res.WinsTableBeta)
			fmt.Fprintf(w, "MTTEGDM's signal/defense per stage and type: %s\n", strings.Join(res.MTTEGDMDecisions, "; "))
			fmt.Fprintf(w, "traditional model's defenses per stage: %s (with Table 8 β: %s)\n",
				strings.Join(res.TraditionalDefs, " "), strings.Join(res.TraditionalTableBetaDefs, " "))
			if outPath != "" {
				fmt.Fprintf(w, "wrote %s\n", outPath)
			}
			return nil
		},
	}
	c.Flags().IntVar(&runs, "runs", 50, "number of Monte Carlo runs")
	c.Flags().Uint64Var(&seed, "seed", 1, "random seed (the same seed gives the same result)")
	c.Flags().StringVar(&outPath, "out", "", "write the cumulative-benefit plot (.png or .svg)")
	formatFlag(c, &format, "table")
	return c
}

func plotMonteCarlo(res *game.MonteCarloResult, path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Cumulative defense benefit over %d Monte Carlo runs (seed %d)", res.Runs, res.Seed)
	p.X.Label.Text = "run"
	p.Y.Label.Text = "cumulative defense benefit"
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	cum := func(v []float64) []float64 {
		out := make([]float64, len(v))
		var s float64
		for i, x := range v {
			s += x
			out[i] = s
		}
		return out
	}
	for i, s := range []struct {
		name string
		v    []float64
	}{
		{"MTTEGDM", res.CumMTTEGDM},
		{"traditional evolutionary game", res.CumTraditional},
		{"MTTEGDM defenses without signals", cum(res.Unsignalled)},
		{"traditional game given Table 8 β", cum(res.TraditionalTableBeta)},
	} {
		pts := make(plotter.XYs, len(s.v))
		for k, v := range s.v {
			pts[k] = plotter.XY{X: float64(k + 1), Y: v}
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		l.Color = plotutilColor(i)
		l.Width = vg.Points(1.5)
		if i == 3 {
			// Dashed: on the case study it runs on top of the unsignalled MTTEGDM line.
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		sc.Color = plotutilColor(i)
		sc.Shape = draw.CircleGlyph{}
		sc.Radius = vg.Points(2)
		p.Add(l, sc)
		p.Legend.Add(s.name, l, sc)
	}
	if err := p.Save(9*vg.Inch, 6*vg.Inch, path); err != nil {
		return fmt.Errorf("game: plot: %w", err)
	}
	return nil
}
