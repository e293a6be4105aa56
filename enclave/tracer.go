package enclave

import (
	"context"
	"log/slog"
	"sync"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// tracer follows GossipSub's mesh (which peers this node forwards messages to, so status can
// say when the mesh has formed) and, when the node's logger has debug enabled, logs GossipSub's
// view of messages and RPCs.
type tracer struct {
	log   *slog.Logger
	debug bool

	mu   sync.Mutex
	mesh map[peer.ID]struct{} // peers grafted into this node's mesh for the enclave topic
}

var _ pubsub.RawTracer = (*tracer)(nil)

func newTracer(log *slog.Logger) *tracer {
	return &tracer{log: log, debug: log.Enabled(context.Background(), slog.LevelDebug), mesh: map[peer.ID]struct{}{}}
}

// meshPeers is the number of peers in this node's mesh (the node joins one topic).
func (d *tracer) meshPeers() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.mesh)
}

func (d *tracer) debugf(msg string, args ...any) {
	if d.debug {
		d.log.Debug(msg, args...)
	}
}

func (d *tracer) AddPeer(p peer.ID, proto protocol.ID) {
	d.debugf("pubsub peer up", "peer", p, "proto", proto)
}
func (d *tracer) RemovePeer(p peer.ID) {
	d.mu.Lock()
	delete(d.mesh, p)
	d.mu.Unlock()
	d.debugf("pubsub peer down", "peer", p)
}
func (*tracer) Join(string)  {}
func (*tracer) Leave(string) {}
func (d *tracer) Graft(p peer.ID, _ string) {
	d.mu.Lock()
	d.mesh[p] = struct{}{}
	d.mu.Unlock()
	d.debugf("pubsub graft", "peer", p)
}
func (d *tracer) Prune(p peer.ID, _ string) {
	d.mu.Lock()
	delete(d.mesh, p)
	d.mu.Unlock()
	d.debugf("pubsub prune", "peer", p)
}
func (*tracer) ValidateMessage(*pubsub.Message) {}
func (*tracer) DeliverMessage(*pubsub.Message)  {}
func (d *tracer) RejectMessage(m *pubsub.Message, reason string) {
	d.debugf("pubsub reject", "from", m.ReceivedFrom, "author", m.GetFrom(), "reason", reason)
}
func (*tracer) DuplicateMessage(*pubsub.Message) {}
func (d *tracer) ThrottlePeer(p peer.ID)         { d.debugf("pubsub throttle", "peer", p) }
func (d *tracer) RecvRPC(r *pubsub.RPC) {
	if d.debug && (len(r.GetPublish()) > 0 || len(r.GetSubscriptions()) > 0) {
		d.log.Debug("pubsub recv rpc", "msgs", len(r.GetPublish()), "subs", len(r.GetSubscriptions()))
	}
}
func (d *tracer) SendRPC(r *pubsub.RPC, p peer.ID) {
	if d.debug && (len(r.GetPublish()) > 0 || len(r.GetSubscriptions()) > 0) {
		d.log.Debug("pubsub send rpc", "to", p, "msgs", len(r.GetPublish()), "subs", len(r.GetSubscriptions()))
	}
}
func (d *tracer) DropRPC(r *pubsub.RPC, p peer.ID) {
	d.debugf("pubsub drop rpc", "to", p, "msgs", len(r.GetPublish()))
}
func (d *tracer) UndeliverableMessage(m *pubsub.Message) {
	d.debugf("pubsub undeliverable", "author", m.GetFrom())
}
