#!/usr/bin/env bash
# CPU per request of two connwarden builds, alternating A B A B … in front of the same demo app:
# for telling what a change is worth when side-by-side runs against other proxies are too noisy.
# Not a test. Each run: one worker, a 1 s warm-up, then wrk -t1 -c$CONNS for $DURATION on
# GET /bytes?n=100; CPU is the process's utime+stime from /proc over the measured run.
#
#   tests/bench/ab_cpu.sh OLD_BINARY NEW_BINARY        # PAIRS=4 CONNS=64 DURATION=5s
#
# Prints one line per run, then each binary's median. Everything it starts is stopped on exit.
set -uo pipefail
[ $# = 2 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEMO_APP_BIN=${DEMO_APP_BIN:-$REPO_ROOT/build/connwarden-demo-app}
PAIRS=${PAIRS:-4}
CONNS=${CONNS:-64}
DURATION=${DURATION:-5s}
[[ $PAIRS =~ ^[1-9][0-9]?$ ]] || { echo "PAIRS must be 1..99" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing (apt install wrk)" >&2; exit 2; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
app_port=$(free_port)
port=$(free_port)
"$DEMO_APP_BIN" --port "$app_port" > /dev/null 2>&1 &
pids+=($!)
sleep 0.3
cat > "$work/ab.yaml" <<Y
listeners: [{ name: p, address: "127.0.0.1:$port" }]
clusters: [{ name: app, addresses: ["127.0.0.1:$app_port"], max_idle_connections: $((CONNS * 2)) }]
routes: [{ name: default, cluster: app }]
Y
hz=$(getconf CLK_TCK)
# Builds that serve metrics and the admin API have them on, on free ports (as in production);
# older ones have no such flags.
side_flags() {
  local flags=()
  "$1" --helpfull 2>&1 | grep -q -- "--metrics_address" && flags+=(--metrics-address 127.0.0.1:0)
  "$1" --helpfull 2>&1 | grep -q -- "--admin_address" && flags+=(--admin-address 127.0.0.1:0)
  echo "${flags[@]}"
}
run() {  # label binary
  # shellcheck disable=SC2046
  "$2" --config "$work/ab.yaml" --concurrency 1 --log-level warn $(side_flags "$2") \
    > /dev/null 2>&1 &
  local p=$!
  pids+=("$p")
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/bytes?n=100")
  [ "$code" = 200 ] || { echo "$1: GET /bytes?n=100 answered $code, not 200" >&2; exit 1; }
  wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$port/bytes?n=100" > /dev/null 2>&1
  local before after out reqs
  before=$(awk '{print $14 + $15}' "/proc/$p/stat")
  out=$(wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$port/bytes?n=100" 2>&1)
  after=$(awk '{print $14 + $15}' "/proc/$p/stat")
  kill "$p"; wait "$p" 2>/dev/null
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  if grep -q "Non-2xx" <<<"$out"; then echo "$1: wrk saw non-2xx responses: $out" >&2; exit 1; fi
  if [ -z "$reqs" ] || [ "$reqs" -eq 0 ]; then echo "$1: wrk failed: $out" >&2; return; fi
  local ns=$(( (after - before) * 1000000000 / hz / reqs ))
  echo "$1 $ns" >> "$work/results"
  printf '%-4s %8.1f µs/req  %8d requests\n' "$1" "$(bc -l <<<"$ns / 1000")" "$reqs"
}
for _ in $(seq "$PAIRS"); do
  run A "$1"
  run B "$2"
done
for label in A B; do
  median=$(awk -v l="$label" '$1 == l {print $2}' "$work/results" | sort -n |
    awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}')
  printf 'median %s: %.1f µs/req\n' "$label" "$(bc -l <<<"$median / 1000")"
done
