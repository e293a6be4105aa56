package enclave

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
)

// testEnclave is an enclave key plus helpers to start real nodes on loopback.
type testEnclave struct {
	t    testing.TB
	name string
	key  ed25519.PrivateKey
}

func newTestEnclave(t testing.TB, name string) *testEnclave {
	t.Helper()
	k, err := GenerateEnclaveKey()
	if err != nil {
		t.Fatal(err)
	}
	return &testEnclave{t: t, name: name, key: k}
}

// baseConfig is a parsed config (defaults applied) for this enclave, listening on loopback.
// Each node started from it listens on its own 127.0.0.x address (see start), so with
// independent_prefix4 32 every member is its own independence group, and the loopback
// range is exempt from GossipSub's IP colocation penalty. The tests are this agent's
// sensors (they call Publish or Witness), so sensing is on.
func (e *testEnclave) baseConfig() config.Enclave {
	e.t.Helper()
	yaml := "version: 1\nenclave:\n  enabled: true\n  name: " + e.name + "\n  key: " +
		PublicKeyString(e.key.Public().(ed25519.PublicKey)) + "\n  certificate: member.cert\n" +
		"  listen: [/ip4/127.0.0.1/tcp/0]\n  exposure:\n    os: linux\n    services: [{port: 22}]\n" +
		"  sensing: true\n  decision: {independent_prefix4: 32}\n  peer_score: {colocation_whitelist: [127.0.0.0/8]}\n"
	c, err := config.ParseStandaloneEnclave("test.yaml", []byte(yaml))
	if err != nil {
		e.t.Fatal(err)
	}
	return c.Enclave
}

// loopbackSeq hands out 127.0.0.2, 127.0.0.3, ... to the nodes of a test binary.
var loopbackSeq atomic.Uint32

func nextLoopback() string {
	n := loopbackSeq.Add(1)
	return fmt.Sprintf("127.0.%d.%d", 1+n/250, 2+n%250)
}

type testNode struct {
	*Node
	dir       string
	key       crypto.PrivKey
	blocklist *countermeasure.Blocklist
	vigilance *countermeasure.Vigilance
	manager   *countermeasure.Manager
	stop      context.CancelFunc
}

// start admits a new identity (or reuses key/dir) and starts a node with a countermeasure
// manager journaling to dir.
func (e *testEnclave) start(dir string, key crypto.PrivKey, cfg config.Enclave) *testNode {
	e.t.Helper()
	return e.startValid(dir, key, cfg, time.Hour)
}

// startWithValidity starts a new member whose certificate lasts validity.
func (e *testEnclave) startWithValidity(dir string, cfg config.Enclave, validity time.Duration) *testNode {
	e.t.Helper()
	return e.startValid(dir, nil, cfg, validity)
}

func (e *testEnclave) startValid(dir string, key crypto.PrivKey, cfg config.Enclave, validity time.Duration) *testNode {
	e.t.Helper()
	if key == nil {
		var err error
		if key, _, err = crypto.GenerateEd25519Key(nil); err != nil {
			e.t.Fatal(err)
		}
	}
	id, err := PeerIDOf(key)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "member.cert")); err != nil {
		c, err := Admit(e.key, e.name, id, time.Now(), validity)
		if err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "member.cert"), c.Marshal(), 0o600); err != nil {
			e.t.Fatal(err)
		}
	}
	if len(cfg.Listen) == 1 && cfg.Listen[0] == "/ip4/127.0.0.1/tcp/0" {
		cfg.Listen = []string{"/ip4/" + nextLoopback() + "/tcp/0"}
	}
	tn := &testNode{dir: dir, key: key, blocklist: countermeasure.NewBlocklist(), vigilance: countermeasure.NewVigilance(nil)}
	tn.manager, err = countermeasure.NewManager(countermeasure.ManagerOptions{DataDir: dir,
		Actuators: []countermeasure.Actuator{tn.blocklist, tn.vigilance}})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn.stop = cancel
	if err := tn.manager.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	go func() { _ = tn.manager.Run(ctx) }()
	tn.Node, err = New(ctx, Options{Config: cfg, DataDir: dir, Identity: key, Manager: tn.manager,
		BlockActuator: countermeasure.BlocklistID, VigilanceActuator: countermeasure.VigilanceID, Logger: testLogger()})
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	return tn
}

func (tn *testNode) close(t *testing.T) {
	t.Helper()
	if err := tn.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	tn.stop()
}

// eventually polls cond until it holds, failing the test after a generous limit; the limit
// is a hang guard, not a performance assertion.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for _, n := range debugNodes {
				t.Logf("node %s: stats %+v topic peers %v mesh-ish peers %v", n.ID(), n.Stats(), n.topic.ListPeers(), n.host.Network().Peers())
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var debugNodes []*testNode

// connectAll dials every node from every later node and waits until each sees all the
// others in the topic.
func connectAll(t *testing.T, nodes []*testNode) {
	t.Helper()
	debugNodes = nodes
	for i := range nodes {
		for j := 0; j < i; j++ {
			if err := nodes[i].Connect(context.Background(), nodes[j].Addrs()[0]); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range nodes {
		eventually(t, "topic peers", func() bool { return len(n.topic.ListPeers()) == len(nodes)-1 })
	}
}

// testLogger logs to stderr when PROTEUS_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("PROTEUS_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
