#!/usr/bin/env bash
# bench/decoy-flood.sh: the real agent's decoys under a held flood from another network namespace.
#
# Runs TestAgentDecoyHeldFloodFromNetns (cmd/proteus/agent_decoy_flood_test.go): the `proteus
# agent` binary with SSH and Redis decoys (max_conns 64, the defaults otherwise) on one end of a
# veth pair, and a flooding process in a network namespace of its own on the other end opening
# CONNS connections over 20 s, each held open as a slow sender (one byte every 3 s, never a
# newline) until the decoy hangs up or 40 s have passed. The engine's decoy rule acts with
# vigilance only and nftables is off, so the flooder is decided on but not blocked. It samples
# the agent's VmRSS / VmHWM every 250 ms and its API status every second, checks the memory bound
# the test derives from the config, and prints the figures as one Markdown table row, preceded by
# the machine's load. The test removes its namespace, veth pair and processes when it ends (also
# when it fails); a SIGKILL of `go test` itself can leave the namespace proteus-flood-* behind
# (`ip netns list`).
#
# Usage: bench/decoy-flood.sh [CONNS]   (default 3000, at most 10000; needs root, ip, go)
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-3000}
case "$CONNS" in ''|*[!0-9]*) echo "bench/decoy-flood.sh: CONNS must be a whole number, got '$CONNS'" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "bench/decoy-flood.sh: needs root (network namespaces)" >&2; exit 2; }
for p in ip go; do
  command -v "$p" >/dev/null || { echo "bench/decoy-flood.sh: $p is not installed" >&2; exit 2; }
done
echo "load before: $(uptime)"
out=$(PROTEUS_DECOY_FLOOD_CONNS=$CONNS go test -count=1 -run '^TestAgentDecoyHeldFloodFromNetns$' -v ./cmd/proteus 2>&1) || {
  echo "$out" >&2
  exit 1
}
echo "load after:  $(uptime)"
grep -E '^\s+\|' <<<"$out" | sed -E 's/^\s+//'
grep -E 'flood from' <<<"$out" | sed -E 's/^\s+//'
