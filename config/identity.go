package config

import (
	"maps"
	"slices"
	"strings"

	"github.com/proteus-defense/proteus/strictyaml"
)

// GatewayIdentity is what the voting gateway presents of itself under one deception signal:
// the Server value of every answer (empty: none) and the style of the gateway's own pages
// (errors, refusals: the same whichever executor answered). Its one field order is the same
// under every signal.
type GatewayIdentity struct {
	Server string `yaml:"server"`
	// Pages is the style of the gateway's own pages under this identity: plain (default: one
	// line, "404 Not Found"), modern (a minimal HTML5 page, nothing about the server: a
	// current stack with version tokens off) or classic (an older stack's verbose HTML 2.0
	// page, with the Server value in its address line).
	Pages string `yaml:"pages"`
}

// GatewayPageStyles are the values of gateway.identities.*.pages (mimic.PageStyles).
var GatewayPageStyles = []string{"plain", "modern", "classic"}

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
		if st := x.Identities[sig].Pages; st != "" && !slices.Contains(GatewayPageStyles, st) {
			p.Addf(f+".pages", "must be one of %s, got %q", strings.Join(GatewayPageStyles, ", "), st)
		}
	}
	if _, ok := x.Identities[x.Signal]; !ok {
		p.Addf(field+".signal", "must be a key of identities, got %q", x.Signal)
	}
}
