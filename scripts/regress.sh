#!/usr/bin/env bash
# Kernel regression check on the GPU: runs `dsa-bench kernels`, writes results/regress-<UTC>.h5,
# and compares it with results/baseline-h200.h5. Exit status is compare's: 0 no kernel slower
# beyond max(threshold, noise), 1 a regression, 2/3 bad input or a failed run; 3 without a GPU.
#   scripts/regress.sh [--threshold PCT] [dsa-bench kernels args...]
# Environment: DSA_BENCH (the binary; default: build with scripts/build.sh and use
# $BUILD_DIR/dsa-bench), BASELINE (default results/baseline-h200.h5).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
threshold=()
if [ "${1:-}" = "--threshold" ]; then
  [ $# -ge 2 ] || { echo "regress.sh: --threshold needs a value (percent)" >&2; exit 2; }
  threshold=(--threshold "$2")
  shift 2
fi
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "regress.sh: no NVIDIA GPU here (nvidia-smi -L failed); dsa-bench kernels needs one" >&2
  exit 3
fi
baseline=${BASELINE:-$root/results/baseline-h200.h5}
if [ ! -f "$baseline" ]; then
  echo "regress.sh: no baseline $baseline (make one: dsa-bench kernels -o $baseline)" >&2
  exit 3
fi
if [ -n "${DSA_BENCH:-}" ]; then
  bin=$DSA_BENCH
else
  "$root/scripts/build.sh" || exit 3
  bin=${BUILD_DIR:-$root/build}/dsa-bench
fi
out="$root/results/regress-$(date -u +%Y%m%dT%H%M%SZ).h5"
"$bin" kernels -o "$out" "$@" || exit $?
"$bin" compare ${threshold[@]+"${threshold[@]}"} "$baseline" "$out"
