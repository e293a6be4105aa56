package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/strictyaml"
)

// The decoys' banner sets are checked against the model's signals at start, located in the
// config file: a missing set for a signal the game can send, and a set for a signal the
// model does not have.
func TestCheckDecoySignalsAgainstModel(t *testing.T) {
	model, err := filepath.Abs(modelFile)
	if err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`version: 1
pool:
  variants: [{name: a, driver: process, image: builtin:demo, command: [x]}]
sensors:
  decoy:
    listen: [{addr: "127.0.0.1:2222", service: ssh}]
    banners:
      mH: {ssh: OpenSSH_9.6}
      mLow: {ssh: OpenSSH_7.4}
engine:
  model: %q
  assets: [{name: web, device: web}]
  rules: [{sensor: decoy, kind: connect, stage: S1, attack: a1, weight: 0.9}]
`, model)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(path, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	err = Check(cfg, path)
	if !errors.Is(err, strictyaml.ErrInvalid) {
		t.Fatalf("Check: %v", err)
	}
	for _, want := range []string{`agent.yaml:8:7: sensors.decoy.banners: no banner set for signal "mL"`,
		`agent.yaml:9:13: sensors.decoy.banners.mLow: the model has no signal "mLow"; its signals are mH, mL`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
	ok := strings.Replace(doc, "mLow:", "mL:", 1)
	if cfg, err = config.Parse(path, []byte(ok)); err != nil {
		t.Fatal(err)
	}
	if err := Check(cfg, path); err != nil {
		t.Fatalf("Check of a good config: %v", err)
	}
}

// The gateway's identities are checked like the decoys' banner sets, and the asset whose
// signal it follows must be an engine asset (else it would never switch); server_header next
// to identities, or a Server value that would inject a header, is refused by config.
func TestCheckGatewayIdentities(t *testing.T) {
	model, err := filepath.Abs(modelFile)
	if err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`version: 1
pool:
  variants: [{name: a, driver: process, image: builtin:demo, command: [x]}]
gateway:
  signal_asset: shopp
  identities:
    mH: {server: nginx/1.26.0}
    mLow: {server: Apache/2.2.15}
engine:
  model: %q
  assets: [{name: web, device: web}]
  rules: [{sensor: gateway, kind: dissent, stage: S1, attack: a1, weight: 0.9}]
`, model)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	cfg, err := config.Parse(path, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	err = Check(cfg, path)
	for _, want := range []string{`gateway.identities: no identity for signal "mL"`,
		`gateway.identities.mLow: the model has no signal "mLow"`, `gateway.signal_asset: is not an engine asset`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
	for _, bad := range []struct{ doc, want string }{
		{strings.Replace(doc, "gateway:\n", "gateway:\n  server_header: x\n", 1), "gateway.server_header: must be empty when identities are set"},
		{strings.Replace(doc, "nginx/1.26.0", `"nginx\r\nX-Evil: 1"`, 1), "gateway.identities.mH.server: must be one line"},
		{strings.Replace(doc, "gateway:\n", "gateway:\n  signal: mX\n", 1), `gateway.signal: must be a key of identities, got "mX"`},
	} {
		if _, err := config.Parse(path, []byte(bad.doc)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("config.Parse: %v, want %q", err, bad.want)
		}
	}
	ok := strings.Replace(strings.Replace(doc, "mLow:", "mL:", 1), "shopp", "web", 1)
	if cfg, err = config.Parse(path, []byte(ok)); err != nil {
		t.Fatal(err)
	}
	if err := Check(cfg, path); err != nil {
		t.Fatalf("Check of a good config: %v", err)
	}
}
