#!/usr/bin/env bash
# Every bad input: the documented exit code (2 usage, 3 runtime), one line on stderr that names
# the problem, no crash, no file left behind. Two of them also under valgrind.
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
data=${DSA_TEST_DATA:-$(dirname "$0")/data}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fail=0 n=0

expect() { # CODE SUBSTRING ARGS...
  local code=$1 want=$2; shift 2
  n=$((n + 1))
  "$bin" "$@" >out.txt 2>err.txt
  local rc=$? last lines
  last=$(tail -n 1 err.txt)
  lines=$(grep -cv '^\[point' err.txt) # progress lines are not part of the error
  if [ "$rc" != "$code" ] || [ "$lines" != 1 ] || [[ "$last" != *"$want"* ]]; then
    echo "FAIL: dsa-bench $*: exit $rc (want $code), stderr:" >&2
    sed 's/^/    /' err.txt >&2
    echo "    (wanted one line containing: $want)" >&2
    fail=$((fail + 1))
  fi
  local left
  left=$(ls -A | grep -v -e '^out.txt$' -e '^err.txt$' -e '^fixture' || true)
  if [ -n "$left" ]; then
    echo "FAIL: dsa-bench $*: left files behind: $left" >&2
    fail=$((fail + 1))
    rm -f $left
  fi
}

# usage errors
expect 2 "dsa-bench --help" frobnicate
expect 2 "no command given"
expect 2 "'0' is out of range" plan -c 0
expect 2 "'12x' is not a count" plan -c 12x
expect 2 "empty item" plan -c 10k,,20k
expect 2 "N = 0, must be >= 1" plan -i 1/0
expect 2 "'abc' is not an integer" plan -i freq:abc
expect 2 "'2.5' is not an integer" plan -i 1/2.5
expect 2 "has 3 characters, the model runs 47 layers" plan -i pattern:FFS
expect 2 "'X' at layer 1 (0-based) is not F or S" plan -m tiny -i pattern:FXSF
expect 2 "starts with S" plan -m tiny -i pattern:SFFF
expect 2 "expected full, 1/N" plan -i sometimes
expect 2 "not a preset and cannot open it" plan -m no-such-model
expect 2 "not a JSON object" plan -m "$data/truncated-config.json"
expect 2 "missing field 'num_hidden_layers'" plan -m "$data/llama-config.json"
expect 2 "unknown model field 'nosuch'" plan --set nosuch=1
expect 2 "'abc' is not an integer" plan --set topk=abc
expect 2 "kv_lora = 256" plan --set kv_lora=256
expect 2 "'-1' is not a positive number" plan --mem -1
expect 2 "'0' is not a positive number" plan --bw 0
expect 2 "--layers 100: the model has 47 layers" plan --layers 100
expect 2 "'sideways' is not prefill or decode" plan -p sideways
expect 2 "'0' is out of range" plan -b 0
expect 2 "unknown option '--frobnicate'" plan --frobnicate
expect 2 "needs a value" plan -c
expect 2 "unexpected argument 'extra'" plan extra
expect 2 "--weights: expected per-layer or shared" run --weights some
expect 2 "-r 2: at least 3" run --device cpu -m tiny -c 64 -r 2 -o x.h5
expect 2 "runs small shapes only" run --device cpu -m glm-4.7-flash-dsa -c 200k -o x.h5
expect 2 "unknown model field 'zzz'" models --set zzz=1
expect 2 "--format: expected text, md, csv or json" report --format xml x.h5
expect 2 "no report file given" report
expect 2 "unknown kernel 'foo'" kernels -k foo
expect 2 "option '--no-hold' takes no value" kernels --no-hold=1
expect 2 "option '--no-render' takes no value" plot --no-render=x
# runtime errors
if ! nvidia-smi -L >/dev/null 2>&1; then
  expect 3 "no CUDA GPU" run -m tiny -c 64 -o x.h5
  expect 3 "no CUDA GPU" kernels -k topk_decode
  expect 3 "no CUDA GPU" kernels --no-hold -k topk_decode
fi
expect 3 "cannot create" run --device cpu -m tiny -c 64 -p decode -r 3 --max-time 0.1 -o no/such/dir/x.h5
expect 3 "cannot open missing.h5" report missing.h5
printf 'not hdf5 at all\n' >fixture-text.h5
expect 3 "not a readable HDF5 file" report fixture-text.h5
"$bin" run --device cpu -m tiny -c 64 -i full -p decode -r 3 --max-time 0.1 -o fixture-good.h5 >/dev/null 2>&1
head -c $(($(stat -c %s fixture-good.h5) / 2)) fixture-good.h5 >fixture-half.h5
expect 3 "not a readable HDF5 file (truncated or corrupt)" report fixture-half.h5
h5copy -i fixture-good.h5 -o fixture-foreign.h5 -s /points -d /points
expect 3 "not a dsa-bench report (no 'schema' attribute)" report fixture-foreign.h5
expect 3 "not a readable HDF5 file" report fixture-good.h5 fixture-half.h5

# valgrind: no invalid access, no leak, on an error path through each layer of the tool
if command -v valgrind >/dev/null; then
  for args in "plan -m tiny -i pattern:FXSF" "report fixture-half.h5" \
              "run --device cpu -m tiny -c 64 -i full,1/2 -p decode -r 3 --max-time 0.1 -o fixture-vg.h5"; do
    n=$((n + 1))
    valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
      --suppressions="$here/valgrind.supp" \
      "$bin" $args >/dev/null 2>vg.txt
    if [ $? = 99 ]; then
      echo "FAIL: valgrind dsa-bench $args:" >&2
      cat vg.txt >&2
      fail=$((fail + 1))
    fi
    rm -f vg.txt
  done
fi
echo "cli_errors: $((n - fail)) passed, $fail failed"
[ "$fail" = 0 ]
