package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/countermeasure/nfttest"
	"github.com/proteus-defense/proteus/store"
)

// Must show (kernel side): run as root, the real agent binary in its own network namespace
// blocks a client that keeps causing dissent with nftables (table inet proteus), so the
// client's packets are dropped before the gateway, and the kernel rule is gone after the TTL.
// The client is this host, reaching the namespace over a veth pair; nothing is programmed in
// the host's own ruleset.
func TestAgentEngineBlocksDissentingClientWithNFTables(t *testing.T) {
	ns, _ := nfttest.NetNS(t)
	hostIP, nsIP := vethPair(t, "", ns, 233)

	model, def := paperModelAndDefaults(t)
	data := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfg, append(def, fmt.Sprintf(`
engine:
  model: %q
  nftables: on
  block_ttl: 4s
  # The defaced page stands for a variant's bug that a rebuild would not remove: vigilance
  # must not rebuild the executor (after 3 dissents at level 1) before the client's third
  # dissent acts, or the test would race the two.
  vigilance: {min_rebuild_threshold: 5}
  assets: [{name: shop, device: web}]
  rules:
    - {name: dissent, sensor: gateway, kind: dissent, category: content, stage: S1, attack: a2, weight: 0.6}
  strategies:
    d1: [{kind: vigilance}]
    d2: [{kind: vigilance}]
`, model)...), 0o600); err != nil {
		t.Fatal(err)
	}
	gw, stderr := startAgentInNetNS(t, ns, data, cfg, nsIP+":0")

	client := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(hostIP)}}).DialContext}}
	get := func() (int, error) {
		resp, err := client.Get("http://" + gw + "/about.html")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if c, err := get(); err != nil || c != 200 {
		t.Fatalf("before tampering: %d %v\n%s", c, err, stderr.String())
	}
	pages, _ := filepath.Glob(filepath.Join(data, "executor", "process", "work", "go-nethttp-*", "site", "about.html"))
	if len(pages) == 0 {
		t.Fatalf("no go-nethttp executor work dir in %s", data)
	}
	for _, p := range pages {
		if err := os.WriteFile(p, []byte("<h1>defaced</h1>\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dropped := false
	for n := 0; n < 50 && !dropped; n++ {
		c, err := get()
		switch {
		case err != nil:
			dropped = true // the kernel drops the packets: the connection times out
		case c != 200 && c != 403:
			t.Fatalf("request %d: %d", n, c)
		}
	}
	if !dropped {
		t.Fatalf("the client was never dropped by the kernel:\n%s", stderr.String())
	}
	if listing := nfttest.List(t, ns, countermeasure.NFTable); !strings.Contains(listing, hostIP) {
		t.Fatalf("no nftables element for %s:\n%s", hostIP, listing)
	}
	var ds []store.Decision
	for n := 0; ; n++ {
		st, err := store.OpenExisting(data)
		if err == nil {
			ds, _ = st.List(t.Context(), store.Filter{Source: hostIP})
			st.Close()
		}
		if len(ds) > 0 && ds[len(ds)-1].Verdict == "act" {
			break
		}
		if n == 500 {
			t.Fatalf("no act decision for %s: %+v", hostIP, ds)
		}
		time.Sleep(20 * time.Millisecond)
	}
	kinds := map[string]bool{}
	for _, c := range ds[len(ds)-1].Countermeasures {
		if c.Kind == "block" && c.Error == "" && c.Target == hostIP+"/32" {
			kinds[strings.SplitN(c.ID, "/", 2)[0]] = true
		}
	}
	if !kinds[countermeasure.NFTablesID] || !kinds[countermeasure.BlocklistID] {
		t.Fatalf("blocks %+v, want nftables and the gateway blocklist", ds[len(ds)-1].Countermeasures)
	}
	// After the TTL the element is reverted and the client is served again.
	for n := 0; ; n++ {
		if c, err := get(); err == nil && c == 200 {
			break
		}
		if n == 200 {
			t.Fatalf("still blocked after the TTL:\n%s", nfttest.List(t, ns, countermeasure.NFTable))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if listing := nfttest.List(t, ns, countermeasure.NFTable); strings.Contains(listing, hostIP) {
		t.Fatalf("element still there after the revert:\n%s", listing)
	}
}
