#!/usr/bin/env bash
# Builds here and packs what the GPU machine needs into .dev/ (git-ignored), for the device
# tool's `carry`: the binaries, and the shared libraries that machine lacks (cJSON; HDF5 1.10,
# CUDA 13, CUPTI and cuBLASLt are there). The GPU machine has no HDF5 headers and no network,
# so we build here (Debian 12, CUDA 13.0) and run there (Ubuntu 24.04): seen to work.
# Then, with the device tool: run `bash scripts/device_run.sh [what]` with carry [".dev"].
#
#   device_pack.sh              the working tree, into .dev/bin
#   device_pack.sh REV...       also each commit REV (a branch, a sha), built in a worktree of
#                               its own, into .dev/rev/NAME (NAME: REV with / as -), so that one
#                               device call can A/B several versions on the same machine
#                               (machines of the pool differ by ~1%); the binaries carry their
#                               own sha. Run one there with DSA_BIN=.dev/rev/NAME device_run.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh" >/dev/null
build=${BUILD_DIR:-$root/build}
rm -rf "$root/.dev"
mkdir -p "$root/.dev/bin" "$root/.dev/lib"
copy_bins() { # BUILD_DIR DEST
  cp "$1/dsa-bench" "$2/"
  cp "$1"/tests/gpu_* "$2/" 2>/dev/null || true
  strip --strip-debug "$2"/* # the carried tree is limited to 64 MiB
}
copy_bins "$build" "$root/.dev/bin"
mkdir -p "$root/.dev/obj"
cp "$build"/CMakeFiles/dsa_cuda.dir/kernels/*.cu.o "$root/.dev/obj/" 2>/dev/null || true  # for cuobjdump there
parts=(bin obj)
for rev in "$@"; do
  name=${rev//\//-}
  wt=$(mktemp -d /tmp/dsa-pack-XXXXXX)
  git -C "$root" worktree add -q --detach "$wt" "$rev"
  echo "device_pack: building $rev" >&2
  BUILD_DIR="$wt/build" "$wt/scripts/build.sh" >/dev/null
  mkdir -p "$root/.dev/rev/$name"
  copy_bins "$wt/build" "$root/.dev/rev/$name"
  git -C "$root" worktree remove --force "$wt"
  parts=(bin obj rev)
done
for lib in libcjson.so.1; do
  cp -L "$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')" "$root/.dev/lib/$lib"
done
# The binaries share most of their bytes (the kernels' fatbins): xz with a large window packs
# ~90 MB into ~2 MB (~0.5 MB more per extra revision), well under the 64 MiB the device tool
# carries; device_run.sh unpacks.
tar -C "$root/.dev" -cf - "${parts[@]}" | xz -9 -T2 > "$root/.dev/pack.tar.xz"
rm -rf "$root/.dev/bin" "$root/.dev/obj" "$root/.dev/rev"
du -sh "$root/.dev" >&2
