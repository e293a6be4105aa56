#!/usr/bin/env bash
# bench/enclave.sh: enclave propagation latency on one machine.
#
# For 5, 20 and 50 peers, `proteus enclave bench` starts that many `proteus enclave run`
# processes on loopback (each with its own identity, membership certificate and data dir;
# node i dials nodes i-1, i-2, i-4, ...), waits for the GossipSub mesh, publishes MESSAGES
# sightings from rotating peers 100 ms apart, and reads every other peer's decision log:
# latency is from the publish call to the decision on it at each peer (since issue 18 a lone
# peer's report defers, so "apply" is measured only where a countermeasure was applied). CPU time and RSS per peer come from /proc/PID/stat and /proc/PID/status. Each size
# runs twice: data dirs on $TMPDIR (disk: the journal writer fsyncs once per batch of
# actions) and on /dev/shm (tmpfs: fsync is free), so the disk's share is visible. Every run stops by itself (a bench is bounded by its
# messages; startup waits are capped).
#
# Usage: bench/enclave.sh [MESSAGES]   (default 20; needs go)
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${1:-20}
command -v go >/dev/null || { echo "bench/enclave.sh: go is not installed" >&2; exit 2; }
W=$(mktemp -d /tmp/proteus-enclavebench.XXXXXX)
trap 'rm -rf "$W"' EXIT
go build -o "$W/proteus" ./cmd/proteus

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nproc) CPUs, $(go version | cut -d' ' -f3), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| peers | data dir | samples | missing | p50 ms | p99 ms | max ms | apply p50 ms | apply p99 ms | RSS/peer MB | CPU/peer ms | CPU/peer % | idle CPU/peer % |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in 5 20 50; do
  for where in disk tmpfs; do
    dir=${TMPDIR:-/tmp}
    [ "$where" = tmpfs ] && dir=/dev/shm
    out=$("$W/proteus" enclave bench --peers "$n" --messages "$MESSAGES" --dir "$dir" -o json)
    python3 - "$n" "$where" "$out" <<'PY'
import json, sys
n, where, r = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f"| {n} | {where} | {r['samples']} | {r['missing']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | "
      f"{r['apply_p50_ms']} | {r['apply_p99_ms']} | {r['rss_mb_avg']} | {r['cpu_ms_per_peer']} | {r['cpu_pct_per_peer']} | {r['idle_cpu_pct_per_peer']} |")
PY
  done
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
