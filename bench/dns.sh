#!/usr/bin/env bash
# bench/dns.sh: the voting DNS front against dnsdist, side by side, on the same servers.
#
# Starts three heterogeneous authoritative servers serving one zone on loopback (NSD, Knot,
# BIND; NSD's response rate limiting off, as the others have none by default), then measures
# with dnsperf (UDP, 50 names of the zone, 100 queries outstanding),
# one after the other:
#   direct          dnsperf -> NSD
#   dnsdist         dnsperf -> dnsdist (no packet cache) -> NSD
#   proteus-single  dnsperf -> proteus dns-gateway --k 1 -> NSD
#   proteus-vote3   dnsperf -> proteus dns-gateway --k 3 -> NSD, Knot, BIND (majority of 3)
#   vote-floor      dnsperf -> bench/dnsfloor (C, one thread, epoll, no DNS parsing, reads and
#                   writes in batches, recvmmsg and sendmmsg with UDP segmentation) -> the same
#                   three: the least a voting front can spend on three exchanges over loopback
# the throughput (queries per second over DURATION) and the front's CPU time per query, then
# the latency at a moderate, fixed rate (-Q 2000 for 5 s; p50 and p99 of every answer, and the
# p50 a front adds over direct). Then it runs dnsdist and vote3 again, one after the other,
# ROUNDS times (with the floor), and prints the ratio of each round and their median, since this machine's
# speed drifts. Each round also reads the CPU the three servers and dnsperf spent per voted query
# in vote3's run: the cores divided by that is the ceiling for any voting front over these servers
# on this machine (one costing no CPU at all), printed as a ratio to dnsdist's throughput. Everything listens on loopback and stops by itself; runs ~1 + ROUNDS*2*DURATION.
#
# Usage: bench/dns.sh [DURATION [ROUNDS]]   (default 10 and 3 (seconds, rounds); OUTSTANDING=N sets
#        dnsperf's queries in flight at once, default 100; needs nsd,
#        knotd, named, dnsdist, dnsperf and go: .ci/run installs them)
#
#        BEFORE=REV bench/dns.sh [DURATION [ROUNDS]]
#   also builds the front of git revision REV and measures its vote3 beside this tree's, in the
#   main table (proteus-vote3-before) and in every round, so a change is judged in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
ROUNDS=${2:-3}
QUEUE=${OUTSTANDING:-100} # dnsperf -q: queries outstanding at once
case "$DUR$ROUNDS$QUEUE" in *[!0-9]*) echo "bench/dns.sh: DURATION (seconds) and ROUNDS must be whole numbers" >&2; exit 2 ;; esac
for p in nsd knotd named dnsdist dnsperf go cc; do
  command -v "$p" >/dev/null || { echo "bench/dns.sh: $p is not installed (.ci/run installs it)" >&2; exit 2; }
done

W=$(mktemp -d /tmp/proteus-dnsbench.XXXXXX)
chmod 755 "$W"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${DNSBENCH_KEEP:-}" ] && echo "kept $W" >&2 || rm -rf "$W"
}
trap cleanup EXIT

go build -o "$W/proteus" ./cmd/proteus
cc -O2 -o "$W/dnsfloor" bench/dnsfloor.c
if [ -n "${BEFORE:-}" ]; then
  mkdir -p "$W/before-src"
  git archive "$BEFORE" | tar -x -C "$W/before-src"
  (cd "$W/before-src" && go build -o "$W/proteus-before" ./cmd/proteus)
fi

# free_port: a loopback port free for UDP and TCP just now.
free_port() {
  python3 -c 'import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: t.close(); u.close()'
}

# The zone: 50 names, one A record each, and the query file naming them.
{
  echo '$ORIGIN proteus.lab.'
  echo '$TTL 300'
  echo '@ IN SOA ns1 hostmaster 2026120201 3600 600 86400 300'
  echo '@ IN NS ns1'
  echo 'ns1 IN A 127.0.0.1'
  for i in $(seq 1 50); do echo "h$i IN A 192.0.2.$i"; done
} > "$W/zone"
for i in $(seq 1 50); do echo "h$i.proteus.lab A"; done > "$W/queries"

NSD=$(free_port); KNOT=$(free_port); BIND=$(free_port)
mkdir -p "$W/nsd" "$W/knot" "$W/bind"
cat > "$W/nsd/nsd.conf" <<CONF
server:
  ip-address: 127.0.0.1@$NSD
  username: ""
  zonesdir: "$W/nsd"
  database: ""
  pidfile: "$W/nsd/nsd.pid"
  xfrdfile: "$W/nsd/xfrd.state"
  zonelistfile: "$W/nsd/zone.list"
  xfrdir: "$W/nsd"
  chroot: ""
  server-count: 1
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
  logfile: "$W/nsd/nsd.log"
remote-control:
  control-enable: no
zone:
  name: proteus.lab
  zonefile: $W/zone
CONF
cat > "$W/knot/knot.conf" <<CONF
server:
    listen: 127.0.0.1@$KNOT
    rundir: $W/knot
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: $W/knot/knot.sock
database:
    storage: $W/knot/db
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: $W/knot
    semantic-checks: off
zone:
  - domain: proteus.lab
    file: $W/zone
CONF
cat > "$W/bind/named.conf" <<CONF
options { directory "$W/bind"; listen-on port $BIND { 127.0.0.1; }; listen-on-v6 { none; };
  recursion no; pid-file "$W/bind/named.pid"; dnssec-validation no; session-keyfile "$W/bind/session.key"; };
controls { };
zone "proteus.lab" { type primary; file "$W/zone"; };
CONF
nsd -d -c "$W/nsd/nsd.conf" >"$W/nsd/out" 2>&1 & pids+=($!)
knotd -c "$W/knot/knot.conf" >"$W/knot/out" 2>&1 & pids+=($!)
named -g -4 -n 1 -c "$W/bind/named.conf" >"$W/bind/out" 2>&1 & pids+=($!)

DDIST=$(free_port)
cat > "$W/dnsdist.conf" <<CONF
setLocal("127.0.0.1:$DDIST")
setACL({"127.0.0.0/8"})
newServer({address="127.0.0.1:$NSD", checkInterval=3600})
CONF
dnsdist --supervised --disable-syslog -C "$W/dnsdist.conf" >"$W/dnsdist.out" 2>&1 & pids+=($!); DDIST_PID=$!

SINGLE=$(free_port); VOTE=$(free_port)
"$W/proteus" dns-gateway --listen 127.0.0.1:$SINGLE --k 1 --rate -1 --backend 127.0.0.1:$NSD >"$W/single.out" 2>&1 & pids+=($!); SINGLE_PID=$!
"$W/proteus" dns-gateway --listen 127.0.0.1:$VOTE --k 3 --rate -1 \
  --backend 127.0.0.1:$NSD --backend 127.0.0.1:$KNOT --backend 127.0.0.1:$BIND >"$W/vote.out" 2>&1 & pids+=($!); VOTE_PID=$!

FLOOR=$(free_port)
"$W/dnsfloor" "$FLOOR" "$NSD" "$KNOT" "$BIND" 2>"$W/floor.out" & pids+=($!); FLOOR_PID=$!

PORTS="$NSD $KNOT $BIND $DDIST $SINGLE $VOTE $FLOOR"
if [ -n "${BEFORE:-}" ]; then
  OLD=$(free_port)
  "$W/proteus-before" dns-gateway --listen 127.0.0.1:$OLD --k 3 --rate -1 \
    --backend 127.0.0.1:$NSD --backend 127.0.0.1:$KNOT --backend 127.0.0.1:$BIND >"$W/before.out" 2>&1 & pids+=($!); OLD_PID=$!
  PORTS="$PORTS $OLD"
fi

NSD_PID=${pids[0]}; KNOT_PID=${pids[1]}; BIND_PID=${pids[2]}
# wait until every server answers
for port in $PORTS; do
  for _ in $(seq 1 300); do
    dnsperf -s 127.0.0.1 -p "$port" -d "$W/queries" -n 1 -t 1 2>/dev/null | grep -q 'Queries completed:    50 ' && break
    sleep 0.2
  done
done

HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# server_ticks: the CPU ticks of the three servers (NSD's processes, Knot, BIND) so far
server_ticks() {
  local t=0 p
  for p in "$NSD_PID" $(pgrep -P "$NSD_PID") "$KNOT_PID" "$BIND_PID"; do t=$((t + $(cpu_ticks "$p"))); done
  echo "$t"
}

# machine_ticks: the machine's CPU ticks so far, all cores: user+nice, system, irq+softirq,
# idle+iowait, steal (time the hypervisor gave to others), from /proc/stat
machine_ticks() { awk '/^cpu / {print $2 + $3, $4, $7 + $8, $5 + $6, $9; exit}' /proc/stat; }

# machine_split BEFORE AFTER: the shares of the machine's time between two machine_ticks, in
# per cent: "user/system/irq/idle/steal"
machine_split() {
  awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); split(b, y, " "); t = 0
    for (i = 1; i <= n; i++) { d[i] = y[i] - x[i]; t += d[i] }
    if (t <= 0) { print "-"; exit }
    printf "%.0f/%.0f/%.0f/%.0f/%.0f\n", 100 * d[1] / t, 100 * d[2] / t, 100 * d[3] / t, 100 * d[4] / t, 100 * d[5] / t }'
}

# throughput PORT PID: queries per second, and CPU µs per answered query of the PID, of the
# three servers together and of dnsperf (the load generator: its own CPU, read by the shell
# that waited for it), then how the machine's time was split (machine_split)
throughput() {
  local before after sbefore safter out qps done mbefore mafter
  mbefore=$(machine_ticks)
  before=$(cpu_ticks "$2"); sbefore=$(server_ticks)
  out=$(bash -c 'dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$3" -q "$4" -c 4 2>/dev/null; echo "children $(awk "{print \$16 + \$17}" /proc/$$/stat)"' _ "$1" "$W/queries" "$DUR" "$QUEUE")
  after=$(cpu_ticks "$2"); safter=$(server_ticks)
  mafter=$(machine_ticks)
  qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
  done=$(awk '/Queries completed/ {print $3}' <<<"$out")
  awk -v q="$qps" -v d="$done" -v t=$((after - before)) -v s=$((safter - sbefore)) -v l="$(awk '/^children/ {print $2}' <<<"$out")" -v hz="$HZ" \
    -v m="$(machine_split "$mbefore" "$mafter")" \
    'BEGIN { f = (d > 0 ? 1e6 / hz / d : 0); printf "%.0f %.1f %.1f %.1f %s\n", q, t * f, s * f, l * f, m }'
}

# latency PORT: p50 and p99 in ms at 2000 queries per second for 5 s
latency() {
  dnsperf -s 127.0.0.1 -p "$1" -d "$W/queries" -l 5 -Q 2000 -v 2>/dev/null | awk '/^> NOERROR/ {print $5}' | sort -n |
    awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan nan"; exit } printf "%.3f %.3f\n", a[int(NR * 0.5) + 1] * 1000, a[int(NR * 0.99) + 1] * 1000 }'
}

echo "bench/dns.sh $(date -u +%Y-%m-%dT%H:%MZ), ${DUR}s per run, dnsperf -c4 -q$QUEUE over UDP, $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| setup | queries/s | front CPU µs/query | p50 ms @2000/s | p99 ms @2000/s | p50 added over direct |"
echo "|---|---:|---:|---:|---:|---:|"
read -r dq dc _ _ < <(throughput "$NSD" "$NSD_PID")
read -r d50 d99 < <(latency "$NSD")
echo "| direct (NSD) | $dq | - | $d50 | $d99 | 0 |"
setups=("dnsdist $DDIST $DDIST_PID" "proteus-single $SINGLE $SINGLE_PID" "proteus-vote3 $VOTE $VOTE_PID" "vote-floor $FLOOR $FLOOR_PID")
[ -n "${BEFORE:-}" ] && setups+=("proteus-vote3-before $OLD $OLD_PID")
for s in "${setups[@]}"; do
  read -r name port pid <<<"$s"
  read -r q c _ _ < <(throughput "$port" "$pid")
  read -r p50 p99 < <(latency "$port")
  add=$(awk -v a="$p50" -v b="$d50" 'BEGIN { printf "%.3f", a - b }')
  echo "| $name | $q | $c | $p50 | $p99 | $add |"
  eval "${name//-/_}_qps=$q"
done
echo
echo "front CPU: CPU time of the process under test per answered query (not for direct: NSD answers in a child process); one NSD, Knot and BIND each behind vote3"
echo
echo "$ROUNDS more rounds, dnsdist, vote3, then the floor:"
echo
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
head="| round | dnsdist queries/s | vote3 queries/s | vote3 / dnsdist | floor queries/s | floor / dnsdist | dnsdist CPU µs/query | vote3 CPU µs/query | floor CPU µs/query | vote3 / floor CPU | vote3: servers CPU µs/query | vote3: dnsperf CPU µs/query | ceiling / dnsdist | machine % dnsdist | machine % vote3 | machine % floor |"
rule="|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
[ -n "${BEFORE:-}" ] && head+=" before: queries/s | before: CPU µs/query |" && rule+="---:|---:|"
echo "$head"; echo "$rule"
ratios=(); cpus=(); fratios=(); fcpus=(); ceilings=()
for r in $(seq 1 "$ROUNDS"); do
  read -r aq ac _ _ am < <(throughput "$DDIST" "$DDIST_PID")
  read -r vq vc vs vl vm < <(throughput "$VOTE" "$VOTE_PID")
  read -r fq fc _ _ fm < <(throughput "$FLOOR" "$FLOOR_PID")
  ratio=$(div "$vq" "$aq")
  # the most a voting front costing no CPU at all could answer: the cores, less what the three
  # servers and dnsperf spend per voted query (measured in the vote3 run)
  ceiling=$(awk -v c="$(nproc)" -v s="$vs" -v l="$vl" 'BEGIN { printf "%.0f", (s + l > 0 ? c * 1e6 / (s + l) : 0) }')
  ratios+=("$ratio"); fratios+=("$(div "$fq" "$aq")"); fcpus+=("$(div "$vc" "$fc")"); ceilings+=("$(div "$ceiling" "$aq")")
  line="| $r | $aq | $vq | $ratio | $fq | $(div "$fq" "$aq") | $ac | $vc | $fc | $(div "$vc" "$fc") | $vs | $vl | $(div "$ceiling" "$aq") | $am | $vm | $fm |"
  if [ -n "${BEFORE:-}" ]; then
    read -r bq bc _ _ < <(throughput "$OLD" "$OLD_PID")
    cpus+=("$(div "$vc" "$bc")")
    line+=" $bq | $bc |"
  fi
  echo "$line"
done
echo
echo "median vote3 / dnsdist throughput over $ROUNDS rounds: $(printf '%s\n' "${ratios[@]}" | median)"
echo "median floor / dnsdist throughput: $(printf '%s\n' "${fratios[@]}" | median); median vote3 / floor CPU per query: $(printf '%s\n' "${fcpus[@]}" | median)"
echo "machine %: how the machine's time was split during the run, user/system/irq+softirq/idle/steal, all cores (/proc/stat)"
echo "median ceiling / dnsdist (the servers' and dnsperf's CPU per voted query alone, on $(nproc) cores): $(printf '%s\n' "${ceilings[@]}" | median)"
if [ -n "${BEFORE:-}" ]; then
  echo "median vote3 CPU per query, this tree / $BEFORE: $(printf '%s\n' "${cpus[@]}" | median)"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "dissent lines logged by vote3 during the run: $(grep -c 'msg=dissent' "$W/vote.out" || true)"
grep 'msg=dissent' "$W/vote.out" | head -3 || true
