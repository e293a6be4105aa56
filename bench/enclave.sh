#!/usr/bin/env bash
# bench/enclave.sh: enclave propagation latency on one machine.
#
# For 5, 20 and 50 peers, `proteus enclave bench` starts that many `proteus enclave run`
# processes on loopback (each with its own identity, membership certificate and data dir;
# node i dials nodes i-1, i-2, i-4, ...), waits for the GossipSub mesh, publishes MESSAGES
# sightings from rotating peers 100 ms apart, and reads every other peer's decision log:
# latency is from the publish call to the decision on it at each peer (since issue 18 a lone
# peer's report defers, so "apply" is measured only where a countermeasure was applied). CPU
# time and RSS per peer come from /proc/PID/stat and /proc/PID/status; RPCs per delivery from
# the nodes' GossipSub traffic counters (`proteus enclave status`). Each size runs twice: data
# dirs on $TMPDIR (disk: the journal writer fsyncs once per batch of actions) and on /dev/shm
# (tmpfs: fsync is free), so the disk's share is visible. Every run stops by itself (a bench
# is bounded by its messages; startup waits are capped).
#
# Usage: bench/enclave.sh [MESSAGES]   (default 20; needs go and python3)
#
#        BEFORE=REV bench/enclave.sh --compare [ROUNDS]
#   builds git revision REV beside this tree and runs, ROUNDS times (default 3), 50 peers
#   quiet (--messages 20) and 50 peers under a 20,000-sighting flood from one member
#   (--messages 100 --flood 20000), this tree and REV alternately, so a change is judged in
#   one run on the same machine at about the same load.
#
#        bench/enclave.sh --budgets [ROUNDS]
#   runs, ROUNDS times (default 4), 50 peers quiet, 50 peers under a 20,000-sighting flood
#   from one member, and a flood of UNBUDGETED_FLOOD sightings (default 2000) with every
#   node started --unbudgeted (no per-peer budgets: limits at their maxima, the enclave of
#   issue 18 case 8), same binary, one after another; prints what each honest peer took in
#   (accepted, dropped over budget) and its memory before, after and at its peak beside the
#   latency. Unbudgeted, every honest peer validates, decides and relays the whole flood:
#   UNBUDGETED_FLOOD=20000 took 22 minutes of both cores (load about 100) on 2 CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || { echo "bench/enclave.sh: go is not installed" >&2; exit 2; }
W=$(mktemp -d /tmp/proteus-enclavebench.XXXXXX)
trap 'rm -rf "$W"' EXIT
go build -o "$W/proteus" ./cmd/proteus

row() { # label json load-before
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
label, r, load = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
per = r.get("per_delivery") or {}
cpu = r["cpu_ms_per_peer"] * 1000 / r["messages"]  # µs per sighting delivered to a peer
print(f"| {label} | {load} | {r['samples']} | {r['missing']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | "
      f"{per.get('rpc_in', '')} | {per.get('rpc_out', '')} | {cpu:.0f} | {r['rss_mb_avg']} ({r['rss_mb_max']}) | "
      f"{r.get('flood_s', '')} | {r.get('flooder_cpu_ms', '')} |")
PY
}

if [ "${1:-}" = --budgets ]; then
  ROUNDS=${2:-4}
  UNBUDGETED_FLOOD=${UNBUDGETED_FLOOD:-2000}
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nproc) CPUs, $(go version | cut -d' ' -f3), $(git rev-parse --short HEAD)$(git diff --quiet || echo +changes)"
  echo
  echo "| run | load before | samples | missing | p50 ms | p99 ms | max ms | accepted/peer | over budget/peer | flood accepted/peer (max) | RSS/peer MB before → after (peak max) | CPU µs/delivery | flood s | flooder CPU ms |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  brow() { # label json load-before
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
label, r, load = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
print(f"| {label} | {load} | {r['samples']} | {r['missing']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | "
      f"{r['accepted_avg']} | {r['limited_avg']} | {r.get('flood_accepted_avg', '')} ({r.get('flood_accepted_max', '')}) | "
      f"{r['rss_mb_before_avg']} → {r['rss_mb_avg']} ({r['hwm_mb_max']}) | {r['cpu_us_per_delivery']:.0f} | "
      f"{r.get('flood_s', '')} | {r.get('flooder_cpu_ms', '')} |")
PY
  }
  for r in $(seq "$ROUNDS"); do
    l=$(cut -d' ' -f1 /proc/loadavg)
    brow "$r quiet" "$("$W/proteus" enclave bench --peers 50 --messages 20 -o json)" "$l"
    l=$(cut -d' ' -f1 /proc/loadavg)
    brow "$r flood" "$("$W/proteus" enclave bench --peers 50 --messages 100 --flood 20000 -o json)" "$l"
    l=$(cut -d' ' -f1 /proc/loadavg)
    brow "$r flood $UNBUDGETED_FLOOD, unbudgeted" "$("$W/proteus" enclave bench --peers 50 --messages 100 --flood "$UNBUDGETED_FLOOD" --unbudgeted -o json)" "$l"
  done
  echo
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi

if [ "${1:-}" = --compare ]; then
  [ -n "${BEFORE:-}" ] || { echo "bench/enclave.sh: --compare needs BEFORE=REV" >&2; exit 2; }
  ROUNDS=${2:-3}
  mkdir -p "$W/before-src"
  git archive "$BEFORE" | tar -x -C "$W/before-src"
  (cd "$W/before-src" && go build -o "$W/proteus-before" ./cmd/proteus)
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nproc) CPUs, $(go version | cut -d' ' -f3), before = $BEFORE, after = $(git rev-parse --short HEAD)$(git diff --quiet || echo +changes)"
  echo
  echo "| run | load before | samples | missing | p50 ms | p99 ms | max ms | RPCs in/delivery | RPCs out/delivery | CPU µs/delivery | RSS/peer MB avg (max) | flood s | flooder CPU ms |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for r in $(seq "$ROUNDS"); do
    for bin in proteus proteus-before; do
      label=after; [ "$bin" = proteus-before ] && label=before
      l=$(cut -d' ' -f1 /proc/loadavg)
      row "$r $label quiet" "$("$W/$bin" enclave bench --peers 50 --messages 20 -o json)" "$l"
      l=$(cut -d' ' -f1 /proc/loadavg)
      row "$r $label flood" "$("$W/$bin" enclave bench --peers 50 --messages 100 --flood 20000 -o json)" "$l"
    done
  done
  echo
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi

MESSAGES=${1:-20}
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nproc) CPUs, $(go version | cut -d' ' -f3), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| run | load before | samples | missing | p50 ms | p99 ms | max ms | RPCs in/delivery | RPCs out/delivery | CPU µs/delivery | RSS/peer MB avg (max) | flood s | flooder CPU ms |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in 5 20 50; do
  for where in disk tmpfs; do
    dir=${TMPDIR:-/tmp}
    [ "$where" = tmpfs ] && dir=/dev/shm
    l=$(cut -d' ' -f1 /proc/loadavg)
    row "$n peers, $where" "$("$W/proteus" enclave bench --peers "$n" --messages "$MESSAGES" --dir "$dir" -o json)" "$l"
  done
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
