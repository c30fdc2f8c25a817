#!/usr/bin/env bash
# setup.sh - once per machine: install the peers and the load generator
# (nginx, varnish, haproxy, wrk; Debian/Ubuntu packages, only those missing)
# and build the bench's Go tools into bench/bin/ (origin, warm).
#
# Installing nginx, varnish or haproxy from apt may start their system
# services; setup.sh stops them again (bench/run.sh starts its own instances
# on 127.0.0.1 ports and stops them by PID).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

missing=()
for pair in nginx:nginx varnishd:varnish haproxy:haproxy wrk:wrk curl:curl taskset:util-linux; do
  command -v "${pair%%:*}" > /dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo)
  echo "setup: installing ${missing[*]}"
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  for svc in nginx varnish varnishncsa haproxy; do
    if command -v systemctl > /dev/null && systemctl is-active --quiet "$svc" 2> /dev/null; then
      "${SUDO[@]}" systemctl stop "$svc" || true
    elif service "$svc" status > /dev/null 2>&1; then
      "${SUDO[@]}" service "$svc" stop || true
    fi
  done
fi

mkdir -p "$HERE/bin"
cd "$ROOT"
"$GO" vet ./bench/origin ./bench/warm
"$GO" build -o "$HERE/bin/origin" ./bench/origin
"$GO" build -o "$HERE/bin/warm" ./bench/warm
echo "setup: ok; $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(varnishd -V 2>&1 | head -1 | awk '{print $2}' | tr -d '('), haproxy $(haproxy -v | awk 'NR==1{print $3}'), $(wrk -v 2>&1 | awk 'NR==1{print $1, $2}'), tools in ${HERE#"$ROOT"/}/bin"
