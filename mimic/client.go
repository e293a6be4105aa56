package mimic

import (
	"net/http"
	"net/netip"
	"strings"
)

// Who the client is. Behind a load balancer or CDN every request comes from the proxy's
// address, and the client's is in X-Forwarded-For or Forwarded; those headers are anyone's to
// write, so the gateway reads them only when the peer is a configured trusted proxy, and then
// takes the rightmost address that is not itself a trusted proxy (what the nearest untrusted
// hop said, the only entry no client can forge). The client address is what the blocklist,
// the per-client limit, dissent events and the access log use.

// clientOf returns r's client address (unmapped); ok is false when r.RemoteAddr is not an
// address (a handler called directly, in tests).
func (g *Gateway) clientOf(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	a := ap.Addr().Unmap()
	if len(g.o.TrustedProxies) == 0 || !g.trusted(a) {
		return a, true
	}
	hops := forwardedFor(r.Header)
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := parseHop(hops[i])
		if err != nil {
			return a, true // a malformed entry: nothing left of it can be believed
		}
		if !g.trusted(h) {
			return h, true
		}
		a = h
	}
	return a, true
}

func (g *Gateway) trusted(a netip.Addr) bool {
	for _, p := range g.o.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedFor lists the hops of the Forwarded header's for= parameters (RFC 7239) when there
// is one, else of X-Forwarded-For, oldest first.
func forwardedFor(h http.Header) []string {
	var hops []string
	if fw := h["Forwarded"]; len(fw) > 0 {
		for _, line := range fw {
			for _, elem := range strings.Split(line, ",") {
				for _, pair := range strings.Split(elem, ";") {
					k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
					if ok && strings.EqualFold(k, "for") {
						hops = append(hops, strings.Trim(v, `"`))
					}
				}
			}
		}
		return hops
	}
	for _, line := range h["X-Forwarded-For"] {
		for _, v := range strings.Split(line, ",") {
			hops = append(hops, strings.TrimSpace(v))
		}
	}
	return hops
}

// parseHop reads one forwarded address: a bare IPv4 or IPv6 address, or with a port
// ("192.0.2.1:80", "[2001:db8::1]:80", the forms Forwarded uses).
func parseHop(s string) (netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), nil
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err
}
