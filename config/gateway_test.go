package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `proteus gateway -c FILE` needs only the gateway section; it is checked as strictly as
// ever, and whatever the file says of other sections is still decoded strictly.
func TestLoadStandaloneGateway(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "version: 1\ngateway:\n  backends: [http://127.0.0.1:8081, http://127.0.0.1:8082, http://127.0.0.1:8083]\n  eject: {for: 5s}\n")
	c, err := LoadStandaloneGateway(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway.Eject.For.String() != "5s" || c.Gateway.EjectAfter() != 3 || c.ValidateStandaloneGateway() != nil {
		t.Fatalf("gateway %+v", c.Gateway)
	}
	if _, err := Load(good); err == nil || !strings.Contains(err.Error(), "pool") {
		t.Errorf("the agent's loader accepted a file without a pool: %v", err)
	}
	for name, tc := range map[string]struct{ text, want string }{
		"bad field":     {"version: 1\ngateway:\n  k: -1\n", "bad-field.yaml:3:6: gateway.k"},
		"unknown field": {"version: 1\ngateway:\n  kk: 3\n", "kk"},
		"no version":    {"gateway:\n  k: 3\n", "version"},
	} {
		if _, err := LoadStandaloneGateway(write(strings.ReplaceAll(name, " ", "-")+".yaml", tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, tc.want)
		}
	}
}
