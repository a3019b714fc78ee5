#!/usr/bin/env bash
# Control-plane benchmark: what the admin API and the metrics endpoint cost with 100 000 idle
# keep-alive connections open. connwarden (one worker) in front of connwarden-demo-app,
# connwarden-idle-clients holding the connections (hibernated after 1 s, as an operator with that
# many idle connections would set it), then: ListConnections' first page of 500 by memory, a
# /metrics scrape, a drain of 10 000 of them by selector, and the data plane's req/s while
# `connwardenctl top` refreshes every second or /metrics is scraped every second. Not a test: an
# engineer runs it by hand. See README.md next to this file for what each figure means.
#
#   tests/bench/control_bench.sh                  # defaults: CONNS=100000 DRAIN=10000 ROUNDS=3
#   CONNS=5000 DRAIN=1000 ROUNDS=1 DURATION=2s CALLS=3 tests/bench/control_bench.sh  # a quick check
#
# The report goes to stdout, progress to stderr. Everything it starts is stopped on exit.
set -uo pipefail
# shellcheck disable=SC2016  # backticks in the report are markdown, not command substitution

# --- Settings ------------------------------------------------------------------------------------
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONNWARDEN_BIN=${CONNWARDEN_BIN:-$REPO_ROOT/build/connwarden}
CONNWARDENCTL_BIN=${CONNWARDENCTL_BIN:-$REPO_ROOT/build/connwardenctl}
DEMO_APP_BIN=${DEMO_APP_BIN:-$REPO_ROOT/build/connwarden-demo-app}
IDLE_CLIENTS_BIN=${IDLE_CLIENTS_BIN:-$REPO_ROOT/build/connwarden-idle-clients}
CONNS=${CONNS:-100000}           # idle connections held open, the drained ones included
DRAIN=${DRAIN:-10000}            # of those, the ones drained by selector at the end
ROUNDS=${ROUNDS:-3}              # data-plane rounds (each: baseline, top, scrapes); 0 = none
DURATION=${DURATION:-10s}        # each data-plane run (wrk syntax: 10s, 1m)
CALLS=${CALLS:-10}               # ListConnections calls and scrapes timed with everything open
WRK_CONNS=${WRK_CONNS:-64}       # wrk connections (one wrk thread)
IN_FLIGHT=${IN_FLIGHT:-200}      # idle connections opening at once
OPEN_TIMEOUT=${OPEN_TIMEOUT:-240} # seconds the clients have to open theirs and read the responses

PAGE=500                  # ListConnections page: what an operator's first screen asks for
HIBERNATE_AFTER=1s        # the route's policy: idle connections hibernate after this
KEEPALIVE_S=3600          # nobody closes an idle connection during a run
POOL=256                  # connwarden's upstream keep-alive pool
PER_SOURCE=20000          # connections per source address (one has ~28 000 ephemeral ports)
MAIN_SOURCE=127.0.0.2     # the held connections' source addresses start here...
DRAIN_SOURCE=127.0.1.1    # ...and the drained ones' here, so a peer selector singles them out
DRAIN_SELECTOR=peer=127.0.1.0/24
REQUEST_PATH='/bytes?n=100'
BODY_BYTES=100
START_TIMEOUT_S=10
TARGET_RATIO=0.95         # data-plane req/s under top and under scrapes, vs baseline
ISSUE_CONNS=100000        # what issues 4 and 5 ask for
MAX_SPREAD_PCT=20         # above it, the machine was too busy for the ratios to mean much

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<EOF

Environment (current value):
  CONNWARDEN_BIN     $CONNWARDEN_BIN
  CONNWARDENCTL_BIN  $CONNWARDENCTL_BIN
  DEMO_APP_BIN       $DEMO_APP_BIN
  IDLE_CLIENTS_BIN   $IDLE_CLIENTS_BIN
  CONNS              $CONNS
  DRAIN              $DRAIN
  ROUNDS             $ROUNDS   (0: no data-plane runs)
  DURATION           $DURATION   (wrk syntax: 10s, 1m)
  CALLS              $CALLS
  WRK_CONNS          $WRK_CONNS
  IN_FLIGHT          $IN_FLIGHT
  OPEN_TIMEOUT       $OPEN_TIMEOUT   (seconds)
EOF
}

# shellcheck source=tests/bench/lib.sh
source "$REPO_ROOT/tests/bench/lib.sh"
only_help_arg "$@"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer, got '$CONNS'"
[[ $DRAIN =~ ^[1-9][0-9]*$ ]] && ((DRAIN < CONNS)) || die "DRAIN must be 1..CONNS-1, got '$DRAIN'"
if [[ ! $ROUNDS =~ ^[0-9]+$ ]] || ((ROUNDS > 50)); then die "ROUNDS must be 0..50, got '$ROUNDS'"; fi
[[ $DURATION =~ ^[1-9][0-9]*[smh]?$ ]] || die "DURATION must look like 10s or 1m, got '$DURATION'"
[[ $CALLS =~ ^[1-9][0-9]*$ ]] && ((CALLS <= 1000)) || die "CALLS must be 1..1000, got '$CALLS'"
[[ $WRK_CONNS =~ ^[1-9][0-9]*$ ]] || die "WRK_CONNS must be a positive integer, got '$WRK_CONNS'"
[[ $IN_FLIGHT =~ ^[1-9][0-9]*$ ]] || die "IN_FLIGHT must be a positive integer, got '$IN_FLIGHT'"
[[ $OPEN_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "OPEN_TIMEOUT must be a positive integer, got '$OPEN_TIMEOUT'"

seconds_of() { # a wrk duration ("10s", "2m", "7") in seconds
  local n=${1%[smh]}
  case $1 in *m) echo $((n * 60)) ;; *h) echo $((n * 3600)) ;; *) echo "$n" ;; esac
}
DURATION_S=$(seconds_of "$DURATION")
HELD=$((CONNS - DRAIN))
MAIN_SOURCES=$(((HELD + PER_SOURCE - 1) / PER_SOURCE))
DRAIN_SOURCES=$(((DRAIN + PER_SOURCE - 1) / PER_SOURCE))
((MAIN_SOURCES <= 254 && DRAIN_SOURCES <= 254)) || die "CONNS is too large for the source ranges"
# connwarden: every connection, wrk's, the pool and a margin; the clients: their own.
MAX_CONNECTIONS=$((CONNS + WRK_CONNS + 1024))
NOFILE_MARGIN=512 # connwarden's own: listeners, admin and metrics, gRPC's and libevent's
CW_SOFT_NOFILE=1024 # the soft limit connwarden is started with (it raises it to the hard one)
NOFILE_NEED=$((CONNS + POOL + WRK_CONNS + NOFILE_MARGIN))

# --- Tools and binaries --------------------------------------------------------------------------
ensure_packages() {
  local -a missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v curl >/dev/null || missing+=(curl)    # scrapes, and one request to check the answer
  command -v ss >/dev/null || missing+=(iproute2)  # free ports
  install_packages "${missing[@]}"
}

check_binaries() {
  local bin ok=1
  for bin in "$CONNWARDEN_BIN" "$CONNWARDENCTL_BIN" "$DEMO_APP_BIN" "$IDLE_CLIENTS_BIN"; do
    [[ -x $bin ]] || { log "control_bench: not found or not executable: $bin"; ok=0; }
  done
  ((ok)) && return 0
  log "Build them first, from $REPO_ROOT:"
  log "  make build"
  log "or point CONNWARDEN_BIN / CONNWARDENCTL_BIN / DEMO_APP_BIN / IDLE_CLIENTS_BIN at them."
  exit 2
}

# Only the hard limit is raised here: connwarden must raise its own soft limit (it does at start,
# and logs it); the clients raise theirs.
raise_hard_file_limit() {
  local hard
  hard=$(ulimit -Hn)
  HARD_NOTE="as found"
  [[ $hard == unlimited ]] || ((hard >= NOFILE_NEED)) && return 0
  ulimit -Hn "$NOFILE_NEED" 2>/dev/null ||
    die "CONNS=$CONNS needs a hard limit on open files of $NOFILE_NEED, it is $hard and" \
      "cannot be raised here (it takes root with CAP_SYS_RESOURCE): raise it, or run with" \
      "CONNS=$((hard - POOL - WRK_CONNS - NOFILE_MARGIN)) at most"
  HARD_NOTE="raised by this script from $hard"
}

# utime + stime of a process, all its threads, in clock ticks.
cpu_ticks() {
  local line
  local -a x
  { read -r line <"/proc/$1/stat"; } 2>/dev/null || { echo 0; return; }
  read -ra x <<<"${line##*) }"
  echo $((x[11] + x[12]))
}

# A process and its descendants (a background loop and the curl or sleep it runs now).
tree_pids() {
  local root=$1 f line
  local -a x
  local -A parent
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    read -ra x <<<"${line##*) }"
    parent[${f//[^0-9]/}]=${x[1]}
  done
  local p q depth
  for p in "${!parent[@]}"; do
    q=$p
    for ((depth = 0; depth < 16 && q > 1; depth++)); do
      [[ $q == "$root" ]] && { echo "$p"; break; }
      q=${parent[$q]:-1}
    done
  done
}

# Stops a process and everything under it. Never `wait`s (see idle_bench.sh: a child that died of
# the same Ctrl-C can make `wait` block inside the exit trap).
kill_tree() {
  local -a pids
  [[ -n ${1:-} ]] || return 0
  mapfile -t pids < <(tree_pids "$1")
  ((${#pids[@]} > 0)) && stop_pids "${pids[@]}"
  return 0
}

WORKDIR=""
declare -A STARTED # name -> pid of what this script started and must stop
cleanup() {
  local rc=$? name
  trap - EXIT INT TERM
  # The load and the clients first, so connwarden is not left serving a burst of closes.
  for name in top_loop scrape_loop drain_watch wrk main_clients drain_clients connwarden demo_app; do
    [[ -n ${STARTED[$name]:-} ]] && kill_tree "${STARTED[$name]}"
  done
  [[ -n $WORKDIR && -d $WORKDIR ]] && rm -rf "$WORKDIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "control_bench: interrupted"; exit 130' INT
trap 'log "control_bench: terminated"; exit 143' TERM

# Runs a command in the background, remembered under a name so cleanup stops it.
start_bg() {
  local name=$1
  shift
  "$@" &
  STARTED[$name]=$!
  disown "$!"
}
stop_bg() {
  [[ -n ${STARTED[$1]:-} ]] && kill_tree "${STARTED[$1]}"
  unset "STARTED[$1]"
}

# A free loopback port below the ephemeral range (so no outgoing connection takes it meanwhile).
check_answer() {
  local out
  out=$(curl -s --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' "$1" 2>&1)
  [[ $out == "200 $BODY_BYTES" ]] || die "GET $1 answered '${out:-nothing}' (want 200 and $BODY_BYTES bytes)"
}

last_lines() { [[ -s $1 ]] && tail -n 5 "$1" | sed 's/^/    | /' >&2; }

now_us() { NOW_US=${EPOCHREALTIME//[!0-9]/}; } # EPOCHREALTIME has 6 decimals

# --- Set-up --------------------------------------------------------------------------------------
start_upstream() {
  local out=$WORKDIR/demo-app.out line="" i
  start_bg demo_app "$DEMO_APP_BIN" --address 127.0.0.1 --port 0 >"$out" 2>"$WORKDIR/demo-app.err"
  for ((i = 0; i < START_TIMEOUT_S * 10; i++)); do
    { read -r line <"$out"; } 2>/dev/null && [[ $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+) ]] &&
      break
    alive "${STARTED[demo_app]}" || break
    sleep 0.1
  done
  [[ $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+) ]] ||
    { last_lines "$WORKDIR/demo-app.err"; die "the demo app did not start"; }
  UPSTREAM_PORT=${BASH_REMATCH[1]}
  wait_accepting "${STARTED[demo_app]}" "$UPSTREAM_PORT" || die "the demo app does not accept"
  check_answer "http://127.0.0.1:$UPSTREAM_PORT$REQUEST_PATH"
}

start_connwarden() {
  PORT=$(free_port) ADMIN_PORT=$(free_port) METRICS_PORT=$(free_port)
  cat >"$WORKDIR/connwarden.yaml" <<EOF
listeners:
  - name: plain
    address: "127.0.0.1:$PORT"
    max_connections: $MAX_CONNECTIONS
    defaults: { idle_timeout: "${KEEPALIVE_S}s" }
clusters:
  - name: app
    addresses: ["127.0.0.1:$UPSTREAM_PORT"]
    max_idle_connections: $POOL
    idle_timeout: "${KEEPALIVE_S}s"
routes:
  - name: default
    cluster: app
    policy: { hibernate: { enabled: true, after: "$HIBERNATE_AFTER" } }
EOF
  # Started with the soft limit on open files most hosts give (1024): connwarden must raise it
  # itself to hold the connections.
  start_bg connwarden bash -c 'ulimit -Sn "$1" && shift && exec "$@"' _ "$CW_SOFT_NOFILE" \
    "$CONNWARDEN_BIN" --concurrency 1 --config "$WORKDIR/connwarden.yaml" \
    --admin-address "127.0.0.1:$ADMIN_PORT" --metrics-address "127.0.0.1:$METRICS_PORT" \
    >"$WORKDIR/connwarden.log" 2>&1
  CW_PID=${STARTED[connwarden]}
  wait_accepting "$CW_PID" "$PORT" && wait_accepting "$CW_PID" "$ADMIN_PORT" ||
    { last_lines "$WORKDIR/connwarden.log"; die "connwarden did not start"; }
  check_answer "http://127.0.0.1:$PORT$REQUEST_PATH"
  FILE_LIMIT_LINE=$(grep -o 'open files: .*' "$WORKDIR/connwarden.log" | head -n 1)
  log "connwarden: pid $CW_PID, 127.0.0.1:$PORT, admin :$ADMIN_PORT, metrics :$METRICS_PORT;" \
    "${FILE_LIMIT_LINE:-no 'open files' line in its log}"
}

ctl() { "$CONNWARDENCTL_BIN" --target "127.0.0.1:$ADMIN_PORT" "$@"; }

# Starts a connwarden-idle-clients holding COUNT connections from SOURCES addresses from FIRST.
start_clients() {
  local name=$1 count=$2 first=$3 sources=$4
  start_bg "$name" "$IDLE_CLIENTS_BIN" --conns "$count" --path "$REQUEST_PATH" \
    --in-flight "$IN_FLIGHT" --timeout "$OPEN_TIMEOUT" --source "$first" --sources "$sources" \
    "127.0.0.1:$PORT" >"$WORKDIR/$name.out" 2>"$WORKDIR/$name.err"
}

# Waits (bounded) for a client's "ready N" line; dies unless all COUNT got their response.
wait_ready() {
  local name=$1 count=$2 i line
  for ((i = 0; i < (OPEN_TIMEOUT + 15) * 10; i++)); do
    line=$(grep -m1 '^ready ' "$WORKDIR/$name.out" 2>/dev/null)
    [[ -n $line ]] && break
    alive "${STARTED[$name]}" || break
    sleep 0.1
  done
  [[ $line == "ready $count" ]] && return 0
  last_lines "$WORKDIR/$name.err"
  die "$name: '${line:-no ready line}' (want 'ready $count')"
}

# Connections a client still holds: its last "open M" line, or all.
client_open() {
  local last
  last=$(grep '^open ' "$WORKDIR/$1.out" | tail -n 1)
  echo "${last:+${last#open }}" | grep . || echo "$2"
}

# From `connwardenctl info -o json`: INFO_CONNS, INFO_HIBERNATING, INFO_MEMORY (bytes).
read_info() {
  local json
  json=$(ctl info -o json 2>"$WORKDIR/info.err") || { last_lines "$WORKDIR/info.err"; return 1; }
  INFO_CONNS=$(grep -o '"connections": *"[0-9]*"' <<<"$json" | grep -o '[0-9]*' | head -n 1)
  INFO_HIBERNATING=$(grep -o '"state": *"CONNECTION_STATE_HIBERNATING", *"count": *"[0-9]*"' \
    <<<"$json" | grep -o '[0-9]*"$' | tr -d '"')
  INFO_MEMORY=$(grep -o '"total_bytes": *"[0-9]*"' <<<"$json" | grep -o '[0-9]*' | head -n 1)
  INFO_CONNS=${INFO_CONNS:-0} INFO_HIBERNATING=${INFO_HIBERNATING:-0} INFO_MEMORY=${INFO_MEMORY:-0}
}

rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status" 2>/dev/null; }

# --- Control-plane measurements ------------------------------------------------------------------
# CALLS × `connwardenctl get connections --sort memory --limit PAGE -o json`, each a new process.
measure_list_cli() {
  local i t0 rows out=$WORKDIR/list.json
  LIST_CLI_MS="" LIST_ROWS=""
  for ((i = 0; i < CALLS; i++)); do
    now_us
    t0=$NOW_US
    ctl get connections --sort memory --limit "$PAGE" -o json >"$out" 2>"$WORKDIR/list.err" ||
      { last_lines "$WORKDIR/list.err"; die "connwardenctl get connections failed"; }
    now_us
    rows=$(grep -c '"connection":' "$out")
    LIST_CLI_MS+="$(awk -v d=$((NOW_US - t0)) 'BEGIN { printf "%.1f", d / 1000 }') "
    LIST_ROWS+="$rows "
    sleep 0.2
  done
  log "  ListConnections, connwardenctl process: $LIST_CLI_MS ms; rows: $LIST_ROWS"
}

# The same call on a warm channel: one `connwardenctl top --limit PAGE -o json` makes CALLS + 1
# frames (one ListConnections each, no other call in JSON mode), INTERVAL apart; a frame's time
# is the gap since the previous frame ended, less the interval. The first frame (connect) is not
# counted. What is left: the RPC and the JSON output of its rows.
measure_list_warm() {
  local interval_ms=200 line i
  local -a stamps=()
  LIST_WARM_MS=""
  while IFS= read -r line; do
    now_us
    stamps+=("$NOW_US")
  done < <(timeout -k 2 $((CALLS * 30 + 30)) "$CONNWARDENCTL_BIN" --target "127.0.0.1:$ADMIN_PORT" \
    top --limit "$PAGE" --interval "${interval_ms}ms" --count $((CALLS + 1)) -o json \
    2>"$WORKDIR/top-warm.err" | grep --line-buffered -xF -e ']}' -e '{"items": []}')
  ((${#stamps[@]} == CALLS + 1)) ||
    { last_lines "$WORKDIR/top-warm.err"; die "connwardenctl top made ${#stamps[@]} frames, want $((CALLS + 1))"; }
  for ((i = 1; i < ${#stamps[@]}; i++)); do
    LIST_WARM_MS+="$(awk -v d=$((stamps[i] - stamps[i - 1])) -v iv=$interval_ms \
      'BEGIN { printf "%.1f", d / 1000 - iv }') "
  done
  log "  ListConnections on a warm channel: $LIST_WARM_MS ms"
}

# CALLS scrapes of /metrics, 1 s apart: SCRAPE_MS, SCRAPE_BYTES; checks the registry gauge.
measure_scrapes() {
  local i out code t size registry
  SCRAPE_MS="" SCRAPE_BYTES=""
  for ((i = 0; i < CALLS; i++)); do
    out=$(curl -s --max-time 30 -o "$WORKDIR/scrape.txt" -w '%{http_code} %{time_total} %{size_download}' \
      "http://127.0.0.1:$METRICS_PORT/metrics")
    read -r code t size <<<"$out"
    [[ $code == 200 ]] || die "GET /metrics answered '$out'"
    SCRAPE_MS+="$(awk -v t="$t" 'BEGIN { printf "%.1f", t * 1000 }') " SCRAPE_BYTES+="$size "
    sleep 1
  done
  registry=$(awk '$1 == "connwarden_registry_connections" { print $2 }' "$WORKDIR/scrape.txt")
  SCRAPE_SERIES=$(grep -c '^connwarden_connection_memory_bytes{' "$WORKDIR/scrape.txt")
  SCRAPE_REGISTRY=$registry
  log "  /metrics: $SCRAPE_MS ms; $SCRAPE_BYTES bytes; registry $registry, $SCRAPE_SERIES per-connection series"
}

# A scrape of /metrics at every whole second from now, for at most SECONDS seconds; one line per
# scrape ("code seconds") in FILE.
scrape_loop() {
  local seconds=$1 file=$2 i start next
  now_us
  start=$NOW_US
  for ((i = 0; i < seconds; i++)); do
    next=$((start + i * 1000000))
    now_us
    ((next > NOW_US)) && sleep "$(awk -v d=$((next - NOW_US)) 'BEGIN { printf "%.6f", d / 1e6 }')"
    curl -s --max-time 10 -o /dev/null -w '%{http_code} %{time_total}\n' \
      "http://127.0.0.1:$METRICS_PORT/metrics" >>"$file"
  done
}

CONDITIONS=(baseline top scrape)
declare -A COND_LABEL=([baseline]="baseline (nothing else)"
  [top]="\`connwardenctl top --interval 1s\` running" [scrape]="/metrics scraped every 1 s")
declare -A RPS P99 CPU ERRORS CALLS_DONE CALL_MS
run_condition() {
  local cond=$1 label=${2:-} out=$WORKDIR/wrk.out side=$WORKDIR/side.out
  local ticks0 ticks1 completed elapsed p99 sock non2xx ok rps cpu calls=0 call_ms=""
  : >"$side"
  case $cond in
    top) start_bg top_loop timeout -k 2 $((DURATION_S + 10)) "$CONNWARDENCTL_BIN" \
      --target "127.0.0.1:$ADMIN_PORT" top --interval 1s >"$side" 2>"$WORKDIR/top.err" ;;
    scrape) start_bg scrape_loop scrape_loop $((DURATION_S + 5)) "$side" ;;
  esac
  ticks0=$(cpu_ticks "$CW_PID")
  start_bg wrk timeout -k 5 $((DURATION_S + 30)) wrk -t1 -c"$WRK_CONNS" -d"$DURATION" --latency \
    "http://127.0.0.1:$PORT$REQUEST_PATH" >"$out" 2>&1
  while alive "${STARTED[wrk]}"; do sleep 0.2; done
  unset "STARTED[wrk]"
  ticks1=$(cpu_ticks "$CW_PID")
  stop_bg top_loop
  stop_bg scrape_loop
  alive "$CW_PID" || { last_lines "$WORKDIR/connwarden.log"; die "connwarden died during a $cond run"; }
  read -r completed elapsed _ p99 sock non2xx < <(parse_wrk "$out") ||
    { last_lines "$out"; die "wrk failed ($cond run)"; }
  [[ -z $label ]] && return 0
  case $cond in
    top) calls=$(grep -c ' connections, .* held; top ' "$side") ;;
    scrape)
      calls=$(grep -c '^200 ' "$side")
      call_ms=$(awk '$1 == 200 { printf "%.1f ", $2 * 1000 }' "$side")
      ;;
  esac
  ok=$((completed - non2xx))
  rps=$(awk -v ok="$ok" -v el="$elapsed" 'BEGIN { printf "%.1f", ok * 1e6 / el }')
  cpu=$(awk -v t=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v ok="$ok" \
    'BEGIN { if (ok > 0) printf "%.3f", t * 1e6 / hz / ok; else print "nan" }')
  RPS[$cond]+="$rps " P99[$cond]+="$p99 " CPU[$cond]+="$cpu "
  ERRORS[$cond]=$((${ERRORS[$cond]:-0} + sock + non2xx))
  CALLS_DONE[$cond]=$((${CALLS_DONE[$cond]:-0} + calls))
  CALL_MS[$cond]+="$call_ms"
  log "$(printf '  %s %-8s %9.0f req/s  p99 %6d us  CPU %7s us/req  errors %d  calls %d' \
    "$label" "$cond" "$rps" "$p99" "$cpu" $((sock + non2xx)) "$calls")"
}

# --- Drain ---------------------------------------------------------------------------------------
# `connwardenctl drain --selector peer=...` on the DRAIN connections from their own sources: the
# time until the call returns, and until their client has seen every one of them closed.
measure_drain() {
  local t0 done_file=$WORKDIR/drain.done out=$WORKDIR/drain.out i
  : >"$done_file"
  # Stamps the moment the client prints "open 0" (tail -F follows the file as it grows).
  start_bg drain_watch bash -c '
    grep -m1 -qxF "open 0" < <(exec timeout 120 tail -n +1 -F "$1" 2>/dev/null) &&
      echo "${EPOCHREALTIME//[!0-9]/}" >"$2"' _ "$WORKDIR/drain_clients.out" "$done_file"
  sleep 0.5 # tail is following the file
  now_us
  t0=$NOW_US
  ctl drain --selector "$DRAIN_SELECTOR" -o json >"$out" 2>"$WORKDIR/drain.err" ||
    { last_lines "$WORKDIR/drain.err"; die "connwardenctl drain failed"; }
  now_us
  DRAIN_CALL_MS=$(awk -v d=$((NOW_US - t0)) 'BEGIN { printf "%.1f", d / 1000 }')
  for ((i = 0; i < 600; i++)); do
    [[ -s $done_file ]] && break
    sleep 0.1
  done
  stop_bg drain_watch
  if [[ -s $done_file ]]; then
    DRAIN_CLOSED_MS=$(awk -v d=$(($(<"$done_file") - t0)) 'BEGIN { printf "%.1f", d / 1000 }')
  else
    DRAIN_CLOSED_MS=""
  fi
  DRAIN_RESULTS=$(grep -c '"outcome"' "$out")
  DRAIN_LEFT=$(client_open drain_clients "$DRAIN")
  sleep 1
  HELD_LEFT=$(client_open main_clients "$HELD")
  log "  drain: call ${DRAIN_CALL_MS} ms, all closed at the client after ${DRAIN_CLOSED_MS:-?} ms;" \
    "$DRAIN_RESULTS results; $DRAIN_LEFT of $DRAIN still open; $HELD_LEFT of $HELD others open"
}

# --- Report --------------------------------------------------------------------------------------
median() {
  # shellcheck disable=SC2086  # $1 is a space-separated list
  printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2];
          else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
maximum() {
  # shellcheck disable=SC2086
  printf '%s\n' $1 | sort -g | tail -n 1
}
spread() { # (max - min) / median, in percent
  # shellcheck disable=SC2086
  printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 }
    END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          if (NR > 0 && m > 0) printf "%.0f", (v[NR] - v[1]) * 100 / m }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.2f", a / b; else print "–" }'; }
ms() { fmt "$1" '%.1f'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "") print "–"; else printf f, v }'; }
size() {
  awk -v b="$1" 'BEGIN {
    if (b == "") { print "–"; exit }
    if (b < 10240) printf "%d B", b
    else if (b < 10485760) printf "%.1f KiB", b / 1024
    else printf "%.1f MiB", b / 1048576 }'
}

print_report() {
  local cmd="" var
  for var in CONNWARDEN_BIN CONNWARDENCTL_BIN DEMO_APP_BIN IDLE_CLIENTS_BIN CONNS DRAIN ROUNDS \
    DURATION CALLS WRK_CONNS IN_FLIGHT OPEN_TIMEOUT; do
    cmd+="$var=$(printf '%q' "${!var}") "
  done
  cmd+=$(printf '%q' "$0")
  echo "## Control plane with $CONNS idle connections"
  echo
  echo '```text'
  echo "command:   $cmd"
  echo "started:   $STARTED_AT, finished $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "machine:   $(nproc) CPU(s), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)," \
    "$(awk '$1 == "MemTotal:" { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
  echo "load avg:  at start $LOAD_AT_START; at end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "versions:  $(wrk -v 2>&1 | head -n1 | sed 's/ Copyright.*//'), $(curl --version | head -n1 | cut -d' ' -f1-2)," \
    "$(openssl version 2>/dev/null | cut -d' ' -f1-2), glibc $(getconf GNU_LIBC_VERSION | cut -d' ' -f2)"
  echo "connwarden: $CONNWARDEN_BIN ($(binary_info)); --concurrency 1, default --metrics-connection-limit"
  echo "config:    one listener (max_connections $MAX_CONNECTIONS, idle_timeout ${KEEPALIVE_S}s), one route" \
    "whose policy hibernates after $HIBERNATE_AFTER, upstream pool $POOL"
  echo "files:     hard limit $(ulimit -Hn) ($HARD_NOTE); connwarden started with a soft limit of" \
    "$CW_SOFT_NOFILE and logged: ${FILE_LIMIT_LINE:-nothing}"
  echo "clients:   $IDLE_CLIENTS_BIN: $HELD connections from $MAIN_SOURCES source address(es) from" \
    "$MAIN_SOURCE, $DRAIN from $DRAIN_SOURCES from $DRAIN_SOURCE; GET $REQUEST_PATH on each, then idle"
  ((CONNS < ISSUE_CONNS)) && echo "scale:     $CONNS connections, not the issues' $ISSUE_CONNS:" \
    "the hard limit on open files here is $(ulimit -Hn)"
  echo "open:      $OPEN_SECONDS s to open all; at the start of the measurements connwarden had" \
    "$START_CONNS connections ($START_HIBERNATING hibernating), $(size "$START_MEMORY") in their" \
    "accounts, RSS $(size $((START_RSS_KIB * 1024)))"
  echo '```'
  echo
  echo "### With $CONNS connections open"
  echo
  echo "| measurement | median | max | calls | |"
  echo "|---|--:|--:|--:|---|"
  printf '| ListConnections, first page of %d by memory: `connwardenctl get connections --sort memory --limit %d -o json`, a new process each time | %s ms | %s ms | %d | %s rows each |\n' \
    "$PAGE" "$PAGE" "$(ms "$(median "$LIST_CLI_MS")")" "$(ms "$(maximum "$LIST_CLI_MS")")" "$CALLS" "$(median "$LIST_ROWS")"
  printf '| the same call on a warm channel (`connwardenctl top --limit %d -o json`: gap between frames − interval) | %s ms | %s ms | %d | RPC + JSON output of the rows |\n' \
    "$PAGE" "$(ms "$(median "$LIST_WARM_MS")")" "$(ms "$(maximum "$LIST_WARM_MS")")" "$CALLS"
  printf '| `GET /metrics` (curl time_total), default --metrics-connection-limit | %s ms | %s ms | %d | %s bytes (%s); %s per-connection series; registry %s |\n' \
    "$(ms "$(median "$SCRAPE_MS")")" "$(ms "$(maximum "$SCRAPE_MS")")" "$CALLS" "$(median "$SCRAPE_BYTES")" \
    "$(size "$(median "$SCRAPE_BYTES")")" "$SCRAPE_SERIES" "$SCRAPE_REGISTRY"
  local drain_note="$DRAIN_RESULTS results; $DRAIN_LEFT of $DRAIN still open; of the other $HELD, $HELD_LEFT open"
  printf '| drain of %d idle connections, `connwardenctl drain --selector %s`: until their client saw all closed | %s ms | | 1 | the call returned after %s ms; %s |\n' \
    "$DRAIN" "$DRAIN_SELECTOR" "${DRAIN_CLOSED_MS:-**not all closed**}" "$DRAIN_CALL_MS" "$drain_note"

  echo
  if ((ROUNDS == 0)); then
    echo "(ROUNDS=0: no data-plane runs.)"
  else
    echo "### Data plane with $CONNS idle connections open — wrk -t1 -c$WRK_CONNS -d$DURATION GET $REQUEST_PATH, medians of $ROUNDS round(s)"
    echo
    echo "| condition | req/s | spread | p99 µs | CPU µs/req | req/s vs baseline | CPU/req vs baseline | errors | control calls in the runs |"
    echo "|---|--:|--:|--:|--:|--:|--:|--:|---|"
    local cond base_rps base_cpu rps cpu calls unreliable="" errors=0
    base_rps=$(median "${RPS[baseline]:-}") base_cpu=$(median "${CPU[baseline]:-}")
    for cond in "${CONDITIONS[@]}"; do
      rps=$(median "${RPS[$cond]:-}") cpu=$(median "${CPU[$cond]:-}")
      (($(spread "${RPS[$cond]:-}") > MAX_SPREAD_PCT)) && unreliable=1
      ((${ERRORS[$cond]:-0} > 0)) && errors=1
      case $cond in
        baseline) calls="–" ;;
        top) calls="${CALLS_DONE[top]:-0} frames" ;;
        scrape) calls="${CALLS_DONE[scrape]:-0} scrapes, median $(ms "$(median "${CALL_MS[scrape]:-}")") ms, max $(ms "$(maximum "${CALL_MS[scrape]:-}")") ms" ;;
      esac
      printf '| %s | %s | %s%% | %s | %s | %s | %s | %s | %s |\n' "${COND_LABEL[$cond]}" \
        "$(fmt "$rps" '%.0f')" "$(spread "${RPS[$cond]:-}")" "$(fmt "$(median "${P99[$cond]:-}")" '%.0f')" \
        "$(fmt "$cpu" '%.1f')" "$([[ $cond == baseline ]] && echo – || ratio "$rps" "$base_rps")" \
        "$([[ $cond == baseline ]] && echo – || ratio "$cpu" "$base_cpu")" \
        "$( ((${ERRORS[$cond]:-0} > 0)) && echo "**${ERRORS[$cond]}**" || echo 0)" "$calls"
    done
    echo
    local r_top r_scrape
    r_top=$(ratio "$(median "${RPS[top]:-}")" "$base_rps")
    r_scrape=$(ratio "$(median "${RPS[scrape]:-}")" "$base_rps")
    verdict() { awk -v r="$1" -v t="$TARGET_RATIO" 'BEGIN { if (r == "–") print "n/a"; else print (r + 0 >= t) ? "met" : "**missed**" }'; }
    local note=""
    ((errors)) && note+=" — not valid: errors"
    [[ -n $unreliable ]] && note+=" — unreliable: a req/s spread is above ${MAX_SPREAD_PCT}% (busy machine), run again"
    echo "Targets (data-plane req/s ≥ $TARGET_RATIO × baseline): under \`top\` $r_top ($(verdict "$r_top"))," \
      "under scrapes $r_scrape ($(verdict "$r_scrape"))$note"
  fi
}

# --- Main ----------------------------------------------------------------------------------------
ensure_packages
check_binaries
raise_hard_file_limit
CLK_TCK=$(getconf CLK_TCK)
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/control_bench.XXXXXX") || die "mktemp failed"

start_upstream
start_connwarden

log "opening $HELD + $DRAIN idle connections"
now_us
open_t0=$NOW_US
start_clients main_clients "$HELD" "$MAIN_SOURCE" "$MAIN_SOURCES"
wait_ready main_clients "$HELD"
start_clients drain_clients "$DRAIN" "$DRAIN_SOURCE" "$DRAIN_SOURCES"
wait_ready drain_clients "$DRAIN"
now_us
OPEN_SECONDS=$(awk -v d=$((NOW_US - open_t0)) 'BEGIN { printf "%.1f", d / 1e6 }')
# Every one of them hibernated (bounded wait), as an idle fleet would be.
for ((i = 0; i < 60; i++)); do
  read_info || die "connwardenctl info failed"
  ((INFO_CONNS == CONNS && INFO_HIBERNATING == CONNS)) && break
  sleep 0.5
done
((INFO_CONNS == CONNS)) || die "connwarden has $INFO_CONNS connections, want $CONNS"
START_CONNS=$INFO_CONNS START_HIBERNATING=$INFO_HIBERNATING START_MEMORY=$INFO_MEMORY
START_RSS_KIB=$(rss_kib "$CW_PID")
log "open in ${OPEN_SECONDS}s: $START_CONNS connections, $START_HIBERNATING hibernating, RSS ${START_RSS_KIB} KiB"

log "control plane, $CALLS calls each"
measure_list_cli
measure_list_warm
measure_scrapes

if ((ROUNDS > 0)); then
  log "data plane: warm-up, then $ROUNDS round(s) of ${CONDITIONS[*]}, $DURATION each"
  DURATION_S_SAVED=$DURATION_S DURATION_SAVED=$DURATION
  DURATION=2s DURATION_S=2
  run_condition baseline
  DURATION=$DURATION_SAVED DURATION_S=$DURATION_S_SAVED
  for ((round = 0; round < ROUNDS; round++)); do
    for ((c = 0; c < ${#CONDITIONS[@]}; c++)); do
      run_condition "${CONDITIONS[(c + round) % ${#CONDITIONS[@]}]}" "round $((round + 1))/$ROUNDS"
      sleep 1
    done
  done
  read_info && ((INFO_CONNS < CONNS)) && log "  warning: only $INFO_CONNS of $CONNS connections left open"
fi

log "drain of $DRAIN by selector $DRAIN_SELECTOR"
measure_drain

print_report
