package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/strictyaml"
)

const engineYAML = `version: 1
pool:
  variants:
    - {name: a, driver: process, image: builtin:demo, command: [x]}
sensors:
  eve: {path: eve.json}
engine:
  model: ../examples/mttegdm-paper.yaml
  assets:
    - {name: web, device: web, ports: [8080], default: true}
    - {name: db, device: db, ports: [5432]}
  rules:
    - {name: scan, sensor: eve, category: Attempted Information Leak, stage: S1, attack: a1, weight: 0.4}
    - {sensor: eve, signature: "^ET EXPLOIT", max_severity: 2, stage: S2, attack: a3, weight: 0.7}
  strategies:
    d7: [{kind: block, ttl: 5m}]
    d3: [{kind: rotate}, {kind: vigilance, level: 2}]
    d1: [{kind: exec, command: [/usr/local/bin/lock-account, "{source}"]}]
`

func TestEngineConfig(t *testing.T) {
	c, err := Parse("e.yaml", []byte(engineYAML))
	if err != nil {
		t.Fatal(err)
	}
	e := c.Engine
	if !e.Enabled() || len(e.Assets) != 2 || len(e.Rules) != 2 || e.HalfLife != 10*time.Minute || e.Queue != 4096 ||
		e.MinTransition != 0.3 || e.Strategies["d7"][0].TTL != 5*time.Minute || e.Strategies["d1"][0].Command[1] != "{source}" {
		t.Fatalf("engine %+v", e)
	}
	if c.Sensors.EVE.MaxLine != DefaultEVEMaxLine || c.Sensors.EVE.Path != "eve.json" {
		t.Fatalf("sensors %+v", c.Sensors.EVE)
	}
}

func TestLocateProblems(t *testing.T) {
	var p strictyaml.Problems
	p.Addf("engine.rules[1].stage", "unknown stage %q", "S9")
	err := LocateProblems("e.yaml", []byte(engineYAML), p)
	if err == nil || !strings.Contains(err.Error(), "e.yaml:14:") || !errors.Is(err, strictyaml.ErrInvalid) {
		t.Fatalf("err %v", err)
	}
	if LocateProblems("e.yaml", []byte(engineYAML), nil) != nil {
		t.Fatal("no problems, yet an error")
	}
}

// FuzzEngineConfig feeds arbitrary documents through the strict decoder and validation:
// every refusal is an ErrInvalid, and nothing panics.
func FuzzEngineConfig(f *testing.F) {
	f.Add([]byte(engineYAML))
	f.Add([]byte("version: 1\nengine: {model: m, rules: [{sensor: eve, weight: 2}]}\n"))
	f.Add([]byte("version: 1\nengine: {strategies: {d1: [{kind: exec}]}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err != nil {
			if !errors.Is(err, strictyaml.ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		for _, r := range c.Engine.Rules {
			if !(r.Weight > 0 && r.Weight < 1) {
				t.Fatalf("accepted weight %v", r.Weight)
			}
		}
	})
}
