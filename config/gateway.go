package config

import "github.com/proteus-defense/proteus/strictyaml"

// Gateway is the `gateway` section: the mimic voting gateway in front of the executors.
type Gateway struct {
	// Listen is the client-facing host:port; default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
}

func (x *Gateway) applyDefaults() {
	if x.Listen == "" {
		x.Listen = "127.0.0.1:8080"
	}
}

func (x *Gateway) validate(field string, p *strictyaml.Problems) {
	checkListen(field+".listen", x.Listen, p)
}
