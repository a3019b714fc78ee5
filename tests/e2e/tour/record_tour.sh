#!/usr/bin/env bash
# Records the connwardenctl tour of the top-level README against a live sidecar: not a test (the
# e2e tests check the same commands), the source of the README's "real output".
#
#   tests/e2e/tour/record_tour.sh [BUILD_DIR]      # default build/; prints the transcript
#
# Starts the demo app and connwarden (two workers; a plain and a TLS listener; route `api` for
# /api, route `default` hibernating after 1 s; admin API on 127.0.0.1:9090, which must be free)
# and five clients (clients.py: two keep-alive connections with one request each, an unread
# 10 MB download, a request answered after a minute, one over TLS), then runs the tour's
# commands. Everything it starts is stopped on exit.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "${1:-$here/../../../build}" && pwd)
export PATH=$build:$PATH
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
app_port=$(free_port) http_port=$(free_port) https_port=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=localhost" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat > "$work/tour.yaml" <<YAML
listeners:
  - name: http
    address: 127.0.0.1:$http_port
  - name: https
    address: 127.0.0.1:$https_port
    tls: { cert_file: $work/cert.pem, key_file: $work/key.pem }
clusters:
  - name: app
    addresses: ["127.0.0.1:$app_port"]
routes:
  - { name: api, path_prefix: /api, cluster: app }
  - { name: default, cluster: app, policy: { hibernate: { enabled: true, after: 1s } } }
YAML
mkdir "$work/state"
connwarden-demo-app --address 127.0.0.1 --port "$app_port" > "$work/app.log" 2>&1 &
pids+=($!)
connwarden --config "$work/tour.yaml" --concurrency 2 --state-dir "$work/state" \
  > "$work/cw.log" 2>&1 &
pids+=($!)
sleep 0.5
python3 "$here/clients.py" "$http_port" "$https_port" > "$work/clients.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q ready "$work/clients.log" && break; sleep 0.1; done
grep -q ready "$work/clients.log" || { cat "$work/clients.log" "$work/cw.log" >&2; exit 1; }
sleep 2  # the connection on `default` hibernates after 1 s

run() { echo "\$ connwardenctl $*"; connwardenctl "$@" 2>&1; local rc=$?; [ $rc = 0 ] || echo "[exit $rc]"; echo; }
read -r TLS DL SLOW < <(connwardenctl get connections -o json | python3 -c '
import json, sys
conns = [item["connection"] for item in json.load(sys.stdin)["items"]]
tls = [c["id"] for c in conns if c.get("tls")][0]
download = [c["id"] for c in conns if int(c.get("bytes_out", "0")) > 1000000][0]
slow = [c["id"] for c in conns if c["state"].endswith("ACTIVE") and c["id"] != download][0]
print(tls, download, slow)')
run get connections
run get connections --sort memory -o wide
run describe connection "$TLS"
run get connections --selector 'state=active,memory>=64KiB'
run drain "$SLOW" --deadline 5s
run kill --selector route=default,state=hibernating
run set policy api --idle-timeout 30s --hibernate true
run get policies -o wide
sleep 0.3
run info -o wide
run top --limit 3 --count 1
echo "\$ connwardenctl watch          # meanwhile: curl http://127.0.0.1:$http_port/api/ping; connwardenctl kill $DL"
connwardenctl watch > "$work/watch.txt" 2>&1 &
watcher=$!
sleep 0.5
curl -s -o /dev/null "http://127.0.0.1:$http_port/api/ping"
sleep 0.1
connwardenctl kill "$DL" > /dev/null
sleep 0.5
kill "$watcher"
cat "$work/watch.txt"
echo
run get connections --target 127.0.0.1:9090 --target 127.0.0.1:9091 --timeout 1s
run drain 99999
run get connections --selector peer=10.1.2.0/33
run reset policy api
