#!/usr/bin/env bash
# Installs what is missing, builds, and runs the test suite. GPU tests skip without a GPU.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
cd "${BUILD_DIR:-$root/build}"
if nvidia-smi -L >/dev/null 2>&1; then
  ctest --output-on-failure -j"$(nproc)"
else
  echo "test.sh: no GPU here: the GPU tests (label gpu) are left out" >&2
  ctest --output-on-failure -j"$(nproc)" -LE gpu
fi
