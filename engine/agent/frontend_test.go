package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/countermeasure"
)

type countingFrontend struct{ n int }

func (c *countingFrontend) ServeHTTP(w http.ResponseWriter, _ *http.Request) { c.n++ }
func (c *countingFrontend) Close()                                           {}

// The proxy frontend's blocklist check runs before the proxy sees the request.
func TestBlockingFrontend(t *testing.T) {
	bl := countermeasure.NewBlocklist()
	next := &countingFrontend{}
	f := blockingFrontend{next: next, bl: bl}
	if err := bl.Apply(context.Background(), countermeasure.Action{ID: "x", Actuator: countermeasure.BlocklistID, Kind: countermeasure.KindBlock,
		Target: countermeasure.PrefixTarget(netip.MustParsePrefix("203.0.113.0/24")), Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		remote string
		want   int
	}{{"203.0.113.9:4000", 403}, {"[::ffff:203.0.113.9]:4000", 403}, {"198.51.100.1:4000", 200}} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		before := next.n
		f.ServeHTTP(w, r)
		if w.Code != c.want || (c.want == 403) != (next.n == before) {
			t.Errorf("%s: %d (proxy called %d times), want %d", c.remote, w.Code, next.n-before, c.want)
		}
	}
}
