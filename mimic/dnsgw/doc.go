// Package dnsgw is the DNS adapter of Proteus's mimic defense: a voting DNS front over
// heterogeneous resolvers or authoritative servers (unbound, knot-resolver, BIND, dnsmasq,
// NSD, Knot...). It answers DNS over UDP and TCP, validates each query (one question, opcode
// QUERY, no zone transfers, EDNS version 0, size and per-client rate bounds), asks k of the
// executors the same question with its own message ID (never forwarding the client's bytes),
// normalizes their answers (message ID, record order, name case, TTLs within a tolerance,
// EDNS options and the flags that legitimately differ are left out), votes through the voter
// core, and answers with the majority's records and the lowest TTLs of the deciding group:
// nothing an executor sent reaches the client unless a quorum sent it too. Without a quorum
// the client gets SERVFAIL and the bus a no-consensus event; an executor that times out is an
// availability dissent; every dissent event names the executor, the query and what differed.
//
// It imports mimic/voter, bus, config, github.com/miekg/dns, golang.org/x/net/ipv4 (batched
// UDP reads and writes), the Prometheus client and the standard library; it must not import
// mimic (the HTTP adapter), executor, engine or cmd.
package dnsgw
