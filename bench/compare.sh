#!/usr/bin/env bash
# compare.sh - dedupcache against its peers (nginx proxy_cache, nginx +
# open_file_cache, Varnish, HAProxy) and the bare Go origin ("direct"), on
# loopback, with the repository's own harness bench/run.sh (servers pinned
# to CPU 0, wrk to CPU 1). From a fresh clone:
#
#   bench/setup.sh                   # once: nginx varnish haproxy wrk, bench/bin/{origin,warm}
#   bench/compare.sh                 # every scenario (about 30 min)
#   bench/compare.sh a b             # only some: a b c c-gogc e-size e-keys m go
#   REPS=1 M_N=5000 bench/compare.sh m   # a quick check of the miss scenario
#   REPS=5 DUR=10 bench/compare.sh a
#   BENCH=/path/to/other/harness bench/compare.sh a   # the same scenarios on another
#                                    # harness with run.sh's options and TSV columns
#                                    # (the shared one: an independent check)
#
# Scenarios (see BENCHMARKS.md):
#   a       hit throughput, 1 KiB bodies, 1000 URLs all distinct
#   b       hit throughput, 16 KiB bodies, 10 000 URLs over 100 bodies
#   c       memory per stored key, 100 000 URLs, 4 KiB bodies, K=100 and K=N
#   c-gogc  the same for ours alone under GOGC=100, 50, 25, 10
#   e-keys  growth with the number of keys (1 000 .. 1 000 000): memory per key
#           and hit latency (ours vs direct)
#   e-size  MB/s by body size, 1 KiB .. 1 MiB (ours vs direct and nginx-ofc)
#   m       misses: N=50 000 distinct 4 KiB objects (K=N) into an empty cache,
#           one bench/warm pass at 8 connections per target (every request a
#           miss); each target started fresh every round (run.sh --mode miss)
#   go      Go benchmarks: cachestore hit latency histogram, proxy hit handler
#
# Raw harness output goes to bench/results/raw/ (git-ignored); the small
# summaries (TSV + Markdown, every figure also as a ratio against the peers
# measured in the same run) go to bench/results/<scenario>.{tsv,md}.
#
# Environment: REPS (interleaved rounds, default 3), DUR (wrk seconds,
# default 10), BASE_PORT (default 28080, away from the shared harness's 18080 so a
# colleague's run does not collide), OURS_ENV (e.g. "GOGC=50"),
# OURS_EXTRA (extra flags for ours), M_N and M_C (scenario m: objects,
# default 50000, and warm connections, default 8), BENCH (harness dir, default bench/;
# it must hold run.sh and, built by its setup.sh, its tools).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$(cd "${BENCH:-$ROOT/bench}" && pwd)
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
REPS=${REPS:-3}
DUR=${DUR:-10}
BASE_PORT=${BASE_PORT:-28080}
RAW=$ROOT/bench/results/raw
OUT=$ROOT/bench/results
mkdir -p "$RAW" "$OUT" "$ROOT/bench/bin"

cd "$ROOT"
"$GO" build -o bench/bin/dedupcache .
if [ "$BENCH" = "$ROOT/bench" ]; then # our own tools: rebuilt, so they match the tree
  "$GO" build -o bench/bin/origin ./bench/origin
  "$GO" build -o bench/bin/warm ./bench/warm
fi
# 1 GiB: room for every scenario without eviction (the peers get 4 GiB
# (varnish) and 8 GiB (nginx)); the memory limit main.go derives from it
# (1 GiB + 128 MiB) is above what the scenarios use, so GOGC (default 100)
# sets the heap's headroom. ristretto's admission counters are sized from it
# (ExpectedEntries = max_memory / 2048, 2 counters each: ~4.5 MiB here).
OURS_CMD="${OURS_ENV:+env $OURS_ENV }$ROOT/bench/bin/dedupcache -listen 127.0.0.1:{port} -upstream {upstream_url} -admin 127.0.0.1:0 -max-memory 1GiB -log-level warn ${OURS_EXTRA:-}"
export OURS_CMD OURS_HIT_HEADER=X-Cache
RUN=("$BENCH/run.sh" --base-port "$BASE_PORT" --out "$RAW")

latest() { ls -td "$RAW/$1"-2* | head -1; }

# ratios TAG: runs.tsv of the latest run TAG -> OUT/TAG.tsv (medians) and OUT/TAG.md
ratios() {
  local tag=$1 dir
  dir=$(latest "$tag")
  awk -F'\t' -v tag="$tag" '
    NR == 1 { next }
    { n = ++cnt[$2]; rps[$2, n] = $3; p99[$2, n] = $6; p50[$2, n] = $4; err[$2] += $11; orq[$2] += $12
      if (!($2 in seen)) { seen[$2] = 1; order[++nt] = $2 } }
    function med(a, t, k,   i, j, x, v, m) {
      m = cnt[t]; for (i = 1; i <= m; i++) v[i] = a[t, i]
      for (i = 2; i <= m; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
      return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
    END {
      for (i = 1; i <= nt; i++) { t = order[i]; R[t] = med(rps, t); P[t] = med(p99, t); Q[t] = med(p50, t) }
      tsv = OUT "/" tag ".tsv"; md = OUT "/" tag ".md"
      printf "target\trounds\trps_median\tp50_us\tp99_us\terrors\torigin_reqs\trps_vs_direct\trps_vs_nginx_ofc\trps_vs_varnish\tp99_vs_nginx_ofc\n" > tsv
      printf "| target | req/s (median of %d) | p50 ms | p99 ms | errors | req/s vs direct | vs nginx-ofc | vs varnish | p99 vs nginx-ofc |\n|---|---|---|---|---|---|---|---|---|\n", cnt[order[1]] > md
      for (i = 1; i <= nt; i++) { t = order[i]
        rd = ("direct" in R) ? sprintf("%.2f", R[t] / R["direct"]) : "-"
        rn = ("nginx-ofc" in R) ? sprintf("%.2f", R[t] / R["nginx-ofc"]) : "-"
        rv = ("varnish" in R) ? sprintf("%.2f", R[t] / R["varnish"]) : "-"
        pn = ("nginx-ofc" in P) ? sprintf("%.2f", P[t] / P["nginx-ofc"]) : "-"
        printf "%s\t%d\t%.0f\t%.0f\t%.0f\t%d\t%d\t%s\t%s\t%s\t%s\n", t, cnt[t], R[t], Q[t], P[t], err[t], orq[t], rd, rn, rv, pn >> tsv
        printf "| %s | %.0f | %.2f | %.2f | %d | %s | %s | %s | %s |\n", t, R[t], Q[t] / 1000, P[t] / 1000, err[t], rd, rn, rv, pn >> md }
    }' OUT="$OUT" "$dir/runs.tsv"
  echo "source: ${dir#"$ROOT"/}" >> "$OUT/$tag.md"
  cat "$OUT/$tag.md"
}

# memrows TAG DEST [LABEL]: bytes of growth per stored key from the latest
# mem run TAG, appended to OUT/DEST.tsv (target named LABEL if given)
memrows() {
  local tag=$1 dest=$2 label=${3:-} dir
  dir=$(latest "$tag")
  awk -F'\t' -v tag="$tag" -v label="$label" 'NR > 1 { if (label != "") $1 = label
      n = $2; rss = ($6 - $5) * 1024 / n; pss = ($8 - $7) * 1024 / n; anon = ($10 - $9) * 1024 / n; du = ($12 - $11) / n
      printf "%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\n", tag, $1, $2, $3, $4, rss, pss, anon, du, pss + du }' \
    "$dir/mem.tsv" >> "$OUT/$dest.tsv"
}
memhead() { printf 'run\ttarget\tn\tk\tsize\trss_per_key\tpss_per_key\tanon_per_key\ttmpfs_per_key\tpss_plus_tmpfs_per_key\n' > "$OUT/$1.tsv"; }

# memmd NAME: Markdown of OUT/NAME.tsv with, per (n, k), ratios against
# varnish and nginx (nginx: PSS + tmpfs cache files; others: RSS growth).
memmd() {
  awk -F'\t' 'NR == 1 { next }
    { key = $3 "/" $4; b = ($2 ~ /^nginx/) ? $10 : $6
      v[key, $2] += b; c[key, $2]++
      if (!(key in seenk)) { seenk[key] = 1; keys[++nk] = key }
      if (!($2 in seent)) { seent[$2] = 1; tg[++ntg] = $2 } }
    END {
      printf "| N / K | target | bytes per key (mean of runs; nginx: PSS + tmpfs; others: VmRSS growth) | vs varnish | vs nginx |\n|---|---|---|---|---|\n"
      for (i = 1; i <= nk; i++) for (j = 1; j <= ntg; j++) { k = keys[i]; t = tg[j]; if (!c[k, t]) continue
        x = v[k, t] / c[k, t]; va = c[k, "varnish"] ? v[k, "varnish"] / c[k, "varnish"] : 0; ng = c[k, "nginx"] ? v[k, "nginx"] / c[k, "nginx"] : 0
        printf "| %s | %s | %.0f | %s | %s |\n", k, t, x, va ? sprintf("%.2f", x / va) : "-", ng ? sprintf("%.2f", x / ng) : "-" } }' \
    "$OUT/$1.tsv" > "$OUT/$1.md"
  cat "$OUT/$1.md"
}

machine() {
  {
    echo "== scenarios: ${want[*]}"
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "cpu: $(nproc) x $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
    echo "mem: $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "go: $("$GO" version | awk '{print $3}'), ours: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet -- . ':!bench/results' || echo +local-changes)"
    echo "harness: ${BENCH#"$ROOT"/}/run.sh"
    echo "OURS_CMD: ${OURS_CMD//$ROOT\//}"
  } | tee -a "$OUT/machine.txt"
}

scen_a() {
  "${RUN[@]}" --tag a-1k -n 1000 -k 1000 --size 1k -d "$DUR" -r "$REPS" --targets "direct nginx nginx-ofc varnish haproxy ours"
  ratios a-1k
}
scen_b() {
  "${RUN[@]}" --tag b-16k -n 10000 -k 100 --size 16k -d "$DUR" -r "$REPS" --targets "direct nginx nginx-ofc varnish haproxy ours"
  ratios b-16k
}
scen_c() {
  memhead c-mem
  for rep in 1 2; do
    for k in 100 100000; do
      "${RUN[@]}" --tag "c-mem-k$k" --mode mem -n 100000 -k "$k" --size 4k --targets "nginx varnish ours"
      memrows "c-mem-k$k" c-mem
    done
  done
  memmd c-mem
}
# c-gogc: scenario c for ours alone with GOGC=50, 25 and 10 (one run each):
# what the GC's heap headroom does to RSS growth per key.
scen_c_gogc() {
  memhead c-gogc
  local keep=$OURS_CMD g k
  for g in 100 50 25 10; do
    OURS_CMD="env GOGC=$g ${keep#env * }"
    for k in 100 100000; do
      "${RUN[@]}" --tag "c-gogc$g-k$k" --mode mem -n 100000 -k "$k" --size 4k --targets "ours"
      memrows "c-gogc$g-k$k" c-gogc "ours GOGC=$g"
    done
  done
  OURS_CMD=$keep
  memmd c-gogc
}
scen_e_keys() {
  memhead e-keys-mem
  for n in 1000 10000 100000 1000000; do
    "${RUN[@]}" --tag "e-keys-mem-n$n" --mode mem -n "$n" -k 100 --size 4k --targets "ours"
    memrows "e-keys-mem-n$n" e-keys-mem
  done
  memmd e-keys-mem
  : > "$OUT/e-keys-load.md"
  for n in 1000 100000 1000000; do
    "${RUN[@]}" --tag "e-keys-load-n$n" -n "$n" -k 100 --size 1k -d 5 -r "$REPS" --targets "direct ours"
    { echo "#### N=$n"; ratios "e-keys-load-n$n"; echo; } >> "$OUT/e-keys-load.md.tmp"
  done
  mv "$OUT/e-keys-load.md.tmp" "$OUT/e-keys-load.md"
}
scen_e_size() {
  : > "$OUT/e-size.tsv.tmp"
  printf 'size\ttarget\trps\tMBps\tvs_direct\tvs_nginx_ofc\tp99_us\n' > "$OUT/e-size.tsv.tmp"
  for s in 1k 16k 128k 1m; do
    "${RUN[@]}" --tag "e-size-$s" -n 100 -k 100 --size "$s" -d 5 -r "$REPS" --targets "direct nginx-ofc ours"
    ratios "e-size-$s" > /dev/null
    bytes=$(awk -v s="$s" 'BEGIN{n = s + 0; if (s ~ /k$/) n *= 1024; if (s ~ /m$/) n *= 1048576; print n}')
    awk -F'\t' -v s="$s" -v b="$bytes" 'NR > 1 { printf "%s\t%s\t%s\t%.1f\t%s\t%s\t%s\n", s, $1, $3, $3 * b / 1e6, $8, $9, $5 }' \
      "$OUT/e-size-$s.tsv" >> "$OUT/e-size.tsv.tmp"
    rm -f "$OUT/e-size-$s.tsv" "$OUT/e-size-$s.md"
  done
  mv "$OUT/e-size.tsv.tmp" "$OUT/e-size.tsv"
  awk -F'\t' 'NR == 1 { print "| body size | target | req/s | MB/s | vs direct | vs nginx-ofc | p99 ms |"; print "|---|---|---|---|---|---|---|"; next }
    { printf "| %s | %s | %s | %s | %s | %s | %.2f |\n", $1, $2, $3, $4, $5, $6, $7 / 1000 }' "$OUT/e-size.tsv" > "$OUT/e-size.md"
  cat "$OUT/e-size.md"
}
# m: misses. Per target (fresh, empty cache, pinned like the others) one
# timed warm pass over N distinct URLs, REPS rotating rounds; medians and
# ratios against nginx and varnish of the same run.
scen_m() {
  "${RUN[@]}" --mode miss --tag m-misses -n "${M_N:-50000}" -k "${M_N:-50000}" --size 4k --warm-c "${M_C:-8}" -r "$REPS" \
    --targets "direct nginx varnish haproxy ours"
  m_table
}
# m_table: OUT/m-misses.{tsv,md} from the latest raw m-misses run
m_table() {
  local dir n c
  dir=$(latest m-misses)
  n=$(sed -n 's/^origin: n=\([0-9]*\) .*/\1/p' "$dir/settings.txt")
  c=$(sed -n 's/.*warm: \([0-9]*\) connections.*/\1/p' "$dir/settings.txt")
  awk -F'\t' -v n="$n" -v c="$c" '
    NR == 1 { next }
    { k = ++cnt[$2]; sec[$2, k] = $3; rps[$2, k] = $4; rss[$2, k] = $9; orq[$2, k] = $8; err[$2] += $6
      mis[$2, k] = $7; if ($7 == "-") nomis[$2] = 1
      if (!($2 in seen)) { seen[$2] = 1; order[++nt] = $2 } }
    function med(a, t,   i, j, x, v, m) {
      m = cnt[t]; for (i = 1; i <= m; i++) v[i] = a[t, i] + 0
      for (i = 2; i <= m; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
      return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
    function ratio(t, p) { return (p in R) ? sprintf("%.2f", R[t] / R[p]) : "-" }
    END {
      for (i = 1; i <= nt; i++) { t = order[i]; S[t] = med(sec, t); R[t] = med(rps, t); M[t] = med(rss, t); O[t] = med(orq, t)
        MS[t] = (t in nomis) ? "-" : sprintf("%.0f", med(mis, t)) }
      tsv = OUT "/m-misses.tsv"; md = OUT "/m-misses.md"
      printf "target\trounds\tn\tconns\tseconds_median\trps_median\terrors\tmisses_median\torigin_reqs_median\tvmrss_after_kb_median\trps_vs_direct\trps_vs_nginx\trps_vs_varnish\n" > tsv
      printf "| target | seconds (median of %d) | req/s | errors (sum) | misses per pass (header) | origin requests per pass | VmRSS after (MiB) | req/s vs direct | vs nginx | vs varnish |\n|---|---|---|---|---|---|---|---|---|---|\n", cnt[order[1]] > md
      for (i = 1; i <= nt; i++) { t = order[i]
        printf "%s\t%d\t%d\t%d\t%.3f\t%.0f\t%d\t%s\t%.0f\t%.0f\t%s\t%s\t%s\n", t, cnt[t], n, c, S[t], R[t], err[t], MS[t], O[t], M[t],
          ratio(t, "direct"), ratio(t, "nginx"), ratio(t, "varnish") >> tsv
        printf "| %s | %.2f | %.0f | %d | %s | %.0f | %.1f | %s | %s | %s |\n", t, S[t], R[t], err[t], MS[t], O[t], M[t] / 1024,
          ratio(t, "direct"), ratio(t, "nginx"), ratio(t, "varnish") >> md }
    }' OUT="$OUT" "$dir/misses.tsv"
  echo "N=$n distinct 4 KiB objects (K=N), bench/warm -c $c, every target started fresh each round; source: ${dir#"$ROOT"/}" >> "$OUT/m-misses.md"
  cat "$OUT/m-misses.md"
}
scen_go() {
  {
    echo "# go test -bench, $(date -u '+%Y-%m-%d %H:%M UTC')"
    "$GO" test -run '^$' -bench 'BenchmarkHit$|BenchmarkStaticHandler$' -benchmem -count 5 ./proxy | grep -E '^Benchmark'
    "$GO" test -run '^$' -bench 'BenchmarkGetHit|BenchmarkGetLatency|BenchmarkGetLatencyKeys' -benchmem -count 3 ./cachestore | grep -E '^Benchmark'
    "$GO" test -run '^$' -bench 'Lookup' -benchmem -count 3 ./dedupbody | grep -E '^Benchmark'
    DEDUP_TTFB=1 "$GO" test -count 1 -run 'TestHitDoesNotAllocate|TestGetHitNoAlloc|TestTTFB|TestCoalescing' -v ./proxy ./cachestore | grep -E '^(--- |ok|FAIL)|allocs|ttfb' || true
  } | tee "$OUT/go-bench.txt"
}

# tables: rebuild the summaries of a, b, m, c and c-gogc from the latest raw runs
tables() {
  for t in a-1k b-16k; do ls -d "$RAW/$t"-2* > /dev/null 2>&1 && ratios "$t"; done
  ls -d "$RAW"/m-misses-2* > /dev/null 2>&1 && m_table
  if ls -d "$RAW"/c-mem-k100-2* > /dev/null 2>&1; then
    memhead c-mem
    for d in $(ls -d "$RAW"/c-mem-k100-2* "$RAW"/c-mem-k100000-2*); do
      (latest() { echo "$d"; }; memrows "$(basename "$d" | sed 's/-2[0-9]*T[0-9]*Z$//')" c-mem)
    done
    memmd c-mem
  fi
  if ls -d "$RAW"/c-gogc*-2* > /dev/null 2>&1; then
    memhead c-gogc
    for g in 100 50 25 10; do for k in 100 100000; do
      ls -d "$RAW/c-gogc$g-k$k"-2* > /dev/null 2>&1 && memrows "c-gogc$g-k$k" c-gogc "ours GOGC=$g"
    done; done
    memmd c-gogc
  fi
}

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(a b c c-gogc e-size e-keys m go)
[ "${want[*]}" = tables ] || machine
for s in "${want[@]}"; do
  case "$s" in
    a) scen_a;; b) scen_b;; c) scen_c;; m) scen_m;; c-gogc) scen_c_gogc;; e-keys) scen_e_keys;; e-size) scen_e_size;; go) scen_go;; tables) tables;;
    *) echo "unknown scenario $s (a b c c-gogc e-keys e-size m go)" >&2; exit 2;;
  esac
done
