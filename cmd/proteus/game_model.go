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

// The MTTEGDM model commands: solve, plot (and montecarlo, readings in game_montecarlo.go).
// They read a model file (see examples/mttegdm-paper.yaml); an invalid model exits 2.

func init() {
	addGameCommand(newGameSolveCmd)
	addGameCommand(newGamePlotCmd)
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
	var reading []string
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
			if m.Reading, err = overrideReading(m.Reading, reading); err != nil {
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
					Reading game.Reading     `json:"reading"`
					Stages  []solveStageJSON `json:"stages"`
					Notes   []string         `json:"notes,omitempty"`
				}{Reading: sol.Reading, Notes: notes}
				for i, s := range sol.Stages {
					doc.Stages = append(doc.Stages, solveStageJSON{StageResult: s, Paper: m.Stages[i].Expected})
				}
				return printJSON(w, doc)
			}
			return writeSolveTable(w, m, sol, notes)
		},
	}
	formatFlag(c, &out, "table")
	c.Flags().StringArrayVar(&reading, "reading", nil, "override the model file's reading: signal-cost=V or deception-cost=V (repeatable; docs/model.md, \"Readings of the paper\")")
	return c
}

// overrideReading replaces the axes of r that specs name ("signal-cost=V", "deception-cost=V").
func overrideReading(r game.Reading, specs []string) (game.Reading, error) {
	for _, s := range specs {
		o, err := game.ParseReading(s)
		if err != nil {
			return r, fmt.Errorf("%w: --reading: %v", errUsage, err)
		}
		if o.SignalCost != "" {
			r.SignalCost = o.SignalCost
		}
		if o.DeceptionCost != "" {
			r.DeceptionCost = o.DeceptionCost
		}
	}
	return r, nil
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
	fmt.Fprintf(w, "%s\nReading: %s\nEach cell: Proteus (paper, Tables 10 and 11). Gains are stage payoffs U^k at the stable point.\n\n", m.Name, sol.Reading)
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
	return savePanels(path, title, plots, 11*vg.Inch, vg.Length(rows)*4*vg.Inch+0.5*vg.Inch)
}

// savePanels draws a grid of plots (nil cells stay empty) under a title line and writes the
// figure to path (.png or .svg) at size w × h.
func savePanels(path, title string, plots [][]*plot.Plot, w, h vg.Length) error {
	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
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
	tiles := draw.Tiles{Rows: len(plots), Cols: len(plots[0]), PadX: vg.Points(20), PadY: vg.Points(20), PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(12)}
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
