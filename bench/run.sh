#!/usr/bin/env bash
# run.sh - one benchmark run: the bench origin (bench/origin) and a list of
# caching proxies in front of it, on 127.0.0.1, measured side by side.
#
#   load mode (default): start the origin and every target; warm each cache
#     (every URL once), then check a second pass is all hits (bench/warm
#     -expect HIT); then REPS rounds in which every target gets one wrk run of
#     DUR seconds, the order rotating from round to round. Per run: req/s,
#     latency percentiles, errors, requests that reached the origin.
#     Per target: RSS/PSS after warm-up and after the load.
#   mem mode: per target in turn, from an empty cache: memory, request every
#     URL once, memory again (growth per stored key), then a verify pass.
#   miss mode: REPS rounds, the order rotating; per round every target is
#     started fresh (empty cache) and gets one timed warm pass (every URL
#     once over --warm-c connections: all misses), then is stopped. Per
#     pass: seconds, req/s, errors, misses, origin requests, memory after.
#     direct is the origin itself (kept up for the whole run).
#
# Targets: direct (the origin itself, no cache), nginx (proxy_cache,
# open_file_cache off as by default), nginx-ofc (the same with
# open_file_cache), varnish (malloc storage), haproxy (its cache; load mode
# only: it maps its whole cache at start), ours (when OURS_CMD is set).
# OURS_CMD is a shell command with placeholders {port}, {upstream}
# (127.0.0.1:P) and {upstream_url} (http://127.0.0.1:P); OURS_HIT_HEADER
# names the header ours marks hits with (default X-Cache-Status, which the
# peer configs in bench/peers set); OURS_DU_PATH, if set, is a directory
# counted as ours' storage in mem mode.
#
# Servers (origin and targets) run pinned to one CPU and wrk and the warm
# tool to another (taskset), so every target gets one core. Every process
# run.sh starts is recorded by PID and stopped by that PID when it exits.
#
# Output, in OUT/TAG-<UTC stamp>/: settings.txt, run.log, runs.tsv (load),
# warm.tsv, after-load.tsv, mem.tsv (mem), summary.md, the targets' logs.
# The TSV columns are those compare.sh reads (and the shared harness writes).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
BIN=${BENCH_BIN:-$HERE/bin}

usage() {
  cat << EOF
usage: $0 [options]
  --mode load|mem|miss load (default), mem or miss
  -n N                 URLs /obj/0 .. /obj/N-1 (default 1000)
  -k K                 distinct bodies, object i gets body i mod K (default N)
  --size S             body size: bytes or k/m suffix (default 1k)
  --delay D            origin latency per request, e.g. 5ms (default 0)
  -d SECONDS           wrk duration of one run, 1..300 (default 10)
  -c CONNS             wrk connections (default 50)
  --threads T          wrk threads (default 1)
  -r REPS              rounds (default 3)
  --targets "LIST"     of: direct nginx nginx-ofc varnish haproxy ours (default all)
  --base-port P        origin/direct=P nginx=P+1 nginx-ofc=P+2 varnish=P+3
                       haproxy=P+4 ours=P+5 (default 28080)
  --warm-c C           warm tool connections (default 8)
  --pin 0|1            pin servers and clients to separate CPUs (default 1)
  --server-cpu LIST    taskset CPU list for the servers (default 0)
  --client-cpu LIST    taskset CPU list for wrk and warm (default 1)
  --varnish-mem SIZE   varnish malloc size (default 4G)
  --haproxy-mb MB      haproxy cache size, at most 4095 (default 1024)
  --nginx-max-size S   nginx proxy_cache_path max_size (default 8g)
  --nginx-ofc-max M    open_file_cache max for nginx-ofc (default 10000)
  --tag NAME           result directory prefix (default from mode, n, k, size)
  --out DIR            results root (default bench/results/raw)
EOF
}

MODE=load N=1000 K= SIZE=1k DELAY=0 DUR=10 CONNS=50 THREADS=1 REPS=3
TARGETS="direct nginx nginx-ofc varnish haproxy ours" BASE_PORT=28080 WARM_C=8
PIN=1 SERVER_CPU=0 CLIENT_CPU=1 VARNISH_MEM=4G HAPROXY_MB=1024 NGINX_MAX=8g NGINX_OFC=10000
TAG= OUT=$HERE/results/raw
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) MODE=$2;; -n) N=$2;; -k) K=$2;; --size) SIZE=$2;; --delay) DELAY=$2;;
    -d) DUR=$2;; -c) CONNS=$2;; --threads) THREADS=$2;; -r) REPS=$2;; --targets) TARGETS=$2;;
    --base-port) BASE_PORT=$2;; --warm-c) WARM_C=$2;; --pin) PIN=$2;;
    --server-cpu|--server-cpus) SERVER_CPU=$2;; --client-cpu|--client-cpus) CLIENT_CPU=$2;;
    --varnish-mem) VARNISH_MEM=$2;; --haproxy-mb) HAPROXY_MB=$2;; --nginx-max-size) NGINX_MAX=$2;;
    --nginx-ofc-max) NGINX_OFC=$2;; --tag) TAG=$2;; --out) OUT=$2;;
    -h|--help) usage; exit 0;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2;;
  esac
  [ $# -ge 2 ] || { echo "run.sh: $1 needs a value" >&2; exit 2; }
  shift 2
done
K=${K:-$N}
case "$MODE" in load|mem|miss) ;; *) echo "run.sh: --mode is load, mem or miss" >&2; exit 2;; esac
[ "$DUR" -ge 1 ] && [ "$DUR" -le 300 ] || { echo "run.sh: -d is 1..300 seconds" >&2; exit 2; }
for tool in wrk curl taskset; do
  command -v "$tool" > /dev/null || { echo "run.sh: $tool missing; run bench/setup.sh" >&2; exit 1; }
done
[ -x "$BIN/origin" ] && [ -x "$BIN/warm" ] || { echo "run.sh: $BIN/origin or warm missing; run bench/setup.sh" >&2; exit 1; }

declare -A PORT=([direct]=$BASE_PORT [nginx]=$((BASE_PORT + 1)) [nginx-ofc]=$((BASE_PORT + 2))
  [varnish]=$((BASE_PORT + 3)) [haproxy]=$((BASE_PORT + 4)) [ours]=$((BASE_PORT + 5)))
ORIGIN=127.0.0.1:$BASE_PORT
LIST=()
for t in $TARGETS; do
  case "$t" in
    direct) LIST+=(direct);;
    nginx|nginx-ofc) command -v nginx > /dev/null || { echo "run.sh: nginx missing; run bench/setup.sh" >&2; exit 1; }; LIST+=("$t");;
    varnish) command -v varnishd > /dev/null || { echo "run.sh: varnishd missing; run bench/setup.sh" >&2; exit 1; }; LIST+=(varnish);;
    haproxy)
      command -v haproxy > /dev/null || { echo "run.sh: haproxy missing; run bench/setup.sh" >&2; exit 1; }
      if [ "$MODE" = mem ]; then echo "run.sh: haproxy maps its whole cache at start; not measured in mem mode" >&2; else LIST+=(haproxy); fi;;
    ours) if [ -n "${OURS_CMD:-}" ]; then LIST+=(ours); else echo "run.sh: OURS_CMD unset, target ours skipped" >&2; fi;;
    *) echo "run.sh: unknown target $t" >&2; exit 2;;
  esac
done
[ ${#LIST[@]} -gt 0 ] || { echo "run.sh: no targets" >&2; exit 2; }

TAG=${TAG:-$MODE-n$N-k$K-$SIZE}
RES=$OUT/$TAG-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RES"
WORK=$(mktemp -d /tmp/dedupcache-bench.XXXXXX)
SHM=$(mktemp -d /dev/shm/dedupcache-bench.XXXXXX)   # nginx cache files (tmpfs)
exec > >(tee -a "$RES/run.log") 2>&1

SERVER=() CLIENT=()
# taskset execs its command, so "${SERVER[@]}" cmd & leaves $! = the server's PID
if [ "$PIN" = 1 ]; then SERVER=(taskset -c "$SERVER_CPU"); CLIENT=(taskset -c "$CLIENT_CPU"); fi

declare -A PID=()
STARTED=()   # every PID started here, in start order
finish() {
  local i
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop "${STARTED[i]}"; done
  cp -f "$WORK"/*.log "$RES"/ 2> /dev/null || true
  for i in nginx nginx-ofc; do cp -f "$WORK/$i/error.log" "$RES/$i-error.log" 2> /dev/null || true; done
  rm -rf "$WORK" "$SHM"
}
trap finish EXIT
trap 'exit 130' INT TERM


fill() { # fill TEMPLATE OUTFILE NAME=VALUE...: replace {{NAME}} with VALUE
  local tmpl=$1 dst=$2 kv script=()
  shift 2
  for kv in "$@"; do script+=(-e "s#{{${kv%%=*}}}#${kv#*=}#g"); done
  sed "${script[@]}" "$tmpl" > "$dst"
}

start() { # start TARGET: launch it in the background and wait for its port
  local t=$1 port=${PORT[$1]} d=$WORK/$1
  mkdir -p "$d"
  case "$t" in
    direct)
      "${SERVER[@]}" "$BIN/origin" -listen "$ORIGIN" -n "$N" -k "$K" -size "$SIZE" -delay "$DELAY" > "$WORK/origin.log" 2>&1 &
      ;;
    nginx|nginx-ofc)
      local ofc="open_file_cache off;" user=
      [ "$t" = nginx-ofc ] && ofc="open_file_cache max=$NGINX_OFC inactive=60s; open_file_cache_valid 60s;"
      [ "$(id -u)" = 0 ] && user="user root;"
      rm -rf "${SHM:?}/$t"; mkdir -p "$SHM/$t/tmp" "$SHM/$t/data" "$d/body"
      fill "$HERE/peers/nginx.conf.tmpl" "$d/nginx.conf" "PORT=$port" "ORIGIN=$ORIGIN" "DIR=$d" \
        "CACHE=$SHM/$t" "MAX_SIZE=$NGINX_MAX" "OFC=$ofc" "USER=$user"
      "${SERVER[@]}" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" > "$WORK/$t.log" 2>&1 &
      ;;
    varnish)
      fill "$HERE/peers/varnish.vcl.tmpl" "$d/bench.vcl" "ORIGIN_HOST=127.0.0.1" "ORIGIN_PORT=$BASE_PORT"
      # -F: the manager stays in the foreground (its PID is the one kept);
      # -j none: no jail (no privilege separation); -T none: no admin port
      "${SERVER[@]}" varnishd -F -j none -T none -n "$d/state" -a "127.0.0.1:$port" \
        -f "$d/bench.vcl" -s "malloc,$VARNISH_MEM" > "$WORK/varnish.log" 2>&1 &
      ;;
    haproxy)
      fill "$HERE/peers/haproxy.cfg.tmpl" "$d/haproxy.cfg" "PORT=$port" "ORIGIN=$ORIGIN" "CACHE_MB=$HAPROXY_MB" "DIR=$d"
      "${SERVER[@]}" haproxy -db -f "$d/haproxy.cfg" > "$WORK/haproxy.log" 2>&1 &   # -db: foreground
      ;;
    ours)
      local cmd=${OURS_CMD//\{port\}/$port}
      cmd=${cmd//\{upstream_url\}/http://$ORIGIN}
      cmd=${cmd//\{upstream\}/$ORIGIN}
      echo "ours: $cmd"
      "${SERVER[@]}" bash -c "exec $cmd" > "$WORK/ours.log" 2>&1 &
      ;;
  esac
  PID[$t]=$!
  STARTED+=($!)
  await_port "$port"
  echo "started $t on 127.0.0.1:$port, PID ${PID[$t]} ($(ps -o comm= -p "${PID[$t]}"))"
  [ "$t" = direct ] || sleep 1   # worker processes and threads settle
}

tree() { # PID and its descendants, one a line
  ps -e -o pid=,ppid= | awk -v top="$1" '{ kids[$2] = kids[$2] " " $1 }
    END { todo[1] = top; n = 1; for (i = 1; i <= n; i++) { p = todo[i]; print p
          m = split(kids[p], c, " "); for (j = 1; j <= m; j++) todo[++n] = c[j] } }'
}

memory() { # memory PID -> "vmrss_kb pss_kb anon_kb nprocs" over its process tree
  # (nginx's cache loader, which exits on its own a minute after start, is left out)
  local p rss=0 pss=0 anon=0 np=0 v a q
  for p in $(tree "$1"); do
    [ -r "/proc/$p/status" ] || continue
    grep -qa 'cache loader' "/proc/$p/cmdline" 2> /dev/null && continue
    read -r v a < <(awk '$1 == "VmRSS:" { v = $2 } $1 == "RssAnon:" { a = $2 } END { print v + 0, a + 0 }' "/proc/$p/status" 2> /dev/null || echo "0 0")
    q=$(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2> /dev/null || true)
    rss=$((rss + v)) pss=$((pss + ${q:-0})) anon=$((anon + a)) np=$((np + 1))
  done
  echo "$rss $pss $anon $np"
}

storage() { # bytes a target keeps outside its memory (nginx's cache files on tmpfs)
  case "$1" in
    nginx|nginx-ofc) du -s -B1 "$SHM/$1" | cut -f1;;
    ours) if [ -n "${OURS_DU_PATH:-}" ]; then du -s -B1 "$OURS_DU_PATH" | cut -f1; else echo 0; fi;;
    *) echo 0;;
  esac
}

origin_reqs() { curl -sf --max-time 5 "http://$ORIGIN/stats" | sed -n 's/.*"obj_requests":\([0-9]*\).*/\1/p'; }

hit_header() { if [ "$1" = ours ]; then echo "${OURS_HIT_HEADER:-X-Cache-Status}"; else echo X-Cache-Status; fi; }

BAD=0   # failed warm/verify passes and wrk runs
warm() { # warm TARGET [HIT]: one pass over every URL; with HIT, every answer must be a hit
  "${CLIENT[@]}" "$BIN/warm" -url "http://127.0.0.1:${PORT[$1]}" -n "$N" -c "$WARM_C" \
    -header "$(hit_header "$1")" ${2:+-expect "$2"} 2> "$WORK/warm-err.txt" || echo "FAILED: $(tr '\n' ' ' < "$WORK/warm-err.txt")"
}
hits_of() { grep -o ' HIT:[0-9]*' <<< "$1" | cut -d: -f2 || true; }
check() { case "$2" in *FAILED*) BAD=$((BAD + 1)); echo "run.sh: $1 failed its warm or verify pass" >&2;; esac; }

{
  echo "== bench/run.sh --mode $MODE, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "targets: ${LIST[*]}"
  echo "origin: n=$N k=$K size=$SIZE delay=$DELAY"
  echo "wrk: -t$THREADS -c$CONNS -d${DUR}s, $REPS rounds; warm: $WARM_C connections"
  echo "pin: $PIN (servers on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU); varnish malloc,$VARNISH_MEM; haproxy ${HAPROXY_MB} MB; nginx max_size=$NGINX_MAX ofc max=$NGINX_OFC"
  echo "versions: $(nginx -v 2>&1 | sed 's/.*: //'), $(varnishd -V 2>&1 | awk 'NR==1{print $2}' | tr -d '('), haproxy $(haproxy -v 2> /dev/null | awk 'NR==1{print $3}'), $(wrk -v 2>&1 | awk 'NR==1{print $1, $2}')"
  echo "host: $(nproc) CPUs, $(awk '/MemTotal/{printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "results: $RES"
} | tee "$RES/settings.txt"

start direct

if [ "$MODE" = mem ]; then
  printf 'target\tn\tk\tsize\tvmrss_before_kb\tvmrss_after_kb\tpss_before_kb\tpss_after_kb\tanon_before_kb\tanon_after_kb\tdu_before_b\tdu_after_b\twarm_origin\tverify_origin\tverify_hits\n' > "$RES/mem.tsv"
  for t in "${LIST[@]}"; do
    [ "$t" = direct ] && continue
    start "$t"
    read -r r0 p0 a0 _ < <(memory "${PID[$t]}"); s0=$(storage "$t"); o0=$(origin_reqs)
    w1=$(warm "$t"); o1=$(origin_reqs)
    sleep 2   # let background work (nginx's cache manager, GC) settle
    read -r r1 p1 a1 np < <(memory "${PID[$t]}"); s1=$(storage "$t")
    w2=$(warm "$t" HIT); o2=$(origin_reqs)
    echo "$t warm:   $w1"; check "$t" "$w1"
    echo "$t verify: $w2"; check "$t" "$w2"
    echo "$t: $np processes, VmRSS $r0 -> $r1 kB, PSS $p0 -> $p1 kB, RssAnon $a0 -> $a1 kB, storage $s0 -> $s1 B, origin requests $((o1 - o0)) warm / $((o2 - o1)) verify"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$N" "$K" "$SIZE" \
      "$r0" "$r1" "$p0" "$p1" "$a0" "$a1" "$s0" "$s1" "$((o1 - o0))" "$((o2 - o1))" "$(hits_of "$w2")" >> "$RES/mem.tsv"
    stop "${PID[$t]}"
    rm -rf "${SHM:?}/$t"
  done
  {
    echo
    echo "### memory per stored key: N=$N K=$K size=$SIZE ($(date -u +%F))"
    echo
    echo "| target | VmRSS before -> after (MiB) | VmRSS/key (B) | PSS/key (B) | RssAnon/key (B) | tmpfs/key (B) | PSS+tmpfs/key (B) | origin requests warm / verify | verify hits |"
    echo "|---|---|---|---|---|---|---|---|---|"
    awk -F'\t' 'NR > 1 { n = $2
      printf "| %s | %.1f -> %.1f | %.0f | %.0f | %.0f | %.0f | %.0f | %d / %d | %s |\n", $1, $5 / 1024, $6 / 1024,
        ($6 - $5) * 1024 / n, ($8 - $7) * 1024 / n, ($10 - $9) * 1024 / n, ($12 - $11) / n, (($8 - $7) * 1024 + $12 - $11) / n, $13, $14, $15 }' "$RES/mem.tsv"
  } | tee "$RES/summary.md"
  [ "$BAD" = 0 ] || { echo "run.sh: $BAD failures, see above" >&2; exit 3; }
  exit 0
fi

if [ "$MODE" = miss ]; then
  printf 'rep\ttarget\tseconds\trps\tok\terrors\tmisses\torigin_reqs\tvmrss_after_kb\tpss_after_kb\twarm\n' > "$RES/misses.tsv"
  nt=${#LIST[@]}
  for rep in $(seq "$REPS"); do
    for ((j = 0; j < nt; j++)); do
      t=${LIST[$(((j + rep - 1) % nt))]}   # each round starts one target further
      [ "$t" = direct ] || start "$t"
      o0=$(origin_reqs); t0=$EPOCHREALTIME; w=$(warm "$t"); t1=$EPOCHREALTIME; o1=$(origin_reqs)
      p=${PID[$t]}
      read -r r ps _ np < <(memory "$p")
      echo "round $rep $t: $w; origin requests $((o1 - o0)); $np processes, VmRSS $r kB, PSS $ps kB"
      check "$t" "$w"
      f() { grep -o " $1=[0-9.]*" <<< "$w" | cut -d= -f2 || true; }
      # seconds: wall time of the warm process (the tool's own figure has 2 decimals)
      sec=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') ok=$(f ok) er=$(f errors) nn=$(f non200)
      e=$((${er:-0} + ${nn:-0}))
      miss=$(grep -o ' MISS:[0-9]*' <<< "$w" | cut -d: -f2 || true)
      rps=$(awk -v n="$N" -v s="${sec:-0}" 'BEGIN { printf "%.0f", (s > 0) ? n / s : 0 }')
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$t" "${sec:-0}" "$rps" "${ok:-0}" "$e" "${miss:--}" \
        "$((o1 - o0))" "$r" "$ps" "$w" >> "$RES/misses.tsv"
      if [ "$t" != direct ]; then stop "$p"; rm -rf "${SHM:?}/$t"; fi
    done
  done
  {
    echo
    echo "### misses: N=$N K=$K size=$SIZE delay=$DELAY, warm -c $WARM_C, $REPS rounds ($(date -u +%F))"
    echo
    echo "| round | target | seconds | req/s | errors | misses | origin requests | VmRSS after (MiB) |"
    echo "|---|---|---|---|---|---|---|---|"
    awk -F'\t' 'NR > 1 { printf "| %s | %s | %s | %s | %s | %s | %s | %.1f |\n", $1, $2, $3, $4, $6, $7, $8, $9 / 1024 }' "$RES/misses.tsv"
  } | tee "$RES/summary.md"
  [ "$BAD" = 0 ] || { echo "run.sh: $BAD failures, see above" >&2; exit 3; }
  exit 0
fi

# load mode: warm and verify every cache
printf 'target\tvmrss_warm_kb\tpss_warm_kb\tdu_warm_b\twarm_origin\tverify_origin\tverify_hits\twarm\n' > "$RES/warm.tsv"
for t in "${LIST[@]}"; do
  [ "$t" = direct ] && continue
  start "$t"
  o0=$(origin_reqs); w1=$(warm "$t"); o1=$(origin_reqs); w2=$(warm "$t" HIT); o2=$(origin_reqs)
  read -r r p _ np < <(memory "${PID[$t]}")
  echo "$t warm:   $w1"; check "$t" "$w1"
  echo "$t verify: $w2"; check "$t" "$w2"
  echo "$t: $np processes, VmRSS $r kB, PSS $p kB, origin requests $((o1 - o0)) warm / $((o2 - o1)) verify"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" "$p" "$(storage "$t")" "$((o1 - o0))" "$((o2 - o1))" "$(hits_of "$w2")" "$w1" >> "$RES/warm.tsv"
done

printf 'rep\ttarget\trps\tp50_us\tp90_us\tp99_us\tp999_us\tmax_us\tmean_us\trequests\terrors\torigin_reqs\tbytes\n' > "$RES/runs.tsv"
nt=${#LIST[@]}
for rep in $(seq "$REPS"); do
  for ((j = 0; j < nt; j++)); do
    t=${LIST[$(((j + rep - 1) % nt))]}   # each round starts one target further
    o0=$(origin_reqs)
    out=$("${CLIENT[@]}" timeout $((DUR + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --timeout 5s \
      -s "$HERE/wrk/urls.lua" "http://127.0.0.1:${PORT[$t]}" -- "$N" "$rep" 2>&1) || true
    o1=$(origin_reqs)
    echo "$out" > "$RES/wrk-$t-$rep.txt"
    line=$(grep '^RESULT' <<< "$out" || true)
    if [ -z "$line" ]; then echo "round $rep $t: wrk gave no result:"; echo "$out"; BAD=$((BAD + 1)); continue; fi
    v() { grep -o " $1=[0-9.]*" <<< "$line" | cut -d= -f2; }
    rps=$(awk -v r="$(v requests)" -v us="$(v duration_us)" 'BEGIN { printf "%.0f", r / (us / 1e6) }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$t" "$rps" "$(v p50_us)" "$(v p90_us)" "$(v p99_us)" \
      "$(v p999_us)" "$(v max_us)" "$(v mean_us)" "$(v requests)" "$(v errors)" "$((o1 - o0))" "$(v bytes)" >> "$RES/runs.tsv"
    echo "round $rep $t: $rps req/s, p50 $(v p50_us) us, p99 $(v p99_us) us, errors $(v errors), origin requests $((o1 - o0))"
  done
done

printf 'target\tvmrss_load_kb\tpss_load_kb\tdu_load_b\n' > "$RES/after-load.tsv"
for t in "${LIST[@]}"; do
  [ "$t" = direct ] && continue
  read -r r p _ _ < <(memory "${PID[$t]}")
  printf '%s\t%s\t%s\t%s\n' "$t" "$r" "$p" "$(storage "$t")" >> "$RES/after-load.tsv"
done

{
  echo
  echo "### load: N=$N K=$K size=$SIZE delay=$DELAY, wrk -t$THREADS -c$CONNS -d${DUR}s, $REPS rounds ($(date -u +%F))"
  echo
  echo "| target | req/s median (min-max) | p50 ms | p99 ms | errors | origin requests under load | verify hits | VmRSS / PSS after warm (MiB) | after load (MiB) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  awk -F'\t' -v order="${LIST[*]}" '
    FILENAME ~ /runs.tsv$/ && FNR > 1 { k = ++n[$2]; rps[$2, k] = $3; p50[$2, k] = $4; p99[$2, k] = $6; err[$2] += $11; org[$2] += $12 }
    FILENAME ~ /warm.tsv$/ && FNR > 1 { w[$1] = sprintf("%.1f / %.1f", $2 / 1024, $3 / 1024); hits[$1] = $7 }
    FILENAME ~ /after-load.tsv$/ && FNR > 1 { l[$1] = sprintf("%.1f / %.1f", $2 / 1024, $3 / 1024) }
    function sorted(a, t, out,   i, j, x, m) { m = n[t]; for (i = 1; i <= m; i++) out[i] = a[t, i] + 0
      for (i = 2; i <= m; i++) { x = out[i]; for (j = i - 1; j >= 1 && out[j] > x; j--) out[j + 1] = out[j]; out[j + 1] = x }
      return m }
    function med(a, t,   s, m) { m = sorted(a, t, s); if (m == 0) return 0; return (m % 2) ? s[(m + 1) / 2] : (s[m / 2] + s[m / 2 + 1]) / 2 }
    END { c = split(order, ts, " ")
      for (i = 1; i <= c; i++) { t = ts[i]; delete s; m = sorted(rps, t, s)
        printf "| %s | %.0f (%.0f-%.0f) | %.2f | %.2f | %d | %d | %s | %s | %s |\n", t, med(rps, t), s[1], s[m],
          med(p50, t) / 1000, med(p99, t) / 1000, err[t], org[t], (t in hits) ? hits[t] : "-", (t in w) ? w[t] : "-", (t in l) ? l[t] : "-" } }
  ' "$RES/runs.tsv" "$RES/warm.tsv" "$RES/after-load.tsv"
} | tee "$RES/summary.md"
[ "$BAD" = 0 ] || { echo "run.sh: $BAD failures, see above" >&2; exit 3; }
