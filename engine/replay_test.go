package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/game"
)

// replayedAttack is a multi-stage attack from one address as Suricata reports it: a scan
// (S1, a1), two exploit attempts (S2, a3) and command and control (S3, a4), a minute apart.
var replayedAttack = []struct{ sig, category string }{
	{"ET SCAN Nmap Scripting Engine User-Agent Detected", "Attempted Information Leak"},
	{"ET EXPLOIT Apache Struts RCE", "Attempted Administrator Privilege Gain"},
	{"ET EXPLOIT Apache Struts RCE", "Attempted Administrator Privilege Gain"},
	{"ET MALWARE Win32 beacon", "A Network Trojan was detected"},
}

// stageScore is one decision of the replay scored in the model's payoffs.
type stageScore struct {
	stage, attack, game string
	// ud and ua are the defender's and the attacker's payoffs against the replayed attack:
	// [0] the game's defense, [1] always the stage's first defense, [2] always its second.
	ud, ua [3]float64
}

// replayScores replays the attack through the engine (live parameters from the pool: c* 2,
// 0.05 rebuilds/s) and scores each decision's defense, and the two fixed defenses, with
// game.Payoffs on the model the engine solved (the live one), for the defender type and signal
// the engine chose.
func replayScores(t *testing.T) []stageScore {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := newRig(t, t.TempDir(), &now)
	defer r.close()
	m := paperModel(t)
	var out []stageScore
	for _, a := range replayedAttack {
		advance(&now, time.Minute)
		d := r.e.Handle(context.Background(), parse(t, eveLine("203.0.113.66", a.sig, a.category, 1)))
		if d == nil {
			t.Fatalf("%s: no decision", a.sig)
		}
		var det Detail
		if err := json.Unmarshal(d.Detail, &det); err != nil || det.Choice == nil {
			t.Fatalf("detail %s: %v", d.Detail, err)
		}
		p, err := game.Payoffs(liveModel(m, det.Live), d.Stage, det.Choice.DefenderType, det.Choice.Signal)
		if err != nil {
			t.Fatal(err)
		}
		s := stageScore{stage: d.StageID, attack: d.Attack, game: d.Strategy}
		for i, def := range []string{d.Strategy, p.Defenses[0], p.Defenses[1]} {
			ua, ud, ok := p.Payoff(d.Attack, def)
			if !ok {
				t.Fatalf("stage %s has no payoff for %s/%s", d.StageID, d.Attack, def)
			}
			s.ud[i], s.ua[i] = ud, ua
		}
		out = append(out, s)
	}
	return out
}

// Must show (issue 11): the replayed multi-stage attack scored in the model's payoffs, the
// game-chosen defense against a fixed defense. The figures go to docs/benchmarks.md:
//
//	go test -v -run TestReplayedAttackScoredInPayoffs ./engine/
func TestReplayedAttackScoredInPayoffs(t *testing.T) {
	scores := replayScores(t)
	var sum [3]float64
	var sumA [3]float64
	var b strings.Builder
	fmt.Fprintf(&b, "%-6s %-7s %-5s %10s %10s %10s   %10s %10s %10s\n", "stage", "attack", "game",
		"U_d game", "U_d first", "U_d second", "U_a game", "U_a first", "U_a second")
	for _, s := range scores {
		fmt.Fprintf(&b, "%-6s %-7s %-5s %10.2f %10.2f %10.2f   %10.2f %10.2f %10.2f\n", s.stage, s.attack, s.game,
			s.ud[0], s.ud[1], s.ud[2], s.ua[0], s.ua[1], s.ua[2])
		for i := range sum {
			sum[i] += s.ud[i]
			sumA[i] += s.ua[i]
		}
	}
	fmt.Fprintf(&b, "%-20s %10.2f %10.2f %10.2f   %10.2f %10.2f %10.2f\n", "total", sum[0], sum[1], sum[2], sumA[0], sumA[1], sumA[2])
	t.Logf("replayed attack, payoffs per decision:\n%s", b.String())
	// The stages follow the attack, and the game's defense is one of the stage's.
	want := []string{"S1", "S2", "S2", "S3"}
	for i, s := range scores {
		if s.stage != want[i] {
			t.Fatalf("decision %d at %s, want %s", i, s.stage, want[i])
		}
		if s.ud[0] != s.ud[1] && s.ud[0] != s.ud[2] {
			t.Fatalf("decision %d: the game's defense %s is neither of the stage's", i, s.game)
		}
	}
	// No fixed defense does better for the defender over the whole replay than the game's.
	if sum[0] < math.Max(sum[1], sum[2])-1e-9 {
		t.Errorf("a fixed defense beats the game's over the replay: %v", sum)
	}
}
