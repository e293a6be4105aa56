package config

import (
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/proteus-defense/proteus/strictyaml"
)

// Decoy is the sensors.decoy section: listeners on ports nothing real uses, each presenting
// one service's greeting (chaff). Which greeting depends on the game's current deception
// signal: Banners holds one banner set per signal (the model's signal IDs, e.g. mH and mL),
// and the decoys switch sets when the engine changes the signal of Asset. Every connection is
// reconnaissance evidence (sensor "decoy", kind "connect").
type Decoy struct {
	// Listen are the decoys: an address and the service it impersonates.
	Listen []DecoyListener `yaml:"listen"`
	// Banners maps a signal ID to the identity presented per service (the version string an
	// SSH, SMTP or MySQL greeting, an HTTP Server header or a Redis INFO carries).
	Banners map[string]map[string]string `yaml:"banners"`
	// Signal is the banner set used until the engine sends one (a key of Banners); default
	// the first key in sorted order.
	Signal string `yaml:"signal"`
	// Asset is the engine asset whose signal the decoys follow and whom their evidence
	// concerns; "" follows every asset's signal changes and lets the engine pick the asset.
	Asset string `yaml:"asset"`
	// Hosts, when set, are fake hosts (chaff, as CyberChaff's): addresses nothing real uses,
	// which the agent (root) puts on a dummy interface of their own while the decoys run, so
	// decoys can listen there (listen addresses on them). An address an interface of this host
	// already has is refused at start.
	Hosts *DecoyHosts `yaml:"hosts"`
	// MaxConns bounds the connections served at once over all decoys (default 64); more are
	// closed at once and still reported.
	MaxConns int `yaml:"max_conns"`
	// ReadBytes bounds what is read from one connection (default 512).
	ReadBytes int `yaml:"read_bytes"`
	// Timeout bounds one connection's whole life (default 2s): a slow sender holds a slot at
	// most this long.
	Timeout time.Duration `yaml:"timeout"`
}

// DecoyHosts are the fake hosts of sensors.decoy.hosts: Addresses on the dummy interface
// Interface (default proteus-chaff, created at start and deleted at stop), or on the loopback
// interface when Interface is lo (labelled lo:chaff, removed at stop) for a kernel without
// dummy interfaces.
type DecoyHosts struct {
	Interface string   `yaml:"interface"`
	Addresses []string `yaml:"addresses"`
}

var ifaceNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)

func (h *DecoyHosts) validate(field string, p *strictyaml.Problems) {
	if !ifaceNameRe.MatchString(h.Interface) {
		p.Addf(field+".interface", "must be an interface name of 1-15 letters, digits, '_', '.' or '-', got %q", h.Interface)
	}
	if len(h.Addresses) == 0 {
		p.Addf(field+".addresses", "at least one address is required")
	}
	seen := map[netip.Addr]int{}
	for i, a := range h.Addresses {
		f := indexed(field+".addresses", i)
		ip, err := netip.ParseAddr(a)
		switch {
		case err != nil || ip.Zone() != "":
			p.Addf(f, "must be an IP address (no prefix, no zone), got %q", a)
		case ip.Is4In6():
			p.Addf(f, "write the IPv4 address as such, got %q", a)
		case !ip.IsGlobalUnicast() || ip.IsLoopback():
			p.Addf(f, "must be a unicast address outside loopback and link-local, got %s", ip)
		default:
			if j, dup := seen[ip]; dup {
				p.Addf(f, "%s is already addresses[%d]", ip, j)
			}
			seen[ip] = i
		}
	}
}

// DecoyListener is one decoy port.
type DecoyListener struct {
	Addr    string `yaml:"addr"`    // host:port, e.g. 0.0.0.0:2222
	Service string `yaml:"service"` // one of DecoyServices
}

// DecoyServices are the protocols a decoy can greet in.
var DecoyServices = []string{"http", "mysql", "redis", "smtp", "ssh"}

// Defaults and bounds of sensors.decoy.
const (
	DefaultDecoyMaxConns  = 64
	DefaultDecoyReadBytes = 512
	DefaultDecoyTimeout   = 2 * time.Second
	maxDecoyMaxConns      = 4096
	maxDecoyReadBytes     = 4096
	maxDecoyTimeout       = time.Minute
	maxDecoyBanner        = 200
)

func (d *Decoy) applyDefaults() {
	if d.MaxConns == 0 {
		d.MaxConns = DefaultDecoyMaxConns
	}
	if d.ReadBytes == 0 {
		d.ReadBytes = DefaultDecoyReadBytes
	}
	if d.Timeout == 0 {
		d.Timeout = DefaultDecoyTimeout
	}
	if d.Hosts != nil && d.Hosts.Interface == "" {
		d.Hosts.Interface = "proteus-chaff"
	}
	if d.Signal == "" && len(d.Banners) > 0 {
		keys := make([]string, 0, len(d.Banners))
		for k := range d.Banners {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		d.Signal = keys[0]
	}
}

func (d *Decoy) validate(field string, p *strictyaml.Problems) {
	if len(d.Listen) == 0 {
		p.Addf(field+".listen", "at least one decoy (addr: and service:) is required")
	}
	seen := map[string]int{}
	services := map[string]bool{}
	for i, l := range d.Listen {
		f := indexed(field+".listen", i)
		if ap, err := netip.ParseAddrPort(l.Addr); err != nil {
			p.Addf(f+".addr", "must be IP:port (e.g. 127.0.0.1:2222), got %q", l.Addr)
		} else if ap.Port() == 0 {
			p.Addf(f+".addr", "port must be in [1, 65535], got 0")
		} else if j, dup := seen[ap.String()]; dup {
			p.Addf(f+".addr", "%s is already listen[%d]", ap, j)
		} else {
			seen[ap.String()] = i
		}
		if !slices.Contains(DecoyServices, l.Service) {
			p.Addf(f+".service", "must be one of %s, got %q", strings.Join(DecoyServices, ", "), l.Service)
		}
		services[l.Service] = true
	}
	if len(d.Banners) == 0 {
		p.Addf(field+".banners", "give one banner set per signal of the model (e.g. mH: and mL:)")
	}
	for sig, set := range d.Banners {
		f := field + ".banners." + sig
		if sig == "" {
			p.Addf(f, "signal ID must not be empty")
		}
		for svc, b := range set {
			if !slices.Contains(DecoyServices, svc) {
				p.Addf(f+"."+svc, "unknown service; must be one of %s", strings.Join(DecoyServices, ", "))
				continue
			}
			if msg := decoyBannerProblem(b); msg != "" {
				p.Addf(f+"."+svc, "%s", msg)
			}
		}
		for svc := range services {
			if _, ok := set[svc]; !ok && slices.Contains(DecoyServices, svc) {
				p.Addf(f, "has no %s banner, but a decoy greets in %s", svc, svc)
			}
		}
	}
	if _, ok := d.Banners[d.Signal]; !ok && len(d.Banners) > 0 {
		p.Addf(field+".signal", "must be a key of banners, got %q", d.Signal)
	}
	if d.Hosts != nil {
		d.Hosts.validate(field+".hosts", p)
	}
	if d.MaxConns < 1 || d.MaxConns > maxDecoyMaxConns {
		p.Addf(field+".max_conns", "must be in [1, %d], got %d", maxDecoyMaxConns, d.MaxConns)
	}
	if d.ReadBytes < 1 || d.ReadBytes > maxDecoyReadBytes {
		p.Addf(field+".read_bytes", "must be in [1, %d], got %d", maxDecoyReadBytes, d.ReadBytes)
	}
	if d.Timeout < 10*time.Millisecond || d.Timeout > maxDecoyTimeout {
		p.Addf(field+".timeout", "must be in [10ms, %s], got %s", maxDecoyTimeout, d.Timeout)
	}
}

// decoyBannerProblem says what is wrong with a banner: it goes into protocol greetings, so
// it must be short printable ASCII (no CR/LF that would let it forge protocol lines).
func decoyBannerProblem(b string) string {
	if b == "" {
		return "banner must not be empty"
	}
	if len(b) > maxDecoyBanner {
		return "banner longer than " + strconv.Itoa(maxDecoyBanner) + " bytes"
	}
	for i := 0; i < len(b); i++ {
		if b[i] < 0x20 || b[i] > 0x7e {
			return "banner must be printable ASCII (no control characters, CR or LF)"
		}
	}
	return ""
}
