// Package decoy runs chaff: listeners on ports nothing real uses, each greeting in one
// service's protocol (SSH, HTTP, SMTP, MySQL, Redis) with an identity that follows the game's
// deception signal (one banner set per signal, switched at run time by SetSignal). A decoy
// never forwards anything and never answers more than its one greeting; every connection to
// it is reconnaissance evidence, reported as a sensor.Event (sensor "decoy", kind "connect")
// with the source address, the port and the first bytes sent.
//
// It is cheap by construction: one goroutine per listener, at most MaxConns connections
// served at once (more are closed at once, still reported), each read bounded in bytes and
// the whole connection bounded in time, and events queued without blocking the accept path
// (a full queue is counted, not waited on).
//
// It imports config and sensor; it must not import engine, store or the gateway (the engine
// imports it and forwards the signal).
package decoy
