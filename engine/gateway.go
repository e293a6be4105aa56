package engine

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/sensor"
)

// Gateway bus event kinds the engine reads (published by mimic; the constants live there, the
// engine must not import the gateway).
const (
	gatewayDissent     = "gateway.dissent"
	gatewayNoConsensus = "gateway.no-consensus"
)

// FromGateway turns a gateway dissent or no-consensus bus event into evidence: sensor
// "gateway", kind "dissent" or "no-consensus", the client address (attr "client") as source,
// the dissent kind (content, availability, ...) as category, and method, path and request ID
// in the summary and excerpt. ok is false for other events.
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
	if a, err := netip.ParseAddr(str("client")); err == nil {
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
	}
	if req != "" {
		fmt.Fprintf(&b, " request %s", req)
	}
	e.Summary = sensor.Excerpt(strings.TrimSpace(b.String()))
	excerpt := str("excerpt")
	e.Excerpt = sensor.Excerpt(strings.TrimSpace(fmt.Sprintf("%s %s request=%s %s", method, path, req, excerpt)))
	e.Attrs = map[string]string{}
	for _, k := range []string{"executor", "variant", "method", "request"} {
		if v := str(k); v != "" {
			e.Attrs[k] = v
		}
	}
	return e, true
}

// FollowBus feeds the gateway's dissent and no-consensus events from b to the engine
// without blocking the gateway (a full queue drops and counts) until ctx ends.
func (e *Engine) FollowBus(ctx context.Context, b *bus.Bus) {
	ch, cancel := b.Subscribe(e.cfg.Queue, bus.KindPrefix("gateway."))
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
			}
		}
	}
}
