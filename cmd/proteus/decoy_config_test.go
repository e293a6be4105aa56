package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// decoyListen is one decoy of decoyAgentConfig: an address (host:port) and the service it
// greets in (ssh, mysql, redis, smtp, http).
type decoyListen struct{ addr, service string }

// decoyBanners are the banner sets of the decoy tests: what each service's decoy presents
// under mH (a current, hardened stack) and mL (an older one).
var decoyBanners = map[string][2]string{
	"ssh":   {"OpenSSH_9.6p1 Debian-3", "OpenSSH_7.4"},
	"mysql": {"8.0.36", "5.5.62"},
	"redis": {"7.2.4", "3.2.12"},
	"smtp":  {"mx.example.com ESMTP Postfix (Debian/GNU)", "mail.example.com ESMTP Sendmail 8.14.4/8.14.4"},
	"http":  {"nginx/1.26.0", "Apache/2.2.15 (CentOS)"},
}

// decoyExtra is what one decoy test adds to or changes in decoyAgentConfig's config. Text
// fields are YAML lines without their section's indentation (it is added).
type decoyExtra struct {
	decoy   string        // more fields of sensors.decoy, e.g. "signal: mL"
	sensors string        // more sensors, e.g. an eve sensor
	gateway string        // fields of the gateway section, e.g. identities
	engine  string        // more fields of the engine section, e.g. "redirect: {ttl: 5m}"
	rules   string        // engine.rules items (default: one deciding on every decoy connection)
	block   time.Duration // strategies block for this TTL with nftables on (default: vigilance, nftables off)
	model   string        // the model file (default: the paper's)
	pool    string        // fields put before pool.variants (e.g. a decoy executor)
}

// decoyAgentConfig writes the agent config of a decoy test and returns its path: the default
// config (config/default.yaml), decoys on listen presenting decoyBanners, in asset shop, and
// the engine on the paper's model deciding on every decoy connection; extra adds to it.
func decoyAgentConfig(t *testing.T, listen []decoyListen, extra decoyExtra) string {
	t.Helper()
	model, def := paperModelAndDefaults(t)
	if extra.model != "" {
		model = extra.model
	}
	indent := func(s, by string) string {
		var b strings.Builder
		for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
			if l != "" {
				b.WriteString(by + l + "\n")
			}
		}
		return b.String()
	}
	cfg := string(def)
	if extra.gateway != "" {
		cfg = strings.Replace(cfg, "gateway:\n", "gateway:\n"+indent(extra.gateway, "  "), 1)
	}
	if extra.pool != "" {
		cfg = strings.Replace(cfg, "  variants:\n", indent(extra.pool, "  ")+"  variants:\n", 1)
	}
	var b strings.Builder
	b.WriteString("\nsensors:\n")
	b.WriteString(indent(extra.sensors, "  "))
	b.WriteString("  decoy:\n    asset: shop\n    listen:\n")
	services := map[string]bool{}
	var order []string
	for _, l := range listen {
		fmt.Fprintf(&b, "      - {addr: %q, service: %s}\n", l.addr, l.service)
		if !services[l.service] {
			services[l.service] = true
			order = append(order, l.service)
		}
	}
	b.WriteString(indent(extra.decoy, "    "))
	b.WriteString("    banners:\n")
	for i, sig := range []string{"mH", "mL"} {
		var set []string
		for _, s := range order {
			bn, ok := decoyBanners[s]
			if !ok {
				t.Fatalf("decoyAgentConfig: no banners for service %q", s)
			}
			set = append(set, fmt.Sprintf("%s: %q", s, bn[i]))
		}
		fmt.Fprintf(&b, "      %s: {%s}\n", sig, strings.Join(set, ", "))
	}
	rules := extra.rules
	if rules == "" {
		rules = "- {name: decoy, sensor: decoy, kind: connect, stage: S1, attack: a1, weight: 0.9}"
	}
	nft, d1, d2 := "off", "[{kind: vigilance, level: 1}]", "[{kind: vigilance, level: 2}]"
	if extra.block > 0 {
		nft = "on"
		d1 = fmt.Sprintf("[{kind: block, ttl: %s}]", extra.block)
		d2 = d1
	}
	fmt.Fprintf(&b, "engine:\n  model: %q\n  nftables: %s\n  assets: [{name: shop, device: web}]\n%s  rules:\n%s  strategies:\n    d1: %s\n    d2: %s\n",
		model, nft, indent(extra.engine, "  "), indent(rules, "    "), d1, d2)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(cfg+b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
