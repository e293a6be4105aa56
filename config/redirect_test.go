package config

import (
	"strings"
	"testing"
)

// A redirect without a decoy executor (or over the proxy frontend) would silently serve the
// vote to a suspect, and a decoy without a redirect is never served: both refused, like a
// decoy named as a voting variant.
func TestRedirectNeedsDecoyExecutor(t *testing.T) {
	const base = `version: 1
pool:
  variants: [{name: a, image: builtin:demo, command: [x]}]
%s
engine:
  model: m.yaml
  redirect: {ttl: 1m}
  assets: [{name: web, device: web}]
  rules: [{sensor: gateway, kind: dissent, stage: S1, attack: a1, weight: 0.5}]
`
	decoy := "  decoy: {name: honey, image: builtin:demo, command: [x]}"
	for _, c := range []struct{ doc, want string }{
		{strings.Replace(base, "%s\n", "", 1), "engine.redirect: needs pool.decoy"},
		{strings.Replace(base, "%s", strings.Replace(decoy, "honey", "a", 1), 1), `pool.decoy.name: is the name of variants[0]`},
		{strings.Replace(base, "%s", decoy+"\ngateway: {frontend: proxy}", 1), "engine.redirect: needs gateway.frontend vote"},
		{strings.Replace(strings.Replace(base, "%s", decoy, 1), "  redirect: {ttl: 1m}\n", "", 1), "pool.decoy: is served only to redirected clients"},
		{strings.Replace(base, "%s", strings.Replace(decoy, "command: [x]", "driver: process", 1), 1), "pool.decoy: command: is required"},
	} {
		if _, err := Parse("agent.yaml", []byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse:\n%s\nerr = %v, want %q", c.doc, err, c.want)
		}
	}
	if _, err := Parse("agent.yaml", []byte(strings.Replace(base, "%s", decoy, 1))); err != nil {
		t.Fatalf("a good config: %v", err)
	}
}
