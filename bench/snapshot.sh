#!/usr/bin/env bash
# snapshot.sh - warm restart figures: for each case, N objects over K
# distinct bodies of SIZE go through dedupcache with -snapshot; SIGTERM
# writes the snapshot, a second process loads it, and every object is then
# fetched again and must be a hit with no origin request. Reports write and
# load time (from the cache's log), the file size against the logical and
# stored bytes. From a fresh clone (Go only; no peers needed):
#
#   bench/snapshot.sh                 # 100 000 x 4 KiB over 100 and over 100 000 bodies; 1 GiB of 64 KiB bodies
#   CASES="20000:100:4k" bench/snapshot.sh
#
# Output: a Markdown table on stdout and bench/results/snapshot.{md,tsv}.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
CASES=${CASES:-"100000:100:4k 100000:100000:4k 16384:16384:64k"}
PORT=${BASE_PORT:-28280}
cd "$ROOT"
mkdir -p bench/bin bench/results
"$GO" build -o bench/bin/dedupcache .
"$GO" build -o bench/bin/origin ./bench/origin
"$GO" build -o bench/bin/warm ./bench/warm
work=$(mktemp -d)
trap 'kill $(jobs -p) 2> /dev/null || true; rm -rf "$work"' EXIT

field() { # field NAME LINE -> value of NAME=value in a slog text line
  sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<< "$2" | head -1
}
origin_reqs() { curl -s "http://127.0.0.1:$PORT/stats" | sed -n 's/.*"obj_requests": *\([0-9]*\).*/\1/p'; }

TSV=bench/results/snapshot.tsv
printf "n\tk\tsize\tlogical_bytes\tstored_bytes\tfile_bytes\twrite_s\tload_s\tentries_loaded\thits_after\torigin_after\n" > "$TSV"
for c in $CASES; do
  IFS=: read -r n k size <<< "$c"
  snap=$work/cache.snap
  rm -f "$snap"
  bench/bin/origin -listen "127.0.0.1:$PORT" -n "$n" -k "$k" -size "$size" > /dev/null 2>&1 &
  opid=$!
  await_port "$PORT"
  args=(-listen "127.0.0.1:$((PORT + 5))" -upstream "http://127.0.0.1:$PORT" -admin "127.0.0.1:$((PORT + 6))"
    -max-memory 2GiB -log-level info -snapshot "$snap")
  bench/bin/dedupcache "${args[@]}" > "$work/one.log" 2>&1 &
  cpid=$!
  await_port $((PORT + 5))
  bench/bin/warm -url "http://127.0.0.1:$((PORT + 5))" -n "$n" -c 8 -header X-Cache > /dev/null
  stats=$(curl -s "http://127.0.0.1:$((PORT + 6))/api/stats")
  logical=$(sed -n 's/.*"bytes_logical": *\([0-9]*\).*/\1/p' <<< "$stats")
  stored=$(sed -n 's/.*"bytes_stored": *\([0-9]*\).*/\1/p' <<< "$stats")
  kill -TERM "$cpid"
  wait "$cpid" || true
  wline=$(grep "snapshot written" "$work/one.log" || true)
  [ -n "$wline" ] || { cat "$work/one.log" >&2; exit 1; }
  bench/bin/dedupcache "${args[@]}" > "$work/two.log" 2>&1 &
  cpid=$!
  for _ in $(seq 600); do # the listener is bound before the load: wait for its log line
    grep -q "snapshot loaded\|snapshot: " "$work/two.log" && break
    sleep 0.1
  done
  await_port $((PORT + 5))
  lline=$(grep "snapshot loaded" "$work/two.log" || true)
  before=$(origin_reqs)
  out=$(bench/bin/warm -url "http://127.0.0.1:$((PORT + 5))" -n "$n" -c 8 -header X-Cache)
  after=$(origin_reqs)
  hits=$(sed -n 's/.*HIT:\([0-9]*\).*/\1/p' <<< "$out")
  kill -TERM "$cpid"
  wait "$cpid" || true
  kill "$opid"
  wait "$opid" 2> /dev/null || true
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$n" "$k" "$size" "$logical" "$stored" \
    "$(field file_bytes "$wline")" "$(field seconds "$wline")" "$(field seconds "$lline")" \
    "$(field entries "$lline")" "${hits:-0}" "$((after - before))" >> "$TSV"
  tail -1 "$TSV" >&2
done
awk -F'\t' '
  NR == 1 { printf "| objects | bodies | size | logical MB | stored MB | file MB | file / logical | write s | load s | entries loaded | hits after restart | origin requests after |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"; next }
  { printf "| %d | %d | %s | %.1f | %.1f | %.1f | %.4f | %.2f | %.2f | %d | %d | %d |\n", $1, $2, $3, $4 / 1e6, $5 / 1e6, $6 / 1e6, $6 / $4, $7, $8, $9, $10, $11 }
' "$TSV" | tee bench/results/snapshot.md
