package enclave

import (
	"context"
	"log/slog"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// debugTracer logs GossipSub's view of messages and RPCs at debug level; it is installed
// only when the node's logger has debug enabled.
type debugTracer struct{ log *slog.Logger }

var _ pubsub.RawTracer = debugTracer{}

func (d debugTracer) AddPeer(p peer.ID, proto protocol.ID) {
	d.log.Debug("pubsub peer up", "peer", p, "proto", proto)
}
func (d debugTracer) RemovePeer(p peer.ID)          { d.log.Debug("pubsub peer down", "peer", p) }
func (debugTracer) Join(string)                     {}
func (debugTracer) Leave(string)                    {}
func (d debugTracer) Graft(p peer.ID, _ string)     { d.log.Debug("pubsub graft", "peer", p) }
func (d debugTracer) Prune(p peer.ID, _ string)     { d.log.Debug("pubsub prune", "peer", p) }
func (debugTracer) ValidateMessage(*pubsub.Message) {}
func (debugTracer) DeliverMessage(*pubsub.Message)  {}
func (d debugTracer) RejectMessage(m *pubsub.Message, reason string) {
	d.log.Debug("pubsub reject", "from", m.ReceivedFrom, "author", m.GetFrom(), "reason", reason)
}
func (debugTracer) DuplicateMessage(*pubsub.Message) {}
func (d debugTracer) ThrottlePeer(p peer.ID)         { d.log.Debug("pubsub throttle", "peer", p) }
func (d debugTracer) RecvRPC(r *pubsub.RPC) {
	if len(r.GetPublish()) > 0 || len(r.GetSubscriptions()) > 0 {
		d.log.Debug("pubsub recv rpc", "msgs", len(r.GetPublish()), "subs", len(r.GetSubscriptions()))
	}
}
func (d debugTracer) SendRPC(r *pubsub.RPC, p peer.ID) {
	if len(r.GetPublish()) > 0 || len(r.GetSubscriptions()) > 0 {
		d.log.Debug("pubsub send rpc", "to", p, "msgs", len(r.GetPublish()), "subs", len(r.GetSubscriptions()))
	}
}
func (d debugTracer) DropRPC(r *pubsub.RPC, p peer.ID) {
	d.log.Debug("pubsub drop rpc", "to", p, "msgs", len(r.GetPublish()))
}
func (d debugTracer) UndeliverableMessage(m *pubsub.Message) {
	d.log.Debug("pubsub undeliverable", "author", m.GetFrom())
}

func tracerOption(log *slog.Logger) []pubsub.Option {
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return nil
	}
	return []pubsub.Option{pubsub.WithRawTracer(debugTracer{log})}
}
