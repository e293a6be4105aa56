package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// gameExample returns the attacker and defender CSV paths of examples/games/<name>-*.csv.
func gameExample(name string) (string, string) {
	dir := filepath.Join("..", "..", "examples", "games")
	return filepath.Join(dir, name+"-attacker.csv"), filepath.Join(dir, name+"-defender.csv")
}

func runGame(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"game"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestGameNashJSON(t *testing.T) {
	a, d := gameExample("battle-of-sexes")
	code, out, errOut := runGame(t, "nash", "--attacker", a, "--defender", d, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got struct {
		Equilibria []struct {
			Attacker, Defender             []float64
			AttackerPayoff, DefenderPayoff float64 `json:"-"`
		} `json:"equilibria"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Equilibria) != 3 {
		t.Fatalf("%d equilibria: %s", len(got.Equilibria), out)
	}
	mixed := got.Equilibria[2]
	if math.Abs(mixed.Attacker[0]-2./3) > 1e-12 || math.Abs(mixed.Defender[0]-1./3) > 1e-12 {
		t.Errorf("mixed equilibrium %v %v", mixed.Attacker, mixed.Defender)
	}
	// The documented keys, exactly.
	var raw struct {
		Equilibria []map[string]json.RawMessage `json:"equilibria"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	if keys := sortedKeys(raw.Equilibria[0]); keys != "attacker,attacker_payoff,defender,defender_payoff" {
		t.Errorf("equilibrium keys %s", keys)
	}
}

func TestGameNashTable(t *testing.T) {
	a, d := gameExample("matching-pennies")
	code, out, errOut := runGame(t, "nash", "--attacker", a, "--defender", d)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "1  0.500000 0.500000  0.500000 0.500000") {
		t.Errorf("table:\n%s", out)
	}
}

func sortedKeys(m map[string]json.RawMessage) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// small n: insertion sort keeps the test free of extra imports
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return strings.Join(keys, ",")
}

func TestGameReplicatorJSON(t *testing.T) {
	a, d := gameExample("prisoners-dilemma")
	code, out, errOut := runGame(t, "replicator", "--attacker", a, "--defender", d, "--x0", "0.9,0.1", "--y0", "0.8, 0.2", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	if keys := sortedKeys(raw); keys != "attacker,converged,defender,stable,t,trajectory" {
		t.Errorf("keys %s", keys)
	}
	var got struct {
		Attacker, Defender []float64
		T                  float64
		Converged, Stable  bool
		Trajectory         []struct {
			T                  float64
			Attacker, Defender []float64
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Converged || !got.Stable || got.Attacker[1] < 1-1e-6 || got.Defender[1] < 1-1e-6 {
		t.Errorf("did not reach (defect, defect): %+v", got)
	}
	tr := got.Trajectory
	if len(tr) < 2 || len(tr) > 200 {
		t.Fatalf("trajectory of %d points", len(tr))
	}
	if tr[0].T != 0 || tr[0].Attacker[0] != 0.9 || tr[len(tr)-1].T != got.T {
		t.Errorf("trajectory ends %+v … %+v, t=%v", tr[0], tr[len(tr)-1], got.T)
	}
	if raw2 := string(raw["trajectory"]); !strings.Contains(raw2, `"attacker"`) || !strings.Contains(raw2, `"t"`) {
		t.Errorf("trajectory point keys: %.200s", raw2)
	}
}

// A long orbit (matching pennies never converges) is thinned to at most 200 points.
func TestGameReplicatorThinned(t *testing.T) {
	a, d := gameExample("matching-pennies")
	code, out, errOut := runGame(t, "replicator", "--attacker", a, "--defender", d, "--x0", "0.7,0.3", "--t-max", "500", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got struct {
		T          float64
		Converged  bool
		Stable     bool
		Trajectory []json.RawMessage
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.T != 500 || got.Converged || got.Stable {
		t.Errorf("t=%v converged=%v stable=%v", got.T, got.Converged, got.Stable)
	}
	if n := len(got.Trajectory); n > 200 || n < 50 {
		t.Errorf("trajectory of %d points", n)
	}
}

func TestGameReplicatorTable(t *testing.T) {
	a, d := gameExample("battle-of-sexes")
	code, out, errOut := runGame(t, "replicator", "--attacker", a, "--defender", d, "--x0", "0.1,0.9", "--y0", "0.1,0.9")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"converged    true", "stable       true", "attacker     0.000000 1.000000", "defender     0.000000 1.000000"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

// The case study's stage-1 game on raw payoffs (hundreds) must settle at its corner within a
// step budget: the convergence test is relative to the payoff range and dying strategies are
// snapped once tiny (before, this run took over two million steps and did not converge).
func TestGameReplicatorLargePayoffs(t *testing.T) {
	a, d := gameExample("mttegdm-s1")
	code, out, errOut := runGame(t, "replicator", "--attacker", a, "--defender", d, "--x0", "0.3,0.7", "--y0", "0.8,0.2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"converged    true", "stable       true", "attacker     0.000000 1.000000", "defender     0.000000 1.000000"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	var steps int
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "steps" {
			if _, err := fmt.Sscan(f[1], &steps); err != nil {
				t.Fatal(err)
			}
		}
	}
	const budget = 5000
	if steps == 0 || steps > budget {
		t.Errorf("%d steps, budget %d\n%s", steps, budget, out)
	}
}

func TestGameNumericErrors(t *testing.T) {
	a, d := gameExample("battle-of-sexes")
	a3, d3 := gameExample("rock-paper-scissors")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("1,2\n3,x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.csv")
	row := strings.TrimSuffix(strings.Repeat("1,", 12), ",") + "\n"
	if err := os.WriteFile(big, []byte(strings.Repeat(row, 12)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string // substring of stderr
	}{
		{"too large", []string{"nash", "--attacker", big, "--defender", big}, "too large for support enumeration"},
		{"x0 length", []string{"replicator", "--attacker", a, "--defender", d, "--x0", "1"}, "--x0 has 1 entries, want 2"},
		{"x0 sum", []string{"replicator", "--attacker", a, "--defender", d, "--x0", "0.5,0.6"}, "--x0 sums to"},
		{"y0 negative", []string{"replicator", "--attacker", a, "--defender", d, "--y0", "-0.5,1.5"}, "--y0 entry 1 is -0.5"},
		{"y0 word", []string{"replicator", "--attacker", a, "--defender", d, "--y0", "a,b"}, `--y0 entry 1 "a" is not a number`},
		{"negative t-max", []string{"replicator", "--attacker", a, "--defender", d, "--t-max", "-1"}, "--t-max"},
		{"bad t-max", []string{"replicator", "--attacker", a, "--defender", d, "--t-max", "soon"}, "t-max"},
		{"bad output", []string{"nash", "--attacker", a, "--defender", d, "-o", "xml"}, "-o must be table or json"},
		{"missing defender", []string{"nash", "--attacker", a}, "--attacker and --defender are both required"},
		{"missing file", []string{"nash", "--attacker", a, "--defender", filepath.Join(dir, "nope.csv")}, "--defender"},
		{"bad csv", []string{"nash", "--attacker", bad, "--defender", d}, "bad.csv:2:2: not a number \"x\""},
		{"shape mismatch", []string{"replicator", "--attacker", a3, "--defender", d}, "is 3×3 but --defender"},
		{"shape mismatch nash", []string{"nash", "--attacker", a, "--defender", d3}, "is 2×2 but --defender"},
		{"unknown flag", []string{"nash", "--attacker", a, "--defender", d, "--bogus"}, "unknown flag"},
		{"argument", []string{"nash", "--attacker", a, "--defender", d, "extra"}, "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runGame(t, tc.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2; stderr %s", code, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q lacks %q", errOut, tc.want)
			}
		})
	}
}

func TestGameParent(t *testing.T) {
	code, _, help := runGame(t) // no subcommand: the help on stderr, a usage error
	if code != 2 || !strings.Contains(help, "replicator") || !strings.Contains(help, "nash") {
		t.Errorf("exit %d, help:\n%s", code, help)
	}
	code, _, errOut := runGame(t, "bogus")
	if code != 2 || !strings.Contains(errOut, `unknown command "bogus" for "proteus game"`) {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

// FuzzGameParseMix: the --x0/--y0 parser either returns a probability vector of the requested
// length summing to 1 within 1e-9, or a usage error naming the flag.
func FuzzGameParseMix(f *testing.F) {
	for _, s := range []string{"0.5,0.5", "1,0,0", "0.2, 0.8", "1", "-0,1", "NaN,1", "0.5;0.5", "", ",", "1e-400,1"} {
		f.Add(s, 2)
	}
	f.Fuzz(func(t *testing.T, s string, k int) {
		if k < 1 || k > 64 {
			return
		}
		p, err := parseMix("--x0", s, k, "attacker")
		if err != nil {
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--x0") {
				t.Fatalf("error %v", err)
			}
			return
		}
		if len(p) != k {
			t.Fatalf("%q: %d entries, want %d", s, len(p), k)
		}
		sum := 0.0
		for _, v := range p {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("%q: entry %v", s, v)
			}
			sum += v
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Fatalf("%q: sum %v", s, sum)
		}
	})
}
