// Package voter is the protocol-neutral core of Proteus's mimic defense (dynamic
// heterogeneous redundancy): which k of the n executors answer one request (schedulers, with
// ejection of executors that cannot be reached), the quorum rule, the fan-out of one request
// to the chosen executors and the grouping of their answers by an equivalence key the adapter
// computes from its normalized answer (Poll), and the accounting every protocol shares: trust
// per executor, dissent and no-consensus events on the bus, ejection and rebuild requests,
// with their Prometheus series (Core, Metrics).
//
// An adapter owns its protocol: parsing, normalization (what makes two answers equivalent),
// the answer it sends and its own I/O. The HTTP gateway (package mimic) keeps its own tuned
// fan-out and uses Core for everything else; the DNS front (mimic/dnsgw) gathers its answers
// itself, without a goroutine per ask, and decides with Tally (Poll's rule); a third protocol
// can use either.
//
// It imports bus, the standard library and the Prometheus client only; it must not import
// mimic, its adapters, executor, engine or cmd.
package voter
