package config

import "github.com/proteus-defense/proteus/strictyaml"

// Enclave is the `enclave` section. It is filled in by the issue that owns it.
type Enclave struct{}

func (x *Enclave) applyDefaults() {}

func (x *Enclave) validate(field string, p *strictyaml.Problems) {}
