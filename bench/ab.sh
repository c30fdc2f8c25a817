#!/usr/bin/env bash
# ab.sh - hit throughput of two dedupcache builds, A and B, in one run:
# rounds alternate A and B (the order flips each round) with HAProxy's cache
# measured beside each, so that every figure has a same-moment reference on a
# noisy machine. Uses run.sh's load mode (servers on CPU 0, wrk on CPU 1).
#
#   bench/ab.sh OLD_BINARY NEW_BINARY            # scenario a: 1 KiB, 1000 URLs
#   SCEN=b REPS=5 bench/ab.sh OLD_BINARY NEW_BINARY   # b: 16 KiB, 10 000 URLs over 100 bodies
#
# Output: per round req/s and p99 of A, B and HAProxy, then medians and
# B/A; bench/results/ab-$SCEN.{tsv,md}.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ $# -eq 2 ] || { echo "usage: $0 A_BINARY B_BINARY" >&2; exit 2; }
A=$(realpath "$1") B=$(realpath "$2")
SCEN=${SCEN:-a}
REPS=${REPS:-3}
DUR=${DUR:-10}
case "$SCEN" in
  a) args=(-n 1000 -k 1000 --size 1k) ;;
  b) args=(-n 10000 -k 100 --size 16k) ;;
  *) echo "SCEN is a or b" >&2; exit 2 ;;
esac
cd "$ROOT"
OUT=$ROOT/bench/results
TSV=$OUT/ab-$SCEN.tsv
printf "round\tbuild\tours_rps\tours_p99_us\thaproxy_rps\thaproxy_p99_us\terrors\n" > "$TSV"
export OURS_HIT_HEADER=X-Cache
for r in $(seq "$REPS"); do
  order="A B"
  [ $((r % 2)) -eq 0 ] && order="B A"
  for which in $order; do
    bin=$A
    [ "$which" = B ] && bin=$B
    export OURS_CMD="$bin -listen 127.0.0.1:{port} -upstream {upstream_url} -admin 127.0.0.1:0 -max-memory 1GiB -log-level warn"
    log=$(mktemp)
    bench/run.sh --tag "ab-$SCEN-$which" "${args[@]}" -d "$DUR" -r 1 --targets "haproxy ours" > "$log" 2>&1 || { cat "$log" >&2; exit 1; }
    dir=$(sed -n 's/^results: //p' "$log" | tail -1)
    rm -f "$log"
    awk -F'\t' -v r="$r" -v w="$which" '
      NR > 1 { rps[$2] = $3; p99[$2] = $6; err += $11 }
      END { printf "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", r, w, rps["ours"], p99["ours"], rps["haproxy"], p99["haproxy"], err }' \
      "$dir/runs.tsv" >> "$TSV"
    tail -1 "$TSV" >&2
  done
done
awk -F'\t' -v scen="$SCEN" -v reps="$REPS" '
  NR == 1 { next }
  { rps[$2] = rps[$2] " " $3; p99[$2] = p99[$2] " " $4; h[$2] = h[$2] " " $5; hp[$2] = hp[$2] " " $6; rel[$2] = rel[$2] " " ($3 / $5); err += $7 }
  function median(s,   a, k, i, j, t) {
    k = split(s, a, " ")
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((k + 1) / 2)]
  }
  END {
    printf "| build | ours req/s (median) | rounds | ours p99 µs | HAProxy req/s beside it | HAProxy p99 µs | ours / HAProxy (median of rounds) |\n|---|---|---|---|---|---|---|\n"
    for (w = 0; w < 2; w++) {
      b = (w == 0 ? "A" : "B")
      printf "| %s | %d | %s | %d | %d | %d | %.2f |\n", b, median(rps[b]), rps[b], median(p99[b]), median(h[b]), median(hp[b]), median(rel[b])
    }
    printf "\nB / A req/s: **%.2fx**; p99 B / A: %.2fx. Scenario %s, %d rounds, errors %d.\n", median(rps["B"]) / median(rps["A"]), median(p99["B"]) / median(p99["A"]), scen, reps, err
  }' "$TSV" | tee "$OUT/ab-$SCEN.md"
echo "A: $(basename "$A"), B: $(basename "$B") (${A_NOTE:-}${B_NOTE:+; $B_NOTE})" >> "$OUT/ab-$SCEN.md"
