package decoy

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/sensor"
)

// Hostile: a client that harvested the decoy executor's canary tries it on the decoy
// listeners (Redis AUTH, HTTP Basic credentials): each such connection is reported twice, as
// the connection it is and as a canary event of severity 1 naming the canary; a near miss
// is a connection only.
func TestDecoyReportsCanaryUse(t *testing.T) {
	const tok = "canary-7f3a9c"
	c := config.Decoy{Banners: testBanners, Signal: "mH", MaxConns: 8, ReadBytes: 512, Timeout: 30 * time.Second,
		Listen: []config.DecoyListener{{Addr: "127.0.0.1:0", Service: "redis"}, {Addr: "127.0.0.1:0", Service: "http"}}}
	s, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.canaries = []string{tok}
	out := make(chan sensor.Event, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	defer func() { cancel(); <-done }()
	<-s.Ready()
	redis, web := s.Addrs()[0].String(), s.Addrs()[1].String()

	for _, tc := range []struct {
		addr, send string
		canary     bool
	}{
		{redis, "AUTH " + tok + "\r\n", true},
		{web, "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+tok)) + "\r\n\r\n", true},
		{redis, "AUTH canary-7f3a9\r\n", false},
	} {
		conn := dial(t, tc.addr)
		fmt.Fprint(conn, tc.send)
		buf := make([]byte, 512)
		_, _ = conn.Read(buf) // the decoy's answer, then it hangs up
		conn.Close()
		ev := next(t, out)
		if ev.Kind != "connect" {
			t.Fatalf("%q: first event %+v, want the connection", tc.send, ev)
		}
		if !tc.canary {
			continue
		}
		ev = next(t, out)
		if ev.Kind != "canary" || ev.Category != "canary" || ev.Severity != 1 || ev.Attrs["canary"] != tok || ev.Source.String() != "127.0.0.1" {
			t.Fatalf("%q: canary event %+v", tc.send, ev)
		}
	}
	select {
	case ev := <-out:
		t.Fatalf("an event for the near miss beyond its connection: %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
	if n := s.Counters()["canaries"]; n != 2 {
		t.Fatalf("canaries counter %d, want 2", n)
	}
}
