// kernels/fp8_device.cuh — the FP8 rules every quantising kernel shares, in one place, so the
// indexer, the MLA cache writer and the GEMM activations cannot drift apart (the reference:
// kernels/ref/numerics.c). Device code only; included inside each file's anonymous namespace.
#pragma once

#include <cuda_fp8.h>

#include "ops.h"

// One block's scale: max(amax, 1e-4) / 448, with ue8m0 rounded up to a power of two.
__device__ __forceinline__ float fp8_scale(float amax, int ue8m0)
{
    float s = fmaxf(amax, DSA_FP8_AMAX_FLOOR) / DSA_FP8_MAX;
    if (ue8m0 && isfinite(s)) {
        const uint32_t b = __float_as_uint(s);
        if (b & 0x007fffffu) s = __uint_as_float((b & 0x7f800000u) + 0x00800000u); // next power of two up
    }
    return s;
}

// fp32 -> e4m3, round to nearest even, saturating to +-448.
__device__ __forceinline__ uint32_t e4m3(float v) { return __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3); }
