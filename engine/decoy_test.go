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
