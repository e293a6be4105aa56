package config

import (
	"maps"
	"slices"
	"strings"

	"github.com/proteus-defense/proteus/strictyaml"
)

// GatewayIdentity is what the voting gateway presents of itself under one deception signal:
// the Server value of every answer (empty: none). The gateway's own pages and its one field
// order are the same under every signal; only what a fingerprinter reads as the version
// changes.
type GatewayIdentity struct {
	Server string `yaml:"server"`
}

// validateIdentities refuses identities that would let a header be forged (a Server value
// that is not one line), a start signal without an identity, and server_header set next to
// identities (which one would the gateway present?).
func (x *Gateway) validateIdentities(field string, p *strictyaml.Problems) {
	if len(x.Identities) == 0 {
		if x.Signal != "" {
			p.Addf(field+".signal", "needs identities: a Server value per signal")
		}
		if x.SignalAsset != "" {
			p.Addf(field+".signal_asset", "needs identities: a Server value per signal")
		}
		return
	}
	if x.ServerHeader != "" {
		p.Addf(field+".server_header", "must be empty when identities are set (they give the Server value per signal)")
	}
	for _, sig := range slices.Sorted(maps.Keys(x.Identities)) {
		f := field + ".identities." + sig
		if sig == "" {
			p.Addf(f, "signal ID must not be empty")
		}
		if s := x.Identities[sig].Server; strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) || len(s) > maxDecoyBanner {
			p.Addf(f+".server", "must be one line of at most %d visible characters, got %q", maxDecoyBanner, s)
		}
	}
	if _, ok := x.Identities[x.Signal]; !ok {
		p.Addf(field+".signal", "must be a key of identities, got %q", x.Signal)
	}
}
