#!/usr/bin/env bash
# The built binaries, run as an operator would: config validation and its exit codes, serving
# through the demo app with curl, and SIGTERM: requests in flight complete, what outlives
# --drain-timeout is cut, new connections are refused, exit 0.
set -euo pipefail
connwarden=$1 demo_app=$2
# shellcheck source=tests/e2e/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

# 1. --validate: a good file passes, bad ones exit 2 naming the field.
cat > "$work/good.yaml" <<YAML
listeners: [{ address: "127.0.0.1:0" }]
clusters: [{ name: app, addresses: ["127.0.0.1:1"] }]
YAML
"$connwarden" --validate --config "$work/good.yaml" >/dev/null || fail "good config rejected"
"$connwarden" --validate >/dev/null || fail "embedded default rejected"

check_bad() {  # yaml, expected text in the error
  printf '%s\n' "$1" > "$work/bad.yaml"
  set +e
  out=$("$connwarden" --validate --config "$work/bad.yaml" 2>&1)
  code=$?
  set -e
  [ "$code" = 2 ] || fail "exit $code (want 2) for: $1"
  grep -qF -- "$2" <<<"$out" || fail "error '$out' does not name '$2'"
}
check_bad 'listeners: [{ address: "127.0.0.1:0" }]
clusters: [{ name: app, addresses: ["127.0.0.1:1"] }]
routes: [{ cluster: nope }]' 'routes[0].cluster'
check_bad 'listeners: [{ address: "nowhere" }]
clusters: [{ name: app, addresses: ["127.0.0.1:1"] }]' 'listeners[0].address'
check_bad 'listeners: [{ address: "127.0.0.1:0", max_connections: lots }]
clusters: [{ name: app, addresses: ["127.0.0.1:1"] }]' 'max_connections'
check_bad 'listeners: [{ address: "127.0.0.1:0", colour: blue }]' 'colour'
# README's config example is a valid config.
readme="$(dirname "${BASH_SOURCE[0]}")/../../README.md"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null || fail "openssl could not make a certificate"
sed -n '/^```yaml$/,/^```$/p' "$readme" | sed '1d;$d' |
  sed "s|/etc/connwarden/tls.crt|$work/tls.crt|; s|/etc/connwarden/tls.key|$work/tls.key|" > "$work/readme.yaml"
grep -q "policy:" "$work/readme.yaml" || fail "no config example found in README"
out=$("$connwarden" --validate --config "$work/readme.yaml" 2>&1) || fail "README's config example: $out"
check_bad 'listeners: [{ address: "127.0.0.1:0" }]
clusters: [{ name: app, addresses: ["127.0.0.1:1"] }]
routes: [{ name: r, cluster: app, policy: { idle_timeout: -5s } }]' 'routes[0].policy.idle_timeout'
set +e; "$connwarden" --config "$work/missing.yaml" 2>/dev/null; code=$?; set -e
[ "$code" = 2 ] || fail "missing file: exit $code, want 2"

# 2. Serve: demo app, connwarden in front, curl through it.
"$demo_app" --address 127.0.0.1 --port 0 > "$work/app.out" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/app.out" 2>/dev/null && break; sleep 0.05; done
app_port=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$work/app.out" | head -1)
[ -n "$app_port" ] || fail "demo app did not start"
port=$(free_port)
cat > "$work/run.yaml" <<YAML
listeners: [{ name: e2e, address: "127.0.0.1:$port" }]
clusters: [{ name: app, addresses: ["127.0.0.1:$app_port"] }]
YAML
metrics_port=$(free_port)
# Started with a low soft limit on open files, which it raises to the hard one (2a).
(ulimit -Sn 512 && exec "$connwarden" --config "$work/run.yaml" --concurrency 2 --log-level info \
  --drain-timeout 1500ms --admin-address 127.0.0.1:0 --metrics-address "127.0.0.1:$metrics_port") \
  2> "$work/proxy.err" &
proxy=$!
pids+=($proxy)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
body=$(curl -s --max-time 5 "http://127.0.0.1:$port/")
[ "$body" = "hello from connwarden demo" ] || fail "unexpected body '$body'"
size=$(curl -s --max-time 20 -o /dev/null -w '%{size_download}' "http://127.0.0.1:$port/bytes?n=5000000")
[ "$size" = 5000000 ] || fail "downloaded $size bytes"

# 2a. The soft limit on open files it was started with (512) is now the hard one, and logged.
read -r soft hard < <(awk '/^Max open files/ { print $4, $5 }' "/proc/$proxy/limits")
[ "$hard" != unlimited ] || hard=$(cat /proc/sys/fs/nr_open)
[ "$soft" = "$hard" ] || fail "open files: soft limit $soft, hard $hard (want the soft raised to the hard)"
grep -q "open files: soft limit raised from 512 to $hard" "$work/proxy.err" ||
  fail "no 'open files' line in the log: $(grep -i 'open files' "$work/proxy.err")"

# 2b. Metrics and probes on --metrics-address; the exposition passes promtool; a second process
#     asking for the same metrics port exits non-zero at start, naming the address.
command -v promtool >/dev/null || fail "promtool missing (the Makefile's DEPS install Debian's prometheus)"
curl -s --max-time 5 -o "$work/scrape.txt" "http://127.0.0.1:$metrics_port/metrics" || fail "no /metrics"
promtool check metrics < "$work/scrape.txt" || fail "promtool check metrics rejected the exposition"
grep -q '^connwarden_http_requests_total{route="default",status_class="2xx"} 3$' "$work/scrape.txt" ||
  fail "requests_total: $(grep requests_total "$work/scrape.txt")"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$metrics_port/healthz")" = 200 ] || fail "/healthz"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$metrics_port/readyz")" = 200 ] || fail "/readyz"
set +e; out=$("$connwarden" --config "$work/good.yaml" --metrics-address "127.0.0.1:$metrics_port" 2>&1); code=$?; set -e
[ "$code" != 0 ] || fail "a second process on the same metrics port started"
[[ "$out" == *"127.0.0.1:$metrics_port"*"in use"* ]] || fail "metrics port in use: '$out'"

# 3. SIGTERM with requests in flight: the ones that finish within --drain-timeout get their whole
#    response, the one that would not is cut at the deadline, and the process exits 0.
for i in 1 2 3; do
  curl -s --max-time 10 -o "$work/slow$i.out" -w '%{http_code}' \
    "http://127.0.0.1:$port/slow?ms=700" > "$work/slow$i.code" &
  pids+=($!)
done
curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/slow?ms=10000" \
  > "$work/cut.code" &
cut_curl=$!
sleep 0.3  # all four are at the application now
start=$(date +%s%N)
kill -TERM "$proxy"
sleep 0.2
curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$port/" && fail "a new connection was accepted while draining"
ready=$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$metrics_port/readyz")
[ "$ready" = 503 ] || fail "/readyz answered $ready while draining (want 503)"
set +e; wait "$proxy"; code=$?; set -e
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$code" = 0 ] || { cat "$work/proxy.err" >&2; fail "exit $code after SIGTERM"; }
grep -q "draining" "$work/proxy.err" || fail "no drain message in the log"
[ "$elapsed_ms" -lt 3000 ] || fail "exit took ${elapsed_ms} ms with a 1500 ms drain timeout"
[ "$elapsed_ms" -ge 1400 ] || fail "exit after ${elapsed_ms} ms: the long request was not waited for"
wait "${pids[@]:1}" 2>/dev/null || true
for i in 1 2 3; do
  [ "$(cat "$work/slow$i.code")" = 200 ] || fail "in-flight request $i: status $(cat "$work/slow$i.code")"
done
set +e; wait "$cut_curl"; set -e
[ "$(cat "$work/cut.code")" != 200 ] || fail "the request longer than the drain timeout completed"
echo "e2e cli: all checks passed (SIGTERM drain took ${elapsed_ms} ms)"
