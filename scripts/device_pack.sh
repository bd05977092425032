#!/usr/bin/env bash
# Builds here and packs what the GPU machine needs into .dev/ (git-ignored), for the device
# tool's `carry`: the binaries, and the shared libraries that machine lacks (cJSON; HDF5 1.10,
# CUDA 13, CUPTI and cuBLASLt are there). The GPU machine has no HDF5 headers and no network,
# so we build here (Debian 12, CUDA 13.0) and run there (Ubuntu 24.04): seen to work.
# Then, with the device tool: run `bash scripts/device_run.sh [what]` with carry [".dev"].
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh" >/dev/null
build=${BUILD_DIR:-$root/build}
rm -rf "$root/.dev"
mkdir -p "$root/.dev/bin" "$root/.dev/lib"
cp "$build/dsa-bench" "$root/.dev/bin/"
cp "$build"/tests/gpu_* "$root/.dev/bin/" 2>/dev/null || true
strip --strip-debug "$root"/.dev/bin/* # the carried tree is limited to 64 MiB
mkdir -p "$root/.dev/obj"
cp "$build"/CMakeFiles/dsa_cuda.dir/kernels/*.cu.o "$root/.dev/obj/" 2>/dev/null || true  # for cuobjdump there
for lib in libcjson.so.1; do
  cp -L "$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')" "$root/.dev/lib/$lib"
done
# The binaries share most of their bytes (the kernels' fatbins): xz with a large window packs
# ~90 MB into ~2 MB, well under the 64 MiB the device tool carries; device_run.sh unpacks.
tar -C "$root/.dev" -cf - bin obj | xz -9 -T2 > "$root/.dev/pack.tar.xz"
rm -rf "$root/.dev/bin" "$root/.dev/obj"
du -sh "$root/.dev" >&2
