#!/usr/bin/env bash
# bench/gateway-memory.sh: peak memory of the voting gateway while it votes on large bodies.
#
# Starts nginx, lighttpd and the Go net/http demo server serving one 7.5 MiB file of random
# bytes, then runs `proteus gateway --policy vote --k 3` in front of them and sends CLIENTS
# concurrent GETs of the file (curl), ROUNDS times, checking every answer is the whole file.
# It prints the gateway process's peak resident set (VmHWM from /proc/PID/status) and the
# number of spool files left open at the end (must be 0). With BEFORE_REV, the gateway built
# from that git revision is measured the same way first, side by side.
#
# Usage: bench/gateway-memory.sh [BEFORE_REV [CLIENTS [ROUNDS]]]
#        (default: no baseline, 32 clients, 3 rounds; needs nginx, lighttpd, curl, go)
#        BEFORE_REV "-" skips the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:--}
CLIENTS=${2:-32}
ROUNDS=${3:-3}
for v in "$CLIENTS" "$ROUNDS"; do
  case "$v" in ''|*[!0-9]*) echo "bench/gateway-memory.sh: CLIENTS and ROUNDS must be whole numbers, got '$v'" >&2; exit 2 ;; esac
done
for p in nginx lighttpd curl go; do
  command -v "$p" >/dev/null || { echo "bench/gateway-memory.sh: $p is not installed (.ci/run installs it)" >&2; exit 2; }
done

W=$(mktemp -d /tmp/proteus-gwmem.XXXXXX)
chmod 755 "$W" # nginx workers may run as another user
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

go build -o "$W/proteus" ./cmd/proteus
if [ "$BEFORE" != - ]; then
  mkdir -p "$W/before-src"
  git archive "$BEFORE" | tar -x -C "$W/before-src"
  (cd "$W/before-src" && go build -o "$W/proteus-before" ./cmd/proteus)
fi

mkdir -p "$W/site" "$W/spool"
head -c $((15 << 19)) /dev/urandom > "$W/site/big.bin" # 7.5 MiB
echo ok > "$W/site/index.html"
SIZE=$(stat -c %s "$W/site/big.bin")

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_up() {
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench/gateway-memory.sh: nothing answers on port $1" >&2
  exit 1
}

B1=$(port); B2=$(port); B3=$(port)
mkdir -p "$W/nginx"
cat > "$W/nginx/nginx.conf" <<NGX
daemon off;
worker_processes 1;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 1024; }
http {
  types { application/octet-stream bin; text/html html; }
  default_type application/octet-stream;
  access_log off;
  client_body_temp_path $W/nginx/body;
  proxy_temp_path $W/nginx/proxy;
  fastcgi_temp_path $W/nginx/fastcgi;
  uwsgi_temp_path $W/nginx/uwsgi;
  scgi_temp_path $W/nginx/scgi;
  server { listen 127.0.0.1:$B1; root $W/site; }
}
NGX
nginx -e "$W/nginx/error.log" -p "$W/nginx" -c "$W/nginx/nginx.conf" &
pids+=($!)
mkdir -p "$W/lighttpd"
cat > "$W/lighttpd/lighttpd.conf" <<LT
server.document-root = "$W/site"
server.bind = "127.0.0.1"
server.port = $B2
server.pid-file = "$W/lighttpd/pid"
server.errorlog = "$W/lighttpd/error.log"
index-file.names = ("index.html")
mimetype.assign = (".html" => "text/html", ".bin" => "application/octet-stream")
LT
lighttpd -D -f "$W/lighttpd/lighttpd.conf" &
pids+=($!)
"$W/proteus" demo-server --impl nethttp --listen "127.0.0.1:$B3" --root "$W/site" 2>/dev/null &
pids+=($!)
for p in $B1 $B2 $B3; do wait_up "$p"; done

# measure TAG NAME BINARY: runs the gateway, the rounds of concurrent GETs, prints a table row.
measure() {
  local tag=$1 name=$2 bin=$3 gp pid ok=0 bad=0 r i hwm fds cps
  gp=$(port)
  TMPDIR="$W/spool" "$bin" gateway --listen "127.0.0.1:$gp" --policy vote --k 3 \
    --backend "http://127.0.0.1:$B1" --backend "http://127.0.0.1:$B2" --backend "http://127.0.0.1:$B3" \
    >/dev/null 2>"$W/$tag.log" &
  pid=$!
  pids+=($pid)
  wait_up "$gp"
  curl -fsS "http://127.0.0.1:$gp/big.bin" | cmp -s - "$W/site/big.bin" ||
    { echo "bench/gateway-memory.sh: $name answered a different file" >&2; tail -5 "$W/$tag.log" >&2; exit 1; }
  for r in $(seq 1 "$ROUNDS"); do
    cps=()
    for i in $(seq 1 "$CLIENTS"); do
      curl -sS -o /dev/null -w '%{http_code} %{size_download}\n' "http://127.0.0.1:$gp/big.bin" > "$W/$tag-$r-$i.out" 2>&1 &
      cps+=($!)
    done
    wait "${cps[@]}" || true
    for i in $(seq 1 "$CLIENTS"); do
      if [ "$(cat "$W/$tag-$r-$i.out")" = "200 $SIZE" ]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
    done
  done
  hwm=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
  fds=$(find "/proc/$pid/fd" -lname "$W/spool/*" 2>/dev/null | wc -l)
  printf '| %s | %d | %d | %d | %s | %s |\n' "$name" "$CLIENTS" "$ok" "$bad" "$hwm" "$fds"
  kill "$pid"
}

echo "7.5 MiB file ($SIZE bytes), $CLIENTS concurrent GETs x $ROUNDS rounds through proteus gateway --policy vote --k 3 (nginx, lighttpd, net/http)"
echo
echo "| gateway | clients | 200 whole | other | peak RSS (VmHWM, MiB) | spool fds left |"
echo "|---|---|---|---|---|---|"
if [ "$BEFORE" != - ]; then measure before "before ($BEFORE)" "$W/proteus-before"; fi
measure after "this tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo +changes))" "$W/proteus"
