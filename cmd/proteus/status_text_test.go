package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/enclave"
	"github.com/proteus-defense/proteus/game"
)

// The β_y lines say what β_y is, its inputs with their units, and why it is low.
func TestPrintDefenseSuccess(t *testing.T) {
	// three executors, one rebuild every 20 s in all: each one every 60 s
	st := &api.Status{Executors: make([]api.ExecutorStatus, 3), CStar: 1, RotationRate: 0.05, AttackIntensity: 0.5}
	st.DefenseSuccess = game.DefenseSuccess(1, 0.05, 0.5)
	var b bytes.Buffer
	printDefenseSuccess(&b, st)
	for _, want := range []string{
		"defense success β_y = 0.0500: the game model's odds that moving the target defeats an attack\n  (a gauge for comparing settings",
		"tanh(c*·a/(2π)) with c* = 1, a = 0.0500 reconfigurations/s measured, attack intensity π = 0.50",
		"low because each executor is rebuilt only about every 1m0s",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("%q lacks %q", b.String(), want)
		}
	}
	st.RotationRate, st.CStar = 2, 2
	st.DefenseSuccess = game.DefenseSuccess(2, 2, 0.5)
	b.Reset()
	printDefenseSuccess(&b, st)
	if strings.Contains(b.String(), "low because") || !strings.Contains(b.String(), "β_y = 0.9993") {
		t.Errorf("high β_y: %q", b.String())
	}
}

// A publish whose block the actuator refused must not read as if it took effect here.
func TestPublishedOutcome(t *testing.T) {
	cases := []struct {
		rec        enclave.DecisionRecord
		want, deny string
	}{
		{enclave.DecisionRecord{Decision: enclave.Act, Applied: true, Evidence: 0.9}, "here: act, countermeasure applied (evidence 0.900)", "not applied"},
		{enclave.DecisionRecord{Decision: enclave.Act, Error: "countermeasure/nftables: port/2222 refused"}, "here: act decided but NOT applied: countermeasure/nftables: port/2222 refused", "countermeasure applied"},
		{enclave.DecisionRecord{Decision: enclave.Act}, "here: act decided but NOT applied (a block on it is already in force", "countermeasure applied"},
		{enclave.DecisionRecord{Decision: enclave.Defer, Why: "protected target"}, "here: defer (protected target), no block applied", "countermeasure applied"},
	}
	for _, c := range cases {
		got := publishedOutcome(c.rec)
		if !strings.Contains(got, c.want) || strings.Contains(got, c.deny) {
			t.Errorf("%+v: %q; want %q without %q", c.rec, got, c.want, c.deny)
		}
	}
}

func TestPseudoCommit(t *testing.T) {
	for v, want := range map[string]string{
		"v0.0.0-20261202135654-01cda51d0232+dirty": "01cda51d0232",
		"v1.2.4-0.20261202135654-01cda51d0232":     "01cda51d0232",
		"v1.2.3":                                   "unknown",
		"dev":                                      "unknown",
		"v1.2.3-rc-ZZZZZZZZZZZZ":                   "unknown",
	} {
		if got := pseudoCommit(v); got != want {
			t.Errorf("pseudoCommit(%q) = %q, want %q", v, got, want)
		}
	}
}
