#!/usr/bin/env bash
# run --device cpu -> HDF5 -> report, the acceptance commands of [1/5] on the tiny model.
set -u
bin=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fail=0 pass=0
check() { # DESCRIPTION COMMAND...
  if eval "$2"; then pass=$((pass + 1)); else echo "FAIL: $1" >&2; fail=$((fail + 1)); fi
}
"$bin" run --device cpu -m tiny -c 256,512 -i full,1/2 -p prefill,decode -b 1,2 -o t.h5 >run.txt 2>progress.txt
check "run exits 0" "[ $? = 0 ]"
check "progress on stderr, point i of n with elapsed and estimate" \
  "grep -q '^\[point 12/12\] decode context 512 batch 2 config 1/2 .*elapsed .* estimate' progress.txt"
check "no temporary file left" "[ ! -e t.h5.tmp ]"
"$bin" report t.h5 >report.txt
check "report exits 0" "[ $? = 0 ]"
rows=$(grep -c '^  tiny ' report.txt)
check "one row per point (12, got $rows)" "[ $rows = 12 ]"
check "prefill 1/2 row has a speedup and an Amdahl prediction" \
  "grep -E '^  tiny +256 +1 1/2 +3/4 .* ok$' report.txt | awk '{exit !(\$9 > 0 && \$10 > 0)}'"
check "h5dump -H shows the schema's structure" "h5dump -H t.h5 | grep -q 'ATTRIBUTE \"schema\"'"
check "the schema attribute is dsa-bench/1" "h5dump -a /schema t.h5 | grep -q '\"dsa-bench/1\"'"
check "h5dump shows the points table and per-point groups" \
  "h5dump -H t.h5 | grep -q 'DATASET \"table\"' && h5dump -H t.h5 | grep -q 'GROUP \"11\"'"
"$bin" report --format csv t.h5 >r.csv
check "csv: header + 12 rows" "[ \$(wc -l <r.csv) = 13 ] && head -1 r.csv | grep -q '^model,phase,context'"
"$bin" report --format json t.h5 >r.json
check "json: 12 objects" "[ \$(grep -c '\"phase\"' r.json) = 12 ]"
"$bin" report --format md t.h5 >r.md
check "md: table rows" "[ \$(grep -c '^| tiny' r.md) = 12 ]"
"$bin" plan -m glm-4.7-flash-dsa -c 200k -i full,1/2,1/4 >plan.txt
check "plan: 47, 24, 13 F layers" \
  "[ \"\$(grep -o 'F layers [0-9]* of 47' plan.txt | sort -u | tr '\n' ' ')\" = 'F layers 13 of 47 F layers 24 of 47 F layers 47 of 47 ' ]"
"$bin" plan -m glm-5 -c 64k -i pattern:FFSFSSSFSSFFFSSSFFFSFSSSSSSFFSFFSFFSSFFFFFFSFFFFFSFFSSSSSSFSFFFSFSSSFSFFSFFSSS >plan5.txt
check "plan: GLM-5 pattern has 40 F layers" "grep -q 'F layers 40 of 78' plan5.txt"
"$bin" models >models.txt
check "models lists the four presets and the assumptions" \
  "grep -q 'glm-4.7-flash-dsa' models.txt && grep -q 'deepseek-v3.2' models.txt && grep -q 'assumed from GLM-5' models.txt"
echo "cli_pipeline: $pass passed, $fail failed"
[ "$fail" = 0 ]
