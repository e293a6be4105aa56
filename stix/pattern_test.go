package stix

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParsePattern(t *testing.T) {
	good := []struct {
		in   string
		want Target
	}{
		{"[ipv4-addr:value = '203.0.113.7']", AddrTarget(netip.MustParseAddr("203.0.113.7"))},
		{"  [ ipv4-addr:value='203.0.113.7' ]  ", AddrTarget(netip.MustParseAddr("203.0.113.7"))},
		{"[ipv4-addr:value = '198.51.100.0/24']", PrefixTarget(netip.MustParsePrefix("198.51.100.0/24"))},
		{"[ipv4-addr:value ISSUBSET '198.51.100.0/24']", PrefixTarget(netip.MustParsePrefix("198.51.100.0/24"))},
		{"[ipv4-addr:value = '203.0.113.7/32']", AddrTarget(netip.MustParseAddr("203.0.113.7"))},
		{"[ipv6-addr:value = '2001:db8::7']", AddrTarget(netip.MustParseAddr("2001:db8::7"))},
		{"[ipv6-addr:value ISSUBSET '2001:db8::/32']", PrefixTarget(netip.MustParsePrefix("2001:db8::/32"))},
		{"[network-traffic:dst_port = 22]", PortTarget(22)},
		{"[network-traffic:dst_port = 65535]", PortTarget(65535)},
	}
	for _, tc := range good {
		got, err := ParsePattern(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.in, got, tc.want)
		}
		// Pattern renders a form that parses back to the same target.
		back, err := ParsePattern(got.Pattern())
		if err != nil || back != got {
			t.Errorf("%q: render %q parses to %+v, %v", tc.in, got.Pattern(), back, err)
		}
	}
	bad := []string{
		"",
		"ipv4-addr:value = '203.0.113.7'",
		"[ipv4-addr:value = '203.0.113.7'] AND [ipv4-addr:value = '203.0.113.8']",
		"[ipv4-addr:value = '203.0.113.7' OR ipv4-addr:value = '203.0.113.8']",
		"[ipv4-addr:value = '203.0.113.7'] WITHIN 5 SECONDS",
		"[ipv4-addr:value != '203.0.113.7']",
		"[ipv4-addr:value LIKE '203.%']",
		"[ipv4-addr:value = \"203.0.113.7\"]",
		"[ipv4-addr:value = '203.0.113.7\\'']",
		"[ipv4-addr:value = '203.0.113.256']",
		"[ipv4-addr:value = '198.51.100.1/24']",
		"[ipv4-addr:value = '2001:db8::7']",
		"[ipv6-addr:value = '203.0.113.7']",
		"[ipv6-addr:value = '::ffff:203.0.113.7']",
		"[ipv6-addr:value = 'fe80::1%eth0']",
		"[domain-name:value = 'example.com']",
		"[network-traffic:src_port = 22]",
		"[network-traffic:dst_port = 0]",
		"[network-traffic:dst_port = 022]",
		"[network-traffic:dst_port = 65536]",
		"[network-traffic:dst_port = -1]",
		"[network-traffic:dst_port = '22']",
		"[network-traffic:dst_port ISSUBSET 22]",
		"[network-traffic:dst_port = 22 ]]",
	}
	for _, in := range bad {
		if got, err := ParsePattern(in); err == nil || !errors.Is(err, ErrPattern) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: got %+v, %v; want ErrPattern", in, got, err)
		}
	}
}

func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"[ipv4-addr:value = '203.0.113.7']", "[ipv6-addr:value ISSUBSET '2001:db8::/32']",
		"[network-traffic:dst_port = 22]", "[a=b]", "[]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParsePattern(s)
		if err != nil {
			return
		}
		if !tg.Valid() {
			t.Fatalf("%q parsed to invalid target %+v", s, tg)
		}
		back, err := ParsePattern(tg.Pattern())
		if err != nil || back != tg {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, tg, tg.Pattern(), back, err)
		}
	})
}

func TestCheckTarget(t *testing.T) {
	tests := []struct {
		target string
		opts   DecodeOptions
		ok     bool
	}{
		{"203.0.113.7", DecodeOptions{}, true},
		{"198.51.0.0/16", DecodeOptions{}, true},
		{"198.0.0.0/8", DecodeOptions{}, false},
		{"198.0.0.0/8", DecodeOptions{MinPrefixLen4: 8}, true},
		{"2001:db8::/32", DecodeOptions{}, true},
		{"2001::/16", DecodeOptions{}, false},
		{"127.0.0.1", DecodeOptions{}, false},
		{"127.1.0.0/16", DecodeOptions{}, false},
		{"0.0.0.0", DecodeOptions{}, false},
		{"224.0.0.1", DecodeOptions{}, false},
		{"255.255.255.255", DecodeOptions{}, false},
		{"::1", DecodeOptions{}, false},
		{"::", DecodeOptions{}, false},
		{"ff02::1", DecodeOptions{}, false},
		{"fe80::1", DecodeOptions{}, true},
		{"10.0.0.1", DecodeOptions{}, true},
		{"port/22", DecodeOptions{}, true},
	}
	for _, tc := range tests {
		var tg Target
		switch {
		case tc.target == "port/22":
			tg = PortTarget(22)
		case strings.Contains(tc.target, "/"):
			tg = PrefixTarget(netip.MustParsePrefix(tc.target))
		default:
			tg = AddrTarget(netip.MustParseAddr(tc.target))
		}
		err := CheckTarget(tg, tc.opts)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrTarget) {
			t.Errorf("%s: err %v, want ok=%v", tc.target, err, tc.ok)
		}
	}
}
