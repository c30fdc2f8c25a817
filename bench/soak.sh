#!/usr/bin/env bash
# soak.sh - issue 16's soak: the real dedupcache binary in front of the
# bench origin (bench/origin), 256 keep-alive connections for 10 minutes
# over a mix of hits, misses, revalidations (objects with max-age=1 and an
# ETag: the origin answers 304), conditional requests (304 from the cache)
# and purges on the admin listener (by URL, soft, by tag, by prefix).
# bench/soakload sends the load, checks every response (status, ETag, body
# hash), samples the proxy's VmRSS (/proc) and goroutines (admin /metrics)
# and judges. The run fails (exit 1) when
#   - any request failed (socket error, timeout, unexpected status, wrong
#     body, a never-asked key not answered as a miss) or a purge failed;
#   - VmRSS at the end exceeds the warm-up plateau (the highest sample of
#     the first WARMUP seconds, the cache already full) by more than
#     RSS_MARGIN_PCT % + RSS_MARGIN_MIB MiB;
#   - the goroutine count at the end exceeds the warm-up plateau by more
#     than GOROUTINE_MARGIN (bounded pools may still grow after the
#     warm-up: the fetchers, up to cache.max_inflight = 64, and upstream
#     connections), or has not come back to its count before the load
#     (+ IDLE_MARGIN) within IDLE_WAIT seconds of the clients closing
#     their connections (what legitimately outlives the load: fasthttp's
#     idle workers, 10-20 s, and the fetchers, 30 s after their last
#     fetch);
#   - /api/stats does not add up with what was sent and what the origin
#     counted (the identities are listed in summary.md).
# Then, unless HAPROXY=0, the same hit/miss mix (no revalidations,
# conditional requests or purges: HAProxy's cache has no purge API) at the
# same connections for HAPROXY_DURATION seconds against dedupcache and then
# HAProxy's cache (bench/peers/haproxy.cfg.tmpl), p50/p99 side by side.
#
#   bench/soak.sh                               # the full soak: 600 s, then 60 s each beside HAProxy
#   DURATION=30 HAPROXY=0 bench/soak.sh         # the CI version (.ci/run)
#   DURATION=120 CONNS=64 MIX=hit=50,miss=50 bench/soak.sh
#
# Settings (environment): DURATION (600 s of load), WARMUP (DURATION/10,
# 10..60 s), CONNS (256), MIX (hit=80,miss=10,reval=8,cond=2), PURGES (5
# per second), MAX_MEMORY (256MiB, the default), FILL_TIMEOUT (300 s:
# the longest fill before the load), the origin's N (50000 objects), K
# (50000 bodies: every object its own), SIZE (4k); HOT (1000 objects
# hit), REVAL (100 objects revalidated every second); SAMPLE (5 s);
# RSS_MARGIN_PCT (10), RSS_MARGIN_MIB (16), GOROUTINE_MARGIN (128),
# IDLE_MARGIN (16), IDLE_WAIT (90 s); HAPROXY (1), HAPROXY_DURATION (60
# s); BASE_PORT (28480: origin P, HAProxy P+4, dedupcache P+5, its admin
# P+6); PIN (1: dedupcache and HAProxy on SERVER_CPU 0, soakload and the
# origin on CLIENT_CPU 1, as run.sh pins); OURS_BIN (a dedupcache binary to use
# instead of building one); OURS_ENV (VAR=value words for dedupcache's
# environment, e.g. GOMEMLIMIT=1GiB); OUT (results root, bench/results).
#
# Needs Go, and taskset (util-linux) to pin, and haproxy unless HAPROXY=0
# (bench/setup.sh installs it). Every process it starts listens on
# 127.0.0.1 only, is recorded by PID and stopped by that PID on exit.
#
# Output, in OUT/soak-<UTC stamp>/: settings.txt, summary.md (the tables
# and a one-line verdict, also printed), samples.tsv (VmRSS, goroutines,
# memory, requests, interval p99 every SAMPLE seconds), the runs' reports
# and logs.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/lib.sh"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

DURATION=${DURATION:-600}
WARMUP=${WARMUP:-$((DURATION / 10 < 10 ? 10 : (DURATION / 10 > 60 ? 60 : DURATION / 10)))}
CONNS=${CONNS:-256}
MIX=${MIX:-hit=80,miss=10,reval=8,cond=2}
PURGES=${PURGES:-5}
MAX_MEMORY=${MAX_MEMORY:-256MiB} FILL_TIMEOUT=${FILL_TIMEOUT:-300}
N=${N:-50000} K=${K:-50000} SIZE=${SIZE:-4k}
HOT=${HOT:-1000} REVAL=${REVAL:-100}
SAMPLE=${SAMPLE:-5}
RSS_MARGIN_PCT=${RSS_MARGIN_PCT:-10} RSS_MARGIN_MIB=${RSS_MARGIN_MIB:-16}
GOROUTINE_MARGIN=${GOROUTINE_MARGIN:-128} IDLE_MARGIN=${IDLE_MARGIN:-16} IDLE_WAIT=${IDLE_WAIT:-90}
HAPROXY=${HAPROXY:-1} HAPROXY_DURATION=${HAPROXY_DURATION:-60}
BASE_PORT=${BASE_PORT:-28480}
PIN=${PIN:-1} SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
OUT=${OUT:-$HERE/results}

[ "$DURATION" -gt "$WARMUP" ] || { echo "soak.sh: DURATION ($DURATION) must be longer than WARMUP ($WARMUP)" >&2; exit 2; }
if [ "$HAPROXY" = 1 ]; then
  command -v haproxy > /dev/null || { echo "soak.sh: haproxy missing (bench/setup.sh installs it; HAPROXY=0 skips it)" >&2; exit 1; }
  [ "$HAPROXY_DURATION" -gt 10 ] || { echo "soak.sh: HAPROXY_DURATION must be more than 10 s" >&2; exit 2; }
fi
SERVER=() CLIENT=()
if [ "$PIN" = 1 ]; then
  if command -v taskset > /dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER=(taskset -c "$SERVER_CPU") CLIENT=(taskset -c "$CLIENT_CPU")
  else
    echo "soak.sh: taskset missing or one CPU: not pinned" >&2
    PIN=0
  fi
fi

mkdir -p "$HERE/bin"
cd "$ROOT"
OURS=${OURS_BIN:-$HERE/bin/dedupcache}
[ -n "${OURS_BIN:-}" ] || "$GO" build -o "$OURS" .
"$GO" build -o "$HERE/bin/origin" ./bench/origin
"$GO" build -o "$HERE/bin/soakload" ./bench/soakload

RES=$OUT/soak-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RES"
WORK=$(mktemp -d /tmp/dedupcache-soak.XXXXXX)

STARTED=() # every PID started here, in start order
finish() {
  local i
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop "${STARTED[i]}"; done
  cp -f "$WORK"/*.log "$RES"/ 2> /dev/null || true
  rm -rf "$WORK"
}
trap finish EXIT
trap 'exit 130' INT TERM


ORIGIN_PORT=$BASE_PORT HAPROXY_PORT=$((BASE_PORT + 4)) OURS_PORT=$((BASE_PORT + 5)) ADMIN_PORT=$((BASE_PORT + 6))
TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
MIB=${MAX_MEMORY%MiB}
case "$MAX_MEMORY" in *MiB) ;; *) echo "soak.sh: MAX_MEMORY is NMiB" >&2; exit 2;; esac
# the hit/miss part of MIX, for the runs beside HAProxy
HM_MIX=$(tr ',' '\n' <<< "$MIX" | grep -E '^(hit|miss)=' | paste -sd, -)
[ -n "$HM_MIX" ] || HM_MIX=hit=80,miss=10

{
  echo "== bench/soak.sh, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2> /dev/null || echo unknown)$(git diff --quiet HEAD -- . ':!bench/results' 2> /dev/null || echo ' (modified tree)')"
  echo "command: ${OURS_ENV:+OURS_ENV=\"$OURS_ENV\" }DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS MIX=$MIX PURGES=$PURGES MAX_MEMORY=$MAX_MEMORY N=$N K=$K SIZE=$SIZE HOT=$HOT REVAL=$REVAL HAPROXY=$HAPROXY HAPROXY_DURATION=$HAPROXY_DURATION bench/soak.sh"
  echo "margins: VmRSS +$RSS_MARGIN_PCT % +$RSS_MARGIN_MIB MiB over the warm-up plateau; goroutines +$GOROUTINE_MARGIN over the plateau, +$IDLE_MARGIN over the count before the load within ${IDLE_WAIT}s of its end"
  echo "pin: $PIN (dedupcache and HAProxy on CPU $SERVER_CPU; soakload and the origin on CPU $CLIENT_CPU)"
  echo "versions: $("$OURS" -version 2> /dev/null || echo dedupcache ?), $("$GO" version | awk '{print $3}')$([ "$HAPROXY" = 1 ] && echo ", haproxy $(haproxy -v 2> /dev/null | awk 'NR==1{print $3}')")"
  echo "host: $(nproc) CPUs, $(awk '/MemTotal/{printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r), load average before $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "results: ${RES#"$ROOT"/}"
} | tee "$RES/settings.txt"

"${CLIENT[@]}" "$HERE/bin/origin" -listen "127.0.0.1:$ORIGIN_PORT" -n "$N" -k "$K" -size "$SIZE" > "$WORK/origin.log" 2>&1 &
STARTED+=($!)
await_port "$ORIGIN_PORT"

cat > "$WORK/ours.yaml" << EOF
upstream: http://127.0.0.1:$ORIGIN_PORT
listen: 127.0.0.1:$OURS_PORT
admin:
  listen: 127.0.0.1:$ADMIN_PORT
  token: "$TOKEN"
cache:
  max_memory: $MAX_MEMORY
log:
  level: warn
EOF
# shellcheck disable=SC2086 # OURS_ENV is a list of VAR=value words
"${SERVER[@]}" env ${OURS_ENV:-} "$OURS" -config "$WORK/ours.yaml" > "$WORK/ours.log" 2>&1 &
OURS_PID=$!
STARTED+=("$OURS_PID")
await_port "$OURS_PORT"
await_port "$ADMIN_PORT"

export SOAKLOAD_TOKEN=$TOKEN
LOAD=("$HERE/bin/soakload" -c "$CONNS" -n "$N" -k "$K" -size "$SIZE" -hot "$HOT" -reval "$REVAL" -sample "${SAMPLE}s"
  -rss-margin-pct "$RSS_MARGIN_PCT" -rss-margin-mib "$RSS_MARGIN_MIB" -goroutine-margin "$GOROUTINE_MARGIN" -idle-margin "$IDLE_MARGIN")
BOUND=$((DURATION + FILL_TIMEOUT + IDLE_WAIT + 120)) # fill, warm, idle check and slack

echo "== soak: dedupcache, $CONNS connections for $DURATION s"
rc=0
"${CLIENT[@]}" timeout "$BOUND" "${LOAD[@]}" -name dedupcache-soak -target "http://127.0.0.1:$OURS_PORT" \
  -admin "http://127.0.0.1:$ADMIN_PORT" -origin "http://127.0.0.1:$ORIGIN_PORT" -pid "$OURS_PID" \
  -d "${DURATION}s" -warmup "${WARMUP}s" -mix "$MIX" -purges "$PURGES" -fill -fill-timeout "${FILL_TIMEOUT}s" -check -idle-wait "${IDLE_WAIT}s" \
  -samples "$RES/samples.tsv" -report "$WORK/soak.md" 2>&1 | grep -v '^|' | tee "$RES/soak.log" || rc=$?
SOAK=$(grep '^RESULT' "$RES/soak.log" || true)
if [ -z "$SOAK" ]; then
  echo "soak.sh: soakload gave no result (exit $rc):" >&2
  tail -20 "$RES/soak.log" >&2
  exit 1
fi

HM_OURS="" HM_HAP="" hm_rc=0 hap_rc=0
if [ "$HAPROXY" = 1 ]; then
  hwarm=$((HAPROXY_DURATION / 6 < 5 ? 5 : HAPROXY_DURATION / 6))
  echo "== beside HAProxy: mix $HM_MIX, $CONNS connections, $HAPROXY_DURATION s each"
  "${CLIENT[@]}" timeout $((HAPROXY_DURATION + 120)) "${LOAD[@]}" -name dedupcache -target "http://127.0.0.1:$OURS_PORT" \
    -admin "http://127.0.0.1:$ADMIN_PORT" -origin "http://127.0.0.1:$ORIGIN_PORT" -pid "$OURS_PID" \
    -d "${HAPROXY_DURATION}s" -warmup "${hwarm}s" -mix "$HM_MIX" -purges 0 -check -idle-wait 0 \
    -report "$WORK/hm-ours.md" > "$RES/hm-ours.log" 2>&1 || hm_rc=$?
  HM_OURS=$(grep '^RESULT' "$RES/hm-ours.log" || true)
  stop "$OURS_PID"
  mkdir -p "$WORK/haproxy"
  sed -e "s#{{PORT}}#$HAPROXY_PORT#g" -e "s#{{ORIGIN}}#127.0.0.1:$ORIGIN_PORT#g" -e "s#{{CACHE_MB}}#$MIB#g" \
    -e "s#{{DIR}}#$WORK/haproxy#g" "$HERE/peers/haproxy.cfg.tmpl" > "$WORK/haproxy/haproxy.cfg"
  "${SERVER[@]}" haproxy -db -f "$WORK/haproxy/haproxy.cfg" > "$WORK/haproxy.log" 2>&1 &
  STARTED+=($!)
  await_port "$HAPROXY_PORT"
  "${CLIENT[@]}" timeout $((HAPROXY_DURATION + 120)) "${LOAD[@]}" -name haproxy -target "http://127.0.0.1:$HAPROXY_PORT" \
    -cache-header X-Cache-Status -d "${HAPROXY_DURATION}s" -warmup "${hwarm}s" -mix "$HM_MIX" -purges 0 -idle-wait 0 \
    -report "$WORK/hm-haproxy.md" > "$RES/hm-haproxy.log" 2>&1 || hap_rc=$?
  HM_HAP=$(grep '^RESULT' "$RES/hm-haproxy.log" || true)
fi

v() { grep -o " $2=[^ ]*" <<< "$1" | cut -d= -f2; } # v LINE KEY
msf() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
row() { # row LABEL MIX RESULT-LINE
  [ -n "$3" ] || { echo "| $1 | $2 | no result | | | | | | | |"; return; }
  printf '| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s |\n' "$1" "$2" "$(v "$3" seconds)" "$(v "$3" requests)" \
    "$(v "$3" rps)" "$(msf "$(v "$3" p50_us)")" "$(msf "$(v "$3" p99_us)")" "$(msf "$(v "$3" hit_p50_us)")" "$(msf "$(v "$3" hit_p99_us)")" \
    "$(msf "$(v "$3" miss_p50_us)")" "$(msf "$(v "$3" miss_p99_us)")" "$(v "$3" errors)"
}

verdict=PASS
[ "$rc" = 0 ] || verdict=FAIL
[ "$hm_rc" = 0 ] || verdict=FAIL
kb2mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
line="soak $verdict: dedupcache, $CONNS connections for $(v "$SOAK" seconds) s: $(v "$SOAK" requests) requests, $(v "$SOAK" errors) errors, $(v "$SOAK" purges) purges ($(v "$SOAK" purge_errors) failed); VmRSS $(kb2mib "$(v "$SOAK" rss_min_kb)")-$(kb2mib "$(v "$SOAK" rss_max_kb)") MiB (last $(kb2mib "$(v "$SOAK" rss_last_kb)")), goroutines $(v "$SOAK" goroutines_min)-$(v "$SOAK" goroutines_max) (idle after: $(v "$SOAK" goroutines_idle)); stats identities $(v "$SOAK" identities) hold; p50 $(msf "$(v "$SOAK" p50_us)") ms, p99 $(msf "$(v "$SOAK" p99_us)") ms"
if [ -n "$HM_HAP" ]; then
  line="$line; hit/miss mix p99 $(msf "$(v "$HM_OURS" p99_us)") ms vs HAProxy $(msf "$(v "$HM_HAP" p99_us)") ms"
fi

{
  echo "## soak: $(date -u +%F)"
  echo
  sed 's/^/    /' "$RES/settings.txt"
  cat "$WORK/soak.md"
  if [ "$HAPROXY" = 1 ]; then
    echo
    echo "### beside HAProxy: the hit/miss mix ($HM_MIX), $CONNS connections, $HAPROXY_DURATION s each, one after the other"
    echo
    echo "Revalidations, conditional requests and purges are not sent here (HAProxy's cache has no purge API);"
    echo "dedupcache runs on the cache the soak left (full), HAProxy from an empty one ($MIB MB). Latencies from soakload."
    echo
    echo "| target | mix | seconds | requests | req/s | p50 ms | p99 ms | hit p50 / p99 ms | miss p50 / p99 ms | errors |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    row "dedupcache (soak)" "$MIX + purges" "$SOAK"
    row dedupcache "$HM_MIX" "$HM_OURS"
    row haproxy "$HM_MIX" "$HM_HAP"
    if [ "$hap_rc" != 0 ]; then echo; echo "HAProxy's run reported failures (exit $hap_rc); see hm-haproxy.log."; fi
  fi
  echo
  echo "**$line**"
} > "$RES/summary.md"
cp "$WORK"/*.md "$RES"/
cat "$RES/summary.md"
[ "$verdict" = PASS ] || exit 1
