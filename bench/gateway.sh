#!/usr/bin/env bash
# bench/gateway.sh: the mimic voting gateway against nginx, side by side, on the same backends.
#
# Starts three heterogeneous backends serving one 2 KiB page (nginx, lighttpd and the Go
# net/http demo server), then measures with wrk, one after the other:
#   direct        wrk -> backend 1 (nginx)
#   nginx proxy   wrk -> nginx reverse proxy -> backend 1
#   nginx mirror3 wrk -> nginx proxy -> backend 1, mirrored to backends 2 and 3
#   proteus single   wrk -> proteus gateway --policy single (k=1)
#   proteus vote3    wrk -> proteus gateway --policy vote --k 3 (majority of 3)
#   vote floor    wrk -> bench/votefloor (C, one thread, epoll): the request written unchanged to
#                 the three backends, their bodies compared, the first answer written back;
#                 the least CPU any voting front can spend on three exchanges over loopback
# at high load (wrk -t1 -c32 -d10s) and moderate load (-c4, for latency), and prints a
# Markdown table. Then it runs nginx proxy, nginx mirror3 and vote3 again at -c32, one after
# the other, ROUNDS times, and prints the ratios of each round and their medians: this
# machine's speed drifts by tens of per cent within minutes, so the ratios of one run of each
# can mislead. Everything listens on loopback; runs ~3.5 minutes.
#
# Usage: bench/gateway.sh [DURATION [ROUNDS]]   (default 10s and 3; needs nginx, lighttpd, wrk, go)
#
#        BEFORE=REV bench/gateway.sh [DURATION [ROUNDS]]
#   also builds the gateway of git revision REV and measures it beside this tree's, in the
#   main table (proteus-vote3-before) and in every round, so a change is judged in one run.
#
#        bench/gateway.sh --instructions
#   counts instead the user-space instructions the vote3 gateway executes per request, under
#   valgrind's callgrind (GOMAXPROCS=1, wrk -t1 -c8 for 10 s after a 3 s warm-up): unlike req/s
#   and CPU time this hardly moves with the machine's load, so it shows small changes to the
#   gateway's own code (system calls and the kernel's work are not counted).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}
ROUNDS=${2:-3}
case "$ROUNDS" in ''|*[!0-9]*) echo "bench/gateway.sh: ROUNDS must be a whole number, got '$ROUNDS'" >&2; exit 2 ;; esac
if [ "$DUR" = --instructions ]; then
  command -v valgrind >/dev/null || { echo "bench/gateway.sh: --instructions needs valgrind" >&2; exit 2; }
fi
for p in nginx lighttpd wrk go cc; do
  command -v "$p" >/dev/null || { echo "bench/gateway.sh: $p is not installed (.ci/run installs it)" >&2; exit 2; }
done

W=$(mktemp -d /tmp/proteus-gwbench.XXXXXX)
chmod 755 "$W" # nginx workers may run as another user
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${GWBENCH_KEEP:-}" ] && echo "kept $W" >&2 || rm -rf "$W"
}
trap cleanup EXIT
[ -n "${GWBENCH_DEBUG:-}" ] && set -x

go build -o "$W/proteus" ./cmd/proteus
cc -O2 -o "$W/votefloor" bench/votefloor.c
if [ -n "${BEFORE:-}" ]; then
  mkdir -p "$W/before-src"
  git archive "$BEFORE" | tar -x -C "$W/before-src"
  (cd "$W/before-src" && go build -o "$W/proteus-before" ./cmd/proteus)
fi

# The site: one 2 KiB page.
mkdir -p "$W/site"
page='<!doctype html>\n<html><head><title>bench</title></head><body>\n'
for i in $(seq 1 60); do page+=$(printf '<p>paragraph %03d of the bench page</p>' "$i")'\n'; done
page=$(printf "$page")
printf '%s\n</body></html>\n' "${page:0:2032}" > "$W/site/index.html"

declare -A FRONT # setup -> pid of the process whose CPU time is charged to it
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

nginx_conf() { # name port body
  mkdir -p "$W/$1"
  cat > "$W/$1/nginx.conf" <<NGX
daemon off;
worker_processes 2;
pid $W/$1/nginx.pid;
error_log $W/$1/error.log;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  charset utf-8;
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $W/$1/body;
  proxy_temp_path $W/$1/proxy;
  fastcgi_temp_path $W/$1/fastcgi;
  uwsgi_temp_path $W/$1/uwsgi;
  scgi_temp_path $W/$1/scgi;
$3
}
NGX
  nginx -e "$W/$1/error.log" -p "$W/$1" -c "$W/$1/nginx.conf" &
  pids+=($!)
  FRONT[$1]=$!
}

wait_up() {
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench/gateway.sh: nothing answers on port $1" >&2
  tail -n 5 "$W"/*/error.log "$W"/*.log 2>/dev/null >&2 || true
  exit 1
}

B1=$(port); B2=$(port); B3=$(port)
nginx_conf backend1 "$B1" "  server { listen 127.0.0.1:$B1; root $W/site; }"
mkdir -p "$W/lighttpd"
cat > "$W/lighttpd/lighttpd.conf" <<LT
server.document-root = "$W/site"
server.bind = "127.0.0.1"
server.port = $B2
server.pid-file = "$W/lighttpd/pid"
server.errorlog = "$W/lighttpd/error.log"
server.max-keep-alive-requests = 1000000
server.max-connections = 4096
index-file.names = ("index.html")
mimetype.assign = (".html" => "text/html; charset=utf-8")
LT
lighttpd -D -f "$W/lighttpd/lighttpd.conf" &
pids+=($!)
FRONT[backend2]=$!
"$W/proteus" demo-server --impl nethttp --listen "127.0.0.1:$B3" --root "$W/site" 2>/dev/null &
pids+=($!)
FRONT[backend3]=$!
for p in $B1 $B2 $B3; do wait_up "$p"; done

if [ "$DUR" = --instructions ]; then
  bins=(proteus)
  [ -n "${BEFORE:-}" ] && bins+=(proteus-before)
  for bin in "${bins[@]}"; do
    PI=$(port)
    GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file="$W/callgrind-$bin.out" \
      "$W/$bin" gateway --listen "127.0.0.1:$PI" --policy vote --k 3 \
      --backend "http://127.0.0.1:$B1" --backend "http://127.0.0.1:$B2" --backend "http://127.0.0.1:$B3" >"$W/vote-cg-$bin.log" 2>&1 &
    VG=$!
    pids+=($VG)
    for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$PI/" 2>/dev/null && break; sleep 0.2; done
    wrk -t1 -c8 -d3s "http://127.0.0.1:$PI/index.html" >/dev/null
    callgrind_control -z "$VG" >/dev/null 2>&1
    out=$(wrk -t1 -c8 -d10s "http://127.0.0.1:$PI/index.html")
    callgrind_control -d "$VG" >/dev/null 2>&1
    sleep 1
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    f=$(ls -t "$W"/callgrind-"$bin".out.* | head -1)
    ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    label="this tree"
    [ "$bin" = proteus-before ] && label="$BEFORE"
    printf 'vote3 gateway (%s) under callgrind: %s requests, %s instructions, %s instructions per request\n' \
      "$label" "$n" "$ir" "$(awk -v i="$ir" -v n="$n" 'BEGIN { printf "%.0f", i / n }')"
    kill "$VG" 2>/dev/null || true
    [ -n "${GWBENCH_KEEP:-}" ] && cp "$f" "$W/callgrind-$bin.final"
  done
  exit 0
fi

UP="upstream b1 { server 127.0.0.1:$B1; keepalive 64; }
  upstream b2 { server 127.0.0.1:$B2; keepalive 64; }
  upstream b3 { server 127.0.0.1:$B3; keepalive 64; }"
PX="proxy_http_version 1.1; proxy_set_header Connection \"\";"
NP=$(port); NM=$(port); PS=$(port); PV=$(port); PF=$(port)
nginx_conf proxy "$NP" "  $UP
  server { listen 127.0.0.1:$NP; location / { $PX proxy_pass http://b1; } }"
nginx_conf mirror "$NM" "  $UP
  server { listen 127.0.0.1:$NM;
    location / { mirror /m2; mirror /m3; $PX proxy_pass http://b1; }
    location = /m2 { internal; $PX proxy_pass http://b2\$request_uri; }
    location = /m3 { internal; $PX proxy_pass http://b3\$request_uri; }
  }"
# Every wrk connection comes from 127.0.0.1: lift the per-client limit (64 by default) so the
# -c256 run measures memory, not 429s (the BEFORE revision has no such limit).
printf 'version: 1\ngateway:\n  max_per_client: 100000\n' > "$W/gw.yaml"
"$W/proteus" gateway -c "$W/gw.yaml" --listen "127.0.0.1:$PS" --policy single --backend "http://127.0.0.1:$B1" >/dev/null 2>"$W/single.log" &
pids+=($!)
FRONT[single]=$!
"$W/proteus" gateway -c "$W/gw.yaml" --listen "127.0.0.1:$PV" --policy vote --k 3 \
  --backend "http://127.0.0.1:$B1" --backend "http://127.0.0.1:$B2" --backend "http://127.0.0.1:$B3" >/dev/null 2>"$W/vote.log" &
VOTEPID=$!
pids+=($VOTEPID)
FRONT[vote]=$VOTEPID
"$W/votefloor" "$PF" "$B1" "$B2" "$B3" 2>"$W/floor.log" &
pids+=($!)
FRONT[floor]=$!
BACKENDS=(--backend "http://127.0.0.1:$B1" --backend "http://127.0.0.1:$B2" --backend "http://127.0.0.1:$B3")
PB=""
if [ -n "${BEFORE:-}" ]; then
  PB=$(port)
  "$W/proteus-before" gateway --listen "127.0.0.1:$PB" --policy vote --k 3 "${BACKENDS[@]}" >/dev/null 2>"$W/vote-before.log" &
  pids+=($!)
  FRONT[before]=$!
fi
for p in $NP $NM $PS $PV $PF $PB; do wait_up "$p"; done

# Sanity: the voter must answer the page, and must not report dissent on it.
curl -fsS "http://127.0.0.1:$PV/index.html" | cmp -s - "$W/site/index.html" || { echo "bench/gateway.sh: vote3 answered a different page" >&2; exit 1; }

# cputicks PID: user+system clock ticks of PID and its children processes (nginx workers).
cputicks() {
  local t=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $t
}
HZ=$(getconf CLK_TCK)

# run NAME PORT CONNS FRONTPID -> "rps p50_ms p99_ms cpu_us_per_req"; for -c32 it also
# writes to $W/cpus-NAME the CPU per request of each backend, of wrk and of all of them.
run() {
  local out t0 t1 b0=() b1=() i
  local bes=(${FRONT[backend1]} ${FRONT[backend2]} ${FRONT[backend3]})
  t0=$(cputicks "$4")
  for i in 0 1 2; do b0[$i]=$(cputicks "${bes[$i]}"); done
  out=$(/usr/bin/time -f 'wrkcpu %U %S' -o "$W/wrk.time" wrk -t1 -c"$3" -d"$DUR" --latency "http://127.0.0.1:$2/index.html")
  t1=$(cputicks "$4")
  for i in 0 1 2; do b1[$i]=$(cputicks "${bes[$i]}"); done
  echo "$out" > "$W/wrk-$1-c$3.txt"
  if [ "$3" = 32 ]; then
    local n front=$((t1 - t0)) line="" sum=0 d
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    [ "$4" = "${bes[0]}" ] && front=0 # direct: the front is backend 1
    sum=$front
    for i in 0 1 2; do
      d=$((b1[i] - b0[i])); sum=$((sum + d))
      line+="$(awk -v d=$d -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }') "
    done
    local w
    w=$(awk -v n="$n" '/wrkcpu/ { printf "%.1f", ($2 + $3) * 1e6 / n }' "$W/wrk.time")
    echo "$line$w $(awk -v d=$sum -v hz="$HZ" -v n="$n" -v w="$w" 'BEGIN { printf "%.1f", d / hz * 1e6 / n + w }')" > "$W/cpus-$1"
  fi
  local rps p50 p99 errs
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  local reqs cpu
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')
  echo "$rps $(ms "$p50") $(ms "$p99") $cpu ${errs:-}"
}
ms() { # wrk latency (e.g. 512.00us, 1.20ms, 2.00s) -> milliseconds
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'
}

declare -A R
names=(direct nginx-proxy nginx-mirror3 proteus-single proteus-vote3 vote-floor)
ports=($B1 $NP $NM $PS $PV $PF)
fronts=(${FRONT[backend1]} ${FRONT[proxy]} ${FRONT[mirror]} ${FRONT[single]} ${FRONT[vote]} ${FRONT[floor]})
if [ -n "$PB" ]; then
  names+=(proteus-vote3-before); ports+=($PB); fronts+=(${FRONT[before]})
fi
for i in "${!names[@]}"; do
  R[${names[$i]},32]=$(run "${names[$i]}" "${ports[$i]}" 32 "${fronts[$i]}")
  R[${names[$i]},4]=$(run "${names[$i]}" "${ports[$i]}" 4 "${fronts[$i]}")
done
rss=$(awk '/VmHWM/ {print $2}' /proc/$VOTEPID/status)
# Memory per request in flight: the same gateway's peak RSS after a run with 8 times as many
# connections (every one of them has a request in flight nearly all the time).
wrk -t1 -c256 -d"$DUR" "http://127.0.0.1:$PV/index.html" > "$W/wrk-vote3-c256.txt"
rss256=$(awk '/VmHWM/ {print $2}' /proc/$VOTEPID/status)
# Rounds: proxy, mirror3 and vote3 again, alternating, for the ratios.
rounds=()
for r in $(seq 1 "$ROUNDS"); do
  rp=$(run round-proxy "$NP" 32 "${FRONT[proxy]}")
  rm3=$(run round-mirror3 "$NM" 32 "${FRONT[mirror]}" | awk '{print $1}')
  rv=$(run round-vote3 "$PV" 32 "${FRONT[vote]}")
  rb="- -"
  [ -n "$PB" ] && rb=$(run round-before "$PB" 32 "${FRONT[before]}" | awk '{print $1, $4}')
  rf=$(run round-floor "$PF" 32 "${FRONT[floor]}" | awk '{print $4}')
  # proxy req/s, mirror3 req/s, vote3 req/s, vote3 CPU, before req/s, before CPU, proxy CPU, floor CPU
  rounds+=("$(awk '{print $1}' <<<"$rp") $rm3 $(awk '{print $1, $4}' <<<"$rv") $rb $(awk '{print $4}' <<<"$rp") $rf")
done
dissent=$(grep -c 'msg=dissent' "$W/vote.log" || true)

d50=$(awk '{print $2}' <<<"${R[direct,4]}")
printf '\n%s, %s per run, wrk -t1, 2 KiB page, %d cores\n\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$DUR" "$(nproc)"
printf '| setup | req/s (-c32) | p50 ms (-c32) | p99 ms (-c32) | front CPU µs/req (-c32) | req/s (-c4) | p50 ms (-c4) | p50 added over direct (-c4) |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
for n in "${names[@]}"; do
  read -r r32 p32 q32 c32 e32 <<<"${R[$n,32]}"
  read -r r4 p4 _ _ e4 <<<"${R[$n,4]}"
  add=$(awk -v a="$p4" -v b="$d50" 'BEGIN { printf "%.3f", a-b }')
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$r32" "$p32" "$q32" "$c32" "$r4" "$p4" "$add"
  [ -n "${e32}${e4}" ] && printf '|   ↳ errors | %s %s |||||\n' "$e32" "$e4"
done
v=$(awk '{print $1}' <<<"${R[proteus-vote3,32]}"); p=$(awk '{print $1}' <<<"${R[nginx-proxy,32]}"); m=$(awk '{print $1}' <<<"${R[nginx-mirror3,32]}")
printf '\nproteus vote3 / nginx proxy = %s, proteus vote3 / nginx mirror3 = %s\n' \
  "$(awk -v a="$v" -v b="$p" 'BEGIN{printf "%.2f", a/b}')" "$(awk -v a="$v" -v b="$m" 'BEGIN{printf "%.2f", a/b}')"
printf 'front CPU = CPU time of the process under test (for direct: the nginx backend; for nginx: master and workers), per request\n'
printf '\nWhere the CPU of the two cores went, -c32, µs per request:\n\n'
printf '| setup | front | backend 1 (nginx) | backend 2 (lighttpd) | backend 3 (net/http) | wrk | all |\n|---|---:|---:|---:|---:|---:|---:|\n'
for n in "${names[@]}"; do
  read -r c32 <<<"$(awk '{print $4}' <<<"${R[$n,32]}")"
  [ "$n" = direct ] && c32=0
  printf '| %s | %s | %s |\n' "$n" "$c32" "$(sed 's/ / | /g' "$W/cpus-$n")"
done
budget=$(awk -v p="$p" -v c="$(nproc)" 'BEGIN { printf "%.1f", c * 1e6 / (0.5 * p) }')
rest=$(awk '{print $1 + $2 + $3 + $4}' "$W/cpus-proteus-vote3")
printf '\nAt half the nginx proxy rate the %d cores allow %s µs of CPU per request in all; in the vote3 run\n' "$(nproc)" "$budget"
printf 'the three backends and wrk alone took %s µs per request, leaving %s µs for the gateway.\n' "$rest" "$(awk -v b="$budget" -v r="$rest" 'BEGIN { printf "%.1f", b - r }')"
printf 'proteus vote3 peak RSS %s KiB after the -c32 runs, %s KiB after -c256 (%s KiB per extra connection); dissent events logged during the run: %s\n' \
  "$rss" "$rss256" "$(awk -v a="$rss" -v b="$rss256" 'BEGIN { printf "%.1f", (b - a) / 224 }')" "$dissent"
if [ "$ROUNDS" -gt 0 ]; then
  printf '\n%s more rounds at -c32, one setup after the other:\n\n' "$ROUNDS"
  printf '| round | nginx proxy req/s | nginx mirror3 req/s | proteus vote3 req/s | vote3 / proxy | vote3 / mirror3 | vote3 front CPU µs/req | nginx proxy front CPU µs/req | vote3 / proxy CPU | vote floor CPU µs/req | floor / proxy CPU | vote3 / floor CPU | before: req/s | before: front CPU µs/req |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
  for i in "${!rounds[@]}"; do
    read -r rp rm3 rv cv rb cb cp cf <<<"${rounds[$i]}"
    printf '| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' $((i + 1)) "$rp" "$rm3" "$rv" \
      "$(awk -v a="$rv" -v b="$rp" 'BEGIN{printf "%.2f", a/b}')" "$(awk -v a="$rv" -v b="$rm3" 'BEGIN{printf "%.2f", a/b}')" \
      "$cv" "$cp" "$(awk -v a="$cv" -v b="$cp" 'BEGIN{printf "%.2f", a/b}')" \
      "$cf" "$(awk -v a="$cf" -v b="$cp" 'BEGIN{printf "%.2f", a/b}')" "$(awk -v a="$cv" -v b="$cf" 'BEGIN{printf "%.2f", a/b}')" "$rb" "$cb"
  done
  median() { sort -g | awk '{v[NR]=$1} END { if (NR % 2) printf "%.2f", v[(NR+1)/2]; else printf "%.2f", (v[NR/2]+v[NR/2+1])/2 }'; }
  printf '\nmedian over the %s rounds: vote3 / nginx proxy = %s, vote3 / nginx mirror3 = %s\n' "$ROUNDS" \
    "$(for x in "${rounds[@]}"; do awk '{printf "%.4f\n", $3/$1}' <<<"$x"; done | median)" \
    "$(for x in "${rounds[@]}"; do awk '{printf "%.4f\n", $3/$2}' <<<"$x"; done | median)"
  printf 'median vote3 front CPU / nginx proxy front CPU per request = %s\n' \
    "$(for x in "${rounds[@]}"; do awk '{printf "%.4f\n", $4/$7}' <<<"$x"; done | median)"
  printf 'median vote floor CPU / nginx proxy front CPU per request = %s; vote3 / vote floor = %s\n' \
    "$(for x in "${rounds[@]}"; do awk '{printf "%.4f\n", $8/$7}' <<<"$x"; done | median)" \
    "$(for x in "${rounds[@]}"; do awk '{printf "%.4f\n", $4/$8}' <<<"$x"; done | median)"
  if [ -n "$PB" ]; then
    printf 'median vote3 (this tree) / vote3 (%s): req/s %s, front CPU per request %s\n' "$BEFORE" \
      "$(for x in "${rounds[@]}"; do awk '{printf "%.4f\n", $3/$5}' <<<"$x"; done | median)" \
      "$(for x in "${rounds[@]}"; do awk '{printf "%.4f\n", $4/$6}' <<<"$x"; done | median)"
  fi
fi
if [ "${dissent:-0}" -gt 0 ]; then # which executor, which kind, and why: the first few of each
  grep 'msg=dissent' "$W/vote.log" | grep -o 'executor=[^ ]* variant=[^ ]* kind=[^ ]*' | sort | uniq -c
  grep 'msg=dissent' "$W/vote.log" | head -3
fi
