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

// checkDoc is the set-up of the config checks below: doc, a config with %q for the model's
// path, written as agent.yaml, parsed and passed to Check; it returns the config's path, the
// text and Check's error.
func checkDoc(t *testing.T, doc string) (path, text string, err error) {
	t.Helper()
	model, err := filepath.Abs(modelFile)
	if err != nil {
		t.Fatal(err)
	}
	text = fmt.Sprintf(doc, model)
	path = filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, text, checkText(t, path, text)
}

// checkText parses text as the config at path and passes it to Check.
func checkText(t *testing.T, path, text string) error {
	t.Helper()
	cfg, err := config.Parse(path, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return Check(cfg, path)
}

// The decoys' banner sets are checked against the model's signals at start, located in the
// config file: a missing set for a signal the game can send, and a set for a signal the
// model does not have.
func TestCheckDecoySignalsAgainstModel(t *testing.T) {
	path, doc, err := checkDoc(t, `version: 1
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
`)
	if !errors.Is(err, strictyaml.ErrInvalid) {
		t.Fatalf("Check: %v", err)
	}
	for _, want := range []string{`agent.yaml:8:7: sensors.decoy.banners: no banner set for signal "mL"`,
		`agent.yaml:9:13: sensors.decoy.banners.mLow: the model has no signal "mLow"; its signals are mH, mL`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
	if err := checkText(t, path, strings.Replace(doc, "mLow:", "mL:", 1)); err != nil {
		t.Fatalf("Check of a good config: %v", err)
	}
}

// The gateway's identities are checked like the decoys' banner sets, and the asset whose
// signal it follows must be an engine asset (else it would never switch); server_header next
// to identities, a Server value that would inject a header, or an unknown page style is
// refused by config.
func TestCheckGatewayIdentities(t *testing.T) {
	path, doc, err := checkDoc(t, `version: 1
pool:
  variants: [{name: a, driver: process, image: builtin:demo, command: [x]}]
gateway:
  signal_asset: shopp
  identities:
    mH: {server: nginx/1.26.0, pages: modern}
    mLow: {server: Apache/2.2.15, pages: classic}
engine:
  model: %q
  assets: [{name: web, device: web}]
  rules: [{sensor: gateway, kind: dissent, stage: S1, attack: a1, weight: 0.9}]
`)
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
		{strings.Replace(doc, "pages: classic", "pages: apache", 1), `gateway.identities.mLow.pages: must be one of plain, modern, classic, got "apache"`},
	} {
		if _, err := config.Parse(path, []byte(bad.doc)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("config.Parse: %v, want %q", err, bad.want)
		}
	}
	if err := checkText(t, path, strings.Replace(strings.Replace(doc, "mLow:", "mL:", 1), "shopp", "web", 1)); err != nil {
		t.Fatalf("Check of a good config: %v", err)
	}
}

// Canaries that no engine rule decides on are refused (their use would be dropped), and so are
// canaries on a voting variant (everyone would be served them) or short enough to turn up in
// honest requests.
func TestCheckCanaries(t *testing.T) {
	path, doc, err := checkDoc(t, `version: 1
pool:
  variants: [{name: a, driver: process, image: builtin:demo, command: [x]}]
  decoy: {name: d, driver: process, image: builtin:demo, command: [x], canaries: [canary-7f3a9c]}
engine:
  model: %q
  assets: [{name: web, device: web}]
  redirect: {ttl: 5m}
  rules: [{sensor: gateway, kind: dissent, stage: S1, attack: a1, weight: 0.9}]
`)
	if err == nil || !strings.Contains(err.Error(), "pool.decoy.canaries: no engine rule decides on a canary's use") {
		t.Fatalf("Check: %v", err)
	}
	good := strings.Replace(doc, "rules: [", "rules: [{sensor: gateway, kind: canary, stage: S1, attack: a1, weight: 0.99}, ", 1)
	if err := checkText(t, path, good); err != nil {
		t.Fatalf("Check of a good config: %v", err)
	}
	for _, bad := range []struct{ doc, want string }{
		{strings.Replace(good, "command: [x]}", "command: [x], canaries: [canary-voted1]}", 1), "pool.variants[0].canaries: only the decoy executor"},
		{strings.Replace(good, "canary-7f3a9c", "abc", 1), "pool.decoy.canaries[0]: must be 8-200 bytes"},
		{strings.Replace(good, "[canary-7f3a9c]", `[canary-7f3a9c, "has a space"]`, 1), "pool.decoy.canaries[1]: must be printable ASCII without spaces"},
	} {
		if _, err := config.Parse(path, []byte(bad.doc)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("config.Parse: %v, want %q", err, bad.want)
		}
	}
}
