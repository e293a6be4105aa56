package enclave

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// rawPeer speaks the enclave's protocols by hand, as an attacker would: it answers (or, as
// an outsider, ignores) the certificate exchange, and writes GossipSub RPCs itself, so it
// can send any signed message (a replay, a re-versioned indicator, a flood) and count what
// it is sent.
type rawPeer struct {
	t        *testing.T
	h        host.Host
	key      crypto.PrivKey
	id       peer.ID
	cert     []byte // nil: an outsider that never proves membership
	topic    string
	received atomic.Int64 // messages on the topic delivered to it
	streams  atomic.Int64 // GossipSub streams a member opened to it
	rpcs     atomic.Int64 // RPCs read on them (the subscription hello included)

	dataMu sync.Mutex
	data   [][]byte // their payloads

	mu  sync.Mutex
	out map[peer.ID]network.Stream
}

var meshsub = []protocol.ID{pubsub.GossipSubID_v12, pubsub.GossipSubID_v11, pubsub.GossipSubID_v10}

func (e *testEnclave) rawPeer(admitted bool) *rawPeer {
	e.t.Helper()
	t := e.t.(*testing.T)
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := PeerIDOf(key)
	r := &rawPeer{t: t, key: key, id: id, topic: TopicPrefix + e.name, out: map[peer.ID]network.Stream{}}
	if admitted {
		c, err := Admit(e.key, e.name, id, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		r.cert = c.Marshal()
	}
	r.h, err = libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/"+nextLoopback()+"/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.h.Close() })
	r.h.SetStreamHandler(CertProtocol, func(s network.Stream) {
		defer s.Close()
		if r.cert == nil {
			return // an outsider: never answers
		}
		if _, err := readCert(bufio.NewReader(s)); err == nil {
			_ = writeCert(s, r.cert)
		}
	})
	for _, p := range meshsub {
		r.h.SetStreamHandler(p, r.readRPCs)
	}
	return r
}

// readRPCs counts (and keeps the payloads of) the topic messages a member sends this peer.
func (r *rawPeer) readRPCs(s network.Stream) {
	defer s.Close()
	r.streams.Add(1)
	br := bufio.NewReader(s)
	for {
		l, err := binary.ReadUvarint(br)
		if err != nil || l > 1<<20 {
			return
		}
		buf := make([]byte, l)
		if _, err := io.ReadFull(br, buf); err != nil {
			return
		}
		var rpc pb.RPC
		if rpc.Unmarshal(buf) != nil {
			return
		}
		r.rpcs.Add(1)
		for _, m := range rpc.Publish {
			if m.GetTopic() == r.topic {
				r.received.Add(1)
				r.dataMu.Lock()
				r.data = append(r.data, m.GetData())
				r.dataMu.Unlock()
			}
		}
	}
}

// join connects to n, proves membership (if admitted) and subscribes to the topic.
func (r *rawPeer) join(n *testNode) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.h.Connect(ctx, peer.AddrInfo{ID: n.ID(), Addrs: n.host.Addrs()}); err != nil {
		r.t.Fatal(err)
	}
	if r.cert != nil {
		if err := r.presentCert(n); err != nil {
			r.t.Fatalf("certificate exchange: %v", err)
		}
		eventually(r.t, "raw peer admitted", func() bool { return n.isMember(r.id) })
	}
	s, err := r.h.NewStream(ctx, n.ID(), meshsub...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.out[n.ID()] = s
	r.mu.Unlock()
	sub := true
	r.write(n.ID(), &pb.RPC{Subscriptions: []*pb.RPC_SubOpts{{Subscribe: &sub, Topicid: &r.topic}}})
	if r.cert != nil {
		eventually(r.t, "raw peer in the topic", func() bool {
			for _, p := range n.topic.ListPeers() {
				if p == r.id {
					return true
				}
			}
			return false
		})
	}
}

// presentCert runs the dialer's side of the certificate exchange with n (r is connected to
// it): r's certificate out, n's back; an error when n does not answer with its own.
func (r *rawPeer) presentCert(n *testNode) error {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := r.h.NewStream(ctx, n.ID(), CertProtocol)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := writeCert(s, r.cert); err != nil {
		return err
	}
	_, err = readCert(bufio.NewReader(s))
	return err
}

func (r *rawPeer) write(to peer.ID, rpc *pb.RPC) error {
	data, err := rpc.Marshal()
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.out[to]
	if s == nil {
		r.t.Fatalf("not joined to %s", to)
	}
	_, err = s.Write(append(binary.AppendUvarint(nil, uint64(len(data))), data...))
	return err
}

// message is a topic message authored and signed by key (the raw peer's own, or any
// member's the test holds: the network cannot tell a replay from the original).
func (r *rawPeer) message(key crypto.PrivKey, data []byte) *pb.Message {
	r.t.Helper()
	id, _ := PeerIDOf(key)
	seq := make([]byte, 8)
	if _, err := rand.Read(seq); err != nil {
		r.t.Fatal(err)
	}
	m := &pb.Message{From: []byte(id), Data: data, Seqno: seq, Topic: &r.topic}
	b, err := m.Marshal()
	if err != nil {
		r.t.Fatal(err)
	}
	if m.Signature, err = key.Sign(append([]byte(pubsub.SignPrefix), b...)); err != nil {
		r.t.Fatal(err)
	}
	return m
}

// send writes messages to member n in one RPC.
func (r *rawPeer) send(n *testNode, ms ...*pb.Message) error {
	return r.write(n.ID(), &pb.RPC{Publish: ms})
}

// envelope wraps a bundle as this raw peer (its certificate).
func (r *rawPeer) envelope(k Kind, bundle []byte) []byte {
	return (&Envelope{Version: EnvelopeVersion, Enclave: r.topic[len(TopicPrefix):], Kind: k, Cert: r.cert, Bundle: bundle}).Encode()
}

// payloads are the topic payloads this peer has been sent so far.
func (r *rawPeer) payloads() [][]byte {
	r.dataMu.Lock()
	defer r.dataMu.Unlock()
	return append([][]byte(nil), r.data...)
}
