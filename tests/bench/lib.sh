# Shell functions the benchmarks under tests/bench/ share; each sources it after defining its
# usage function. Not a script of its own.

BENCH_NAME=$(basename "$0" .sh)  # in messages
log() { printf '%s\n' "$*" >&2; }
die() { log "$BENCH_NAME: $*"; exit 1; }

# Settings come from the environment: the only argument taken is -h/--help.
only_help_arg() {
  case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    '') ;;
    *) usage >&2; exit 1 ;;
  esac
}

# apt-get install of the given packages (with sudo when not root); nothing if none are given.
install_packages() {
  (($# == 0)) && return 0
  local -a sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || die "missing: $*; run as root: apt-get install -y $*"
    sudo=(sudo)
  fi
  log "installing missing packages: $*"
  "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >&2 || die "apt-get install $* failed"
}

TAKEN_PORTS=" "  # ports handed out by free_port in this run

# Running and not a zombie (and, with a start time, still the same process).
alive() {
  local line
  local -a x
  { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
  read -ra x <<<"${line##*) }"
  [[ ${x[0]} != Z && (-z ${2:-} || ${x[19]} == "$2") ]]
}

# SIGTERM to the given pids; SIGKILL to those left after 5 s.
stop_pids() {
  local p i any=0
  kill -TERM "$@" 2>/dev/null
  for ((i = 0; i < 50; i++)); do
    any=0
    for p in "$@"; do alive "$p" && any=1; done
    ((any)) || break
    sleep 0.1
  done
  ((any)) && kill -KILL "$@" 2>/dev/null
  return 0
}

free_port() {
  local i p
  for ((i = 0; i < 500; i++)); do
    p=$((20000 + RANDOM % 10000))
    [[ $TAKEN_PORTS == *" $p "* ]] && continue
    [[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]] || continue
    TAKEN_PORTS+="$p "
    echo "$p"
    return 0
  done
  die "no free port found in 20000-29999"
}

# Waits (bounded) until 127.0.0.1:port accepts. Fails if the process dies or the time runs out.
wait_accepting() {
  local pid=$1 port=$2 i
  for ((i = 0; i < START_TIMEOUT_S * 10; i++)); do
    alive "$pid" || { FAIL_REASON="exited before accepting on 127.0.0.1:$port"; return 1; }
    (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  FAIL_REASON="not accepting on 127.0.0.1:$port after ${START_TIMEOUT_S}s"
  return 1
}

# --- Upstream and proxies ------------------------------------------------------------------------
make_cert() {
  mkdir -p "$WORKDIR/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
    -keyout "$WORKDIR/tls/key.pem" -out "$WORKDIR/tls/cert.pem" 2>"$WORKDIR/tls/openssl.log" ||
    { cat "$WORKDIR/tls/openssl.log" >&2; die "openssl could not make a certificate"; }
  cat "$WORKDIR/tls/cert.pem" "$WORKDIR/tls/key.pem" >"$WORKDIR/tls/combined.pem" # HAProxy's form
  CERT=$WORKDIR/tls/cert.pem KEY=$WORKDIR/tls/key.pem COMBINED=$WORKDIR/tls/combined.pem
}

binary_info() {
  local cache build_type="?" sanitize="" rev
  cache=$(dirname "$CONNWARDEN_BIN")/CMakeCache.txt
  if [[ -f $cache ]]; then
    build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")
    grep -q '^CONNWARDEN_SANITIZE:BOOL=ON' "$cache" && sanitize=", SANITIZERS ON"
  fi
  rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
  [[ -n $(git -C "$REPO_ROOT" status --porcelain 2>/dev/null) ]] && rev+=" + uncommitted changes"
  echo "build type ${build_type:-?}$sanitize, git $rev"
}

# wrk output -> "completed elapsed_us p50_us p99_us socket_errors non2xx" (exit 1 if unreadable).
parse_wrk() {
  awk '
    function us(v,   n, unit) {
      n = v + 0; unit = v; sub(/^[0-9.]+/, "", unit)
      if (unit == "us") return n
      if (unit == "ms") return n * 1e3
      if (unit == "s") return n * 1e6
      if (unit == "m") return n * 6e7
      if (unit == "h") return n * 3.6e9
      return -1
    }
    / requests in / { done = $1; t = $4; sub(/,$/, "", t); elapsed = us(t) }
    $1 == "50%" { p50 = us($2) }
    $1 == "99%" { p99 = us($2) }
    /Socket errors:/ { gsub(/,/, ""); sock = $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { non2xx = $5 }
    END {
      if (done == "" || elapsed <= 0 || p50 == "" || p99 == "") exit 1
      printf "%d %.0f %.0f %.0f %d %d\n", done, elapsed, p50, p99, sock, non2xx
    }' "$1"
}
