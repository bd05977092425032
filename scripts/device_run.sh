#!/usr/bin/env bash
# Runs on the GPU machine from the repository root, with .dev/ carried (scripts/device_pack.sh).
#   device_run.sh tests            GPU tests (compare every kernel with the C reference)
#   device_run.sh sanitize         the GPU tests under compute-sanitizer memcheck and racecheck
#   device_run.sh kernels [ARGS]   dsa-bench kernels ARGS, report in $OUT/kernels.h5
#   device_run.sh cmd ARGS         dsa-bench ARGS
#   device_run.sh sh CMD           a shell command with .dev unpacked and the libraries on the path
# DSA_BIN=.dev/rev/NAME runs a revision packed by `device_pack.sh REV` instead of .dev/bin.
# Logs go to $OUT (the device tool brings them back).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/dsa-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$root/.dev/lib:/usr/local/cuda/lib64:/usr/local/cuda/extras/CUPTI/lib64:${LD_LIBRARY_PATH:-}"
bin="$root/${DSA_BIN:-.dev/bin}" # DSA_BIN=.dev/rev/NAME: a revision packed by device_pack.sh REV
if [ ! -d "$bin" ] && [ -f "$root/.dev/pack.tar.xz" ]; then tar -C "$root/.dev" -xJf "$root/.dev/pack.tar.xz"; fi
missing=$(ldd "$bin/dsa-bench" | grep "not found" || true)
if [ -n "$missing" ]; then
  echo "device_run: missing shared libraries:" >&2
  echo "$missing" >&2
  exit 3
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader >&2 || true
what=${1:-tests}
shift || true
case "$what" in
  tests)
    fail=0
    for t in "$bin"/gpu_*; do
      [ -x "$t" ] || continue
      name=$(basename "$t")
      if timeout "${DSA_TEST_TIMEOUT:-300}" "$t" >"$out/$name.log" 2>&1; then echo "PASS $name"; else echo "FAIL $name (exit $?)"; fail=1; tail -n 30 "$out/$name.log"; fi
    done
    exit $fail ;;
  sanitize)
    fail=0
    for t in "$bin"/gpu_*; do
      name=$(basename "$t")
      for tool in memcheck racecheck; do
        if compute-sanitizer --tool "$tool" --error-exitcode 99 "$t" >"$out/$name.$tool.log" 2>&1; then
          echo "CLEAN $tool $name"
        else
          echo "DIRTY $tool $name (exit $?)"; fail=1; grep -m 20 -E "=========|FAIL" "$out/$name.$tool.log"
        fi
      done
    done
    exit $fail ;;
  kernels)
    "$bin/dsa-bench" kernels -o "$out/kernels.h5" "$@" ;;
  cmd)
    "$bin/dsa-bench" "$@" ;;
  sh)
    PATH="$bin:$PATH" bash -c "$*" ;;
  *)
    echo "device_run: unknown action '$what'" >&2; exit 2 ;;
esac
