package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParsePrefixOrAddr reads "an address or a CIDR", wherever the config takes one
// (gateway.trusted_proxies, enclave.protect): a CIDR ("10.0.0.0/8") or a single address
// ("192.0.2.1", as a /32; "2001:db8::1", as a /128). The policy is the same everywhere:
//
//   - A CIDR with host bits set ("10.1.2.3/24") is an error that names the network
//     ("want 10.1.2.0/24"): it is either a typo for that network or a host written with a
//     mask, and a list that decides whom to trust or what never to block must not guess.
//   - An IPv4-mapped IPv6 form ("::ffff:192.0.2.1", "::ffff:10.0.0.0/104") is read as the
//     IPv4 address or network it maps, so it matches the clients and targets it names
//     (which are compared unmapped).
//   - A zone ("fe80::1%eth0") is refused: a zone is not part of a network's identity.
//
// Errors do not repeat the field's name; the caller adds it.
func ParsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("must be an address or a CIDR, got %q", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%s has host bits set (want %s)", s, p.Masked())
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("must be an address or a CIDR, got %q", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("must be an address without a zone, got %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
