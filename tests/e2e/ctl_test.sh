#!/usr/bin/env bash
# connwardenctl against the built sidecar and the demo app, as an operator uses them: list (table,
# wide, JSON, filters, sort), describe, drain and kill by ID and selector, policies set (only the
# fields given), kept across a restart and reset, watch, top, info, token scopes, two sidecars at
# once (POD column), and the exit codes: 0 ok, 1 partial (sidecar down, ID not found, denied),
# 2 usage (bad selector, CIDR, duration, ID, command).
set -euo pipefail
connwarden=$1 demo_app=$2 ctl=${3:-$(dirname "$1")/connwardenctl}
# shellcheck source=tests/e2e/lib/common.sh
source "$(dirname "$0")/lib/common.sh"
expect_code() {  # code, command...: runs it, output in $out
  local want=$1; shift
  set +e; out=$("$@" 2>&1); local code=$?; set -e
  [ "$code" = "$want" ] || fail "exit $code (want $want) from: $* -> $out"
}

"$demo_app" --address 127.0.0.1 --port 0 > "$work/app.out" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/app.out" 2>/dev/null && break; sleep 0.05; done
app_port=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$work/app.out" | head -1)
port=$(free_port) admin_port=$(free_port)
cat > "$work/run.yaml" <<YAML
listeners: [{ name: web, address: "127.0.0.1:$port" }]
clusters: [{ name: app, addresses: ["127.0.0.1:$app_port"] }]
routes:
  - { name: api, path_prefix: /api, cluster: app }
  - { name: default, cluster: app }
YAML
echo "reader-secret" > "$work/read.token"
echo "admin-secret" > "$work/admin.token"
start_sidecar() {
  "$connwarden" --config "$work/run.yaml" --concurrency 2 --metrics-address "" --admin-address "127.0.0.1:$admin_port" \
    --admin-read-token-file "$work/read.token" --admin-admin-token-file "$work/admin.token" \
    --state-dir "$work" 2>> "$work/sidecar.err" &
  sidecar=$!
  pids+=($sidecar)
  for _ in $(seq 100); do
    "$ctl" --target "127.0.0.1:$admin_port" --token-file "$work/read.token" --timeout 1s info \
      >/dev/null 2>&1 && return
    sleep 0.05
  done
  fail "sidecar did not start: $(cat "$work/sidecar.err")"
}
start_sidecar
read_ctl=("$ctl" --target "127.0.0.1:$admin_port" --token-file "$work/read.token")
admin_ctl=("$ctl" --target "127.0.0.1:$admin_port" --token-file "$work/admin.token")

# A keep-alive client that sent one request to `path` and holds the connection (bash /dev/tcp).
hold() {
  ( exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf 'GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n' "$1" >&3
    exec sleep 60 ) &
  pids+=($!)
}
count() { python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))'; }
hold /api/a; hold /api/b; hold /
for _ in $(seq 100); do
  [ "$("${read_ctl[@]}" get connections -o json | count)" = 3 ] && break; sleep 0.05
done

# get connections: table, wide, JSON, filters, sort.
expect_code 0 "${read_ctl[@]}" get connections
[ "$(grep -c '^[0-9]' <<<"$out")" = 3 ] || fail "get connections: want 3 rows: $out"
head -1 <<<"$out" | grep -q "ID *STATE *ROUTE *PEER *AGE *IDLE *REQS *MEMORY" || fail "header: $out"
grep -q " KiB\| B " <<<"$out" || fail "memory not in human units: $out"
expect_code 0 "${read_ctl[@]}" get connections -o wide --sort memory
head -1 <<<"$out" | grep -q "LISTENER.*WORKER.*PEAK" || fail "wide header: $out"
[ "$("${read_ctl[@]}" get connections --route api -o json | count)" = 2 ] || fail "--route api"
[ "$("${read_ctl[@]}" get connections --selector 'peer=10.0.0.0/8' -o json | count)" = 0 ] ||
  fail "peer filter"
[ "$("${read_ctl[@]}" get connections --limit 1 -o json | count)" = 1 ] || fail "--limit"
id=$("${read_ctl[@]}" get connections --route default -o json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["connection"]["id"])')
expect_code 0 "${read_ctl[@]}" describe connection "$id"
grep -q "Route: *default" <<<"$out" || fail "describe: $out"
grep -q "Memory: .*peak" <<<"$out" || fail "describe memory: $out"

# Scopes: no token, a read token on a kill.
expect_code 1 "$ctl" --target "127.0.0.1:$admin_port" get connections
grep -q "unauthenticated" <<<"$out" || fail "no token: $out"
expect_code 1 "${read_ctl[@]}" kill "$id"
grep -q "permission denied" <<<"$out" || fail "read token kill: $out"

# Drain by ID (idle: closed at once), an unknown ID alongside: partial, exit 1.
expect_code 1 "${admin_ctl[@]}" drain "$id" 999999 --wait
grep -q "connection $id (idle): closed" <<<"$out" || fail "drain: $out"
grep -q "999999: not found" <<<"$out" || fail "unknown ID not reported: $out"
[ "$("${read_ctl[@]}" get connections -o json | count)" = 2 ] || fail "drained connection still listed"
# Kill by selector.
expect_code 0 "${admin_ctl[@]}" kill --selector route=api
[ "$(grep -c ': closed' <<<"$out")" = 2 ] || fail "kill by selector: $out"
[ "$("${read_ctl[@]}" get connections -o json | count)" = 0 ] || fail "killed connections still listed"

# Policies: only the fields given change; live connections obey; kept across a restart; reset.
expect_code 0 "${admin_ctl[@]}" set policy default --idle-timeout 0.4s --hibernate true
grep -q "default *override *after 0s *400ms" <<<"$out" || fail "set policy: $out"
expect_code 0 "${admin_ctl[@]}" set policy default --write-timeout 5s
expect_code 0 "${read_ctl[@]}" get policies default -o wide
grep -q "default *override *after 0s *400ms .* 5s" <<<"$out" || fail "second set lost the first: $out"
hold /
sleep 1.2  # the 0.4 s idle timeout closes it
[ "$("${read_ctl[@]}" get connections -o json | count)" = 0 ] || fail "idle timeout set via ctl not applied"
kill -TERM "$sidecar"; wait "$sidecar" || fail "sidecar exit after SIGTERM"
start_sidecar
expect_code 0 "${read_ctl[@]}" get policies
grep -q "default *override" <<<"$out" || fail "policy lost on restart: $out"
expect_code 0 "${admin_ctl[@]}" reset policy default
grep -q "default *config" <<<"$out" || fail "reset: $out"

# Watch: an opened and a closed event.
"${read_ctl[@]}" watch --count 2 > "$work/watch.out" 2>&1 &
watcher=$!
pids+=($watcher)
# Requests until the watcher has seen two events (it may take a moment to subscribe).
for _ in $(seq 100); do
  kill -0 "$watcher" 2>/dev/null || break
  curl -s -o /dev/null -H 'Connection: close' "http://127.0.0.1:$port/"
  sleep 0.1
done
kill -0 "$watcher" 2>/dev/null && fail "watch --count 2 still running: $(cat "$work/watch.out")"
wait "$watcher" || fail "watch exit: $(cat "$work/watch.out")"
grep -q " opened " "$work/watch.out" || fail "watch: no opened event: $(cat "$work/watch.out")"

# top and info; two sidecars (the same one twice here) get a POD column.
expect_code 0 "${read_ctl[@]}" top --count 1
grep -q "top 20 by memory" <<<"$out" || fail "top: $out"
# Refreshing: three frames, one every 200 ms (not a terminal here, so they follow each other).
started=$(date +%s%N)
expect_code 0 "${read_ctl[@]}" top --count 3 --interval 200ms --limit 5
[ "$(grep -c "top 5 by memory" <<<"$out")" = 3 ] || fail "top --count 3: $out"
[ $(( ($(date +%s%N) - started) / 1000000 )) -ge 400 ] || fail "top did not wait between frames"
expect_code 2 "${read_ctl[@]}" top --interval 10ms
grep -q -- "--interval" <<<"$out" || fail "top --interval 10ms: $out"
expect_code 0 "${read_ctl[@]}" info -o wide
grep -q "web=127.0.0.1:$port" <<<"$out" || fail "info: $out"
expect_code 0 "${read_ctl[@]}" --target "127.0.0.1:$admin_port" info
head -1 <<<"$out" | grep -q "^POD" || fail "no POD column with two targets: $out"
# A sidecar that is down: a clear message, exit 1, the other one's answer still printed.
expect_code 1 "${read_ctl[@]}" --target "127.0.0.1:1" --timeout 2s info
grep -q "127.0.0.1:1: unavailable" <<<"$out" || fail "down sidecar: $out"
grep -q "^127.0.0.1:$admin_port" <<<"$out" || fail "the live sidecar's answer is missing: $out"

# Usage errors: exit 2, a message naming what is wrong.
expect_code 2 "${read_ctl[@]}" get connections --selector 'peer=10.0.0.0/99'
grep -q "prefix length" <<<"$out" || fail "bad CIDR: $out"
expect_code 2 "${admin_ctl[@]}" drain --selector 'idle>=soon'
grep -q "not a duration" <<<"$out" || fail "bad duration: $out"
expect_code 2 "${admin_ctl[@]}" drain --selector 'colour=blue'
expect_code 2 "${admin_ctl[@]}" kill abc
expect_code 2 "${admin_ctl[@]}" drain
expect_code 2 "${read_ctl[@]}" get connections --state sleepy
expect_code 2 "${read_ctl[@]}" frobnicate
expect_code 2 "${read_ctl[@]}" get connections -o yaml
expect_code 2 "${admin_ctl[@]}" set policy default --idle-timeout=-1s
expect_code 1 "${admin_ctl[@]}" set policy nope --idle-timeout 1s
grep -q 'no route named "nope"' <<<"$out" || fail "unknown route: $out"
echo "e2e ctl: all checks passed"
