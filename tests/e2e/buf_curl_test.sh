#!/usr/bin/env bash
# A generic gRPC CLI that operators really use, with no proto files at hand: `buf curl` lists
# the built sidecar's services through server reflection, then lists the open connections and
# kills one by ID, and the client's socket really closes. buf comes from the npm registry
# (`make tools`, into .tools/, pinned); CONNWARDEN_BUF overrides.
set -euo pipefail
connwarden=$1
demo_app=$2
buf=${CONNWARDEN_BUF:-$(cd "$(dirname "$0")/../.." && pwd)/.tools/node_modules/.bin/buf}
# shellcheck source=tests/e2e/lib/common.sh
source "$(dirname "$0")/lib/common.sh"
[ -x "$buf" ] || fail "buf not found at $buf (make tools installs it)"

"$demo_app" --port 0 > "$work/app.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/app.out" 2>/dev/null && break; sleep 0.05; done
app_port=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$work/app.out" | head -1)
[ -n "$app_port" ] || fail "demo app did not start"
port=$(free_port)
admin_port=$(free_port)
cat > "$work/run.yaml" <<YAML
listeners: [{ name: e2e, address: "127.0.0.1:$port" }]
clusters: [{ name: app, addresses: ["127.0.0.1:$app_port"] }]
YAML
"$connwarden" --config "$work/run.yaml" --concurrency 1 --metrics-address "" \
  --admin-address "127.0.0.1:$admin_port" 2> "$work/proxy.err" &
pids+=($!)
for _ in $(seq 100); do grep -q "admin API on" "$work/proxy.err" && break; sleep 0.05; done
grep -q "admin API on" "$work/proxy.err" || { cat "$work/proxy.err" >&2; fail "no admin API"; }
admin="http://127.0.0.1:$admin_port"
call() { "$buf" curl --protocol grpc --http2-prior-knowledge "$@"; }

# 1. Services through reflection.
services=$(call --list-services "$admin")
grep -qx "connwarden.admin.v1.ConnectionAdmin" <<<"$services" ||
  fail "ConnectionAdmin not listed through reflection: $services"
grep -qx "grpc.health.v1.Health" <<<"$services" || fail "health service not listed: $services"

# 2. A client holding a keep-alive connection, after one request.
python3 - "$port" "$work/client.done" <<'PY' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET / HTTP/1.1\r\nHost: e2e\r\n\r\n")
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(65536)
s.settimeout(20)
try:
    while s.recv(65536):  # the body, then wait for the close (the kill)
        pass
    outcome = "closed"
except socket.timeout:
    outcome = "timeout"
except ConnectionResetError:
    outcome = "closed"
open(sys.argv[2], "w").write(outcome)
PY
pids+=($!)

# 3. ListConnections with JSON built by hand: the connection is there, idle, on listener e2e.
list=""
for _ in $(seq 100); do
  list=$(call --data '{"sort_by": "SORT_BY_ID"}' "$admin/connwarden.admin.v1.ConnectionAdmin/ListConnections")
  grep -q '"listener": "e2e"' <<<"$list" && break
  sleep 0.05
done
grep -q '"listener": "e2e"' <<<"$list" || fail "ListConnections does not show the connection: $list"
id=$(python3 -c 'import json,sys; c=json.load(sys.stdin)["connections"]; print(c[0]["id"]) if len(c)==1 else sys.exit(1)' <<<"$list") ||
  fail "not exactly one connection listed: $list"

# 4. KillConnections by that ID: closed, and the client sees its socket close.
kill_out=$(call --data "{\"ids\": [\"$id\"]}" "$admin/connwarden.admin.v1.ConnectionAdmin/KillConnections")
grep -q '"outcome": "OUTCOME_CLOSED"' <<<"$kill_out" || fail "KillConnections did not close $id: $kill_out"
for _ in $(seq 200); do [ -s "$work/client.done" ] && break; sleep 0.05; done
[ "$(cat "$work/client.done" 2>/dev/null)" = closed ] || fail "the client's socket did not close"

# 5. An unknown ID: the status buf prints names it.
set +e
unknown=$(call --data '{"ids": ["1"]}' "$admin/connwarden.admin.v1.ConnectionAdmin/KillConnections" 2>&1)
code=$?
set -e
[ "$code" != 0 ] && grep -qi "not_found\|not found" <<<"$unknown" ||
  fail "an unknown ID should fail with NOT_FOUND: exit $code, $unknown"
echo "buf curl e2e: ok (listed, killed connection $id)"
