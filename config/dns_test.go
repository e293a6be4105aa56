package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDNSSection(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := LoadStandaloneDNS(write("good.yaml", "version: 1\ndns:\n  listen: 127.0.0.1:5300\n  backends: [127.0.0.1:5301, 127.0.0.1:5302, \"[::1]:5303\"]\n  ttl_tolerance: 10m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := c.DNS; d.K != 3 || d.UDPSize != 1232 || d.Rate != 200 || d.Burst != 400 || d.TTLTolerance.Minutes() != 10 || d.EjectAfter() != 3 {
		t.Errorf("defaults: %+v", d)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"dns:\n  backends: [resolver.example:53]\n", "dns.backends[0]: must be IP:port"},
		{"dns:\n  backends: [127.0.0.1:53, 127.0.0.1:53]\n", "is given twice"},
		{"dns:\n  backends: [127.0.0.1:1, 127.0.0.1:2]\n", "dns.k: k=3 is more than the 2 backends"},
		{"dns:\n  k: 4\n  quorum: 2\n", "dns.quorum: 2 of k=4 is not a majority"},
		{"dns:\n  udp_size: 100\n", "dns.udp_size: must be 512..65535"},
		{"dns:\n  rate: -5\n", "dns.rate: must be positive, or -1"},
		{"dns:\n  scheduler: fastest\n", "dns.scheduler"},
		{"dns:\n  ttl_tolerence: 1s\n", "ttl_tolerence"},
		{"dns:\n  listen: nowhere\n", "dns.listen: must be host:port"},
	} {
		_, err := LoadStandaloneDNS(write("bad.yaml", "version: 1\n"+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
	// The standalone DNS front's file needs no pool, and the agent's validation sees dns too.
	if _, err := Parse("x.yaml", []byte("version: 1\ndns:\n  udp_size: 1\n")); err == nil || !strings.Contains(err.Error(), "dns.udp_size") {
		t.Errorf("agent config with a bad dns section: %v", err)
	}
}
