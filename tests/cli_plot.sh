#!/usr/bin/env bash
# dsa-bench plot: a CPU run -> figures (images, and .dat values against `report`), the GPU run
# file in results/ (its breakdowns are skipped, said so), and every bad input: one line on
# stderr, the documented exit code, nothing left behind.
set -u
bin=$1
data=${DSA_TEST_DATA:-$(cd "$(dirname "$0")" && pwd)/data}
results=$(cd "$data/../../results" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fail=0 pass=0
check() { # DESCRIPTION COMMAND...
  if eval "$2"; then pass=$((pass + 1)); else echo "FAIL: $1" >&2; fail=$((fail + 1)); fi
}
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] && [ "$(stat -c %s "$1")" -gt 5000 ]; }
is_svg() { head -c 64 "$1" | grep -qE '^(<\?xml|<svg)'; }

# fixture: the smallest CPU sweep with both phases, two batches and two configs (a few seconds)
"$bin" run --device cpu -m tiny -c 64 -i full,1/2 -p prefill,decode -b 1,2 -r 3 --max-time 0.01 -o t.h5 >/dev/null 2>run.txt
check "fixture run exits 0" "[ $? = 0 ]"

"$bin" plot t.h5 -o figs >out.txt 2>err.txt
check "plot exits 0" "[ $? = 0 ]"
for f in speedup_prefill speedup_decode indexer_share breakdown_prefill breakdown_decode; do
  check "$f: png" "is_png figs/$f.png"
  check "$f: svg" "is_svg figs/$f.svg"
  check "$f: .dat and .gp kept" "[ -s figs/$f.dat ] && [ -s figs/$f.gp ]"
  check "$f: reported made" "grep -q '^plot: made figs/$f\.' err.txt"
done
check "kernels_roofline skipped, with the reason" "grep -q '^plot: skipped kernels_roofline: no kernels file' err.txt"
check "no temporary file left" "[ -z \"\$(ls figs | grep tmp)\" ]"
check "gnuplot printed no warning" "! grep -q 'gnuplot:' err.txt"
check "nothing on stdout" "[ ! -s out.txt ]"

# speedup values: full = 100 at every context; 1/2 equals report's speedup% (same rule, same file)
"$bin" report --format csv t.h5 >r.csv
rep=$(awk -F, 'NR > 1 && $2 == "prefill" && $6 == "1/2" {printf "%.1f", $14}' r.csv)
dat=$(awk '!/^#/ && NF && $4 == "\"1/2\"" {printf "%.1f", $5}' figs/speedup_prefill.dat)
check "speedup_prefill 1/2 = report's speedup% ($dat vs $rep)" "[ -n '$rep' ] && [ '$dat' = '$rep' ]"
check "speedup_prefill full = 100" "awk '!/^#/ && NF && \$4 == \"\\\"full\\\"\" {n++; if (\$5 != 100) bad=1} END {exit !(n == 1 && !bad)}' figs/speedup_prefill.dat"
check "speedup_decode: one full and one 1/2 bar per batch (4 rows)" "[ \$(grep -cv -e '^#' -e '^\$' figs/speedup_decode.dat) = 4 ]"
check "decode panels for batch 1 and batch 2" \
  "grep -q 'batch 1 (per-request throughput)' figs/speedup_decode.gp && grep -q 'batch 2 (full throughput)' figs/speedup_decode.gp"
check "breakdown_prefill has the indexer components and idle" \
  "grep '^#.*wall_ms' figs/breakdown_prefill.dat | grep -q 'idx_logits_ms.*idx_topk_ms.*idle_ms'"
check "indexer_share: prefill and decode lines of the full config" \
  "grep -q '^# index 0: prefill, batch 1, config full' figs/indexer_share.dat && grep -q 'decode, batch 2, config full' figs/indexer_share.dat"

# a second plot into the same folder replaces the figures (the folder is an output folder)
"$bin" plot t.h5 -o figs 2>/dev/null
check "plot again into the same folder exits 0" "[ $? = 0 ] && is_png figs/speedup_prefill.png"

# the acceptance command, on the GPU run file of the repository (no components there yet)
"$bin" plot "$results/glm-4.7-flash-dsa-prefill-60k-200k-h200.h5" -o gpu >/dev/null 2>gpu.txt
check "plot of the GPU prefill file exits 0" "[ $? = 0 ]"
check "GPU file: speedup_prefill made" "is_png gpu/speedup_prefill.png"
check "GPU file: breakdown_prefill skipped with the reason" \
  "grep -q '^plot: skipped breakdown_prefill: no component times' gpu.txt"
check "GPU file: speedup_decode skipped, no decode points" "grep -q '^plot: skipped speedup_decode: no decode points' gpu.txt"
check "GPU file: speedup 1/4 at 200K = full / 1/4 wall (170.0)" \
  "awk '!/^#/ && NF && \$2 == 200000 && \$4 == \"\\\"1/4\\\"\" {printf \"%.1f\", \$5}' gpu/speedup_prefill.dat | grep -qx 170.0"
"$bin" plot "$results/kernels-h200.h5" -o kern >/dev/null 2>kern.txt
check "kernels file: kernels_roofline made" "[ $? = 0 ] && is_png kern/kernels_roofline.png && is_svg kern/kernels_roofline.svg"
n_cases=$(h5ls "$results/kernels-h200.h5/points/table" | sed -n 's/.*Dataset {\([0-9]*\).*/\1/p')
check "kernels file: one .dat row per case ($n_cases)" \
  "[ -n \"$n_cases\" ] && [ \$(grep -cv -e '^#' -e '^\$' kern/kernels_roofline.dat) = \"$n_cases\" ]"

# bad input: exit code, one line naming the problem, nothing left behind
expect() { # CODE SUBSTRING ARGS...
  local code=$1 want=$2; shift 2
  "$bin" "$@" >o.txt 2>e.txt
  local rc=$?
  if [ "$rc" = "$code" ] && [ "$(wc -l <e.txt)" = 1 ] && grep -qF -- "$want" e.txt; then pass=$((pass + 1))
  else
    echo "FAIL: dsa-bench $*: exit $rc (want $code), stderr:" >&2; sed 's/^/    /' e.txt >&2
    echo "    (wanted one line containing: $want)" >&2
    fail=$((fail + 1))
  fi
}
expect 3 "cannot open" plot missing.h5 -o bad1
check "missing file: no folder made" "[ ! -e bad1 ]"
echo "not hdf5" >junk.h5
expect 3 "junk.h5" plot junk.h5 -o bad2
check "not HDF5: no folder made" "[ ! -e bad2 ]"
expect 2 "no output folder given" plot t.h5
expect 2 "no report file given" plot -o bad3
expect 2 "unknown option" plot t.h5 -o bad4 --frobnicate
expect 2 "needs a value" plot t.h5 -o
echo keep >afile
expect 2 "exists and is not a folder" plot t.h5 -o afile
check "-o FILE: the file is untouched" "[ \"\$(cat afile)\" = keep ]"
GNUPLOT=/nonexistent/gnuplot expect 3 "/nonexistent/gnuplot" plot t.h5 -o bad5
check "no gnuplot: no folder made" "[ ! -e bad5 ]"
check "no gnuplot: --no-render still writes .dat and .gp" \
  "GNUPLOT=/nonexistent/gnuplot \"$bin\" plot t.h5 -o datonly --no-render 2>/dev/null && [ -s datonly/speedup_prefill.dat ] && [ ! -e datonly/speedup_prefill.png ]"
GNUPLOT=/bin/false expect 3 "gnuplot failed on bad6/speedup_prefill.gp" plot t.h5 -o bad6
check "failing gnuplot: no image, no temporary" "[ -z \"\$(ls bad6 | grep -e png -e svg -e tmp)\" ]"

echo "cli_plot: $pass passed, $fail failed"
[ "$fail" = 0 ]
