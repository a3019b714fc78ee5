#!/usr/bin/env bash
# deploy/ checked against the real thing: the alert rules pass promtool (check rules, and the
# rule unit tests fire each alert on the series that should fire it); the scrape config passes
# promtool check config; the Grafana dashboard is valid JSON whose every panel queries series
# that a running connwarden exports (names read from its own /metrics), with the data source a
# variable.
set -euo pipefail
connwarden=$1 demo_app=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/e2e/lib/common.sh
source "$(dirname "$0")/lib/common.sh"
command -v promtool >/dev/null || fail "promtool missing (the Makefile's DEPS install Debian's prometheus)"

# 1. Rules.
promtool check rules "$root/deploy/prometheus/connwarden-rules.yml" || fail "promtool check rules"
(cd "$root/deploy/prometheus" && promtool test rules connwarden-rules.test.yml) || fail "promtool test rules"

# 2. Scrape config. Debian's promtool is built without Kubernetes service discovery, so the
#    check runs on a copy whose kubernetes_sd_configs block is swapped for a static target.
cp "$root/deploy/prometheus/connwarden-rules.yml" "$work/"
python3 - "$root/deploy/prometheus/prometheus.yml" "$work/prometheus.yml" <<'PY'
import sys
text = open(sys.argv[1]).read()
k8s = "    kubernetes_sd_configs:\n      - role: pod\n"
assert k8s in text, "prometheus.yml: no kubernetes_sd_configs block"
open(sys.argv[2], "w").write(text.replace(k8s, "    static_configs:\n      - targets: ['127.0.0.1:9901']\n"))
PY
promtool check config "$work/prometheus.yml" || fail "promtool check config"

# 3. The series a running connwarden exports, from its /metrics.
"$demo_app" --address 127.0.0.1 --port 0 > "$work/app.out" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/app.out" 2>/dev/null && break; sleep 0.05; done
app_port=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$work/app.out" | head -1)
[ -n "$app_port" ] || fail "demo app did not start"
port=$(free_port) metrics_port=$(free_port)
cat > "$work/run.yaml" <<YAML
listeners: [{ name: e2e, address: "127.0.0.1:$port" }]
clusters: [{ name: app, addresses: ["127.0.0.1:$app_port"] }]
YAML
"$connwarden" --config "$work/run.yaml" --concurrency 1 --metrics-address "127.0.0.1:$metrics_port" --admin-address 127.0.0.1:0 \
  2> "$work/proxy.err" &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$metrics_port/metrics" && break; sleep 0.05; done
curl -s --max-time 5 -o /dev/null "http://127.0.0.1:$port/" || fail "no answer through connwarden"
curl -s --max-time 5 -o "$work/scrape.txt" "http://127.0.0.1:$metrics_port/metrics" || fail "no /metrics"

# 4. The dashboard.
python3 - "$root/deploy/grafana/connwarden.json" "$work/scrape.txt" <<'PY' || fail "dashboard"
import json, re, sys
dashboard = json.load(open(sys.argv[1]))
exported = set()
for line in open(sys.argv[2]):
    m = re.match(r"# TYPE (\S+) (\S+)", line)
    if not m:
        continue
    name, kind = m.groups()
    exported.add(name)
    if kind == "histogram":
        exported.update(name + s for s in ("_bucket", "_sum", "_count"))
assert "connwarden_connection_memory_bytes" in exported, "scrape without per-connection series"
errors = []
names = lambda expr: set(re.findall(r"\b((?:connwarden|process)_[a-zA-Z0-9_]+)", expr))
variables = {v["name"]: v for v in dashboard["templating"]["list"]}
if variables.get("datasource", {}).get("type") != "datasource":
    errors.append("no datasource variable")
for name in names(json.dumps(variables.get("pod", {}).get("query"))):
    if name not in exported:
        errors.append(f"variable pod: {name} is not exported")
panels = [p for p in dashboard["panels"] if p["type"] != "row"]
rows = [p for p in dashboard["panels"] if p["type"] == "row"]
if len(rows) < 5 or len(panels) < 12:
    errors.append(f"{len(rows)} rows, {len(panels)} panels")
for panel in panels:
    title = panel["title"]
    if panel.get("datasource", {}).get("uid") != "${datasource}":
        errors.append(f"{title}: data source is not the variable")
    targets = panel.get("targets", [])
    if not targets:
        errors.append(f"{title}: no query")
    for target in targets:
        found = names(target.get("expr", ""))
        if not found:
            errors.append(f"{title}: query {target.get('expr')!r} names no connwarden series")
        for name in sorted(found - exported):
            errors.append(f"{title}: {name} is not exported")
for e in errors:
    print("dashboard:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
echo "e2e deploy: rules, scrape config and dashboard checked"
