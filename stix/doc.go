// Package stix owns the STIX 2.1 objects Proteus reads and writes: the sighting report an
// agent publishes to its enclave (a bundle with an indicator, a sighting, the reporter's
// identity and a property extension carrying the reporter's exposure profile), the
// revocation that retracts it, strict decoding of both, the small indicator-pattern
// language Proteus understands, the relevance test against this agent's own exposure, and
// a replay guard.
//
// It imports only the standard library; it must not import enclave, countermeasure or
// anything that does I/O.
package stix
