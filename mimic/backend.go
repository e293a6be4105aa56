package mimic

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/proteus-defense/proteus/mimic/voter"
)

// Backend is one executor as the gateway sees it (the voter core's Member); its Addr is the
// executor's base URL, e.g. "http://127.0.0.1:8081", with no path beyond "/".
type Backend = voter.Member

// Backends supplies the current set of healthy executors (see voter.Backends).
type Backends = voter.Backends

// InFlight is optionally implemented by a Backends source that counts requests in flight
// per executor (see voter.InFlight).
type InFlight = voter.InFlight

// Blocklist refuses client addresses with 403 before any fan-out.
type Blocklist interface {
	Blocked(addr netip.Addr) bool
}

// Static is a fixed set of backends for the standalone gateway and for tests.
type Static = voter.Static

// StaticFromURLs builds a Static set from base URLs; IDs are "b1", "b2", ... and the variant
// and the trait "host" come from the URL's host:port.
func StaticFromURLs(urls []string) (Static, error) {
	s := make(Static, 0, len(urls))
	seen := map[string]bool{}
	for i, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("mimic: backend %q: %w", raw, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("mimic: backend %q: want http://host:port or https://host:port", raw)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("mimic: backend %q: must not carry a path, query, fragment or user", raw)
		}
		base := u.Scheme + "://" + u.Host
		if seen[base] {
			return nil, fmt.Errorf("mimic: backend %q given twice", raw)
		}
		seen[base] = true
		s = append(s, Backend{
			ID:      fmt.Sprintf("b%d", i+1),
			Variant: u.Host,
			Addr:    base,
			Traits:  map[string]string{"host": strings.ToLower(u.Hostname()), "port": u.Port()},
		})
	}
	return s, nil
}
