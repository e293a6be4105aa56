package config

import "github.com/proteus-defense/proteus/strictyaml"

// Gateway is the `gateway` section. It is filled in by the issue that owns it.
type Gateway struct{}

func (x *Gateway) applyDefaults() {}

func (x *Gateway) validate(field string, p *strictyaml.Problems) {}
