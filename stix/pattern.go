package stix

import (
	"net/netip"
	"strconv"
	"strings"
)

// ParsePattern parses the only indicator patterns Proteus understands:
//
//	[ipv4-addr:value = '203.0.113.7']
//	[ipv4-addr:value = '198.51.100.0/24']  (also with ISSUBSET instead of =)
//	[ipv6-addr:value = '2001:db8::1']      (and CIDR, as above)
//	[network-traffic:dst_port = 22]
//
// Whitespace around tokens is free; anything else (AND/OR, qualifiers, other objects or
// properties, host bits set in a CIDR, IPv4 written as ipv6-addr) is an error wrapping
// ErrPattern.
func ParsePattern(p string) (Target, error) {
	if len(p) > 256 {
		return Target{}, invalidf(ErrPattern, "pattern longer than 256 bytes")
	}
	s := strings.TrimSpace(p)
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		return Target{}, invalidf(ErrPattern, "pattern %q: want one comparison in [ ]", p)
	}
	s = strings.TrimSpace(s[1 : len(s)-1])
	path, rest := splitToken(s)
	op, value := splitToken(rest)
	if strings.ContainsAny(value, "[]") {
		return Target{}, invalidf(ErrPattern, "pattern %q: want exactly one comparison", p)
	}
	switch path {
	case "ipv4-addr:value", "ipv6-addr:value":
		if op != "=" && op != "ISSUBSET" {
			return Target{}, invalidf(ErrPattern, "pattern %q: operator %q, want = or ISSUBSET", p, op)
		}
		lit, ok := quoted(value)
		if !ok {
			return Target{}, invalidf(ErrPattern, "pattern %q: value must be one quoted address or CIDR", p)
		}
		t, err := parseAddrLiteral(lit, path == "ipv6-addr:value")
		if err != nil {
			return Target{}, invalidf(ErrPattern, "pattern %q: %s", p, err)
		}
		return t, nil
	case "network-traffic:dst_port":
		if op != "=" {
			return Target{}, invalidf(ErrPattern, "pattern %q: operator %q, want =", p, op)
		}
		n, err := parsePort(value)
		if err != nil {
			return Target{}, invalidf(ErrPattern, "pattern %q: %s", p, err)
		}
		return PortTarget(n), nil
	default:
		return Target{}, invalidf(ErrPattern, "pattern %q: object path %q, want ipv4-addr:value, ipv6-addr:value or network-traffic:dst_port", p, path)
	}
}

// Pattern renders t in the form ParsePattern reads back; "" for an invalid target.
func (t Target) Pattern() string {
	switch {
	case t.IsPrefix():
		obj := "ipv4-addr"
		if t.Prefix.Addr().Is6() {
			obj = "ipv6-addr"
		}
		if t.Prefix.IsSingleIP() {
			return "[" + obj + ":value = '" + t.Prefix.Addr().String() + "']"
		}
		return "[" + obj + ":value ISSUBSET '" + t.Prefix.Masked().String() + "']"
	case t.IsPort():
		return "[network-traffic:dst_port = " + strconv.Itoa(int(t.Port)) + "]"
	default:
		return ""
	}
}

// splitToken splits s at the first run of spaces, or before/after an '=' so that
// "a='b'" works too.
func splitToken(s string) (tok, rest string) {
	s = strings.TrimLeft(s, " \t\r\n")
	if strings.HasPrefix(s, "=") {
		return "=", strings.TrimSpace(s[1:])
	}
	i := strings.IndexAny(s, " \t\r\n=")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// quoted returns the inside of a single-quoted literal with no escapes.
func quoted(v string) (string, bool) {
	if len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
		return "", false
	}
	in := v[1 : len(v)-1]
	if strings.ContainsAny(in, "'\\") {
		return "", false
	}
	return in, true
}

type patternError string

func (e patternError) Error() string { return string(e) }

func parseAddrLiteral(lit string, want6 bool) (Target, error) {
	var p netip.Prefix
	if strings.Contains(lit, "/") {
		var err error
		p, err = netip.ParsePrefix(lit)
		if err != nil {
			return Target{}, patternError("bad CIDR " + strconv.Quote(lit))
		}
		if p != p.Masked() {
			return Target{}, patternError("CIDR " + strconv.Quote(lit) + " has host bits set")
		}
	} else {
		a, err := netip.ParseAddr(lit)
		if err != nil || a.Zone() != "" {
			return Target{}, patternError("bad address " + strconv.Quote(lit))
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	switch {
	case want6 && (p.Addr().Is4() || p.Addr().Is4In6()):
		return Target{}, patternError("ipv6-addr value " + strconv.Quote(lit) + " is not an IPv6 address")
	case !want6 && !p.Addr().Is4():
		return Target{}, patternError("ipv4-addr value " + strconv.Quote(lit) + " is not an IPv4 address")
	}
	return Target{Prefix: p}, nil
}

func parsePort(v string) (uint16, error) {
	if v == "" || len(v) > 5 || v[0] == '0' {
		return 0, patternError("port " + strconv.Quote(v) + " must be an integer 1..65535")
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, patternError("port " + strconv.Quote(v) + " must be an integer 1..65535")
		}
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return 0, patternError("port " + strconv.Quote(v) + " must be an integer 1..65535")
	}
	return uint16(n), nil
}
