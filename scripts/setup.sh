#!/usr/bin/env bash
# Installs what dsa-bench needs on Debian/Ubuntu and is not there yet: compilers, CMake, HDF5,
# cJSON, gnuplot, valgrind. The CUDA 13 toolkit is a prerequisite (NVIDIA's packages, not
# Debian's); this script checks for it and says so when it is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libhdf5-dev hdf5-tools libcjson-dev gnuplot-nox valgrind)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [ ! -x "$nvcc" ]; then
  echo "setup: the CUDA toolkit (nvcc, CUPTI, cuBLASLt) is missing: install CUDA 13 from NVIDIA" >&2
  exit 3
fi
