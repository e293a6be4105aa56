package config

import (
	"strings"
	"testing"
)

const goodEnclave = `version: 1
enclave:
  enabled: true
  name: lab
  key: ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=
  certificate: member.cert
  listen: [/ip4/0.0.0.0/tcp/4001, /ip4/0.0.0.0/udp/4001/quic-v1]
  bootstrap: [/ip4/192.0.2.10/tcp/4001/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp]
  exposure:
    os: linux
    software: [{name: openssh, version: "9.6"}]
    services: [{port: 22}, {port: 53, protocol: udp}]
  decision: {act: 0.8, defer: 0.2}
  trust: {window: 2m}
`

func TestStandaloneEnclaveConfig(t *testing.T) {
	c, err := ParseStandaloneEnclave("enclave.yaml", []byte(goodEnclave))
	if err != nil {
		t.Fatal(err)
	}
	e := c.Enclave
	if e.Decision.Act != 0.8 || e.Trust.Neutral != 0.5 || e.Trust.Window.Minutes() != 2 || e.Exposure.Services[0].Protocol != "tcp" ||
		e.Control != DefaultEnclaveControl || e.MaxTTL != DefaultEnclaveMaxTTL || e.PeerScore.Graylist != -30 {
		t.Errorf("defaults not applied: %+v", e)
	}
	if err := e.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// Enclave problems are still located by file, line and field.
	bad := strings.Replace(goodEnclave, "act: 0.8", "act: 1.5", 1)
	if _, err := ParseStandaloneEnclave("enclave.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), "enclave.yaml:13:19") ||
		!strings.Contains(err.Error(), "enclave.decision.act") {
		t.Errorf("want a located decision.act problem, got %v", err)
	}
	// Unknown fields stay errors.
	if _, err := ParseStandaloneEnclave("enclave.yaml", []byte(goodEnclave+"  bogus: 1\n")); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown field accepted: %v", err)
	}
}

func TestEnclaveValidateInCode(t *testing.T) {
	var e Enclave
	e.ApplyDefaults()
	if err := e.Validate(); err != nil {
		t.Fatalf("disabled defaults invalid: %v", err)
	}
	e.Enabled, e.Name = true, "lab"
	if err := e.Validate(); err == nil || !strings.Contains(err.Error(), "enclave.key") {
		t.Errorf("enabled without membership: %v", err)
	}
	e.Allowlist = []string{"12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp"}
	if err := e.Validate(); err != nil {
		t.Errorf("allowlist-only: %v", err)
	}
}

func TestEnclaveSealKeysValidated(t *testing.T) {
	c, err := ParseStandaloneEnclave("enclave.yaml", []byte(goodEnclave+"  seal_keys: [seal-2.key, seal-1.key]\n"))
	if err != nil || len(c.Enclave.SealKeys) != 2 {
		t.Fatalf("seal_keys: %+v %v", c, err)
	}
	if _, err := ParseStandaloneEnclave("enclave.yaml", []byte(goodEnclave+"  seal_keys: [\" \"]\n")); err == nil || !strings.Contains(err.Error(), "enclave.seal_keys[0]: must be a file name") {
		t.Errorf("blank seal key file: %v", err)
	}
}

// A configuration in which every other member ignores what one member's sensors saw is
// refused; so is a burst too small to pace within.
func TestEnclaveLoneReportMustDefer(t *testing.T) {
	baseEnclave := strings.Replace(strings.Replace(goodEnclave, "  decision: {act: 0.8, defer: 0.2}\n", "", 1), "  trust: {window: 2m}\n", "", 1)
	for _, c := range []struct{ extra, want string }{
		{"  decision: {act: 0.8, defer: 0.45}\n", "enclave.decision.defer: must be below trust.neutral × 90 % (0.45)"},
		{"  decision: {act: 0.8, defer: 0.35}\n  trust: {neutral: 0.35, established: 0.8}\n", "enclave.decision.defer: must be below trust.neutral × 90 % (0.315)"},
		{"  limits: {burst: 1}\n", "enclave.limits.burst: must be in [2,100000]"},
	} {
		if _, err := ParseStandaloneEnclave("enclave.yaml", []byte(baseEnclave+c.extra)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.extra, err, c.want)
		}
	}
	if _, err := ParseStandaloneEnclave("enclave.yaml", []byte(baseEnclave+"  decision: {act: 0.8, defer: 0.44}\n  limits: {burst: 2}\n")); err != nil {
		t.Errorf("defer 0.44 at neutral 0.5: %v", err)
	}
}
