package config

import (
	"strings"
	"testing"
)

// Fake host addresses must be single unicast addresses outside loopback and link-local, each
// once, on an interface name the kernel takes.
func TestDecoyHostsValidation(t *testing.T) {
	for _, c := range []struct{ hosts, want string }{
		{`{addresses: ["10.9.0.1/24"]}`, "must be an IP address (no prefix, no zone)"},
		{`{addresses: [127.0.0.9]}`, "must be a unicast address outside loopback and link-local"},
		{`{addresses: [169.254.1.1]}`, "must be a unicast address outside loopback and link-local"},
		{`{addresses: [10.9.0.1, 10.9.0.1]}`, "10.9.0.1 is already addresses[0]"},
		{`{addresses: []}`, "at least one address is required"},
		{`{interface: "a-very-long-interface-name", addresses: [10.9.0.1]}`, "must be an interface name"},
	} {
		doc := "version: 1\nsensors:\n  decoy:\n    hosts: " + c.hosts + "\n"
		if _, err := Parse("agent.yaml", []byte(doc)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("hosts %s: err = %v, want %q", c.hosts, err, c.want)
		}
	}
}
