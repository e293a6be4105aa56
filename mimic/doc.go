// Package mimic is the voting gateway of Proteus's mimic defense (dynamic heterogeneous
// redundancy): it sends each client request to k heterogeneous but functionally equivalent
// executors, normalizes their responses (volatile headers, canonical JSON, ignore lists and
// noise learned online), votes on a hash of the normalized responses, answers with a member of
// the majority and reports every dissenting executor on the bus. Requests on single routes go
// to one executor and stream (stream.go), protocol upgrades among them (tunnel.go); executors
// that cannot be reached are ejected for a while.
//
// What is not HTTP's own lives in the voter core (mimic/voter): the schedulers that pick the
// k executors, ejection, trust, the rebuild policy, and the dissent, no-consensus, ejection and
// rebuild events with their metrics. The gateway keeps its own fan-out (workers, keep-alive
// executor connections, stragglers), tuned for HTTP, and the normalization and vote on HTTP
// responses (vote.go).
//
// The gateway takes its executors through the small Backends interface (the executor pool
// implements it with a one-screen adapter; Static serves the standalone `proteus gateway`),
// an optional Blocklist, and an optional Rebuild hook called when an executor dissents too
// often; it keeps the noise it learned in a file across restarts when told to (LearnedFile). It
// imports bus, mimic/voter, config, atomicfile, strictjson and the standard library plus the Prometheus client; it must
// not import executor, engine, countermeasure, enclave or cmd, so those can depend on it.
package mimic
