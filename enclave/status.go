package enclave

import (
	"sort"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// PeerInfo is one row of `proteus enclave peers`.
type PeerInfo struct {
	ID         string   `json:"id"`
	Addrs      []string `json:"addrs,omitempty"`
	Connected  bool     `json:"connected"`
	Membership string   `json:"membership"` // allowlist, certificate, pending, denied
	InTopic    bool     `json:"in_topic"`   // subscribed to the enclave topic
	Trust      float64  `json:"trust"`
	Score      *float64 `json:"score,omitempty"` // GossipSub peer score, when known
}

// Status summarises the node.
type Status struct {
	Peer       string   `json:"peer"`
	Enclave    string   `json:"enclave"`
	Topic      string   `json:"topic"`
	Addrs      []string `json:"addrs"`
	Connected  int      `json:"connected"`
	TopicPeers int      `json:"topic_peers"`
	MeshPeers  int      `json:"mesh_peers"` // peers this node forwards to; a report reaches a peer for sure once both sides have meshed
	Stats      Stats    `json:"stats"`
	Traffic    Traffic  `json:"traffic"`
}

// Status returns the node summary.
func (n *Node) Status() Status {
	return Status{Peer: n.self.String(), Enclave: n.cfg.Name, Topic: TopicPrefix + n.cfg.Name,
		Addrs: n.Addrs(), Connected: len(n.host.Network().Peers()), TopicPeers: len(n.topic.ListPeers()),
		MeshPeers: n.tracer.meshPeers(), Stats: n.Stats(), Traffic: n.tracer.counts()}
}

// Peers lists connected peers and every peer the trust table knows.
func (n *Node) Peers() []PeerInfo {
	inTopic := map[peer.ID]bool{}
	for _, p := range n.topic.ListPeers() {
		inTopic[p] = true
	}
	rows := map[peer.ID]*PeerInfo{}
	row := func(p peer.ID) *PeerInfo {
		r, ok := rows[p]
		if !ok {
			r = &PeerInfo{ID: p.String(), Trust: round4(n.trust.Score(p.String())), InTopic: inTopic[p]}
			switch {
			case n.allow[p]:
				r.Membership = "allowlist"
			case n.isMember(p):
				r.Membership = "certificate"
			case n.isDenied(p):
				r.Membership = "denied"
			default:
				r.Membership = "pending"
			}
			if s, ok := n.Score(p); ok {
				r.Score = &s
			}
			rows[p] = r
		}
		return r
	}
	for _, p := range n.host.Network().Peers() {
		r := row(p)
		r.Connected = n.host.Network().Connectedness(p) == network.Connected
		for _, a := range n.host.Peerstore().Addrs(p) {
			r.Addrs = append(r.Addrs, a.String())
		}
		sort.Strings(r.Addrs)
	}
	for _, t := range n.trust.Snapshot() {
		if p, err := peer.Decode(t.Peer); err == nil {
			row(p)
		}
	}
	out := make([]PeerInfo, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
