package enclave

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestControlAPI(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	dir := t.TempDir()
	n := e.start(dir, nil, cfg)
	defer n.close(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := n.ServeControl(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, ControlFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control file: %v %v", fi, err)
	}
	cl, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := cl.Status(ctx); err != nil || st.Peer != n.ID().String() || st.Enclave != "lab" {
		t.Fatalf("status %+v: %v", st, err)
	}
	res, err := cl.Publish(ctx, "192.0.2.9", 80, time.Minute, "block", "test")
	if err != nil || res.Decision.Decision != Act || res.Indicator == "" {
		t.Fatalf("publish %+v: %v", res, err)
	}
	if recs, err := cl.Decisions(ctx, res.Indicator); err != nil || len(recs) != 1 {
		t.Fatalf("decisions %+v: %v", recs, err)
	}
	if acts, err := cl.Actions(ctx); err != nil || len(acts) != 1 {
		t.Fatalf("actions %+v: %v", acts, err)
	}
	if err := cl.Revoke(ctx, res.Indicator, "test over"); err != nil {
		t.Fatal(err)
	}
	if acts, _ := cl.Actions(ctx); len(acts) != 0 {
		t.Errorf("revoked sighting still acted on: %+v", acts)
	}
	// A member revocation list signed by the enclave key is adopted; a forged one is a 400.
	other := newPeerID(t)
	l, _ := RevokeMembers(e.key, "lab", nil, []peer.ID{other}, time.Now())
	if r, err := cl.RevokeMembers(ctx, l); err != nil || !r.Adopted || r.Serial != 1 || !n.isRevoked(other) {
		t.Errorf("revoke members %+v: %v", r, err)
	}
	if r, err := cl.RevokeMembers(ctx, l); err != nil || r.Adopted {
		t.Errorf("same list again %+v: %v", r, err)
	}
	forger, _ := GenerateEnclaveKey()
	forged, _ := RevokeMembers(forger, "lab", l, []peer.ID{newPeerID(t)}, time.Now())
	if _, err := cl.RevokeMembers(ctx, forged); !errors.Is(err, ErrControl) {
		t.Errorf("forged list: %v, want ErrControl", err)
	}
	// Bad input is a 400 wrapping ErrControl; a wrong or missing token is refused.
	for _, target := range []string{"not-an-address", "port/99999"} {
		if _, err := cl.Publish(ctx, target, 80, time.Minute, "block", ""); !errors.Is(err, ErrControl) {
			t.Errorf("publish %q: %v, want ErrControl", target, err)
		}
	}
	if _, err := cl.Publish(ctx, "192.0.2.9", 80, 48*time.Hour, "block", ""); !errors.Is(err, ErrControl) {
		t.Errorf("ttl beyond max_ttl: %v", err)
	}
	for _, auth := range []string{"", "Bearer wrong"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/trust", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("auth %q: status %d", auth, resp.StatusCode)
		}
	}
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, ControlFile)); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("control file left behind after shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := Dial(dir); err == nil || !strings.Contains(err.Error(), "no running node") {
		t.Errorf("dial after shutdown: %v", err)
	}
}
