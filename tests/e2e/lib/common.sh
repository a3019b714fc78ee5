# What every e2e script starts with; sourced, not run (CMake runs tests/e2e/*.sh only). Gives a
# scratch directory $work, a list $pids of processes to stop on exit, fail MESSAGE, and
# free_port (a loopback port nothing listens on).
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
