package config

import (
	"net"
	"regexp"

	"github.com/proteus-defense/proteus/strictyaml"
)

// API is the agent's local control API (status, rotate, quarantine, metrics).
type API struct {
	Listen string `yaml:"listen"` // host:port; default 127.0.0.1:9090
	// AllowedHosts are host names a request's Host header may name besides IP literals and
	// localhost (a reverse proxy's name); any other name is refused (421), which defeats DNS
	// rebinding.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// Socket serves the API (and the dashboard) on the unix socket DATA-DIR/api.sock too, mode
	// 0600, which the CLI then uses: only the agent's user reaches it, over no network.
	Socket bool `yaml:"socket"`
}

func (a *API) applyDefaults() {
	if a.Listen == "" {
		a.Listen = "127.0.0.1:9090"
	}
}

func (a *API) validate(field string, p *strictyaml.Problems) {
	checkListen(field+".listen", a.Listen, p)
	for i, h := range a.AllowedHosts {
		if !hostNameRe.MatchString(h) {
			p.Addf(indexed(field+".allowed_hosts", i), "must be a DNS name (letters, digits, '-', '.'), got %q", h)
		}
	}
}

var hostNameRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$`)

// checkListen records a problem unless addr is a host:port with a numeric port.
func checkListen(field, addr string, p *strictyaml.Problems) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.Addf(field, "must be host:port, got %q", addr)
		return
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
		p.Addf(field, "bad port in %q", addr)
	}
}
