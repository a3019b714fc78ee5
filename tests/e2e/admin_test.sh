#!/usr/bin/env bash
# The admin API's wiring in the built binary, as an operator starts it: the listening address is
# logged, an address in use fails the start clearly (exit 1, the flag named), unreadable TLS or
# token files fail it as configuration errors (exit 2), --admin-address "" turns it off, and
# SIGTERM still exits 0 with the admin API up.
set -euo pipefail
connwarden=$1
# shellcheck source=tests/e2e/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

cat > "$work/run.yaml" <<YAML
listeners: [{ address: "127.0.0.1:0" }]
clusters: [{ name: app, addresses: ["127.0.0.1:1"] }]
YAML
admin_port=$(free_port)
"$connwarden" --config "$work/run.yaml" --concurrency 1 --metrics-address "" --admin-address "127.0.0.1:$admin_port" \
  2> "$work/first.err" &
first=$!
pids+=($first)
for _ in $(seq 100); do grep -q "admin API on" "$work/first.err" && break; sleep 0.05; done
grep -q "admin API on 127.0.0.1:$admin_port (plaintext)" "$work/first.err" ||
  { cat "$work/first.err" >&2; fail "the admin address is not logged"; }

# A second sidecar on the same admin address: exit 1 at once, naming the flag and the address.
set +e
timeout 10 "$connwarden" --config "$work/run.yaml" --concurrency 1 --metrics-address "" \
  --admin-address "127.0.0.1:$admin_port" 2> "$work/second.err"
code=$?
set -e
[ "$code" = 1 ] || fail "admin address in use: exit $code, want 1"
grep -q -- "--admin-address: cannot listen on \"127.0.0.1:$admin_port\"" "$work/second.err" ||
  { cat "$work/second.err" >&2; fail "no clear message for an admin address in use"; }
kill -0 "$first" || fail "the first sidecar died"

check_config_error() {  # expected text, flags...
  local want=$1; shift
  set +e
  out=$(timeout 10 "$connwarden" --config "$work/run.yaml" --concurrency 1 --metrics-address "" --admin-address 127.0.0.1:0 "$@" 2>&1)
  code=$?
  set -e
  [ "$code" = 2 ] || fail "exit $code (want 2) for: $*"
  grep -qF -- "$want" <<<"$out" || fail "'$out' does not name '$want'"
}
check_config_error "--admin-tls-cert" --admin-tls-cert "$work/nope.crt" --admin-tls-key "$work/nope.key"
check_config_error "--admin-tls-cert and --admin-tls-key" --admin-tls-cert "$work/nope.crt"
check_config_error "--admin-tls-client-ca" --admin-tls-client-ca "$work/ca.crt"
check_config_error "--admin-read-token-file" --admin-read-token-file "$work/nope.tokens"
: > "$work/empty.tokens"
check_config_error "no token in" --admin-admin-token-file "$work/empty.tokens"

# --admin-address "": no admin API, and the default port is not touched.
"$connwarden" --config "$work/run.yaml" --concurrency 1 --metrics-address "" --admin-address "" 2> "$work/off.err" &
off=$!
pids+=($off)
for _ in $(seq 100); do grep -q "connwarden started" "$work/off.err" && break; sleep 0.05; done
grep -q "connwarden started" "$work/off.err" || fail "sidecar without admin API did not start"
! grep -q "admin API" "$work/off.err" || fail "admin API started though --admin-address was empty"
kill -TERM "$off"
set +e; wait "$off"; code=$?; set -e
[ "$code" = 0 ] || fail "exit $code after SIGTERM (no admin API)"

kill -TERM "$first"
set +e; wait "$first"; code=$?; set -e
[ "$code" = 0 ] || { cat "$work/first.err" >&2; fail "exit $code after SIGTERM"; }
echo "e2e admin: all checks passed"
