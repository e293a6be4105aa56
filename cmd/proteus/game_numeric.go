package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/game"
)

// This file holds the numerical game subcommands: `proteus game replicator` and
// `proteus game nash`, both on a bimatrix game read from two CSV files.

func init() {
	addGameCommand(newGameReplicatorCmd)
	addGameCommand(newGameNashCmd)
}

// maxTrajectoryPoints bounds the trajectory printed by `game replicator -o json`.
const maxTrajectoryPoints = 200

// bimatrixFlags are the flags shared by the numerical subcommands.
type bimatrixFlags struct {
	attacker, defender, output string
}

func (f *bimatrixFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.attacker, "attacker", "", "CSV file of the attacker's payoffs (rows: attacker strategies, columns: defender strategies)")
	c.Flags().StringVar(&f.defender, "defender", "", "CSV file of the defender's payoffs, same shape")
	formatFlag(c, &f.output, "table")
}

// load checks the flags and reads the game.
func (f *bimatrixFlags) load() (game.Bimatrix, error) {
	if err := checkFormat(f.output, "table"); err != nil {
		return game.Bimatrix{}, err
	}
	if f.attacker == "" || f.defender == "" {
		return game.Bimatrix{}, fmt.Errorf("%w: --attacker and --defender are both required", errUsage)
	}
	A, err := readMatrixFile("--attacker", f.attacker)
	if err != nil {
		return game.Bimatrix{}, err
	}
	D, err := readMatrixFile("--defender", f.defender)
	if err != nil {
		return game.Bimatrix{}, err
	}
	if len(A) != len(D) || len(A[0]) != len(D[0]) {
		return game.Bimatrix{}, fmt.Errorf("%w: --attacker %s is %d×%d but --defender %s is %d×%d; both must be (attacker strategies)×(defender strategies)",
			errUsage, f.attacker, len(A), len(A[0]), f.defender, len(D), len(D[0]))
	}
	g := game.Bimatrix{A: A, D: D}
	if err := g.Validate(); err != nil {
		return game.Bimatrix{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	return g, nil
}

func readMatrixFile(flag, path string) ([][]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s: %v", errUsage, flag, err)
		}
		return nil, fmt.Errorf("game: %s: %w", flag, err)
	}
	defer f.Close()
	return game.ReadMatrixCSV(path, f)
}

// parseMix parses a comma-separated probability vector given to flag for k strategies of who.
func parseMix(flag, s string, k int, who string) ([]float64, error) {
	parts := strings.Split(s, ",")
	if len(parts) != k {
		return nil, fmt.Errorf("%w: %s has %d entries, want %d (one per %s strategy)", errUsage, flag, len(parts), k, who)
	}
	p := make([]float64, k)
	sum := 0.0
	for i, part := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w: %s entry %d %q is not a number", errUsage, flag, i+1, part)
		}
		if v < 0 || v > 1 {
			return nil, fmt.Errorf("%w: %s entry %d is %v, want a probability in [0, 1]", errUsage, flag, i+1, v)
		}
		p[i] = v
		sum += v
	}
	if math.Abs(sum-1) > game.SimplexTol {
		return nil, fmt.Errorf("%w: %s sums to %v, want 1 (within %g)", errUsage, flag, sum, game.SimplexTol)
	}
	return p, nil
}

// replicatorJSON is the documented JSON output of `game replicator`.
type replicatorJSON struct {
	Attacker   []float64        `json:"attacker"`
	Defender   []float64        `json:"defender"`
	T          float64          `json:"t"`
	Converged  bool             `json:"converged"`
	Stable     bool             `json:"stable"`
	Trajectory []trajectoryJSON `json:"trajectory"`
}

type trajectoryJSON struct {
	T        float64   `json:"t"`
	Attacker []float64 `json:"attacker"`
	Defender []float64 `json:"defender"`
}

func newGameReplicatorCmd() *cobra.Command {
	var (
		bf     bimatrixFlags
		x0, y0 string
		tMax   float64
	)
	c := &cobra.Command{
		Use:   "replicator --attacker A.csv --defender D.csv",
		Short: "Integrate the two-population replicator dynamics of a bimatrix game and judge the end point's stability",
		Long: `Integrate ẋ_i = x_i((Ay)_i − xᵀAy), ẏ_j = y_j((xᵀD)_j − xᵀDy) from the given start mixes
(uniform by default) with an adaptive Dormand–Prince 5(4) method until the velocity falls below
1e-8 times the payoff range (converged) or --t-max (default: until converged, at most t = 10000)
is reached, then report the end point and whether it is asymptotically stable. A strategy that
is dying out, strictly dominated on the opponent's remaining strategies and below 1e-7 is set
to 0, so runs on payoffs in the hundreds settle at a corner in hundreds of steps. See
docs/model.md.`,
		Args: noPositionalArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			g, err := bf.load()
			if err != nil {
				return err
			}
			if tMax < 0 || math.IsNaN(tMax) || math.IsInf(tMax, 0) {
				return fmt.Errorf("%w: --t-max must be a finite number ≥ 0, got %v", errUsage, tMax)
			}
			m, n := g.Shape()
			var x, y []float64
			if cmd.Flags().Changed("x0") {
				if x, err = parseMix("--x0", x0, m, "attacker"); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("y0") {
				if y, err = parseMix("--y0", y0, n, "defender"); err != nil {
					return err
				}
			}
			res, err := game.Replicate(g, x, y, game.ReplicatorOptions{
				TMax: tMax, Trajectory: bf.output == "json", TrajectoryMax: maxTrajectoryPoints,
			})
			if err != nil {
				return err
			}
			if bf.output == "json" {
				out := replicatorJSON{Attacker: res.X, Defender: res.Y, T: res.T, Converged: res.Converged, Stable: res.Stable,
					Trajectory: make([]trajectoryJSON, len(res.Trajectory))}
				for i, p := range res.Trajectory {
					out.Trajectory[i] = trajectoryJSON{T: p.T, Attacker: p.X, Defender: p.Y}
				}
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintf(tw, "t\t%.6g\n", res.T)
			fmt.Fprintf(tw, "converged\t%v\n", res.Converged)
			fmt.Fprintf(tw, "stable\t%v\n", res.Stable)
			fmt.Fprintf(tw, "attacker\t%s\n", formatVec(res.X))
			fmt.Fprintf(tw, "defender\t%s\n", formatVec(res.Y))
			eig := make([]string, len(res.Eigenvalues))
			for i, l := range res.Eigenvalues {
				eig[i] = formatComplex(l)
			}
			fmt.Fprintf(tw, "eigenvalues\t%s\n", strings.Join(eig, " "))
			fmt.Fprintf(tw, "steps\t%d\n", res.Steps)
			return tw.Flush()
		},
	}
	bf.register(c)
	c.Flags().StringVar(&x0, "x0", "", "attacker start mix p1,…,pm (default uniform)")
	c.Flags().StringVar(&y0, "y0", "", "defender start mix q1,…,qn (default uniform)")
	c.Flags().Float64Var(&tMax, "t-max", 0, "integrate up to this time (0: until converged, at most 10000)")
	return c
}

// nashJSON is the documented JSON output of `game nash`.
type nashJSON struct {
	Equilibria []equilibriumJSON `json:"equilibria"`
}

type equilibriumJSON struct {
	Attacker       []float64 `json:"attacker"`
	Defender       []float64 `json:"defender"`
	AttackerPayoff float64   `json:"attacker_payoff"`
	DefenderPayoff float64   `json:"defender_payoff"`
}

func newGameNashCmd() *cobra.Command {
	var bf bimatrixFlags
	c := &cobra.Command{
		Use:   "nash --attacker A.csv --defender D.csv",
		Short: "List the Nash equilibria of a bimatrix game by support enumeration",
		Long: `Enumerate supports of equal size, solve the indifference systems and keep the probability
vectors without a profitable deviation. For nondegenerate games the list is complete; for
degenerate games see docs/model.md.`,
		Args: noPositionalArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			g, err := bf.load()
			if err != nil {
				return err
			}
			eqs, err := game.NashEquilibria(g)
			if errors.Is(err, game.ErrTooLarge) {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
			if err != nil {
				return err
			}
			if bf.output == "json" {
				out := nashJSON{Equilibria: make([]equilibriumJSON, len(eqs))}
				for i, e := range eqs {
					out.Equilibria[i] = equilibriumJSON{e.X, e.Y, e.AttackerPayoff, e.DefenderPayoff}
				}
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintln(tw, "#\tattacker\tdefender\tattacker payoff\tdefender payoff")
			for i, e := range eqs {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%.6g\t%.6g\n", i+1, formatVec(e.X), formatVec(e.Y), e.AttackerPayoff, e.DefenderPayoff)
			}
			return tw.Flush()
		},
	}
	bf.register(c)
	return c
}

// noPositionalArgs rejects positional arguments as a usage error (exit 2).
func noPositionalArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: unknown command %q for %q (this command takes only flags)", errUsage, args[0], cmd.CommandPath())
	}
	return nil
}

// formatVec prints probabilities with 6 decimals, rounding -0 and tiny noise to 0.
func formatVec(p []float64) string {
	parts := make([]string, len(p))
	for i, v := range p {
		if math.Abs(v) < 5e-7 {
			v = 0
		}
		parts[i] = strconv.FormatFloat(v, 'f', 6, 64)
	}
	return strings.Join(parts, " ")
}

func formatComplex(l complex128) string {
	re, im := real(l), imag(l)
	if im == 0 {
		return strconv.FormatFloat(re, 'g', 6, 64)
	}
	return fmt.Sprintf("%.6g%+.6gi", re, im)
}
