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

// engine.redirect.ports send a deferred source's connections to a decoy at the network
// layer: each must name a decoy listening on every address, never a decoy's own port or a
// port twice, and needs nftables; with ports, no decoy executor is needed.
func TestRedirectPorts(t *testing.T) {
	const base = `version: 1
pool:
  variants: [{name: a, image: builtin:demo, command: [x]}]
sensors:
  decoy:
    listen: [{addr: "0.0.0.0:2222", service: ssh}, {addr: "127.0.0.1:2323", service: ssh}, {addr: "[::]:8081", service: http}]
    banners: {mH: {ssh: "OpenSSH_9.6", http: nginx}, mL: {ssh: "OpenSSH_7.4", http: "Apache/2.2.15"}}
engine:
  model: m.yaml
  redirect: {ttl: 1m, ports: [%s]}
  assets: [{name: web, device: web}]
  rules: [{sensor: decoy, kind: connect, stage: S1, attack: a1, weight: 0.5}]
`
	good := strings.Replace(base, "%s", "{port: 22, to: 2222}, {port: 80, to: 8081}", 1)
	cfg, err := Parse("agent.yaml", []byte(good))
	if err != nil {
		t.Fatalf("a good config: %v", err)
	}
	if got := cfg.Engine.Redirect.Ports; len(got) != 2 || got[1] != (RedirectPort{Port: 80, To: 8081}) {
		t.Fatalf("ports %+v", got)
	}
	for _, c := range []struct{ doc, want string }{
		{strings.Replace(base, "%s", "{port: 22, to: 2323}", 1), "engine.redirect.ports[0].to: 2323 must be the port of a sensors.decoy listener on 0.0.0.0 or [::]"},
		{strings.Replace(base, "%s", "{port: 22, to: 9999}", 1), "engine.redirect.ports[0].to: 9999 must be the port"},
		{strings.Replace(base, "%s", "{port: 2323, to: 2222}", 1), "engine.redirect.ports[0].port: 2323 is a decoy's own port"},
		{strings.Replace(base, "%s", "{port: 22, to: 2222}, {port: 22, to: 8081}", 1), "engine.redirect.ports[1].port: 22 is already engine.redirect.ports[0]"},
		{strings.Replace(base, "%s", "{port: 0, to: 2222}", 1), "engine.redirect.ports[0].port: must be a TCP port in [1, 65535], got 0"},
		{strings.Replace(base, "%s", "{port: 22, to: 70000}", 1), "engine.redirect.ports[0].to: must be a TCP port in [1, 65535], got 70000"},
		{strings.Replace(good, "  model: m.yaml\n", "  model: m.yaml\n  nftables: \"off\"\n", 1), "engine.redirect.ports: redirect with nftables, which engine.nftables off turns off"},
		{strings.Replace(base, "%s", "", 1), "engine.redirect: needs pool.decoy"},
	} {
		if _, err := Parse("agent.yaml", []byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse:\n%s\nerr = %v, want %q", c.doc, err, c.want)
		}
	}
}
