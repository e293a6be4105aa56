package dnsgw

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/proteus-defense/proteus/mimic/voter"
)

// StaticFromAddrs builds a fixed executor set from host:port addresses (IP literals); IDs are
// "d1", "d2", ... and the variant and the traits host and port come from the address.
func StaticFromAddrs(addrs []string) (voter.Static, error) {
	s := make(voter.Static, 0, len(addrs))
	seen := map[string]bool{}
	for i, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return nil, fmt.Errorf("dnsgw: backend %q: want IP:port (%v)", a, err)
		}
		if ap.Port() == 0 {
			return nil, fmt.Errorf("dnsgw: backend %q: port 0", a)
		}
		norm := ap.String()
		if seen[norm] {
			return nil, fmt.Errorf("dnsgw: backend %q given twice", a)
		}
		seen[norm] = true
		host, port, _ := net.SplitHostPort(norm)
		s = append(s, voter.Member{ID: "d" + strconv.Itoa(i+1), Variant: norm, Addr: norm,
			Traits: map[string]string{"host": host, "port": port}})
	}
	return s, nil
}
