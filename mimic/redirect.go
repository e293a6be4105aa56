package mimic

import (
	"net/http"
	"net/netip"

	"github.com/proteus-defense/proteus/bus"
)

// EventRedirected is published for every request the gateway serves from the decoy executor
// instead of the vote; attrs: client, method, path, query, user_agent, decision, executor.
const EventRedirected = "gateway.redirected"

// Redirect names the clients the gateway serves from a decoy executor, outside the vote,
// instead of voting (redirection of a suspect: the engine deferred on it). decision is what
// sent the client there; it goes into the evidence the gateway publishes. No other client
// ever reaches the decoy: it is not among Backends.
type Redirect interface {
	Redirected(client netip.Addr) (decoy Backend, decision string, ok bool)
}

// redirectOf returns the decoy executor that serves client, if it is redirected.
func (g *Gateway) redirectOf(client netip.Addr) (Backend, string, bool) {
	if g.o.Redirect == nil || !client.IsValid() {
		return Backend{}, "", false
	}
	return g.o.Redirect.Redirected(client)
}

// publishRedirected records a redirected request (bounded excerpts of what it asked for).
func (g *Gateway) publishRedirected(r *http.Request, client netip.Addr, decoy Backend, decision string) {
	g.metrics.requests.WithLabelValues(string(PolicySingle), "redirected").Inc()
	if g.o.Bus == nil {
		return
	}
	cut := func(s string) string { return s[:min(len(s), 256)] }
	g.o.Bus.Publish(bus.Event{Kind: EventRedirected, Source: "gateway", Subject: client.String(), Attrs: map[string]any{
		"client": client.String(), "method": cut(r.Method), "path": cut(r.URL.Path), "query": cut(r.URL.RawQuery),
		"user_agent": cut(r.UserAgent()), "decision": decision, "executor": decoy.ID}})
}
