#!/usr/bin/env bash
# dsa-bench compare from the command line: exit 0 for a report against itself, 1 and the
# kernel's name for a copy with one kernel 10% slower (the acceptance flow, on the H200 report
# in results/), 2 or 3 with one line on stderr for every bad input; and
# `report --side-by-side paper` on the real runs in results/.
# The doctored copies come from test_compare's fixture maker (tests/test_compare.c), which ctest
# builds beside this script's working directory; DSA_COMPARE_HELPER overrides its path.
set -u
bin=$1
helper=${DSA_COMPARE_HELPER:-$PWD/test_compare}
data=${DSA_TEST_DATA:-$(cd "$(dirname "$0")" && pwd)/data}
results=$(cd "$data/../../results" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fail=0 n=0

failed() { echo "FAIL: $*" >&2; fail=$((fail + 1)); }

# expect CODE STDERR-SUBSTRING ARGS...: exit code, and for errors exactly one stderr line
expect() {
  local code=$1 want=$2; shift 2
  n=$((n + 1))
  "$bin" "$@" >out.txt 2>err.txt
  local rc=$?
  if [ "$rc" != "$code" ]; then
    failed "dsa-bench $*: exit $rc (want $code)"; sed 's/^/    /' err.txt >&2; return
  fi
  if [ -n "$want" ]; then
    if [ "$(wc -l <err.txt)" != 1 ] || [[ "$(cat err.txt)" != *"$want"* ]]; then
      failed "dsa-bench $*: stderr is not one line containing '$want':"; sed 's/^/    /' err.txt >&2
    fi
  elif [ -s err.txt ]; then
    failed "dsa-bench $*: unexpected stderr:"; sed 's/^/    /' err.txt >&2
  fi
}

# grep_out PATTERN: the last command's stdout has it
grep_out() { n=$((n + 1)); grep -qF -- "$1" out.txt || { failed "stdout lacks '$1':"; sed 's/^/    /' out.txt | head -20 >&2; }; }

[ -x "$helper" ] || { echo "cli_compare: fixture maker $helper not found (build test_compare)" >&2; exit 1; }
base=$results/baseline-h200.h5
[ -f "$base" ] || base=$results/kernels-h200.h5

# a report against itself: all SAME, exit 0
expect 0 "" compare "$base" "$base"
grep_out "0 FASTER, 0 SLOWER, 0 MISSING; exit 0"
npoints=$(grep -c '^   kernel ' out.txt)
[ "$npoints" -gt 10 ] || failed "expected the kernel cases of $base, got $npoints rows"

# the acceptance flow: one kernel 10% slower. The victim is the first case whose noise is
# under 4% (the row's next-to-last column), so 10% is beyond its noise.
victim=$(awk '/^   kernel / { if ($(NF-1) < 4) { print i; exit } i++ }' out.txt)
name=$("$helper" slower "$base" slow.h5 "$victim" 10) || failed "fixture maker: slower"
expect 1 "" compare "$base" slow.h5
grep_out "SLOWER: $name"
grep_out "0 FASTER, 1 SLOWER, 0 MISSING; exit 1"
n=$((n + 1))
[ "$(grep -c 'SLOWER$' out.txt)" = 1 ] || failed "expected exactly one SLOWER row"
grep -F "$name" out.txt | grep -q ' 1.100 .*SLOWER$' || failed "the row of $name does not say 1.100 ... SLOWER"
expect 1 "" compare "$base" slow.h5 --format json
grep_out '"exit": 1'
grep_out '"verdict": "SLOWER"'
expect 1 "" compare --format md "$base" slow.h5
grep_out "| kernel | $name |"
expect 0 "" compare --threshold 20 "$base" slow.h5   # 10% is within a 20% threshold
expect 0 "" compare slow.h5 "$base"                   # the other way round it is FASTER
grep_out "1 FASTER, 0 SLOWER"

# a run report (CPU, tiny): against itself, with component rows
"$bin" run --device cpu -m tiny -c 64 -i full,1/2 -p decode -r 3 --max-time 0.1 -o run.h5 >/dev/null 2>&1 ||
  failed "run --device cpu"
expect 0 "" compare run.h5 run.h5
grep_out "component rows are informational"
grep_out "2 points: 2 SAME"

# bad input: one line, the right code
expect 2 "expected two report files" compare "$base"
expect 2 "expected two report files" compare a.h5 b.h5 c.h5
expect 2 "--format: expected text, md or json" compare --format xml "$base" "$base"
expect 2 "--threshold: 'abc' is not a positive number" compare --threshold abc "$base" "$base"
expect 2 "unknown option '--frobnicate'" compare --frobnicate "$base" "$base"
expect 3 "cannot open missing.h5" compare missing.h5 "$base"
expect 3 "cannot open missing.h5" compare "$base" missing.h5
printf 'not hdf5 at all\n' >text.h5
expect 3 "not a readable HDF5 file" compare "$base" text.h5
h5copy -i run.h5 -o foreign.h5 -s /points -d /points
expect 3 "not a dsa-bench report (no 'schema' attribute)" compare run.h5 foreign.h5
"$helper" schema run.h5 schema2.h5 dsa-bench/2 || failed "fixture maker: schema"
expect 3 "schema 'dsa-bench/2' is not supported" compare run.h5 schema2.h5
"$helper" model run.h5 other.h5 other-model >/dev/null || failed "fixture maker: model"
expect 2 "other model: base is 'tiny', new is 'other-model'" compare run.h5 other.h5
expect 2 "base is a \`kernels\` report, new a \`run\` report" compare "$base" run.h5

# report --side-by-side paper on the real runs: measured next to the paper's numbers
expect 0 "" report "$results/glm-4.7-flash-dsa-prefill-60k-200k-h200.h5" \
  "$results/glm-4.7-flash-dsa-decode-200k-graph-h200.h5" --side-by-side paper
grep_out "paper: 30B DSA model (47 DSA layers), H100, SGLang"
grep_out "this run: glm-4.7-flash-dsa, 47 of 47 layers, per-layer weights; NVIDIA H200"
grep_out "per-request speedup and indexer share at batch 1, full-throughput speedup at batch 8"
grep_out "meas_60K  paper_60K  meas_200K paper_200K"
# prefill 1/4: 4.1182/3.1238 s and 22.3401/13.1388 s; decode 1/4 at 200K: B=1 126.2%, B=8 174.4%
grep_out "   prefill_speedup%       1/4         -      131.8      131.0      170.0      182.0"
grep_out "   prefill_speedup%       1/2         -          -      118.0          -      142.0"
grep_out "   decode_req_speedup%    1/4         1          -      133.0      126.2      148.0"
grep_out "   decode_full_speedup%   1/4         8          -      137.0      174.4      151.0"
grep_out "   indexer_share_prefill% full        -          -       50.0          -       81.0"
n=$((n + 1))
grep '^#  figure' out.txt | grep -q '10K\|120K' && failed "contexts absent from the files are shown"
expect 0 "" report "$results/glm-4.7-flash-dsa-prefill-60k-200k-h200.h5" --side-by-side paper --format json
grep_out '{"figure": "prefill_speedup%", "indexer": "1/4", "batch": 0, "context": "200K", "measured": 170.033, "paper": 182}'
expect 0 "" report run.h5 --side-by-side paper # tiny at 64 tokens: none of the paper's contexts
grep_out "no point at the paper's contexts"
expect 2 "--side-by-side: expected paper" report run.h5 --side-by-side nvbench

echo "cli_compare: $((n - fail)) passed, $fail failed"
[ "$fail" = 0 ]
