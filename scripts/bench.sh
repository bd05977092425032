#!/usr/bin/env bash
# The default sweep on the GPU: glm-4.7-flash-dsa, contexts 10k,60k,120k,200k, configs
# full,1/2,1/4, prefill and decode. Installs what is missing, builds, runs, writes results/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "bench.sh: no NVIDIA GPU here (nvidia-smi -L failed); scripts/test.sh runs the CPU tests" >&2
  exit 3
fi
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
build=${BUILD_DIR:-$root/build}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$root/results/glm-4.7-flash-dsa-$stamp.h5"
"$build/dsa-bench" run -m glm-4.7-flash-dsa -c 10k,60k,120k,200k -i full,1/2,1/4 -p prefill,decode -b 1,8 \
  -o "$out" "$@"
"$build/dsa-bench" report "$out"
