package mimic

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientOfTrustsOnlyConfiguredProxies(t *testing.T) {
	g := &Gateway{o: Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ff::/48")}}}
	tests := []struct {
		name, remote string
		header       http.Header
		want         string
	}{
		{"no proxy", "203.0.113.5:1000", nil, "203.0.113.5"},
		{"untrusted peer's header ignored", "203.0.113.5:1000", http.Header{"X-Forwarded-For": {"198.51.100.1"}}, "203.0.113.5"},
		{"trusted peer", "10.0.0.2:1000", http.Header{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1"},
		{"spoofed entry before the real one", "10.0.0.2:1000", http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.1"}}, "198.51.100.1"},
		{"chain of trusted proxies", "10.0.0.2:1000", http.Header{"X-Forwarded-For": {"198.51.100.1, 10.1.1.1", "10.2.2.2"}}, "198.51.100.1"},
		{"all trusted", "10.0.0.2:1000", http.Header{"X-Forwarded-For": {"10.1.1.1"}}, "10.1.1.1"},
		{"no header from a trusted peer", "10.0.0.2:1000", nil, "10.0.0.2"},
		{"malformed entry", "10.0.0.2:1000", http.Header{"X-Forwarded-For": {"198.51.100.1, bogus"}}, "10.0.0.2"},
		{"forwarded", "10.0.0.2:1000", http.Header{"Forwarded": {`for=192.0.2.60;proto=http;by=203.0.113.43`}}, "192.0.2.60"},
		{"forwarded ipv6 with port", "[2001:db8:ff::1]:443", http.Header{"Forwarded": {`for="[2001:db8:cafe::17]:4711"`}}, "2001:db8:cafe::17"},
		{"forwarded wins over x-forwarded-for", "10.0.0.2:1000", http.Header{"Forwarded": {"for=192.0.2.60"}, "X-Forwarded-For": {"198.51.100.1"}}, "192.0.2.60"},
		{"mapped peer", "[::ffff:10.0.0.2]:1000", http.Header{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1"},
	}
	for _, tc := range tests {
		a, ok := g.clientOf(&http.Request{RemoteAddr: tc.remote, Header: tc.header})
		if !ok || a.String() != tc.want {
			t.Errorf("%s: %v %v, want %s", tc.name, a, ok, tc.want)
		}
	}
}
