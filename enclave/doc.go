// Package enclave owns Proteus's peer-to-peer defense enclaves: a libp2p host with a
// persistent identity, one GossipSub topic per enclave with strict message signing,
// admission of members by enclave-signed certificates or an allowlist (a connection gater
// plus the /proteus/enclave/cert/1.0.0 exchange), the envelope that carries STIX bundles,
// per-peer trust that feeds GossipSub's peer score, the relevance filter and the three-way
// decision (act, defer, ignore) on combined evidence, and the loopback control API that
// `proteus enclave` talks to.
//
// STIX objects come from package stix and countermeasures from package countermeasure;
// this package must not import cmd/proteus, mimic, executor or the game engine.
package enclave
