package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/proteus-defense/proteus/executor/docker"
	"github.com/proteus-defense/proteus/executor/docker/dockertest"
)

// DNS executors as containers: NSD, Knot and Unbound from Debian (.ci/run installs them),
// each in a FROM-scratch image of its own holding the host's binary with its loader and
// libraries (docker.ScratchImage.Libraries), its configuration and the zone rendered per
// container from the same templates as the process pool's and mounted read-only at
// docker.FilesDir, its port published on 127.0.0.1 for UDP and TCP.

// dockerDNSServers are the variants' binaries, by variant name.
var dockerDNSServers = map[string]string{"nsd": "nsd", "knot": "knotd", "unbound": "unbound"}

var (
	dockerDNSOnce sync.Once
	dockerDNSPins map[string]string
	dockerDNSErr  error
)

// dockerDNSImages builds (once per test binary) one image per server, tagged by the hash
// of what goes in it, so an unchanged server is the engine's cached build.
func dockerDNSImages(t *testing.T) map[string]string {
	t.Helper()
	cli := dockertest.Engine(t)
	paths := map[string]string{}
	for variant, bin := range dockerDNSServers {
		p, err := exec.LookPath(bin)
		if err != nil {
			t.Skipf("%s not installed (.ci/run installs it): %v", bin, err)
		}
		paths[variant] = p
	}
	dockerDNSOnce.Do(func() { dockerDNSPins, dockerDNSErr = buildDNSImages(cli, paths) })
	if dockerDNSErr != nil {
		t.Fatal(dockerDNSErr)
	}
	return dockerDNSPins
}

func buildDNSImages(cli *client.Client, paths map[string]string) (map[string]string, error) {
	dir, err := os.MkdirTemp("", "proteus-dns-images-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// Host names from /etc/hosts only (Docker writes the container's): a server looking up
	// its own name (Knot does at start) asks no DNS server, which the firewall would refuse.
	nss := filepath.Join(dir, "nsswitch.conf")
	if err := os.WriteFile(nss, []byte("hosts: files\n"), 0o644); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pins := map[string]string{}
	for variant, bin := range paths {
		data, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		pin, err := docker.BuildImage(ctx, cli, docker.ScratchImage{
			Tag:       "proteus-dns-test-" + variant + ":" + hex.EncodeToString(sum[:8]),
			Binary:    bin,
			Libraries: true,
			Files:     map[string]string{"/etc/nsswitch.conf": nss},
		})
		if err != nil {
			return nil, fmt.Errorf("image of %s: %w", variant, err)
		}
		pins[variant] = pin
	}
	return pins, nil
}

// unboundInContainer is unboundAuthConf answering every source address: in a container the
// queries come from the bridge's gateway (the port is published on this host's 127.0.0.1
// only, so whoever asks came through this host's loopback).
var unboundInContainer = strings.Replace(unboundAuthConf, "access-control: 127.0.0.0/8 allow", "access-control: 0.0.0.0/0 allow", 1)

// dockerDNSPoolConfig is an agent config whose pool is three DNS servers in containers,
// each with the zone (serving www as www) and its configuration as rendered files.
func dockerDNSPoolConfig(pins map[string]string, rotation string) string {
	zone := indent(dnsZoneFile(dnsTrue), 10)
	variant := func(name, conf, template string, command ...string) string {
		return `    - name: ` + name + `
      driver: docker
      image: ` + pins[name] + `
      container_port: 53
      command: ["` + strings.Join(command, `", "`) + `"]
      traits: {server: ` + name + `}
      files:
        zone: |
` + zone + `        ` + conf + `: |
` + indent(template, 10)
	}
	// Two reconfigurations at once: a container takes seconds from start to healthy, and the
	// rebuild of a poisoned server should not wait for a scheduled rotation to finish.
	head := strings.Replace(dnsPoolHead(rotation), "max_concurrent: 1", "max_concurrent: 2", 1)
	return head +
		variant("nsd", "nsd.conf", nsdConfTemplate, "-d", "-c", "{{.Files}}/nsd.conf") +
		variant("knot", "knot.conf", knotConfTemplate, "-c", "{{.Files}}/knot.conf") +
		variant("unbound", "unbound.conf", unboundInContainer, "-d", "-c", "{{.Files}}/unbound.conf")
}

// poisonNSDContainer makes a running NSD container serve a forged www record: the zone it
// was given rewritten (where the agent rendered it) and NSD told to reload it (SIGHUP), as
// an attacker who got at the server's data would.
func poisonNSDContainer(dataDir, id string) error {
	zone := filepath.Join(dataDir, "executor", "docker", "files", id, "zone")
	if err := os.WriteFile(zone, []byte(dnsZoneFile(dnsForged)), 0o444); err != nil {
		return err
	}
	out, err := exec.Command("docker", "kill", "--signal", "HUP", id).CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker kill: %v: %s", err, out)
	}
	return nil
}

// Three DNS servers in containers (NSD, Knot, Unbound) behind the agent's voting DNS front,
// rotated every second or two under query load over UDP and TCP: no query fails (SERVFAIL,
// timeout, wrong answer) across the rotations, an NSD container poisoned in service (a
// forged www record) is outvoted, reported and rebuilt, and the forged record never reaches
// a client.
func TestDockerDNSPoolRotatesUnderLoad(t *testing.T) {
	pins := dockerDNSImages(t)
	if testing.Short() {
		t.Skip("starts DNS servers in containers for half a minute")
	}
	ra := startDNSAgent(t, dockerDNSPoolConfig(pins, "6s-8s"))
	for _, ex := range ra.status(t).Executors {
		if ex.Driver != "docker" {
			t.Fatalf("executor %s runs on %q, want docker", ex.ID, ex.Driver)
		}
	}
	rotateUnderLoadAndPoison(t, ra, "nsd", 2.5, poisonNSDContainer)
}
