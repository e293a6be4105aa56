package engine

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/sensor"
	"github.com/proteus-defense/proteus/store"
)

// act carries out defense strategy def for an act decision: the countermeasures
// engine.strategies lists for it (vigilance alone when it lists none, reported as
// unmapped). Evidence from the gateway (a client whose requests make a variant dissent)
// always blocks that client too: the attacker is on the data path.
func (e *Engine) act(ctx context.Context, a *asset, ev sensor.Event, id, def string, p float64, now time.Time) ([]store.Countermeasure, bool) {
	cms, mapped := e.cfg.Strategies[def]
	if !mapped {
		cms = []config.Countermeasure{{Kind: config.CMVigilance}}
	}
	if ev.Sensor == "gateway" && ev.Source.IsValid() && !hasKind(cms, config.CMBlock) {
		cms = append(append([]config.Countermeasure(nil), cms...), config.Countermeasure{Kind: config.CMBlock})
	}
	var out []store.Countermeasure
	// A changed file in a running executor: that executor is quarantined (kept for
	// forensics, taken out of service) and the pool replaces it from the known-good image.
	// An executor its confinement refused something is quarantined the same way (the
	// process driver has already killed it and kept its work dir; the record says so).
	if executorEvidence(ev) {
		reason := "tampering"
		if ev.Sensor == "executor" {
			reason = "denied"
		}
		out = append(out, e.isolateLocked(ctx, ev.Attrs["executor"], reason))
	}
	for _, c := range cms {
		switch c.Kind {
		case config.CMBlock:
			ttl := orDefault(c.TTL, e.cfg.BlockTTL)
			out = append(out, e.block(ctx, a, ev, id, ttl, now)...)
			if sh, ok := e.share(ev, id, p, ttl, now); ok {
				out = append(out, sh)
			}
		case config.CMVigilance:
			out = append(out, e.vigilance(ctx, a, id, max(c.Level, 1), orDefault(c.TTL, e.cfg.VigilanceTTL), now))
		case config.CMRotate:
			out = append(out, e.oneShot(a, c, ev, def, now, "rotate", func(ctx context.Context) error {
				if e.o.Pool == nil {
					return fmt.Errorf("engine: no executor pool to rotate")
				}
				return e.o.Pool.RotateAll(ctx)
			}))
		case config.CMExec:
			argv := expand(c.Command, ev, a.Name, def)
			out = append(out, e.oneShot(a, c, ev, def, now, "exec", func(ctx context.Context) error { return e.o.Exec(ctx, argv) }))
		}
	}
	return out, !mapped
}

func hasKind(cms []config.Countermeasure, kind string) bool {
	for _, c := range cms {
		if c.Kind == kind {
			return true
		}
	}
	return false
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Isolate takes executor id out of service for reason (e.g. "dissent"): quarantined while
// fewer than engine.max_quarantined are, else rotated. The agent's gateway calls it for an
// executor that keeps dissenting.
func (e *Engine) Isolate(ctx context.Context, id, reason string) store.Countermeasure {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.isolateLocked(ctx, id, reason)
}

// executorEvidence reports whether ev accuses one running executor (a changed file in it, or
// a refusal by its confinement): acting on it takes that executor out of service.
func executorEvidence(ev sensor.Event) bool {
	return (ev.Sensor == "fim" || ev.Sensor == "executor") && ev.Attrs["executor"] != ""
}

// isolateLocked takes executor id out of service now: quarantined (frozen, kept for
// forensics) while fewer than engine.max_quarantined are, else rotated (destroyed and
// rebuilt). Either way the pool replaces it from the known-good image.
func (e *Engine) isolateLocked(ctx context.Context, id, reason string) store.Countermeasure {
	c := store.Countermeasure{Kind: "quarantine", Target: id}
	pool := e.o.Pool
	if e.o.Decoy != nil && slices.ContainsFunc(e.o.Decoy.Members(), func(m executor.MemberStatus) bool { return m.Instance != nil && m.Instance.ID == id }) {
		pool = e.o.Decoy
	}
	if pool == nil {
		c.Error = "no executor pool"
		return c
	}
	rctx := executor.WithReason(context.WithoutCancel(ctx), reason)
	if e.quarantined >= e.cfg.MaxQuarantined {
		c.Kind = config.CMRotate
		if err := pool.Rotate(rctx, id); err != nil {
			c.Error = err.Error()
		}
		return c
	}
	if err := pool.Quarantine(rctx, id); err != nil {
		c.Error = err.Error()
		return c
	}
	e.quarantined++
	return c
}

// block blocks the event's source address through every block actuator. The action source
// is "engine/ASSET", so a repeated decision extends the block instead of adding one.
func (e *Engine) block(ctx context.Context, a *asset, ev sensor.Event, id string, ttl time.Duration, now time.Time) []store.Countermeasure {
	if !ev.Source.IsValid() {
		return []store.Countermeasure{{Kind: config.CMBlock, Error: "the evidence names no source address"}}
	}
	t := countermeasure.AddrTarget(ev.Source)
	if _, ok := e.blocked[ev.Source]; !ok && len(e.blocked) >= e.cfg.MaxBlocks {
		for a, until := range e.blocked {
			if !until.After(now) {
				delete(e.blocked, a)
			}
		}
		if len(e.blocked) >= e.cfg.MaxBlocks {
			return []store.Countermeasure{{Kind: config.CMBlock, Target: t.Prefix.String(),
				Error: fmt.Sprintf("refused: the engine already blocks %d addresses (engine.max_blocks)", len(e.blocked))}}
		}
	}
	if until := now.Add(ttl); until.After(e.blocked[ev.Source]) {
		e.blocked[ev.Source] = until
	}
	return e.applyEach(ctx, e.o.BlockActuators, countermeasure.Action{Kind: countermeasure.KindBlock, Target: t,
		Source: "engine/" + a.Name, Reason: "decision " + id, Expires: now.Add(ttl)}, config.CMBlock, t.Prefix.String())
}

// applyEach applies action a through each of actuators, one countermeasure of kind and
// target (as the decision records them) each.
func (e *Engine) applyEach(ctx context.Context, actuators []string, a countermeasure.Action, kind, target string) []store.Countermeasure {
	out := make([]store.Countermeasure, 0, len(actuators))
	for _, act := range actuators {
		c := store.Countermeasure{Kind: kind, Target: target}
		a.Actuator = act
		if e.o.Manager == nil {
			c.Error = "no countermeasure manager"
		} else if got, err := e.o.Manager.Apply(ctx, a); err != nil {
			c.Error = err.Error()
		} else {
			c.ID, c.Expires = got.ID, got.Expires
		}
		out = append(out, c)
	}
	return out
}

// share publishes a block on this agent's own evidence to the enclave (Options.Share) in the
// background, once per source within half the TTL; evidence from the enclave is never shared
// back, nor an address no member may report (loopback, link-local, multicast, unspecified).
func (e *Engine) share(ev sensor.Event, id string, p float64, ttl time.Duration, now time.Time) (store.Countermeasure, bool) {
	src := ev.Source
	if e.o.Share == nil || ev.Sensor == "enclave" || !src.IsValid() || src.IsLoopback() || src.IsLinkLocalUnicast() ||
		src.IsMulticast() || src.IsUnspecified() || src.IsInterfaceLocalMulticast() {
		return store.Countermeasure{}, false
	}
	c := store.Countermeasure{Kind: "share", Target: countermeasure.AddrTarget(src).Prefix.String(), Expires: now.Add(ttl)}
	if until, ok := e.shared[src]; ok && now.Before(until) {
		return store.Countermeasure{}, false // shared recently: the sighting still holds
	}
	if len(e.shared) >= e.cfg.MaxBlocks {
		for a, until := range e.shared {
			if !now.Before(until) {
				delete(e.shared, a)
			}
		}
		if len(e.shared) >= e.cfg.MaxBlocks {
			c.Error = "refused: too many sightings shared at once (engine.max_blocks)"
			return c, true
		}
	}
	e.shared[src] = now.Add(ttl / 2)
	s := Sighting{Source: src, Confidence: max(1, min(100, int(p*100+0.5))), TTL: ttl,
		Description: fmt.Sprintf("proteus engine: decision %s (%s %s)", id, ev.Sensor, ev.Kind)}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.o.Share(ctx, s); err != nil {
			e.log.Warn("sharing a detection with the enclave", "source", src, "decision", id, "err", err)
		}
	}()
	return c, true
}

// vigilance raises the vigilance level for the asset.
func (e *Engine) vigilance(ctx context.Context, a *asset, id string, level int, ttl time.Duration, now time.Time) store.Countermeasure {
	c := store.Countermeasure{Kind: config.CMVigilance, Target: "level " + fmt.Sprint(level)}
	if e.o.Manager == nil || e.o.VigilanceActuator == "" {
		c.Error = "no vigilance actuator"
		return c
	}
	got, err := e.o.Manager.Apply(ctx, countermeasure.Action{Actuator: e.o.VigilanceActuator, Kind: countermeasure.KindVigilance,
		Level: level, Source: fmt.Sprintf("engine/%s/level-%d", a.Name, level), Reason: "decision " + id, Expires: now.Add(ttl)})
	if err != nil {
		c.Error = err.Error()
	} else {
		c.ID, c.Expires = got.ID, got.Expires
	}
	return c
}

// redirect serves src from a decoy for engine.redirect.ttl (a deferred source: suspicious,
// not yet certain), through every redirect actuator: the gateway's decoy executor (its
// requests there become evidence of decision id) and nftables' redirected ports.
func (e *Engine) redirect(ctx context.Context, a *asset, id string, src netip.Addr, now time.Time) []store.Countermeasure {
	target := countermeasure.AddrTarget(src)
	if e.o.Manager == nil || len(e.o.RedirectActuators) == 0 {
		return []store.Countermeasure{{Kind: string(countermeasure.KindRedirect), Target: target.String(),
			Error: "no redirect actuator (pool.decoy and the voting gateway, or engine.redirect.ports and nftables)"}}
	}
	return e.applyEach(ctx, e.o.RedirectActuators, countermeasure.Action{Kind: countermeasure.KindRedirect, Target: target,
		Source: "engine/" + a.Name, Reason: "decision " + id, Expires: now.Add(e.cfg.Redirect.TTL)}, string(countermeasure.KindRedirect), target.String())
}

// oneShot runs a countermeasure that has no revert (a rotation, a hook) in the background,
// at most once per asset, kind and strategy within its ttl (the cool-down).
func (e *Engine) oneShot(a *asset, c config.Countermeasure, ev sensor.Event, def string, now time.Time, kind string, run func(context.Context) error) store.Countermeasure {
	key := kind + "/" + def
	ttl := orDefault(c.TTL, e.cfg.VigilanceTTL)
	out := store.Countermeasure{Kind: kind, Target: a.Name}
	if until, ok := a.cooldown[key]; ok && now.Before(until) {
		out.Error = "cooling down until " + until.UTC().Format(time.RFC3339)
		return out
	}
	a.cooldown[key] = now.Add(ttl)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := run(ctx); err != nil {
			e.log.Error("countermeasure", "kind", kind, "asset", a.Name, "source", addrString(ev.Source), "err", err)
		}
	}()
	return out
}

// expand replaces {source}, {asset} and {strategy} in a hook's arguments. The program name
// itself is never expanded: hostile evidence chooses no program.
func expand(argv []string, ev sensor.Event, asset, def string) []string {
	r := strings.NewReplacer("{source}", addrString(ev.Source), "{asset}", asset, "{strategy}", def)
	out := make([]string, len(argv))
	out[0] = argv[0]
	for i := 1; i < len(argv); i++ {
		out[i] = r.Replace(argv[i])
	}
	return out
}

// runProgram runs argv with a 30 s timeout, without a shell.
func runProgram(ctx context.Context, argv []string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("engine: exec %s: %w: %s", argv[0], err, strings.TrimSpace(string(out[:min(len(out), 512)])))
	}
	return nil
}
