#!/usr/bin/env bash
# bench/rotation.sh: load through the agent's gateway while every executor is rotated every
# second. Passes only with zero non-2xx responses and zero socket errors.
#
#   bench/rotation.sh                 # 60 s, 2 threads, 32 connections, the agent's default
#                                     # frontend: the mimic voting gateway (k=3, max-diversity)
#   DURATION=10 CONNS=8 bench/rotation.sh
#   FRONTEND=proxy bench/rotation.sh  # through the round-robin proxy instead (--proxy)
#   ISOLATION=off bench/rotation.sh   # executors unconfined (pool.isolation.mode: off); the
#                                     # default is auto: full isolation when run as root
#
# Needs wrk. Everything listens on 127.0.0.1 (ports picked by the kernel); the run is bounded
# by DURATION and the script stops the agent (and so every executor) when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-60}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
PATH_UNDER_TEST=${PATH_UNDER_TEST:-/about.html}
FRONTEND=${FRONTEND:-vote}
if [ "${VOTE:-}" = 1 ]; then FRONTEND=vote; fi   # the old switch, when the proxy was the default
case "$FRONTEND" in vote|proxy) ;; *) echo "rotation.sh: FRONTEND must be vote or proxy" >&2; exit 2;; esac
ISOLATION=${ISOLATION:-auto}
case "$ISOLATION" in auto|required|off) ;; *) echo "rotation.sh: ISOLATION must be auto, required or off" >&2; exit 2;; esac

command -v wrk >/dev/null || { echo "rotation.sh: wrk is not installed (apt-get install wrk)" >&2; exit 2; }

work=$(mktemp -d)
agent=""
cleanup() {
  if [ -n "$agent" ] && kill -0 "$agent" 2>/dev/null; then
    kill -TERM "$agent"
    wait "$agent" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/proteus" ./cmd/proteus

cat >"$work/rotation.yaml" <<YAML
version: 1
log: {level: warn}
gateway: {k: 3, scheduler: max-diversity}   # as in the embedded default
pool:
  desired: 3
  min: 3
  max_concurrent: 3
  redraw: true
  grace: 2s
  health: {interval: 500ms, timeout: 1s}
  rotation: {every: 1s}
  isolation: {mode: $ISOLATION}
  variants:
    - {name: go-nethttp, image: "builtin:demo", command: ["{{.Self}}", demo-server, --impl, nethttp, --listen, "{{.Addr}}", --root, "{{.Dir}}/site"]}
    - {name: go-fasthttp, image: "builtin:demo", command: ["{{.Self}}", demo-server, --impl, fasthttp, --listen, "{{.Addr}}", --root, "{{.Dir}}/site"]}
    - {name: go-raw, image: "builtin:demo", command: ["{{.Self}}", demo-server, --impl, raw, --listen, "{{.Addr}}", --root, "{{.Dir}}/site"]}
YAML

front_flag=(--vote)
front="mimic voting gateway, k=3"
if [ "$FRONTEND" = proxy ]; then front_flag=(--proxy); front="round-robin proxy"; fi
"$work/proteus" --data-dir "$work/data" agent -c "$work/rotation.yaml" --listen 127.0.0.1:0 --api 127.0.0.1:0 "${front_flag[@]}" 2>"$work/agent.log" &
agent=$!
for _ in $(seq 300); do
  [ -s "$work/data/gateway.addr" ] && [ -s "$work/data/api.addr" ] && break
  kill -0 "$agent" 2>/dev/null || { cat "$work/agent.log" >&2; exit 1; }
  sleep 0.1
done
gw=$(cat "$work/data/gateway.addr")
api=$(cat "$work/data/api.addr")
token=$(cat "$work/data/api.token")

metric() { # sum of every series of metric $1
  curl -fsS -H "Authorization: Bearer $token" "http://$api/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d\n", s }'
}

rot0=$(metric proteus_mtd_rotations_total)
fail0=$(metric proteus_mtd_rotation_failures_total)
isolation=$(curl -fsS -H "Authorization: Bearer $token" "http://$api/v1/status" | grep -o '"isolation":"[^"]*"' | head -1 | sed 's/"isolation":"//; s/"$//; s/uid+gid [0-9]*/own uid+gid/')
echo "== executor isolation: ${isolation:-off}"
echo "== wrk -t$THREADS -c$CONNS -d${DURATION}s --latency http://$gw$PATH_UNDER_TEST (every executor rotated every 1 s; $front)"
wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "http://$gw$PATH_UNDER_TEST" | tee "$work/wrk.txt"
rot=$(( $(metric proteus_mtd_rotations_total) - rot0 ))
fail=$(( $(metric proteus_mtd_rotation_failures_total) - fail0 ))
echo "== rotations completed during the run: $rot (failed: $fail), c* = 3, 3 executors"
curl -fsS -H "Authorization: Bearer $token" "http://$api/metrics" | grep -E '^proteus_mtd_rotation_duration_seconds_(sum|count)' || true

status=0
if grep -q 'Non-2xx or 3xx responses' "$work/wrk.txt"; then
  echo "FAIL: non-2xx responses during rotation" >&2; status=1
fi
if grep -q 'Socket errors' "$work/wrk.txt"; then
  echo "FAIL: socket errors during rotation" >&2; status=1
fi
if [ "$rot" -lt $(( DURATION )) ]; then
  echo "FAIL: only $rot rotations in ${DURATION}s; executors were not rotating every second" >&2; status=1
fi
[ "$status" -eq 0 ] && echo "PASS: zero non-2xx, zero socket errors"
exit "$status"
