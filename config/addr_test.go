package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePrefixOrAddr(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{in: "192.0.2.1", want: "192.0.2.1/32"},
		{in: "2001:db8::1", want: "2001:db8::1/128"},
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: "0.0.0.0/0", want: "0.0.0.0/0"},
		{in: "2001:db8::/32", want: "2001:db8::/32"},
		{in: "::ffff:192.0.2.1", want: "192.0.2.1/32"},
		{in: "::ffff:10.0.0.0/104", want: "10.0.0.0/8"},
		{in: "::ffff:0:0/96", want: "0.0.0.0/0"},
		{in: "::/80", want: "::/80"}, // not a mapped network: stays IPv6
		{in: "10.1.2.3/24", err: "10.1.2.3/24 has host bits set (want 10.1.2.0/24)"},
		{in: "2001:db8::1/64", err: "2001:db8::1/64 has host bits set (want 2001:db8::/64)"},
		{in: "::ffff:10.1.2.3/120", err: "::ffff:10.1.2.3/120 has host bits set (want ::ffff:10.1.2.0/120)"},
		{in: "fe80::1%eth0", err: `must be an address without a zone, got "fe80::1%eth0"`},
		{in: "10.0.0.0/33", err: `must be an address or a CIDR, got "10.0.0.0/33"`},
		{in: "10.0.0/8", err: `must be an address or a CIDR, got "10.0.0/8"`},
		{in: "example.com", err: `must be an address or a CIDR, got "example.com"`},
		{in: "", err: `must be an address or a CIDR, got ""`},
		{in: " 10.0.0.1", err: `must be an address or a CIDR, got " 10.0.0.1"`},
	} {
		p, err := ParsePrefixOrAddr(c.in)
		switch {
		case c.err != "":
			if err == nil || err.Error() != c.err {
				t.Errorf("%q: got %v, %v; want error %q", c.in, p, err, c.err)
			}
		case err != nil || p.String() != c.want:
			t.Errorf("%q: got %v, %v; want %s", c.in, p, err, c.want)
		}
	}
}

// The lists that take "an address or a CIDR" refuse host bits with the same message, located
// by file, line and field.
func TestAddressListsShareOnePolicy(t *testing.T) {
	dir := t.TempDir()
	gw := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(gw, []byte("version: 1\ngateway:\n  backends: [http://127.0.0.1:8081, http://127.0.0.1:8082, http://127.0.0.1:8083]\n  trusted_proxies: [10.1.2.3/24]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, gerr := LoadStandaloneGateway(gw)
	_, eerr := ParseStandaloneEnclave("enclave.yaml", []byte(goodEnclave+"  protect: [10.1.2.3/24]\n"))
	_, cerr := ParseStandaloneEnclave("enclave.yaml", []byte(goodEnclave+"  peer_score: {colocation_whitelist: [127.0.0.1/8]}\n"))
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"trusted_proxies", gerr, "gateway.trusted_proxies[0]: 10.1.2.3/24 has host bits set (want 10.1.2.0/24)"},
		{"protect", eerr, "enclave.protect[0]: 10.1.2.3/24 has host bits set (want 10.1.2.0/24)"},
		{"colocation_whitelist", cerr, "enclave.peer_score.colocation_whitelist[0]: 127.0.0.1/8 has host bits set (want 127.0.0.0/8)"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, c.err, c.want)
		}
	}
	if _, err := ParseStandaloneEnclave("enclave.yaml", []byte(goodEnclave+"  protect: [10.1.2.0/24, 2001:db8::1, \"::ffff:192.0.2.0/120\"]\n")); err != nil {
		t.Errorf("good protect list refused: %v", err)
	}
	if _, err := ParseStandaloneEnclave("enclave.yaml", []byte(goodEnclave+"  peer_score: {colocation_whitelist: [127.0.0.0/8, 2001:db8::1, \"::ffff:10.0.0.0/104\"]}\n")); err != nil {
		t.Errorf("good colocation_whitelist refused: %v", err)
	}
}
