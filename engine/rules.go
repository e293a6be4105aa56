package engine

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/game"
	"github.com/proteus-defense/proteus/sensor"
	"github.com/proteus-defense/proteus/strictyaml"
)

// rule is a compiled engine.rules entry.
type rule struct {
	config.Rule
	name   string
	sig    *regexp.Regexp
	stage  int // index into the model's stages
	attack int // index into the stage's attacks
}

// match reports whether e satisfies every field the rule gives.
func (r *rule) match(e *sensor.Event) bool {
	switch {
	case r.Sensor != e.Sensor:
	case r.Kind != "" && r.Kind != e.Kind:
	case r.sig != nil && !r.sig.MatchString(e.Signature):
	case r.SignatureID != 0 && r.SignatureID != e.SignatureID:
	case r.Category != "" && !strings.EqualFold(r.Category, e.Category):
	case len(r.Ports) > 0 && !slices.Contains(r.Ports, int(e.DestPort)):
	case r.MaxSeverity > 0 && (e.Severity < 1 || e.Severity > r.MaxSeverity):
	default:
		return true
	}
	return false
}

// compileRules checks every model reference of the engine config against m: problems carry
// the config field paths, for config.LocateProblems.
func compileRules(c config.Engine, m *game.Model) ([]rule, strictyaml.Problems) {
	var p strictyaml.Problems
	stages := map[string]int{}
	for i, s := range m.Stages {
		stages[s.ID] = i
	}
	var out []rule
	for i, rc := range c.Rules {
		f := fmt.Sprintf("engine.rules[%d]", i)
		r := rule{Rule: rc, name: rc.Name}
		if r.name == "" {
			r.name = fmt.Sprintf("rules[%d]", i)
		}
		if rc.Signature != "" {
			r.sig = regexp.MustCompile(rc.Signature) // checked by config
		}
		k, ok := stages[rc.Stage]
		if !ok {
			p.Addf(f+".stage", "unknown stage %q; the model has %s", rc.Stage, ids(len(m.Stages), func(i int) string { return m.Stages[i].ID }))
			continue
		}
		r.stage = k
		r.attack = slices.Index(m.Stages[k].Attacks, rc.Attack)
		if r.attack < 0 {
			p.Addf(f+".attack", "attack %q is not one of stage %s's attacks %v", rc.Attack, rc.Stage, m.Stages[k].Attacks)
			continue
		}
		out = append(out, r)
	}
	devices := map[string]bool{}
	for _, d := range m.Devices {
		devices[d.ID] = true
	}
	for i, a := range c.Assets {
		if !devices[a.Device] {
			p.Addf(fmt.Sprintf("engine.assets[%d].device", i), "unknown device %q; the model has %s", a.Device,
				ids(len(m.Devices), func(i int) string { return m.Devices[i].ID }))
		}
	}
	defenses := map[string]bool{}
	for _, d := range m.Defenses {
		defenses[d.ID] = true
	}
	for id := range c.Strategies {
		if !defenses[id] {
			p.Addf("engine.strategies."+id, "unknown defense %q; the model has %s", id,
				ids(len(m.Defenses), func(i int) string { return m.Defenses[i].ID }))
		}
	}
	if c.DefenderType != "" && !slices.ContainsFunc(m.Types, func(t game.DefenderType) bool { return t.ID == c.DefenderType }) {
		p.Addf("engine.defender_type", "unknown defender type %q; the model has %s", c.DefenderType,
			ids(len(m.Types), func(i int) string { return m.Types[i].ID }))
	}
	return out, p
}

func ids(n int, id func(int) string) string {
	s := make([]string, n)
	for i := range s {
		s[i] = id(i)
	}
	return strings.Join(s, ", ")
}
