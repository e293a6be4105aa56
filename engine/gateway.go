package engine

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/sensor"
	"github.com/proteus-defense/proteus/store"
)

// Gateway bus event kinds the engine reads (published by mimic; the constants live there, the
// engine must not import the gateway).
const (
	gatewayDissent     = "gateway.dissent"
	gatewayNoConsensus = "gateway.no-consensus"
	dnsSource          = "dns" // the voting DNS front's events' Source
)

// FromGateway turns a gateway dissent or no-consensus bus event into evidence: sensor
// "gateway", kind "dissent" or "no-consensus", the client address (attr "client") as source
// for the HTTP gateway's events (none for the DNS front's, Source "dns": evidence about the
// executor), the dissent kind (content, availability, ...) as category, and method, path and
// request ID in the summary and excerpt. ok is false for other events.
func FromGateway(be bus.Event) (sensor.Event, bool) {
	var kind string
	switch be.Kind {
	case gatewayDissent:
		kind = "dissent"
	case gatewayNoConsensus:
		kind = "no-consensus"
	default:
		return sensor.Event{}, false
	}
	str := func(k string) string {
		v, _ := be.Attrs[k].(string)
		return v
	}
	e := sensor.Event{Time: be.Time, Sensor: "gateway", Kind: kind, Category: str("kind"), Asset: str("variant")}
	// An HTTP client whose requests make an executor dissent is on the data path of the
	// attack (an exploit of one implementation): the client is the source. A DNS answer
	// comes from the server's cache or zone, which the client does not write: a poisoned
	// resolver dissents on every client's query, so DNS dissent is evidence about the
	// executor (attr executor), and names no source to block.
	if a, err := netip.ParseAddr(str("client")); err == nil && be.Source != dnsSource {
		e.Source = a.Unmap()
	}
	path := str("path")
	if path == "" {
		path = str("route")
	}
	e.Path = path
	method, req := str("method"), str("request")
	var b strings.Builder
	fmt.Fprintf(&b, "%s", kind)
	if e.Category != "" {
		fmt.Fprintf(&b, " (%s)", e.Category)
	}
	if ex := str("executor"); ex != "" {
		fmt.Fprintf(&b, " by %s", ex)
	}
	fmt.Fprintf(&b, " on %s %s", method, path)
	if e.Source.IsValid() {
		fmt.Fprintf(&b, " from %s", e.Source)
	} else if c := str("client"); c != "" {
		fmt.Fprintf(&b, " (asked by %s)", c)
	}
	if req != "" {
		fmt.Fprintf(&b, " request %s", req)
	}
	e.Summary = sensor.Excerpt(strings.TrimSpace(b.String()))
	excerpt := str("excerpt")
	e.Excerpt = sensor.Excerpt(strings.TrimSpace(fmt.Sprintf("%s %s request=%s %s", method, path, req, excerpt)))
	e.Attrs = map[string]string{}
	for _, k := range []string{"executor", "variant", "method", "request", "client", "nsid"} {
		if v := str(k); v != "" {
			e.Attrs[k] = v
		}
	}
	return e, true
}

// gatewayRedirected is the gateway's event for a request it served from the decoy executor
// (mimic.EventRedirected).
const gatewayRedirected = "gateway.redirected"

// FromRedirected turns a gateway.redirected bus event into evidence of the decision that
// redirected the client (returned as id): sensor "gateway", kind "redirected", what the client
// asked for and which decoy executor answered. ok is false for other events.
func FromRedirected(be bus.Event) (id string, ev store.Evidence, ok bool) {
	if be.Kind != gatewayRedirected {
		return "", store.Evidence{}, false
	}
	str := func(k string) string {
		v, _ := be.Attrs[k].(string)
		return v
	}
	if id = str("decision"); id == "" {
		return "", store.Evidence{}, false
	}
	target := str("path")
	if q := str("query"); q != "" {
		target += "?" + q
	}
	ev = store.Evidence{Sensor: "gateway", Time: be.Time, Kind: "redirected",
		Summary: sensor.Excerpt(fmt.Sprintf("%s %s from %s served by decoy executor %s (redirected, not voted)", str("method"), target, str("client"), str("executor"))),
		Excerpt: sensor.Excerpt("user-agent: " + strconv.QuoteToASCII(str("user_agent")))}
	return id, ev, true
}

// gatewayCanary is the gateway's event for a request that presented a canary of the decoy
// executor (mimic.EventCanary).
const gatewayCanary = "gateway.canary"

// FromCanary turns a gateway.canary bus event into high-confidence evidence: sensor
// "gateway", kind "canary", category "canary", severity 1, the client as source (it presented
// a token only the decoy executor ever served), and where the canary was in the summary.
// ok is false for other events and for an event without a client address.
func FromCanary(be bus.Event) (sensor.Event, bool) {
	if be.Kind != gatewayCanary {
		return sensor.Event{}, false
	}
	str := func(k string) string {
		v, _ := be.Attrs[k].(string)
		return v
	}
	a, err := netip.ParseAddr(str("client"))
	if err != nil {
		return sensor.Event{}, false
	}
	e := sensor.Event{Time: be.Time, Sensor: "gateway", Kind: "canary", Category: "canary", Severity: 1, Source: a.Unmap(),
		Path: str("path"), Attrs: map[string]string{"canary": str("canary"), "where": str("where"), "method": str("method"),
			"client": str("client"), "redirected": str("redirected")}}
	how := "to the gateway"
	if str("redirected") == "true" {
		how = "to the decoy executor (redirected)"
	}
	e.Summary = sensor.Excerpt(fmt.Sprintf("canary %q presented %s in %s of %s %s from %s", str("canary"), how, str("where"),
		str("method"), str("path"), e.Source))
	e.Excerpt = sensor.Excerpt("user-agent: " + strconv.QuoteToASCII(str("user_agent")))
	return e, true
}

// enclaveDecision is the enclave node's bus event for a sighting it decided on (published by
// enclave; the engine must not import it); enclaveAct is its act verdict.
const (
	enclaveDecision = "enclave.decision"
	enclaveAct      = "act"
)

// FromEnclave turns the enclave's decision on a sighting into evidence: sensor "enclave", kind
// "sighting", the sighted address as source (subject; an address or a single-address prefix),
// the enclave's verdict (act, defer, ignore, ...) as category, and its combined evidence (each
// live report's confidence times its reporter's trust, noisy-OR over reporters) as the
// event's Strength, so a peer's sighting counts by the reputation it earned. A sighting of a
// wider prefix or a port names no source. ok is false for other events.
func FromEnclave(be bus.Event) (sensor.Event, bool) {
	if be.Kind != enclaveDecision {
		return sensor.Event{}, false
	}
	str := func(k string) string {
		v, _ := be.Attrs[k].(string)
		return v
	}
	e := sensor.Event{Time: be.Time, Sensor: "enclave", Kind: "sighting", Category: str("decision")}
	if p, err := netip.ParsePrefix(be.Subject); err == nil && p.IsSingleIP() {
		e.Source = p.Addr().Unmap()
	} else if a, err := netip.ParseAddr(be.Subject); err == nil {
		e.Source = a.Unmap()
	}
	ev, _ := be.Attrs["evidence"].(float64)
	if ev > 0 && ev <= 1 {
		e.Strength = ev
	} else {
		e.Strength = 1e-9 // no evidence: the rule's weight must not count
	}
	e.Summary = sensor.Excerpt(fmt.Sprintf("peer sighting of %s (indicator %s, reporter %s): enclave decided %s on reputation-weighted evidence %.3f",
		be.Subject, str("indicator"), str("reporter"), e.Category, ev))
	e.Attrs = map[string]string{"indicator": str("indicator"), "reporter": str("reporter"), "target": be.Subject, "event": str("event")}
	return e, true
}

// executorDenied is the drivers' bus event for an executor its confinement refused something.
const executorDenied = executor.EventDenied

// FromExecutor turns an executor.denied bus event (executor.Denial's attrs) into evidence
// about that executor: sensor "executor", kind "denied", the refusal's reason (file, signal,
// seccomp, network, memory, processes) as category, the variant as asset hint, the executor's
// ID in attr "executor" (acting on it quarantines that executor, as for a changed file), what
// it attempted and what refused it in the summary, the rest of the event's attrs in the
// excerpt. ok is false for other events.
func FromExecutor(be bus.Event) (sensor.Event, bool) {
	if be.Kind != executorDenied || be.Subject == "" {
		return sensor.Event{}, false
	}
	str := func(k string) string {
		v, _ := be.Attrs[k].(string)
		return v
	}
	e := sensor.Event{Time: be.Time, Sensor: "executor", Kind: "denied", Category: str("reason"), Asset: str("variant"),
		Path: str("path"), Attrs: map[string]string{"executor": be.Subject, "variant": str("variant"), "driver": be.Source,
			"attempted": str("attempted"), "refused_by": str("refused_by"), "attribute": str("category")}}
	e.Summary = sensor.Excerpt(fmt.Sprintf("executor %s (%s) refused by its confinement: %s: %s (refused by %s; %s)", be.Subject,
		e.Attrs["variant"], e.Category, e.Attrs["attempted"], e.Attrs["refused_by"], e.Attrs["attribute"]))
	var extra []string
	for _, k := range slices.Sorted(maps.Keys(be.Attrs)) {
		switch k {
		case "variant", "reason", "attempted", "refused_by", "category":
			continue
		}
		extra = append(extra, fmt.Sprintf("%s=%v", k, be.Attrs[k]))
	}
	e.Excerpt = sensor.Excerpt(fmt.Sprintf("driver=%s %s", be.Source, strings.Join(extra, " ")))
	return e, true
}

// FollowBus feeds the gateway's dissent, no-consensus and canary events, the enclave's decisions on
// sightings and the drivers' executor.denied events from b to the engine without blocking
// their publishers (a full queue drops and counts) until ctx ends.
func (e *Engine) FollowBus(ctx context.Context, b *bus.Bus) {
	gw := bus.KindPrefix("gateway.")
	ch, cancel := b.Subscribe(e.cfg.Queue, func(ev bus.Event) bool {
		return gw(ev) || ev.Kind == enclaveDecision || ev.Kind == executorDenied
	})
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case be, ok := <-ch:
			if !ok {
				return
			}
			if ev, ok := FromGateway(be); ok {
				e.Submit(ev)
			} else if ev, ok := FromCanary(be); ok {
				e.Submit(ev)
			} else if ev, ok := FromEnclave(be); ok && !e.ownSighting(ev) {
				e.Submit(ev)
			} else if ev, ok := FromExecutor(be); ok {
				e.Submit(ev)
			} else if id, ev, ok := FromRedirected(be); ok && e.writer != nil {
				e.writer.Append(id, ev)
			}
		}
	}
}

// ownSighting reports whether ev is the enclave's decision on a sighting this engine shared
// (it comes back on the bus as the enclave's "local" event): not new evidence.
func (e *Engine) ownSighting(ev sensor.Event) bool {
	if ev.Attrs["event"] != "local" || !ev.Source.IsValid() {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	until, ok := e.shared[ev.Source]
	return ok && e.now().Before(until)
}
