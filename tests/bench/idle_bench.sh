#!/usr/bin/env bash
# Idle-connection memory benchmark: the RSS that connwarden (hibernate on, hibernate off), nginx
# and HAProxy keep per idle keep-alive connection, and what a connection that downloaded 10 MB
# leaves behind once idle. One worker each, in front of the same upstream (connwarden-demo-app),
# plain HTTP and TLS 1.3; connwarden-idle-clients opens and holds the connections. Not a test: an
# engineer runs it by hand. See README.md next to this file for the columns and the targets.
#
#   tests/bench/idle_bench.sh                       # defaults: CONNS=10000 BIG_CONNS=8 ROUNDS=1
#   CONNS=200 BIG_CONNS=2 tests/bench/idle_bench.sh > report.md
#
# The report goes to stdout, progress to stderr. Everything it starts is stopped on exit.
set -uo pipefail

# --- Settings ------------------------------------------------------------------------------------
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONNWARDEN_BIN=${CONNWARDEN_BIN:-$REPO_ROOT/build/connwarden}
DEMO_APP_BIN=${DEMO_APP_BIN:-$REPO_ROOT/build/connwarden-demo-app}
IDLE_CLIENTS_BIN=${IDLE_CLIENTS_BIN:-$REPO_ROOT/build/connwarden-idle-clients}
CONNS=${CONNS:-10000}          # idle connections held at once
BIG_CONNS=${BIG_CONNS:-8}      # connections that each download 10 MB, then idle
SETTLE=${SETTLE:-2}            # seconds between the last response and the RSS reading
ROUNDS=${ROUNDS:-1}            # each round measures every proxy once per mode, order rotated
MODES=${MODES:-plain tls}      # "plain", "tls" or both
WARMUP=${WARMUP:-300}          # warm-up requests (one connection each) before the baseline; 0 = none
IN_FLIGHT=${IN_FLIGHT:-200}    # connections the client has opening at once
OPEN_TIMEOUT=${OPEN_TIMEOUT:-60} # seconds allowed to open all connections and read the responses

PROXIES=(cw_hib cw nginx haproxy)
declare -A LABEL=([cw_hib]="connwarden (hibernate on)" [cw]="connwarden (hibernate off)"
  [nginx]=nginx [haproxy]=HAProxy)
IDLE_PATH='/bytes?n=100'
IDLE_BODY_BYTES=100
BIG_BYTES=10485760
BIG_PATH="/bytes?n=$BIG_BYTES"
# The warm-up has few connections open at once (each closes after its response): it should fault
# in code and fill the upstream pool, not grow the heap to a size that the measured connections
# then reuse for free.
WARMUP_IN_FLIGHT=8
POOL=64              # upstream keep-alive connections per proxy
KEEPALIVE_S=3600     # no proxy may close an idle client connection during a run
START_TIMEOUT_S=10
# Targets from the issue, per connection: hibernated plain; hibernated TLS (OpenSSL's own floor,
# ~14 KiB, + 1 KiB); what a 10 MB response may leave beyond the idle connection's own cost.
TARGET_PLAIN_BYTES=400
TARGET_TLS_BYTES=15360
RETAIN_SLACK_BYTES=16384
# nginx and HAProxy live in /usr/sbin, which is not on a normal user's PATH on Debian.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<EOF

Environment (current value):
  CONNWARDEN_BIN    $CONNWARDEN_BIN
  DEMO_APP_BIN      $DEMO_APP_BIN
  IDLE_CLIENTS_BIN  $IDLE_CLIENTS_BIN
  CONNS             $CONNS
  BIG_CONNS         $BIG_CONNS
  SETTLE            $SETTLE   (seconds)
  ROUNDS            $ROUNDS
  MODES             $MODES
  WARMUP            $WARMUP   (requests; 0 disables)
  IN_FLIGHT         $IN_FLIGHT
  OPEN_TIMEOUT      $OPEN_TIMEOUT   (seconds)
EOF
}

# shellcheck source=tests/bench/lib.sh
source "$REPO_ROOT/tests/bench/lib.sh"
only_help_arg "$@"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer, got '$CONNS'"
[[ $BIG_CONNS =~ ^[1-9][0-9]*$ ]] || die "BIG_CONNS must be a positive integer, got '$BIG_CONNS'"
[[ $SETTLE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "SETTLE must be a number of seconds, got '$SETTLE'"
if [[ ! $ROUNDS =~ ^[1-9][0-9]*$ ]] || ((ROUNDS > 100)); then die "ROUNDS must be 1..100, got '$ROUNDS'"; fi
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a number of requests, got '$WARMUP'"
[[ $IN_FLIGHT =~ ^[1-9][0-9]*$ ]] || die "IN_FLIGHT must be a positive integer, got '$IN_FLIGHT'"
[[ $OPEN_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "OPEN_TIMEOUT must be a positive integer, got '$OPEN_TIMEOUT'"
read -ra MODE_LIST <<<"$MODES"
((${#MODE_LIST[@]} > 0)) || die "MODES is empty"
for m in "${MODE_LIST[@]}"; do
  [[ $m == plain || $m == tls ]] || die "MODES may contain only 'plain' and 'tls', got '$m'"
done

# Connection limit for every proxy: the held client connections, the upstream pool, and an eighth
# more, because nginx starts closing idle keep-alive connections once fewer than 1/16 of its
# worker_connections are free. Descriptors: no process opens more than MAXCONN of them (the client
# holds CONNS; a proxy holds CONNS plus its pool), so that is the limit asked for; HAProxy is told
# so with ulimit-n and `no strict-limits` (it would otherwise insist on two per maxconn).
MAXCONN=$((CONNS + CONNS / 8 + POOL + 512 > 4096 ? CONNS + CONNS / 8 + POOL + 512 : 4096))
NOFILE_NEED=$((MAXCONN + 1024))

# --- Tools and binaries --------------------------------------------------------------------------
ensure_packages() {
  local -a missing=()
  command -v nginx >/dev/null || missing+=("$(apt-cache show nginx-light >/dev/null 2>&1 &&
    echo nginx-light || echo nginx)")
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)    # one request per proxy, to check the answer
  command -v ss >/dev/null || missing+=(iproute2)  # free ports, open connections
  install_packages "${missing[@]}"
}

check_binaries() {
  local bin ok=1
  for bin in "$CONNWARDEN_BIN" "$DEMO_APP_BIN" "$IDLE_CLIENTS_BIN"; do
    [[ -x $bin ]] || { log "idle_bench: not found or not executable: $bin"; ok=0; }
  done
  ((ok)) && return 0
  log "Build them first, from $REPO_ROOT:"
  log "  make build"
  log "or point CONNWARDEN_BIN / DEMO_APP_BIN / IDLE_CLIENTS_BIN at existing binaries."
  exit 2
}

# Every proxy and the client hold one descriptor per connection or more: raise the limit, which
# the processes started from here inherit (as root, the hard limit too).
raise_file_limit() {
  (($(ulimit -n) >= NOFILE_NEED)) && return 0
  ulimit -n "$NOFILE_NEED" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
  (($(ulimit -n) >= NOFILE_NEED)) ||
    die "CONNS=$CONNS needs 'ulimit -n' of $NOFILE_NEED, the hard limit is $(ulimit -Hn):" \
      "run as root, raise the hard limit, or lower CONNS"
}

# --- Processes -----------------------------------------------------------------------------------
# "pid ppid starttime" for every process.
proc_table() {
  local f line
  local -a x
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    read -ra x <<<"${line##*) }" # after "(comm) ": state(0) ppid(1) ... starttime(19)
    echo "${f//[^0-9]/} ${x[1]} ${x[19]}"
  done
}

# Sets TREE_PIDS to a process and its descendants, and remembers each of them in OWNED, so cleanup
# stops it even if its parent died first (an nginx worker whose master was killed keeps serving).
declare -A OWNED # "pid:starttime" -> 1
sample_tree() {
  local info entry
  info=$(proc_table | awk -v root="$1" '
    { parent[$1] = $2; start[$1] = $3 }
    END {
      for (p in parent) {
        q = p
        for (depth = 0; depth < 32 && q > 1; depth++) {
          if (q == root) { printf " %s:%s", p, start[p]; break }
          q = parent[q]
        }
      }
    }')
  TREE_PIDS=""
  for entry in $info; do
    OWNED[$entry]=1
    TREE_PIDS+="${entry%:*} "
  done
}

# Sets RSS_KIB to the resident memory of a process and its descendants: the sum of their Rss from
# smaps_rollup (VmRSS from status where smaps_rollup is missing).
tree_rss() {
  local pid kib
  sample_tree "$1"
  RSS_KIB=0
  for pid in $TREE_PIDS; do
    kib=$(awk '$1 == "Rss:" { print $2; exit }' "/proc/$pid/smaps_rollup" 2>/dev/null)
    [[ -n $kib ]] || kib=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status" 2>/dev/null)
    RSS_KIB=$((RSS_KIB + ${kib:-0}))
  done
}

# Stops a process and everything under it. Never `wait`s: everything is disowned when started
# (bash still reaps it), because `wait` on a child that died of the same Ctrl-C can block forever
# inside the exit trap.
kill_tree() {
  sample_tree "$1"
  # shellcheck disable=SC2086  # word splitting of the pid list is wanted
  [[ -n $TREE_PIDS ]] && stop_pids $TREE_PIDS
  return 0
}

WORKDIR=""
UPSTREAM_PID="" # the demo app
PROXY_PID=""    # the proxy running now, if any
CLIENT_PID=""   # the connwarden-idle-clients running now, if any
cleanup() {
  local rc=$? pid entry
  local -a left=()
  trap - EXIT INT TERM
  [[ -n $CLIENT_PID ]] && stop_pids "$CLIENT_PID"
  for pid in $PROXY_PID $UPSTREAM_PID; do kill_tree "$pid"; done
  for entry in "${!OWNED[@]}"; do
    alive "${entry%:*}" "${entry#*:}" && left+=("${entry%:*}")
  done
  ((${#left[@]} > 0)) && stop_pids "${left[@]}"
  [[ -n $WORKDIR && -d $WORKDIR ]] && rm -rf "$WORKDIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "idle_bench: interrupted"; exit 130' INT
trap 'log "idle_bench: terminated"; exit 143' TERM

# A free loopback port below the ephemeral range (so no outgoing connection takes it meanwhile).
# One GET through the URL: must be 200 with the expected body size. Sets FAIL_REASON otherwise.
check_answer() {
  local url=$1 out code size
  out=$(curl -sk --tlsv1.3 --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' "$url" 2>&1)
  read -r code size <<<"$out"
  [[ $code == 200 && $size == "$IDLE_BODY_BYTES" ]] && return 0
  FAIL_REASON="GET $url answered '${out:-nothing}' (want 200 and a ${IDLE_BODY_BYTES}-byte body)"
  return 1
}

last_lines() { [[ -s $1 ]] && tail -n 5 "$1" | sed 's/^/    | /' >&2; }

start_upstream() {
  local out=$WORKDIR/demo-app.out line="" i
  "$DEMO_APP_BIN" --address 127.0.0.1 --port 0 >"$out" 2>"$WORKDIR/demo-app.err" &
  UPSTREAM_PID=$!
  disown "$UPSTREAM_PID"
  for ((i = 0; i < START_TIMEOUT_S * 10; i++)); do
    # Only a whole line (read succeeds once the newline is there), lest we take half a port.
    { read -r line <"$out"; } 2>/dev/null && [[ $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+) ]] &&
      break
    alive "$UPSTREAM_PID" || break
    sleep 0.1
  done
  if [[ ! $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+) ]]; then
    local what="did not print 'listening on 127.0.0.1:PORT' within ${START_TIMEOUT_S}s"
    alive "$UPSTREAM_PID" || what="exited before printing 'listening on 127.0.0.1:PORT'"
    last_lines "$WORKDIR/demo-app.err"
    die "the demo app $what (first stdout line: '$line')"
  fi
  UPSTREAM_PORT=${BASH_REMATCH[1]}
  wait_accepting "$UPSTREAM_PID" "$UPSTREAM_PORT" || die "demo app: $FAIL_REASON"
  check_answer "http://127.0.0.1:$UPSTREAM_PORT$IDLE_PATH" || die "demo app: $FAIL_REASON"
  log "upstream: $DEMO_APP_BIN on 127.0.0.1:$UPSTREAM_PORT (pid $UPSTREAM_PID)"
}

# connwarden's listener defaults with hibernate on (true) or off (false). HIBERNATE_FIELD is
# empty when the binary does not accept the field (see check_hibernate).
connwarden_defaults() {
  local hibernate=""
  [[ -n $HIBERNATE_FIELD ]] && hibernate=", hibernate: { enabled: $1, after: \"0s\" }"
  echo "{ idle_timeout: \"${KEEPALIVE_S}s\"$hibernate }"
}

# Each start_<proxy> writes its config into $dir and sets CMD to the command that runs it.
write_connwarden_config() {
  local file=$1 plain=$2 tls=$3 hibernate=$4
  cat >"$file" <<EOF
listeners:
  - name: plain
    address: "127.0.0.1:$plain"
    defaults: $(connwarden_defaults "$hibernate")
  - name: tls
    address: "127.0.0.1:$tls"
    tls: { cert_file: "$CERT", key_file: "$KEY", min_version: "1.3" }
    defaults: $(connwarden_defaults "$hibernate")
clusters:
  - name: app
    addresses: ["127.0.0.1:$UPSTREAM_PORT"]
    max_idle_connections: $POOL
    idle_timeout: "${KEEPALIVE_S}s"
routes:
  - { name: default, cluster: app }
EOF
}

start_cw_hib() {
  write_connwarden_config "$1/connwarden.yaml" "$2" "$3" true
  CMD=("$CONNWARDEN_BIN" --concurrency 1 --config "$1/connwarden.yaml" --metrics-address 127.0.0.1:0 --admin-address 127.0.0.1:0)
}

start_cw() {
  write_connwarden_config "$1/connwarden.yaml" "$2" "$3" false
  CMD=("$CONNWARDEN_BIN" --concurrency 1 --config "$1/connwarden.yaml" --metrics-address 127.0.0.1:0 --admin-address 127.0.0.1:0)
}

start_nginx() {
  local dir=$1 plain=$2 tls=$3
  # As root, nginx's worker would switch to "nobody"; keep it on the invoking user instead.
  local user=""
  ((EUID == 0)) && user="user root;"
  cat >"$dir/nginx.conf" <<EOF
$user
worker_processes 1;
worker_rlimit_nofile $((MAXCONN + 64));
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $MAXCONN; }
http {
  access_log off;
  keepalive_timeout ${KEEPALIVE_S}s;
  keepalive_requests 1000000000;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  upstream app {
    server 127.0.0.1:$UPSTREAM_PORT;
    keepalive $POOL;
    keepalive_requests 1000000000;
    keepalive_timeout ${KEEPALIVE_S}s;
  }
  server {
    listen 127.0.0.1:$plain;
    listen 127.0.0.1:$tls ssl;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.3;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  CMD=(nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log")
}

start_haproxy() {
  local dir=$1 plain=$2 tls=$3
  cat >"$dir/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $MAXCONN
  ulimit-n $NOFILE_NEED
  no strict-limits

defaults
  mode http
  option http-keep-alive
  http-reuse always
  maxconn $MAXCONN
  timeout connect 5s
  timeout client ${KEEPALIVE_S}s
  timeout server 60s
  timeout http-keep-alive ${KEEPALIVE_S}s

frontend plain
  bind 127.0.0.1:$plain
  default_backend app

frontend tls
  bind 127.0.0.1:$tls ssl crt $COMBINED ssl-min-ver TLSv1.3
  default_backend app

backend app
  server app1 127.0.0.1:$UPSTREAM_PORT pool-max-conn $POOL pool-purge-delay ${KEEPALIVE_S}s
EOF
  CMD=(haproxy -db -f "$dir/haproxy.cfg")
}

# Does this connwarden accept the hibernate policy? Sets HIBERNATE_FIELD (1 or empty) and
# HIBERNATE_NOTE; a connwarden that rejects even the config without it is left out.
declare -A BROKEN # BROKEN[proxy] / BROKEN[mode/proxy]: why it is not measured
check_hibernate() {
  local file=$WORKDIR/validate.yaml out=$WORKDIR/validate.log
  HIBERNATE_FIELD=1 HIBERNATE_NOTE=""
  write_connwarden_config "$file" 1 2 true
  "$CONNWARDEN_BIN" --validate --config "$file" >"$out" 2>&1 && return 0
  log "connwarden rejects the hibernate policy; 'hibernate on' runs without it:"
  last_lines "$out"
  HIBERNATE_FIELD="" HIBERNATE_NOTE=" (hibernate not supported by this build)"
  LABEL[cw_hib]+=$HIBERNATE_NOTE
  write_connwarden_config "$file" 1 2 true
  "$CONNWARDEN_BIN" --validate --config "$file" >"$out" 2>&1 && return 0
  BROKEN[cw_hib]="--validate rejects its config (exit $?): $(tail -n 1 "$out")"
  BROKEN[cw]=${BROKEN[cw_hib]}
  log "connwarden: ${BROKEN[cw]}; left out"
}

# Starts a fresh proxy for one mode: PROXY_PID and PROXY_PORT. False, with FAIL_REASON, if it does
# not come up and answer.
start_proxy() {
  local mode=$1 name=$2 dir plain tls
  dir=$WORKDIR/$name.$((++STARTS))
  mkdir -p "$dir"
  plain=$(free_port) tls=$(free_port)
  PROXY_PORT=$plain
  [[ $mode == tls ]] && PROXY_PORT=$tls
  "start_$name" "$dir" "$plain" "$tls"
  "${CMD[@]}" >"$dir/out.log" 2>&1 &
  PROXY_PID=$!
  disown "$PROXY_PID"
  PROXY_DIR=$dir
  local scheme=http
  [[ $mode == tls ]] && scheme=https
  wait_accepting "$PROXY_PID" "$PROXY_PORT" &&
    check_answer "$scheme://127.0.0.1:$PROXY_PORT$IDLE_PATH" && return 0
  log "${LABEL[$name]} ($mode): $FAIL_REASON. Its output:"
  last_lines "$dir/out.log"
  last_lines "$dir/error.log"
  stop_proxy
  return 1
}

stop_proxy() {
  [[ -n $PROXY_PID ]] && kill_tree "$PROXY_PID"
  PROXY_PID=""
}

# --- Clients -------------------------------------------------------------------------------------
# Starts connwarden-idle-clients: COUNT connections to the proxy, one GET PATH on each, at most
# IN_FLIGHT of them opening at once; more options after those.
start_clients() {
  local mode=$1 count=$2 path=$3 in_flight=$4
  local -a options=("${@:5}")
  [[ $mode == tls ]] && options+=(--tls)
  "$IDLE_CLIENTS_BIN" "${options[@]}" --conns "$count" --path "$path" --in-flight "$in_flight" \
    --timeout "$OPEN_TIMEOUT" "127.0.0.1:$PROXY_PORT" >"$WORKDIR/clients.out" 2>"$WORKDIR/clients.err" &
  CLIENT_PID=$!
  disown "$CLIENT_PID"
}

# Waits (bounded) for the client's "ready OK [failed F]" line: sets READY_OK and READY_FAILED.
# False, with FAIL_REASON, if it exits or never gets there.
wait_ready() {
  local i line was_alive
  READY_OK="" READY_FAILED="" FAIL_REASON=""
  for ((i = 0; i < (OPEN_TIMEOUT + 15) * 10; i++)); do
    alive "$CLIENT_PID" && was_alive=1 || was_alive=0 # before reading: then its output is whole
    line=$(grep -m1 '^ready ' "$WORKDIR/clients.out" 2>/dev/null)
    if [[ $line =~ ^ready\ ([0-9]+)(\ failed\ ([0-9]+))?$ ]]; then
      READY_OK=${BASH_REMATCH[1]} READY_FAILED=${BASH_REMATCH[3]:-0}
      return 0
    fi
    ((was_alive)) || { FAIL_REASON="the client exited before it was ready"; break; }
    sleep 0.1
  done
  FAIL_REASON=${FAIL_REASON:-"the client was not ready after $((OPEN_TIMEOUT + 15))s"}
  last_lines "$WORKDIR/clients.err"
  return 1
}

# Connections the client still holds: its last "open M" line, or all that got their response.
client_open() {
  local last
  last=$(grep '^open ' "$WORKDIR/clients.out" | tail -n 1)
  echo "${last#open }" | grep . || echo "$READY_OK"
}

stop_clients() {
  [[ -n $CLIENT_PID ]] && stop_pids "$CLIENT_PID"
  CLIENT_PID=""
}

# Established connections on the proxy's side of its listening port.
proxy_open() { ss -Htn state established "( sport = :$PROXY_PORT )" 2>/dev/null | grep -c .; }

# --- Measurement ---------------------------------------------------------------------------------
# One phase on a fresh proxy: warm-up, baseline RSS, COUNT connections that GET PATH and stay open,
# SETTLE, RSS again. Sets BASE_KIB, AFTER_KIB, PER_CONN (bytes) and OPEN_COUNT; PHASE_INVALID says
# why the figure does not count (empty when it does). False if the proxy could not be measured.
measure_phase() {
  local mode=$1 name=$2 count=$3 path=$4 ss_open
  PHASE_INVALID=""
  start_proxy "$mode" "$name" || return 1
  if ((WARMUP > 0)); then
    start_clients "$mode" "$WARMUP" "$IDLE_PATH" "$WARMUP_IN_FLIGHT" --close
    wait_ready || log "  warm-up: $FAIL_REASON"
    ((${READY_FAILED:-0} > 0)) && log "  warm-up: $READY_FAILED of $WARMUP requests failed"
    stop_clients
  fi
  sleep 1
  tree_rss "$PROXY_PID"
  BASE_KIB=$RSS_KIB

  start_clients "$mode" "$count" "$path" "$IN_FLIGHT"
  if ! wait_ready; then
    stop_clients
    stop_proxy
    return 1
  fi
  sleep "$SETTLE"
  if ! alive "$PROXY_PID"; then
    FAIL_REASON="died while holding $count connections"
    log "  ${LABEL[$name]} ($mode): $FAIL_REASON. Its output:"
    last_lines "$PROXY_DIR/out.log"
    last_lines "$PROXY_DIR/error.log"
    stop_clients
    stop_proxy
    return 1
  fi
  tree_rss "$PROXY_PID"
  AFTER_KIB=$RSS_KIB
  ss_open=$(proxy_open)
  OPEN_COUNT=$(client_open)
  ((ss_open < OPEN_COUNT)) && OPEN_COUNT=$ss_open
  ((READY_FAILED > 0)) && PHASE_INVALID="$READY_FAILED of $count failed to open"
  ((READY_FAILED == 0 && OPEN_COUNT < count)) &&
    PHASE_INVALID="the proxy closed $((count - OPEN_COUNT)) of $count"
  stop_clients
  stop_proxy
  PER_CONN=$(((AFTER_KIB - BASE_KIB) * 1024 / count))
  return 0
}

# Both phases for one proxy in one mode; records the figures for the report.
declare -A BASE IDLE_RSS PER_IDLE RETAINED OPEN_IDLE OPEN_BIG INVALID
measure() {
  local mode=$1 name=$2 label=$3 key=$1/$2
  if measure_phase "$mode" "$name" "$CONNS" "$IDLE_PATH"; then
    BASE[$key]+="$BASE_KIB " IDLE_RSS[$key]+="$AFTER_KIB " PER_IDLE[$key]+="$PER_CONN "
    OPEN_IDLE[$key]+="$OPEN_COUNT "
    [[ -n $PHASE_INVALID ]] && INVALID[$key]+="idle: $PHASE_INVALID; "
    log "$(printf '  %s %-5s %-26s idle:  %7d -> %7d KiB, %7d B/conn, %d/%d open%s' "$label" \
      "$mode" "${LABEL[$name]}" "$BASE_KIB" "$AFTER_KIB" "$PER_CONN" \
      "$OPEN_COUNT" "$CONNS" "${PHASE_INVALID:+ — $PHASE_INVALID}")"
  else
    log "  $label $mode ${LABEL[$name]}: idle phase not measured: $FAIL_REASON"
    BROKEN[$key]=$FAIL_REASON INVALID[$key]+="idle: not measured ($FAIL_REASON); "
  fi
  if measure_phase "$mode" "$name" "$BIG_CONNS" "$BIG_PATH"; then
    RETAINED[$key]+="$PER_CONN " OPEN_BIG[$key]+="$OPEN_COUNT "
    [[ -n $PHASE_INVALID ]] && INVALID[$key]+="10 MB: $PHASE_INVALID; "
    log "$(printf '  %s %-5s %-26s 10 MB: %7d -> %7d KiB, %7d B/conn, %d/%d open%s' "$label" \
      "$mode" "${LABEL[$name]}" "$BASE_KIB" "$AFTER_KIB" "$PER_CONN" \
      "$OPEN_COUNT" "$BIG_CONNS" "${PHASE_INVALID:+ — $PHASE_INVALID}")"
  else
    log "  $label $mode ${LABEL[$name]}: 10 MB phase not measured: $FAIL_REASON"
    BROKEN[$key]=$FAIL_REASON INVALID[$key]+="10 MB: not measured ($FAIL_REASON); "
  fi
}

# --- Report --------------------------------------------------------------------------------------
median() {
  # shellcheck disable=SC2086  # $1 is a space-separated list
  printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2];
          else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && a >= 0 && b > 0) printf "%.2f", a / b; else print "–" }'; }
# Bytes, readable: "312 B", "14.2 KiB", "10.0 MiB".
size() {
  awk -v b="$1" 'BEGIN {
    if (b == "") { print "–"; exit }
    a = b < 0 ? -b : b
    if (a < 10240) printf "%d B", b
    else if (a < 10485760) printf "%.1f KiB", b / 1024
    else printf "%.1f MiB", b / 1048576 }'
}
kib_size() { if [[ -n $1 ]]; then size $(($1 * 1024)); else echo –; fi; }
verdict() { # VALUE LIMIT -> met / **missed**; a negative value is noise (RSS fell below baseline)
  awk -v v="$1" -v t="$2" 'BEGIN {
    if (v == "" || t == "") print "n/a"
    else if (v < 0) print "n/a: RSS fell below the baseline, too few connections to tell"
    else print (v + 0 <= t + 0) ? "met" : "**missed**" }'
}

report_mode() {
  local mode=$1 name key title="plain HTTP"
  [[ $mode == tls ]] && title="TLS 1.3"
  local -A m_base m_idle m_per m_ret
  for name in "${PROXIES[@]}"; do
    key=$mode/$name
    m_base[$name]=$(median "${BASE[$key]:-}") m_idle[$name]=$(median "${IDLE_RSS[$key]:-}")
    m_per[$name]=$(median "${PER_IDLE[$key]:-}") m_ret[$name]=$(median "${RETAINED[$key]:-}")
  done

  echo
  echo "### $title — $CONNS idle connections; $BIG_CONNS after 10 MB each; medians of $ROUNDS round(s)"
  echo
  echo "| proxy | baseline RSS | RSS with $CONNS idle | bytes/idle conn | open (idle) | 10 MB retained/conn | open (10 MB) | cw-hib/this idle | cw-hib/this 10 MB |"
  echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|"
  local hib=cw_hib notes=""
  for name in "${PROXIES[@]}"; do
    key=$mode/$name
    if [[ -z ${PER_IDLE[$key]:-}${RETAINED[$key]:-} ]]; then
      local why=${BROKEN[$mode/$name]:-${BROKEN[$name]:-no successful run}}
      echo "| ${LABEL[$name]} | not measured: ${why//|//} | | | | | | | |"
      continue
    fi
    local r1=– r2=– open_idle open_big
    open_idle=$(median "${OPEN_IDLE[$key]:-}") open_big=$(median "${OPEN_BIG[$key]:-}")
    open_idle=${open_idle:+$open_idle/$CONNS} open_big=${open_big:+$open_big/$BIG_CONNS}
    if [[ -n ${INVALID[$key]:-} ]]; then
      notes+="- **${LABEL[$name]}: not valid** — ${INVALID[$key]%; }"$'\n'
      open_idle="**${open_idle:-–}**" open_big="**${open_big:-–}**"
    elif [[ $name != "$hib" && -z ${INVALID[$mode/$hib]:-} ]]; then
      r1=$(ratio "${m_per[$hib]}" "${m_per[$name]}")
      r2=$(ratio "${m_ret[$hib]}" "${m_ret[$name]}")
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$name]}" \
      "$(kib_size "${m_base[$name]}")" "$(kib_size "${m_idle[$name]}")" \
      "$(size "${m_per[$name]}")" "${open_idle:-–}" "$(size "${m_ret[$name]}")" "${open_big:-–}" \
      "$r1" "$r2"
  done
  [[ -n $notes ]] && printf '\n%s' "$notes"

  echo
  local per=${m_per[$hib]} ret=${m_ret[$hib]} limit=$TARGET_PLAIN_BYTES what="≤ $TARGET_PLAIN_BYTES B"
  [[ $mode == tls ]] && limit=$TARGET_TLS_BYTES what="≤ 15 KiB (OpenSSL's floor + 1 KiB)"
  if [[ -z $per && -z $ret ]]; then
    echo "Targets (connwarden, hibernate on): not evaluated (not measured)."
    return
  fi
  local note=""
  [[ -n ${INVALID[$mode/$hib]:-} ]] && note=" — not valid, see above"
  echo "Targets (connwarden, hibernate on)$HIBERNATE_NOTE: idle connection $what:" \
    "$(size "$per") ($(verdict "$per" "$limit")); a 10 MB response leaves nothing behind" \
    "(retained ≤ idle + 16 KiB): $(size "$ret")" \
    "($(verdict "$ret" "$([[ -n $per ]] && echo $((per + RETAIN_SLACK_BYTES)))"))$note"
}

print_report() {
  local cmd="" var mode
  for var in CONNWARDEN_BIN DEMO_APP_BIN IDLE_CLIENTS_BIN CONNS BIG_CONNS SETTLE ROUNDS MODES WARMUP \
    IN_FLIGHT OPEN_TIMEOUT; do
    cmd+="$var=$(printf '%q' "${!var}") "
  done
  cmd+=$(printf '%q' "$0")
  echo "## Idle-connection memory: connwarden vs nginx vs HAProxy"
  echo
  echo '```text'
  echo "command:   $cmd"
  echo "started:   $STARTED_AT, finished $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "machine:   $(nproc) CPU(s), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)," \
    "$(awk '$1 == "MemTotal:" { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
  echo "load avg:  at start $LOAD_AT_START; at end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "versions:  $(nginx -v 2>&1 | sed 's/^nginx version: //')," \
    "$(haproxy -v 2>&1 | head -n1 | sed 's/ version / /; s/ - .*//; s/ [0-9/]*$//')," \
    "$(openssl version | cut -d' ' -f1-2), glibc $(getconf GNU_LIBC_VERSION | cut -d' ' -f2)"
  echo "connwarden: $CONNWARDEN_BIN ($(binary_info))"
  if [[ -n $HIBERNATE_FIELD ]]; then
    echo "hibernate: 'hibernate on' = listener defaults hibernate { enabled: true, after: 0s }"
  else
    echo "hibernate: NOT supported by this build; 'hibernate on' ran without the field"
  fi
  echo "upstream:  $DEMO_APP_BIN; idle connections GET $IDLE_PATH, the others GET $BIG_PATH"
  echo "proxies:   one worker each, a fresh process per phase, client keep-alive/idle timeout" \
    "${KEEPALIVE_S}s, maxconn $MAXCONN, upstream pool $POOL; TLS 1.3 with one ECDSA P-256 cert"
  local warmup="no warm-up"
  ((WARMUP > 0)) && warmup="warm-up $WARMUP requests (one connection each, $WARMUP_IN_FLIGHT at once) and 1 s"
  echo "clients:   $IDLE_CLIENTS_BIN, at most $IN_FLIGHT opening at once; $warmup;" \
    "RSS read ${SETTLE}s after the last response"
  echo "RSS:       sum of Rss (/proc/PID/smaps_rollup) over the proxy's process tree"
  echo '```'
  for mode in "${MODE_LIST[@]}"; do report_mode "$mode"; done
  echo
  echo "baseline RSS: after the warm-up, before the connections open; RSS with N idle: $SETTLE s" \
    "after the last of the N responses; bytes/idle conn: (RSS with N idle − baseline) ÷ N;" \
    "open: connections still open on both sides when RSS was read (bold when some were closed:" \
    "the row is not valid); 10 MB retained/conn: on a fresh process, (RSS $SETTLE s after" \
    "$BIG_CONNS connections each downloaded $BIG_BYTES bytes − baseline) ÷ $BIG_CONNS, the" \
    "connections still open; cw-hib/this: connwarden-with-hibernate's figure ÷ this proxy's" \
    "(below 1 is better for connwarden)."
}

# --- Main ----------------------------------------------------------------------------------------
ensure_packages
check_binaries
raise_file_limit
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/idle_bench.XXXXXX") || die "mktemp failed"
STARTS=0

make_cert
start_upstream
check_hibernate

log "measuring: $ROUNDS round(s) × ${#MODE_LIST[@]} mode(s) × ${#PROXIES[@]} proxies," \
  "$CONNS idle connections and $BIG_CONNS × 10 MB each"
for ((round = 0; round < ROUNDS; round++)); do
  for mode in "${MODE_LIST[@]}"; do
    for ((i = 0; i < ${#PROXIES[@]}; i++)); do
      name=${PROXIES[(i + round) % ${#PROXIES[@]}]}
      [[ -n ${BROKEN[$name]:-} ]] && continue
      measure "$mode" "$name" "round $((round + 1))/$ROUNDS"
      alive "$UPSTREAM_PID" || { last_lines "$WORKDIR/demo-app.err"; die "the demo app died"; }
    done
  done
done

print_report
