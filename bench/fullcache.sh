#!/usr/bin/env bash
# fullcache.sh - what a full cache costs per miss: N distinct objects (every
# request a miss) through dedupcache with a small max_memory (the cache is
# full after the first few thousand and evicts on every store), against the
# same misses into a cache large enough to hold them all. For each round and
# budget: the proxy's CPU time (utime + stime from /proc) per miss, the wall
# time, and the peak VmRSS sampled every 100 ms, against the bound
# 1.1 x max_memory + 16 MiB. Servers are pinned to CPU 0, the warm tool to
# CPU 1, as in run.sh. From a fresh clone (after bench/setup.sh):
#
#   bench/fullcache.sh                       # N=100000, 4 KiB, budgets 32MiB and 1GiB, 3 rounds
#   N=20000 REPS=1 bench/fullcache.sh        # a quick look
#   SMALL=64MiB bench/fullcache.sh
#   K=100 bench/fullcache.sh                 # bodies shared: the entries' metadata fills the budget
#   OURS_BIN=/path/to/other/dedupcache bench/fullcache.sh   # another build (A/B)
#   OURS_ENV="GOGC=50" TAG=full-cache-gogc50 bench/fullcache.sh   # ours under another GC setting
#
# Output: a Markdown table on stdout and bench/results/$TAG.{md,tsv} (TAG
# defaults to full-cache).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
N=${N:-100000}
K=${K:-$N} # distinct bodies (object i gets body i mod K)
SIZE=${SIZE:-4096}
REPS=${REPS:-3}
SMALL=${SMALL:-32MiB}
LARGE=${LARGE:-1GiB}
CONNS=${CONNS:-8}
PORT=${BASE_PORT:-28180}
OUT=$ROOT/bench/results
mkdir -p "$OUT" "$ROOT/bench/bin"
cd "$ROOT"
OURS=${OURS_BIN:-bench/bin/dedupcache}
[ -n "${OURS_BIN:-}" ] || "$GO" build -o bench/bin/dedupcache .
"$GO" build -o bench/bin/origin ./bench/origin
"$GO" build -o bench/bin/warm ./bench/warm

bytes_of() { # 32MiB -> bytes
  local v=$1 n=${1%%[KMG]iB}
  case "$v" in *KiB) echo $((n << 10));; *MiB) echo $((n << 20));; *GiB) echo $((n << 30));; *) echo "$v";; esac
}

ticks=$(getconf CLK_TCK)
cpu_seconds() { # PID -> utime+stime in seconds (fields 14 and 15 of /proc/PID/stat)
  awk -v t="$ticks" '{ sub(/^.*\) /, ""); printf "%.3f", ($12 + $13) / t }' "/proc/$1/stat"
}


TAG=${TAG:-full-cache}
TSV=$OUT/$TAG.tsv
printf "round\tmax_memory\tn\tseconds\tcpu_seconds\tcpu_us_per_miss\tpeak_rss_mib\trss_bound_mib\terrors\n" > "$TSV"
for r in $(seq "$REPS"); do
  for mem in "$SMALL" "$LARGE"; do
    taskset -c 0 bench/bin/origin -listen "127.0.0.1:$PORT" -n "$N" -k "$K" -size "$SIZE" > /dev/null 2>&1 &
    opid=$!
    await_port "$PORT"
    # shellcheck disable=SC2086 # OURS_ENV is a list of VAR=value words
    taskset -c 0 env ${OURS_ENV:-} "$OURS" -listen "127.0.0.1:$((PORT + 5))" -upstream "http://127.0.0.1:$PORT" \
      -admin 127.0.0.1:0 -max-memory "$mem" -log-level warn > /dev/null 2>&1 &
    ppid=$!
    await_port $((PORT + 5))
    sleep 0.5
    peak=0
    (
      while kill -0 "$ppid" 2> /dev/null; do
        awk '/^VmRSS/ { print $2 }' "/proc/$ppid/status" 2> /dev/null || true
        sleep 0.1
      done
    ) > /tmp/fullcache-rss.$$ &
    spid=$!
    cpu0=$(cpu_seconds "$ppid")
    line=$(taskset -c 1 bench/bin/warm -url "http://127.0.0.1:$((PORT + 5))" -n "$N" -c "$CONNS" -header X-Cache 2>&1 | tail -1)
    cpu1=$(cpu_seconds "$ppid")
    kill "$ppid" "$opid"
    wait "$ppid" "$opid" 2> /dev/null || true
    wait "$spid" 2> /dev/null || true
    peak=$(sort -n /tmp/fullcache-rss.$$ | tail -1)
    rm -f /tmp/fullcache-rss.$$
    secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<< "$line")
    errs=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<< "$line")
    cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.3f", b - a }')
    bound=$(awk -v m="$(bytes_of "$mem")" 'BEGIN { printf "%.1f", (1.1 * m + 16 * 2^20) / 2^20 }')
    printf "%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%s\t%s\n" "$r" "$mem" "$N" "$secs" "$cpu" \
      "$(awk -v c="$cpu" -v n="$N" 'BEGIN { print c / n * 1e6 }')" "$(awk -v k="$peak" 'BEGIN { print k / 1024 }')" \
      "$bound" "$errs" >> "$TSV"
    echo "round $r, max_memory $mem: $line; proxy CPU ${cpu} s; peak VmRSS $((peak / 1024)) MiB (bound $bound MiB)" >&2
  done
done

MD=$OUT/$TAG.md
awk -F'\t' -v small="$SMALL" -v large="$LARGE" -v n="$N" -v k="$K" -v size="$SIZE" -v env="${OURS_ENV:-}" '
  NR == 1 { next }
  { cpu[$2] = cpu[$2] " " $6; rss[$2] = (rss[$2] > $7 ? rss[$2] : $7); bound[$2] = $8; err[$2] += $9; secs[$2] = secs[$2] " " $4 }
  function median(s,   a, k, i, j, t) {
    k = split(s, a, " ")
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((k + 1) / 2)]
  }
  END {
    printf "| max_memory | proxy CPU per miss, µs (median) | rounds | wall seconds (median) | peak VmRSS MiB | bound 1.1 x max_memory + 16 MiB | errors |\n|---|---|---|---|---|---|---|\n"
    for (m in cpu) printf "| %s | %.1f | %s | %s | %.1f | %s | %d |\n", m, median(cpu[m]), cpu[m], median(secs[m]), rss[m], bound[m], err[m]
    printf "\nCPU per miss, full (%s) / empty (%s): **%.2fx**. N=%d objects of %d bytes over K=%d distinct bodies, bench/warm -c 8, ours started fresh each round%s.\n", small, large, median(cpu[small]) / median(cpu[large]), n, size, k, (env == "" ? "" : ", environment " env)
  }' "$TSV" | tee "$MD"
