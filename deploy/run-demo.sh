#!/usr/bin/env bash
# `make run`: the demo application on 127.0.0.1:APP_PORT and connwarden in front of it, plain on
# HTTP_PORT and TLS on HTTPS_PORT with a self-signed certificate. Ctrl-C stops both.
set -euo pipefail
build=$1 run_dir=$2 http_port=$3 https_port=$4 app_port=$5
mkdir -p "$run_dir"
if [ ! -f "$run_dir/cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$run_dir/key.pem" -out "$run_dir/cert.pem" 2>/dev/null
fi
cat > "$run_dir/connwarden.yaml" <<YAML
listeners:
  - name: http
    address: 0.0.0.0:${http_port}
  - name: https
    address: 0.0.0.0:${https_port}
    tls: { cert_file: ${PWD}/${run_dir}/cert.pem, key_file: ${PWD}/${run_dir}/key.pem }
clusters:
  - name: app
    addresses: ["127.0.0.1:${app_port}"]
routes:
  - { name: default, cluster: app }
YAML

"$build/connwarden-demo-app" --address 127.0.0.1 --port "$app_port" > "$run_dir/app.log" &
app=$!
trap 'kill $app 2>/dev/null; kill $proxy 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
"$build/connwarden" --config "$run_dir/connwarden.yaml" &
proxy=$!
sleep 0.5
cat <<MSG

connwarden is running in front of the demo app (config: $run_dir/connwarden.yaml). Try:

  curl -v http://127.0.0.1:${http_port}/
  curl -vk https://127.0.0.1:${https_port}/
  curl -s http://127.0.0.1:${http_port}/headers          # what the app received (X-Forwarded-*)
  curl -s -o /dev/null -w '%{size_download}\n' http://127.0.0.1:${http_port}/bytes?n=10000000
  curl -s --data-binary 'hello' http://127.0.0.1:${http_port}/echo

and, on the admin API (127.0.0.1:9090):

  $build/connwardenctl get connections -o wide
  $build/connwardenctl top
  $build/connwardenctl watch
  $build/connwardenctl set policy default --hibernate true --idle-timeout 30s

Ctrl-C stops both.
MSG
wait $proxy
