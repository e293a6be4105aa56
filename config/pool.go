package config

import "github.com/proteus-defense/proteus/strictyaml"

// Pool is the `pool` section. It is filled in by the issue that owns it.
type Pool struct{}

func (x *Pool) applyDefaults() {}

func (x *Pool) validate(field string, p *strictyaml.Problems) {}
