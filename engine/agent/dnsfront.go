package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/mimic/dnsgw"
	"github.com/proteus-defense/proteus/mimic/voter"
)

// poolMembers shows the pool to the voting DNS front: its healthy snapshot as voter members
// (converted once per snapshot; a new snapshot is a new slice, which is how the front
// notices executors that rotated away) and its in-flight accounting, so a rotated executor
// is stopped only once the queries the front sent it are answered.
type poolMembers struct {
	pool  *executor.Pool
	cache snapshotCache[voter.Member]
}

var (
	_ voter.Backends = (*poolMembers)(nil)
	_ voter.InFlight = (*poolMembers)(nil)
	_ api.Voting     = (*dnsFrontend)(nil)
)

// Backends returns the executors in service, their Addr host:port.
func (p *poolMembers) Backends() []voter.Member {
	return p.cache.get(p.pool.Healthy(), func(inst *executor.Instance) voter.Member {
		return voter.Member{ID: inst.ID, Variant: inst.Variant, Addr: inst.Address, Traits: inst.Traits}
	})
}

// OnAcquire holds the executor (draining or not: the front has chosen it already).
func (p *poolMembers) OnAcquire(id string) { p.pool.Hold(id) }

// OnRelease ends it.
func (p *poolMembers) OnRelease(id string) { p.pool.Release(id) }

// dnsFrontend is the voting DNS front as the agent's frontend, over the pool's DNS servers.
// It is no http.Handler: ServeHTTP answers 404 (the frontend interface is the HTTP one's).
type dnsFrontend struct {
	g    *dnsgw.Gateway
	addr net.Addr // UDP and TCP
}

func (d *dnsFrontend) ServeHTTP(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) }

// Close stops the listeners and waits for the accounting of answered queries.
func (d *dnsFrontend) Close() { d.g.Close() }

// serve returns the agent's serve function: the front serves from Listen on; it waits for
// ctx's end.
func (d *dnsFrontend) serve(ctx context.Context) func() error {
	return func() error {
		<-ctx.Done()
		d.g.Close()
		return nil
	}
}

// Votes is the front's view of each executor, for the API's status.
func (d *dnsFrontend) Votes() map[string]api.ExecutorVote {
	out := map[string]api.ExecutorVote{}
	for _, b := range d.g.Status().Backends {
		out[b.ID] = api.ExecutorVote{Trust: b.Trust, Requests: b.Queries, Dissents: b.Dissents, EjectedUntil: b.OutUntil}
	}
	return out
}

// Learned is empty: the DNS front learns no noise (its normalization is fixed).
func (d *dnsFrontend) Learned() map[string][]string { return map[string][]string{} }

// ResetLearned has nothing to forget.
func (d *dnsFrontend) ResetLearned() {}

// newDNSFrontend builds the voting DNS front over the pool (dns section) and binds dns.listen.
// Blocked clients are refused, a dissenting executor is rebuilt as the HTTP gateway's is, and
// its series are under proteus_dns_ in the agent's registry.
func (a *agent) newDNSFrontend(ctx context.Context) (*dnsFrontend, error) {
	o := dnsgw.FromConfig(a.cfg.DNS)
	o.Backends, o.Bus, o.Logger, o.Metrics = &poolMembers{pool: a.pool}, a.bus, a.log, dnsgw.NewMetrics(a.reg)
	o.Blocklist = a.cms.Blocklist
	o.Rebuild = rebuildOnDissent(ctx, a.pool, &a.isolate)
	g, err := dnsgw.New(o)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	bound, err := g.Listen(a.cfg.DNS.Listen)
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("agent: dns listen: %w", err)
	}
	addr, err := net.ResolveUDPAddr("udp", bound)
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("agent: dns listen: %w", err)
	}
	return &dnsFrontend{g: g, addr: addr}, nil
}
