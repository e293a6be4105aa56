package agent

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/mimic"
)

// frontend serves clients in front of the pool: the mimic voting gateway (default) or the
// plain round-robin proxy.
type frontend interface {
	http.Handler
	Close()
}

// blockingFrontend answers 403 to blocked client addresses before next sees the request;
// the voting gateway checks its own Blocklist, the proxy gets this wrapper.
type blockingFrontend struct {
	next frontend
	bl   *countermeasure.Blocklist
}

func (b blockingFrontend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil && b.bl.Blocked(ap.Addr().Unmap()) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	b.next.ServeHTTP(w, r)
}

func (b blockingFrontend) Close() { b.next.Close() }

// poolBackends shows the pool to the mimic voting gateway: its healthy snapshot as
// mimic.Backends (converted once per snapshot, so the per-request call stays an atomic load
// and a pointer comparison) and its in-flight accounting as mimic.InFlight.
type poolBackends struct {
	pool  *executor.Pool
	cache snapshotCache[mimic.Backend]
}

// snapshotCache keeps the pool's healthy snapshot converted for a front: conversion runs once
// per snapshot (a new snapshot is a new slice, so is its conversion).
type snapshotCache[T any] struct {
	p atomic.Pointer[converted[T]]
}

type converted[T any] struct {
	src []*executor.Instance
	out []T
}

// get returns src converted by conv, from the cache when src is the snapshot it holds.
func (c *snapshotCache[T]) get(src []*executor.Instance, conv func(*executor.Instance) T) []T {
	if x := c.p.Load(); x != nil && sameSnapshot(x.src, src) {
		return x.out
	}
	out := make([]T, len(src))
	for i, inst := range src {
		out[i] = conv(inst)
	}
	c.p.Store(&converted[T]{src: src, out: out})
	return out
}

var (
	_ mimic.Backends = (*poolBackends)(nil)
	_ mimic.InFlight = (*poolBackends)(nil)
)

func sameSnapshot(a, b []*executor.Instance) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// Backends returns the executors in service.
func (p *poolBackends) Backends() []mimic.Backend {
	return p.cache.get(p.pool.Healthy(), func(inst *executor.Instance) mimic.Backend {
		return mimic.Backend{ID: inst.ID, Variant: inst.Variant, Addr: "http://" + inst.Address, Traits: inst.Traits}
	})
}

// OnAcquire counts a request the gateway is about to send; the gateway has already chosen
// the executor, so a draining one is held rather than refused.
func (p *poolBackends) OnAcquire(id string) { p.pool.Hold(id) }

// OnRelease ends it.
func (p *poolBackends) OnRelease(id string) { p.pool.Release(id) }

// votingFrontend is the mimic gateway as the agent's frontend.
type votingFrontend struct{ g *mimic.Gateway }

func (v votingFrontend) ServeHTTP(w http.ResponseWriter, r *http.Request) { v.g.ServeHTTP(w, r) }

// Votes is the gateway's view of each executor, for the API's status.
func (v votingFrontend) Votes() map[string]api.ExecutorVote {
	out := map[string]api.ExecutorVote{}
	for _, b := range v.g.Status().Backends {
		out[b.ID] = api.ExecutorVote{Trust: b.Trust, Requests: b.Requests, Dissents: b.Dissents, EjectedUntil: b.OutUntil, Single: b.Single}
	}
	return out
}

// Learned is the noise the gateway learned, per route prefix.
func (v votingFrontend) Learned() map[string][]string { return v.g.Learned() }

// ResetLearned makes the gateway forget it.
func (v votingFrontend) ResetLearned() { v.g.ResetLearned() }

// Close waits for the gateway's background work (dissent bookkeeping) to finish, saves what it
// learned since the last save and closes its idle executor connections.
func (v votingFrontend) Close() { v.g.Close() }

// rebuildOnDissent is mimic's Rebuild hook: an executor that keeps disagreeing with the
// majority is taken out of service and replaced from its known-good image. With the engine
// running (isolate set) it is quarantined, kept for forensics, within the engine's bound;
// without, it is rotated (destroyed and rebuilt). An executor busy in a reconfiguration (the
// new one of a rotation still draining its predecessor: a container takes seconds) is asked
// again every rebuildRetry until the rotation runs or the executor is gone, for at most
// rebuildPatience: the voter asks once per threshold, so a dropped ask would leave a
// poisoned executor voting until its scheduled rotation.
func rebuildOnDissent(ctx context.Context, pool *executor.Pool, isolate *atomic.Pointer[func(id string)]) func(id string) {
	return func(id string) {
		if f := isolate.Load(); f != nil {
			(*f)(id)
			return
		}
		rctx := executor.WithReason(ctx, "dissent")
		for deadline := time.Now().Add(rebuildPatience); ; {
			err := pool.Rotate(rctx, id)
			if !errors.Is(err, executor.ErrBusy) || time.Now().After(deadline) {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(rebuildRetry):
			}
		}
	}
}

// How rebuildOnDissent waits for a busy executor.
const (
	rebuildRetry    = 100 * time.Millisecond
	rebuildPatience = time.Minute
)
