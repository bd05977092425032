#!/usr/bin/env bash
# The default sweep on the GPU: glm-4.7-flash-dsa, contexts 10k,60k,120k,200k, configs
# full,1/2,1/4, prefill and decode (batch 1 and 8), then the paper-style report and the plots.
# Installs what is missing, builds, runs, writes results/ and plots/.
#
# Three runs, each well inside a 10-minute window (the device machine's limit per command):
# prefill with --trace on (one traced pass: component times without doubling the ~3 minutes a
# set of 200K prefills takes; the tracing overhead, 0.5-1.9% for prefill, is measured by the
# decode run and by `run --trace both`), and decode with the default --trace both. A fourth
# run times the 200K full prefill untraced (5 repetitions, ~2 minutes): the figure to hold
# against a wall-time goal, which the traced sweep overstates by its overhead.
# Extra arguments go to every run (e.g. -r 5). DSA_TAG names the files (h200).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "bench.sh: no NVIDIA GPU here (nvidia-smi -L failed); scripts/test.sh runs the CPU tests" >&2
  exit 3
fi
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
bin=${DSA_BENCH:-${BUILD_DIR:-$root/build}/dsa-bench}
tag=${DSA_TAG:-h200}
m=glm-4.7-flash-dsa
r="$root/results/$m"
"$bin" run -m $m -c 10k,60k -i full,1/2,1/4 -p prefill -r 3 --trace on -o "$r-prefill-10k-60k-$tag.h5" "$@"
"$bin" run -m $m -c 120k,200k -i full,1/2,1/4 -p prefill -r 3 --trace on -o "$r-prefill-120k-200k-$tag.h5" "$@"
"$bin" run -m $m -c 10k,60k,120k,200k -i full,1/2,1/4 -p decode -b 1,8 -r 3 --max-time 1 -o "$r-decode-$tag.h5" "$@"
"$bin" run -m $m -c 200k -i full -p prefill -r 5 --trace off -o "$r-prefill-200k-full-$tag.h5" "$@"
files=("$r-prefill-10k-60k-$tag.h5" "$r-prefill-120k-200k-$tag.h5" "$r-decode-$tag.h5")
"$bin" report "${files[@]}" --side-by-side paper
"$bin" plot "${files[@]}" -o "$root/plots"
