#!/usr/bin/env bash
# Throughput benchmark: connwarden side by side with nginx and HAProxy, one worker each, in front
# of the same upstream (connwarden-demo-app, GET /bytes?n=100), plain HTTP and TLS 1.3, driven by
# wrk. Not a test: an engineer runs it by hand and pastes the report into README. See README.md
# next to this file for what each column means and the targets.
#
#   tests/bench/proxy_bench.sh                      # defaults: CONNS=64 DURATION=5s ROUNDS=5
#   CONNS=8 DURATION=1s ROUNDS=1 tests/bench/proxy_bench.sh > report.md
#
# The report goes to stdout, progress to stderr. Everything it starts is stopped on exit.
set -uo pipefail

# --- Settings ------------------------------------------------------------------------------------
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONNWARDEN_BIN=${CONNWARDEN_BIN:-$REPO_ROOT/build/connwarden}
DEMO_APP_BIN=${DEMO_APP_BIN:-$REPO_ROOT/build/connwarden-demo-app}
CONNS=${CONNS:-64}          # wrk connections (one wrk thread)
DURATION=${DURATION:-5s}    # each measured run
ROUNDS=${ROUNDS:-5}         # each round runs every proxy once per mode, order rotated per round
MODES=${MODES:-plain tls}   # "plain", "tls" or both
WARMUP=${WARMUP:-1s}        # one unmeasured run per proxy and mode before round 1; 0 = none

# connwarden_syscalls: the same binary with --io-uring=false, one recv(2)/send(2) per connection
# and pass: what runs where a seccomp profile (Docker's and containerd's defaults) refuses io_uring.
# floor: connwarden-floor-relay, which moves bytes between each client connection and an upstream
# connection of its own and does nothing else (plain HTTP only). Its CPU per request is what the
# kernel charges any proxy on this machine; a proxy's own code costs what it spends above it.
PROXIES=(nginx haproxy connwarden connwarden_syscalls floor)
FLOOR_BIN=${FLOOR_BIN:-$REPO_ROOT/build/connwarden-floor-relay}
REQUEST_PATH='/bytes?n=100'
BODY_BYTES=100
START_TIMEOUT_S=10
# nginx and HAProxy live in /usr/sbin, which is not on a normal user's PATH on Debian.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

usage() {
  sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<EOF

Environment (current value):
  CONNWARDEN_BIN  $CONNWARDEN_BIN
  DEMO_APP_BIN    $DEMO_APP_BIN
  FLOOR_BIN       $FLOOR_BIN
  CONNS           $CONNS
  DURATION        $DURATION   (wrk syntax: 5s, 1m)
  ROUNDS          $ROUNDS
  MODES           $MODES
  WARMUP          $WARMUP   (0 disables)
EOF
}

# shellcheck source=tests/bench/lib.sh
source "$REPO_ROOT/tests/bench/lib.sh"
only_help_arg "$@"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer, got '$CONNS'"
if [[ ! $ROUNDS =~ ^[1-9][0-9]*$ ]] || ((ROUNDS > 100)); then die "ROUNDS must be 1..100, got '$ROUNDS'"; fi
[[ $DURATION =~ ^[1-9][0-9]*[smh]?$ ]] || die "DURATION must look like 5s or 1m, got '$DURATION'"
[[ $WARMUP == 0 || $WARMUP =~ ^[1-9][0-9]*[smh]?$ ]] || die "WARMUP must be 0 or like 1s, got '$WARMUP'"
read -ra MODE_LIST <<<"$MODES"
((${#MODE_LIST[@]} > 0)) || die "MODES is empty"
for m in "${MODE_LIST[@]}"; do
  [[ $m == plain || $m == tls ]] || die "MODES may contain only 'plain' and 'tls', got '$m'"
done

# Seconds in a wrk duration ("5s", "2m", "1h", "7").
seconds_of() {
  local d=$1 n=${1%[smh]}
  case $d in *m) echo $((n * 60)) ;; *h) echo $((n * 3600)) ;; *) echo "$n" ;; esac
}
DURATION_S=$(seconds_of "$DURATION")

# Upstream keep-alive pool per proxy: never smaller than the client concurrency, so no proxy
# reconnects to the upstream during a run. Connection limits: generous for everyone.
POOL=$((CONNS > 256 ? CONNS : 256))
MAXCONN=$((CONNS * 10 > 4096 ? CONNS * 10 : 4096))

# --- Tools and binaries --------------------------------------------------------------------------
ensure_packages() {
  local -a missing=()
  command -v nginx >/dev/null || missing+=("$(apt-cache show nginx-light >/dev/null 2>&1 &&
    echo nginx-light || echo nginx)")
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)    # one request per proxy, to check the answer
  command -v ss >/dev/null || missing+=(iproute2)  # free-port check
  install_packages "${missing[@]}"
}

check_binaries() {
  local bin ok=1
  for bin in "$CONNWARDEN_BIN" "$DEMO_APP_BIN" "$FLOOR_BIN"; do
    [[ -x $bin ]] || { log "proxy_bench: not found or not executable: $bin"; ok=0; }
  done
  ((ok)) && return 0
  log "Build them first, from $REPO_ROOT:"
  log "  make build      (or: make bench, which builds and then runs this script)"
  log "or point CONNWARDEN_BIN / DEMO_APP_BIN at existing binaries."
  exit 2
}

# --- Processes -----------------------------------------------------------------------------------
# "pid ppid cputicks starttime uticks" for every process; cputicks = utime + stime of all its
# threads, uticks = utime alone.
proc_table() {
  local f line
  local -a x
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    read -ra x <<<"${line##*) }" # after "(comm) ": state ppid ... utime(11) stime(12) starttime(19)
    echo "${f//[^0-9]/} ${x[1]} $((x[11] + x[12])) ${x[19]} ${x[11]}"
  done
}

# Looks at a process and its descendants: sets TREE_PIDS, TREE_TICKS and TREE_UTICKS (their summed
# cputicks and uticks), and remembers each of them in OWNED, so cleanup stops it even if its parent
# died first (an nginx worker whose master was killed keeps serving).
declare -A OWNED # "pid:starttime" -> 1
sample_tree() {
  local info entry
  info=$(proc_table | awk -v root="$1" '
    { parent[$1] = $2; ticks[$1] = $3; start[$1] = $4; uticks[$1] = $5 }
    END {
      sum = 0; usum = 0; pids = ""
      for (p in parent) {
        q = p
        for (depth = 0; depth < 32 && q > 1; depth++) {
          if (q == root) { sum += ticks[p]; usum += uticks[p]; pids = pids " " p ":" start[p]; break }
          q = parent[q]
        }
      }
      print sum, usum pids
    }')
  read -r TREE_TICKS TREE_UTICKS info <<<"$info"
  TREE_PIDS=""
  for entry in $info; do
    OWNED[$entry]=1
    TREE_PIDS+="${entry%:*} "
  done
}

# Stops a process and everything under it. Never `wait`s: the proxies and the upstream are
# disowned when started (bash still reaps them), because `wait` on a child that died of the same
# Ctrl-C can block forever inside the exit trap.
kill_tree() {
  sample_tree "$1"
  # shellcheck disable=SC2086  # word splitting of the pid list is wanted
  [[ -n $TREE_PIDS ]] && stop_pids $TREE_PIDS
  return 0
}

WORKDIR=""
STARTED=() # pids of everything started, stopped in cleanup
WRK_PID=""
cleanup() {
  local rc=$? pid entry
  local -a left=()
  trap - EXIT INT TERM
  if [[ -n $WRK_PID ]]; then disown "$WRK_PID" 2>/dev/null; kill_tree "$WRK_PID"; fi
  for pid in "${STARTED[@]}"; do kill_tree "$pid"; done
  for entry in "${!OWNED[@]}"; do
    alive "${entry%:*}" "${entry#*:}" && left+=("${entry%:*}")
  done
  ((${#left[@]} > 0)) && stop_pids "${left[@]}"
  [[ -n $WORKDIR && -d $WORKDIR ]] && rm -rf "$WORKDIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "proxy_bench: interrupted"; exit 130' INT
trap 'log "proxy_bench: terminated"; exit 143' TERM

# A free loopback port below the ephemeral range (so no outgoing connection takes it meanwhile).
# One GET through the URL: must be 200 with the expected body size. Sets FAIL_REASON otherwise.
check_answer() {
  local url=$1 out code size
  out=$(curl -sk --tlsv1.3 --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' "$url" 2>&1)
  read -r code size <<<"$out"
  [[ $code == 200 && $size == "$BODY_BYTES" ]] && return 0
  FAIL_REASON="GET $url answered '${out:-nothing}' (want 200 and a ${BODY_BYTES}-byte body)"
  return 1
}

last_lines() { [[ -s $1 ]] && tail -n 5 "$1" | sed 's/^/    | /' >&2; }

start_upstream() {
  local out=$WORKDIR/demo-app.out line="" i
  "$DEMO_APP_BIN" --address 127.0.0.1 --port 0 >"$out" 2>"$WORKDIR/demo-app.err" &
  UPSTREAM_PID=$!
  disown "$UPSTREAM_PID"
  STARTED+=("$UPSTREAM_PID")
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
  check_answer "http://127.0.0.1:$UPSTREAM_PORT$REQUEST_PATH" || die "demo app: $FAIL_REASON"
  sample_tree "$UPSTREAM_PID"
  log "upstream: $DEMO_APP_BIN on 127.0.0.1:$UPSTREAM_PORT (pid $UPSTREAM_PID)"
}

# Each start_<proxy> writes its config into $dir and sets CMD to the command that runs it.
start_nginx() {
  local dir=$1 plain=$2 tls=$3
  # As root, nginx's worker would switch to "nobody"; keep it on the invoking user instead.
  local user=""
  ((EUID == 0)) && user="user root;"
  cat >"$dir/nginx.conf" <<EOF
$user
worker_processes 1;
worker_rlimit_nofile $((MAXCONN * 2 + 64));
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $MAXCONN; }
http {
  access_log off;
  keepalive_timeout 60s;
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
    keepalive_timeout 3600s;
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

defaults
  mode http
  option http-keep-alive
  http-reuse always
  maxconn $MAXCONN
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s

frontend plain
  bind 127.0.0.1:$plain
  default_backend app

frontend tls
  bind 127.0.0.1:$tls ssl crt $COMBINED ssl-min-ver TLSv1.3
  default_backend app

backend app
  server app1 127.0.0.1:$UPSTREAM_PORT pool-max-conn $POOL pool-purge-delay 3600s
EOF
  CMD=(haproxy -db -f "$dir/haproxy.cfg")
}

start_connwarden() {
  local dir=$1 plain=$2 tls=$3
  cat >"$dir/connwarden.yaml" <<EOF
listeners:
  - name: plain
    address: "127.0.0.1:$plain"
  - name: tls
    address: "127.0.0.1:$tls"
    tls: { cert_file: "$CERT", key_file: "$KEY", min_version: "1.3" }
clusters:
  - name: app
    addresses: ["127.0.0.1:$UPSTREAM_PORT"]
    max_idle_connections: $POOL
    idle_timeout: "3600s"
routes:
  - { name: default, cluster: app }
EOF
  METRICS_PORT=$(free_port) # its upstream connects are counted exactly, from its metrics
  CMD=("$CONNWARDEN_BIN" --concurrency 1 --config "$dir/connwarden.yaml" --metrics-address "127.0.0.1:$METRICS_PORT" --admin-address 127.0.0.1:0)
}

start_connwarden_syscalls() {
  start_connwarden "$@"
  CMD+=(--io-uring=false)
}

start_floor() {
  local plain=$2
  CMD=("$FLOOR_BIN" "$plain" "$UPSTREAM_PORT")
  ONLY_MODE=plain
}

declare -A PID PORT BROKEN METRICS # BROKEN[proxy] / BROKEN[mode/proxy]: why it is not measured
start_proxy() {
  local name=$1 dir=$WORKDIR/$1 plain tls mode
  mkdir -p "$dir"
  plain=$(free_port) tls=$(free_port)
  PORT[plain/$name]=$plain PORT[tls/$name]=$tls
  METRICS_PORT="" ONLY_MODE=""
  "start_$name" "$dir" "$plain" "$tls"
  METRICS[$name]=$METRICS_PORT
  for mode in "${MODE_LIST[@]}"; do
    [[ -n $ONLY_MODE && $mode != "$ONLY_MODE" ]] && BROKEN[$mode/$name]="$ONLY_MODE only"
  done
  "${CMD[@]}" >"$dir/out.log" 2>&1 &
  PID[$name]=$!
  disown "${PID[$name]}"
  STARTED+=("${PID[$name]}")
  for mode in "${MODE_LIST[@]}"; do
    [[ -n ${BROKEN[$mode/$name]:-} ]] && continue
    if ! wait_accepting "${PID[$name]}" "${PORT[$mode/$name]}"; then
      BROKEN[$name]=$FAIL_REASON
      log "$name: $FAIL_REASON; skipped. Its output:"
      last_lines "$dir/out.log"
      last_lines "$dir/error.log"
      kill_tree "${PID[$name]}"
      return 1
    fi
  done
  for mode in "${MODE_LIST[@]}"; do
    [[ -n ${BROKEN[$mode/$name]:-} ]] && continue
    check_answer "$(url_of "$mode" "$name")" && continue
    BROKEN[$mode/$name]=$FAIL_REASON
    log "$name ($mode): $FAIL_REASON; skipped in this mode"
  done
  sample_tree "${PID[$name]}" # remember its workers, now that they have answered
  log "$name: pid ${PID[$name]}, plain 127.0.0.1:$plain, tls 127.0.0.1:$tls"
}

url_of() {
  local scheme=http
  [[ $1 == tls ]] && scheme=https
  echo "$scheme://127.0.0.1:${PORT[$1/$2]}$REQUEST_PATH"
}

measured() { [[ -z ${BROKEN[$2]:-} && -z ${BROKEN[$1/$2]:-} ]]; }

# --- Load ----------------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)

# The proxy-side ports of all connections to the upstream, open or recently closed (TIME-WAIT on
# either side), sorted. Ports new after a run = upstream connections opened during it (only the
# proxy under load is busy then). A lower bound: under heavy churn ports are reused, so a proxy
# without upstream keep-alive shows thousands rather than one per request; a pooling proxy, 0.
upstream_conns() {
  {
    ss -Htan "( dport = :$UPSTREAM_PORT )" | awk '{ print $4 }' # State Recv-Q Send-Q Local Peer
    ss -Htan state time-wait "( sport = :$UPSTREAM_PORT )" | awk '{ print $4 }' # no State column
  } 2>/dev/null | sed 's/.*://' | sort -u
}

# Upstream connections a connwarden has opened since it started (its
# connwarden_upstream_connects_total): exact, where the ports above are a lower bound shared by
# every proxy on the machine.
upstream_connects() {
  curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
    awk '/^connwarden_upstream_connects_total/ { n += $2 } END { printf "%d\n", n }'
}

# µs of CPU per response: TICKS clock ticks over OK responses ("nan" without any).
us_per_request() {
  awk -v t="$1" -v hz="$CLK_TCK" -v ok="$2" \
    'BEGIN { if (ok > 0) printf "%.3f", t * 1e6 / hz / ok; else print "nan" }'
}

# Runs wrk against one proxy in one mode; with a label, records the result for the report.
declare -A RPS P50 P99 CPU UCPU ERRORS FAILED_RUNS NEW_UPSTREAM BY_ROUND
run_wrk() {
  local mode=$1 name=$2 duration=$3 label=${4:-} out=$WORKDIR/wrk.out rc
  local ticks0 ticks1 uticks0 uticks1 completed elapsed p50 p99 sock non2xx ok rps cpu ucpu
  local conns0 conns1 new_conns
  if [[ -n ${METRICS[$name]:-} ]]; then conns0=$(upstream_connects "${METRICS[$name]}"); else conns0=$(upstream_conns); fi
  sample_tree "${PID[$name]}"
  ticks0=$TREE_TICKS uticks0=$TREE_UTICKS
  timeout -k 5 $(($(seconds_of "$duration") + 30)) \
    wrk -t1 -c"$CONNS" -d"$duration" --latency "$(url_of "$mode" "$name")" >"$out" 2>&1 &
  WRK_PID=$!
  wait "$WRK_PID"
  rc=$?
  WRK_PID=""
  sample_tree "${PID[$name]}"
  ticks1=$TREE_TICKS uticks1=$TREE_UTICKS
  if [[ -n ${METRICS[$name]:-} ]]; then
    conns1=$(upstream_connects "${METRICS[$name]}")
    new_conns=$((conns1 - conns0))
  else
    conns1=$(upstream_conns)
    new_conns=$(comm -13 <(echo "$conns0") <(echo "$conns1") | grep -c .)
  fi

  if ! alive "$UPSTREAM_PID"; then
    last_lines "$WORKDIR/demo-app.err"
    die "the demo app died during ${label:-warm-up} ($mode $name); no figure would mean anything"
  fi
  local key=$mode/$name
  if ! alive "${PID[$name]}"; then
    BROKEN[$name]="died during ${label:-warm-up} ($mode)"
    log "$name: ${BROKEN[$name]}; that run is discarded and $name skipped from now on. Its output:"
    last_lines "$WORKDIR/$name/out.log"
    last_lines "$WORKDIR/$name/error.log"
    [[ -n $label ]] && FAILED_RUNS[$key]=$((${FAILED_RUNS[$key]:-0} + 1))
    return 1
  fi
  if ! read -r completed elapsed p50 p99 sock non2xx < <(parse_wrk "$out"); then
    log "  ${label:-warm-up} $mode $name: wrk failed (exit $rc):"
    last_lines "$out"
    [[ -n $label ]] && FAILED_RUNS[$key]=$((${FAILED_RUNS[$key]:-0} + 1))
    return 1
  fi
  [[ -z $label ]] && return 0

  ok=$((completed - non2xx))
  rps=$(awk -v ok="$ok" -v el="$elapsed" 'BEGIN { printf "%.1f", ok * 1e6 / el }')
  cpu=$(us_per_request $((ticks1 - ticks0)) "$ok")
  ucpu=$(us_per_request $((uticks1 - uticks0)) "$ok")
  RPS[$key]+="$rps " P50[$key]+="$p50 " P99[$key]+="$p99 "
  [[ $cpu != nan ]] && CPU[$key]+="$cpu "
  [[ $ucpu != nan ]] && UCPU[$key]+="$ucpu "
  # By round too ($round is the caller's loop variable), for ratios paired within a round.
  BY_ROUND[$key/$round]="$rps $cpu $p99 $ucpu"
  ERRORS[$key]=$((${ERRORS[$key]:-0} + sock + non2xx))
  NEW_UPSTREAM[$key]=$((${NEW_UPSTREAM[$key]:-0} + new_conns))
  log "$(printf '  %s %-5s %-10s %9.0f req/s  p50 %6d us  p99 %7d us  CPU %6s us/req (user %6s)  errors %d  new upstream conns %d' \
    "$label" "$mode" "$name" "$rps" "$p50" "$p99" "$cpu" "$ucpu" $((sock + non2xx)) "$new_conns")"
}

# --- Report --------------------------------------------------------------------------------------
median() {
  # shellcheck disable=SC2086  # $1 is a space-separated list
  printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2];
          else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
spread() { # (max - min) / median, in percent, rounded
  # shellcheck disable=SC2086
  printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 }
    END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          if (NR > 0 && m > 0) printf "%.0f", (v[NR] - v[1]) * 100 / m }'
}
range_of() { # "min–max"
  # shellcheck disable=SC2086
  printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 } END { if (NR > 0) printf "%s–%s", v[1], v[NR] }'
}
MAX_SPREAD_PCT=20 # above it, the machine was too busy for the ratios to mean much
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.2f", a / b; else print "–" }'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "") print "–"; else printf f, v }'; }

# "met" or "missed": verdict RATIO '>='|'<=' TARGET.
verdict() {
  awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN {
    if (r == "–") { print "n/a"; exit }
    ok = (op == ">=") ? (r + 0 >= t + 0) : (r + 0 <= t + 0); print ok ? "met" : "**missed**" }'
}

# One markdown table for a mode, then the verdict against the targets.
report_mode() {
  local mode=$1 name key title=plain\ HTTP
  [[ $mode == tls ]] && title="TLS 1.3"
  local -A m_rps m_p50 m_p99 m_cpu m_ucpu
  for name in "${PROXIES[@]}"; do
    key=$mode/$name
    m_rps[$name]=$(median "${RPS[$key]:-}") m_p50[$name]=$(median "${P50[$key]:-}")
    m_p99[$name]=$(median "${P99[$key]:-}") m_cpu[$name]=$(median "${CPU[$key]:-}")
    m_ucpu[$name]=$(median "${UCPU[$key]:-}")
  done

  echo
  echo "### $title — medians of $ROUNDS round(s), $CONNS connections, $DURATION each"
  echo
  echo "| proxy | req/s | spread | p50 µs | p99 µs | CPU µs/req | user µs/req | errors | new upstream conns | cw/this req/s | cw/this CPU | cw/this p99 |"
  echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
  local cw=connwarden why
  for name in "${PROXIES[@]}"; do
    key=$mode/$name
    if [[ -z ${RPS[$key]:-} ]]; then
      why=${BROKEN[$key]:-${BROKEN[$name]:-no successful run}}
      echo "| $name | not measured: ${why//|//} | | | | | | | | | | |"
      continue
    fi
    local errors=${ERRORS[$key]:-0} failed=${FAILED_RUNS[$key]:-0} err_cell
    err_cell=$errors
    ((failed > 0)) && err_cell+=" + $failed failed run(s)"
    ((errors > 0 || failed > 0)) && err_cell="**$err_cell**"
    local r1=– r2=– r3=–
    if [[ $name != "$cw" ]]; then
      r1=$(ratio "${m_rps[$cw]}" "${m_rps[$name]}")
      r2=$(ratio "${m_cpu[$cw]}" "${m_cpu[$name]}")
      r3=$(ratio "${m_p99[$cw]}" "${m_p99[$name]}")
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" \
      "$(fmt "${m_rps[$name]}" %.0f)" "$(spread "${RPS[$key]}")%" \
      "$(fmt "${m_p50[$name]}" %.0f)" "$(fmt "${m_p99[$name]}" %.0f)" \
      "$(fmt "${m_cpu[$name]}" %.1f)" "$(fmt "${m_ucpu[$name]}" %.1f)" "$err_cell" \
      "${NEW_UPSTREAM[$key]:-0}" "$r1" "$r2" "$r3"
  done

  for name in "${PROXIES[@]}"; do
    [[ -n ${RPS[$mode/$name]:-} && -n ${BROKEN[$name]:-} ]] &&
      echo && echo "Note: $name ${BROKEN[$name]}; its figures cover the runs before that."
  done

  local hp=haproxy
  echo
  if [[ -z ${RPS[$mode/$cw]:-} || -z ${RPS[$mode/$hp]:-} ]]; then
    echo "Targets vs HAProxy: not evaluated (connwarden or HAProxy not measured)."
    return
  fi
  local r_rps r_cpu r_p99
  r_rps=$(ratio "${m_rps[$cw]}" "${m_rps[$hp]}")
  r_cpu=$(ratio "${m_cpu[$cw]}" "${m_cpu[$hp]}")
  r_p99=$(ratio "${m_p99[$cw]}" "${m_p99[$hp]}")
  local note="" busy=""
  for name in "${PROXIES[@]}"; do
    [[ -n ${RPS[$mode/$name]:-} ]] || continue
    (($(spread "${RPS[$mode/$name]}") > MAX_SPREAD_PCT)) && busy=1
    ((${ERRORS[$mode/$name]:-0} + ${FAILED_RUNS[$mode/$name]:-0} > 0)) &&
      note=" — not valid: some runs had errors (bold in the table)"
  done
  [[ -z $note && -n $busy ]] &&
    note=" — unreliable: a req/s spread is above ${MAX_SPREAD_PCT}% (busy machine), run again"
  echo "Targets vs HAProxy: req/s ${r_rps}× (≥ 1.10: $(verdict "$r_rps" '>=' 1.10))," \
    "CPU/request ${r_cpu}× (≤ 0.80: $(verdict "$r_cpu" '<=' 0.80))," \
    "p99 ${r_p99}× (≤ 1.00: $(verdict "$r_p99" '<=' 1.00))$note"
  paired_ratios "$mode" connwarden
  paired_ratios "$mode" connwarden_syscalls
  paired_ratios "$mode" floor
}

# connwarden (or its variant $2) ÷ HAProxy within each round, whose runs are minutes apart at
# most: the machine's speed drifts between rounds (other guests on the host), which ratios of
# medians do not cancel.
paired_ratios() {
  local mode=$1 who=$2 r cw hp rps_list="" cpu_list="" p99_list="" ucpu_list="" n=0
  local c_rps c_cpu c_p99 c_ucpu h_rps h_cpu h_p99 h_ucpu
  for ((r = 0; r < ROUNDS; r++)); do
    cw=${BY_ROUND[$mode/$who/$r]:-}
    hp=${BY_ROUND[$mode/haproxy/$r]:-}
    [[ -n $cw && -n $hp ]] || continue
    read -r c_rps c_cpu c_p99 c_ucpu <<<"$cw"
    read -r h_rps h_cpu h_p99 h_ucpu <<<"$hp"
    rps_list+="$(ratio "$c_rps" "$h_rps") " p99_list+="$(ratio "$c_p99" "$h_p99") "
    [[ $c_cpu != nan && $h_cpu != nan ]] && cpu_list+="$(ratio "$c_cpu" "$h_cpu") "
    [[ $c_ucpu != nan && $h_ucpu != nan ]] && ucpu_list+="$(ratio "$c_ucpu" "$h_ucpu") "
    n=$((n + 1))
  done
  ((n > 1)) || return 0
  echo
  echo "Paired by round ($who ÷ HAProxy in the same round, median and range over $n rounds):" \
    "req/s $(fmt "$(median "$rps_list")" %.2f)× ($(range_of "$rps_list"))," \
    "CPU/request $(fmt "$(median "$cpu_list")" %.2f)× ($(range_of "$cpu_list"))," \
    "p99 $(fmt "$(median "$p99_list")" %.2f)× ($(range_of "$p99_list"));" \
    "user CPU/request $(fmt "$(median "$ucpu_list")" %.2f)× ($(range_of "$ucpu_list"))"
}

print_report() {
  local cmd="" var
  for var in CONNWARDEN_BIN DEMO_APP_BIN FLOOR_BIN CONNS DURATION ROUNDS MODES WARMUP; do
    cmd+="$var=$(printf '%q' "${!var}") "
  done
  cmd+=$(printf '%q' "$0")
  echo "## Proxy throughput: connwarden vs nginx vs HAProxy"
  echo
  echo '```text'
  echo "command:   $cmd"
  echo "started:   $STARTED_AT, finished $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "machine:   $(nproc) CPU(s), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)," \
    "Linux $(uname -r)"
  echo "load avg:  at start $LOAD_AT_START; at end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "versions:  $(nginx -v 2>&1 | sed 's/^nginx version: //')," \
    "$(haproxy -v 2>&1 | head -n1 | sed 's/ version / /; s/ - .*//; s/ [0-9/]*$//')," \
    "$(wrk -v 2>&1 | head -n1 | sed 's/ Copyright.*//'), $(openssl version | cut -d' ' -f1-2)"
  echo "connwarden: $CONNWARDEN_BIN ($(binary_info))"
  echo "upstream:  $DEMO_APP_BIN, GET $REQUEST_PATH (${BODY_BYTES}-byte body), one process"
  echo "proxies:   one worker each, upstream keep-alive pool $POOL, access logs off;" \
    "TLS 1.3 with one ECDSA P-256 cert"
  local warmup="no warm-up"
  [[ $WARMUP != 0 ]] && warmup="warm-up $WARMUP per proxy and mode"
  echo "load:      wrk -t1 -c$CONNS -d$DURATION --latency; $ROUNDS round(s), order rotated each round;" \
    "$warmup"
  echo '```'
  for mode in "${MODE_LIST[@]}"; do report_mode "$mode"; done
  echo
  echo "req/s: 2xx/3xx responses per second; spread: (max − min) / median of req/s over rounds;" \
    "p50/p99: wrk latency percentiles; CPU µs/req: the proxy's user+system CPU (whole process tree)" \
    "during a run ÷ its 2xx/3xx responses; user µs/req: the user-space part of it (the rest is" \
    "the kernel's: system calls, the TCP stack, softirqs run on its time); errors: non-2xx/3xx" \
    "responses + socket errors, summed" \
    "over rounds; new upstream conns: upstream connections opened during measured runs, summed" \
    "(connwarden's from its connwarden_upstream_connects_total; the others' from new ports to the" \
    "upstream, a lower bound; 0 = the pool held, thousands = no upstream keep-alive); cw/this:" \
    "connwarden's median ÷ this proxy's median. floor: connwarden-floor-relay, which relays bytes" \
    "between each client connection and an upstream connection of its own (one new upstream" \
    "connection per client connection, by design) and does nothing else: no parsing, no routing," \
    "no timers; plain HTTP only. Its CPU per request is what the kernel charges any proxy here" \
    "for two receives and two sends on loopback TCP; a proxy's own work is what it spends above it."
}

# --- Main ----------------------------------------------------------------------------------------
ensure_packages
check_binaries
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/proxy_bench.XXXXXX") || die "mktemp failed"

make_cert
start_upstream
for name in "${PROXIES[@]}"; do start_proxy "$name"; done

runs=$((ROUNDS * ${#MODE_LIST[@]} * ${#PROXIES[@]}))
total_s=$((runs * DURATION_S))
[[ $WARMUP != 0 ]] && total_s=$((total_s + ${#MODE_LIST[@]} * ${#PROXIES[@]} * $(seconds_of "$WARMUP")))
log "measuring: $runs runs of $DURATION, about ${total_s}s in all"
if [[ $WARMUP != 0 ]]; then
  for mode in "${MODE_LIST[@]}"; do
    for name in "${PROXIES[@]}"; do
      measured "$mode" "$name" && run_wrk "$mode" "$name" "$WARMUP"
    done
  done
fi
for ((round = 0; round < ROUNDS; round++)); do
  for mode in "${MODE_LIST[@]}"; do
    for ((i = 0; i < ${#PROXIES[@]}; i++)); do
      name=${PROXIES[(i + round) % ${#PROXIES[@]}]}
      measured "$mode" "$name" && run_wrk "$mode" "$name" "$DURATION" "round $((round + 1))/$ROUNDS"
    done
  done
done

print_report
