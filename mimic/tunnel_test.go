package mimic

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/proteus-defense/proteus/bus"
)

// wsEcho is a WebSocket server (gorilla/websocket) that echoes every message with its
// executor's number in front.
func wsEcho(i int, w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered 400
	}
	defer c.Close()
	for {
		mt, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if c.WriteMessage(mt, append([]byte{byte('1' + i), ' '}, msg...)) != nil {
			return
		}
	}
}

// A WebSocket on a single route is tunnelled to one executor and outlives the server's read
// and write timeouts; on a voted route the upgrade is not offered (the executors answer the
// plain request, and the client's handshake fails); Close ends open tunnels.
func TestWebSocketThroughASingleRoute(t *testing.T) {
	bes, _ := countingBackends(t, 3, wsEcho)
	b := bus.New()
	evs, cancel := b.Subscribe(16, nil)
	defer cancel()
	g, err := New(Options{Backends: bes, Bus: b, Routes: []Route{{Prefix: "/ws", Policy: PolicySingle}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})

	c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatalf("dial through the single route: %v (%v)", err, resp)
	}
	defer c.Close()
	var from byte
	for i, text := range []string{"hello", "after the timeouts"} {
		if i == 1 {
			time.Sleep(500 * time.Millisecond) // longer than the server's read and write timeouts
		}
		if err := c.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
			t.Fatal(err)
		}
		_, msg, err := c.ReadMessage()
		if err != nil || len(msg) < 2 || string(msg[2:]) != text {
			t.Fatalf("echo of %q: %q, %v", text, msg, err)
		}
		if i == 0 {
			from = msg[0]
		} else if msg[0] != from {
			t.Errorf("the tunnel moved from executor %c to %c", from, msg[0])
		}
	}

	if _, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/voted", nil); err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("upgrade on a voted route: %v, %v; want the executors' 400 to the plain request", err, resp)
	}

	g.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.ReadMessage(); err == nil || isTimeout(err) {
		t.Errorf("read after Close: %v, want the tunnel closed", err)
	}
	for len(evs) > 0 {
		if e := <-evs; e.Kind == EventDissent {
			t.Errorf("dissent: %v", e.Attrs)
		}
	}
}

// An executor that cannot be reached or does not switch protocols is an availability
// dissent and the client gets 502; one that declines the upgrade answers the client itself.
func TestUpgradeFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	declines, _ := countingBackends(t, 1, func(i int, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no websockets here", http.StatusForbidden)
	})
	wrong := rawBackend(t, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", nil, true)
	for _, tc := range []struct {
		name     string
		backend  Backend
		want     int
		dissents int
	}{
		{"unreachable", Backend{ID: "dead", Variant: "v", Addr: dead}, http.StatusBadGateway, 1},
		{"declines", declines[0], http.StatusForbidden, 0},
		{"switches to another protocol", wrong, http.StatusBadGateway, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bus.New()
			evs, cancel := b.Subscribe(16, nil)
			defer cancel()
			g, err := New(Options{Backends: Static{tc.backend}, Bus: b, UpstreamTimeout: time.Second, Routes: []Route{{Prefix: "/", Policy: PolicySingle}}})
			if err != nil {
				t.Fatal(err)
			}
			addr := startGateway(t, g, ServerOptions{})
			_, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
			if err == nil || resp == nil || resp.StatusCode != tc.want {
				t.Fatalf("%v, %v; want status %d", err, resp, tc.want)
			}
			g.Wait()
			n := 0
			for len(evs) > 0 {
				if e := <-evs; e.Kind == EventDissent && e.Attrs["kind"] == DissentAvailability && strings.Contains(e.Attrs["error"].(string), "upgrade") {
					n++
				}
			}
			if n != tc.dissents {
				t.Errorf("%d availability dissents, want %d", n, tc.dissents)
			}
		})
	}
}

// An executor that answers 101 to a request that did not ask for an upgrade is not believed,
// on voted and on single routes.
func TestUnaskedSwitchIsRefused(t *testing.T) {
	be := rawBackend(t, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", nil, true)
	for _, policy := range []Policy{PolicyVote, PolicySingle} {
		g, err := New(Options{Backends: Static{be}, K: 1, Routes: []Route{{Prefix: "/", Policy: policy}}})
		if err != nil {
			t.Fatal(err)
		}
		addr := startGateway(t, g, ServerOptions{})
		if code, _ := get(t, http.DefaultClient, "http://"+addr+"/"); code != http.StatusBadGateway {
			t.Errorf("%s: a 101 to a plain GET answered %d, want 502", policy, code)
		}
	}
}
