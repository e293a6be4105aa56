package enclave

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

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

	traffic struct {
		rpcIn, rpcOut, msgIn, msgOut, ctrlOut, dup, delivered atomic.Uint64
	}
}

// Traffic counts what GossipSub moved for this node since it started: RPCs read and
// written, the messages they carried, RPCs written with control messages only (IHAVE,
// IWANT, IDONTWANT, GRAFT, PRUNE), duplicates received and messages delivered. Per
// delivered message, they say what one sighting costs a node.
type Traffic struct {
	RPCIn      uint64 `json:"rpc_in"`
	RPCOut     uint64 `json:"rpc_out"`
	MsgIn      uint64 `json:"msg_in"`
	MsgOut     uint64 `json:"msg_out"`
	ControlOut uint64 `json:"control_out"` // RPCs without messages
	Duplicates uint64 `json:"duplicates"`
	Delivered  uint64 `json:"delivered"`
}

func (d *tracer) counts() Traffic {
	t := &d.traffic
	return Traffic{RPCIn: t.rpcIn.Load(), RPCOut: t.rpcOut.Load(), MsgIn: t.msgIn.Load(), MsgOut: t.msgOut.Load(),
		ControlOut: t.ctrlOut.Load(), Duplicates: t.dup.Load(), Delivered: t.delivered.Load()}
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
func (*tracer) ValidateMessage(*pubsub.Message)  {}
func (d *tracer) DeliverMessage(*pubsub.Message) { d.traffic.delivered.Add(1) }
func (d *tracer) RejectMessage(m *pubsub.Message, reason string) {
	d.debugf("pubsub reject", "from", m.ReceivedFrom, "author", m.GetFrom(), "reason", reason)
}
func (d *tracer) DuplicateMessage(*pubsub.Message) { d.traffic.dup.Add(1) }
func (d *tracer) ThrottlePeer(p peer.ID)           { d.debugf("pubsub throttle", "peer", p) }
func (d *tracer) RecvRPC(r *pubsub.RPC) {
	d.traffic.rpcIn.Add(1)
	d.traffic.msgIn.Add(uint64(len(r.GetPublish())))
	if d.debug && (len(r.GetPublish()) > 0 || len(r.GetSubscriptions()) > 0) {
		d.log.Debug("pubsub recv rpc", "msgs", len(r.GetPublish()), "subs", len(r.GetSubscriptions()))
	}
}
func (d *tracer) SendRPC(r *pubsub.RPC, p peer.ID) {
	d.traffic.rpcOut.Add(1)
	if m := len(r.GetPublish()); m > 0 {
		d.traffic.msgOut.Add(uint64(m))
	} else {
		d.traffic.ctrlOut.Add(1)
	}
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
