// kernels/mla_cache.cu — writes of the MLA latent cache, one token per slot (kernels/ops.h,
// kernels/ref/mla_cache.c). A negative slot skips its row (padding).
//
// bf16 rows: the 576 values copied as 72 16-byte chunks, one warp per row.
// FP8 rows (656 B, FlashMLA's layout): one warp per row; lane l owns c_kv values [16l, 16l+16),
// so the 8 lanes of a 128-block reduce its amax with three shuffles; each lane writes its 16
// e4m3 bytes as one 16-byte store, the block's first lane its fp32 scale, and lanes 0..7 copy
// the 64 bf16 of k_pe (128 B). The quantisation is the reference's bit for bit: amax of the
// bf16 values, scale = max(amax, 1e-4) / 448 (ue8m0: rounded up to a power of two), e4m3 of
// x / scale with IEEE division, round to nearest even, saturating.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <stdint.h>

#include "cuda_ops.h"

namespace {

// 8 rows (warps) per 256-thread block; a row is 1152 B (bf16) or 656 B (FP8), so a block moves
// ~5-9 KB: small and numerous blocks, which is what a decode batch of a few rows needs too.
constexpr int CACHE_ROWS_PER_BLOCK = 8;
constexpr int BF16_ROW_CHUNKS = DSA_MLA_DIM * 2 / 16; // 72 chunks of 16 B
constexpr int FP8_SCALE_OFF = DSA_KV_LORA;            // 512
constexpr int FP8_PE_OFF = DSA_KV_LORA + 4 * (DSA_KV_LORA / 128); // 528
static_assert(FP8_PE_OFF + 2 * DSA_ROPE_DIM == DSA_MLA_FP8_TOKEN_BYTES, "FP8 MLA row layout");
static_assert(DSA_KV_LORA == 32 * 16, "one warp covers c_kv with 16 values per lane");

__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

#include "fp8_device.cuh"

__device__ __forceinline__ uint32_t e4m3x4(const float *v, float scale)
{
    return e4m3(__fdiv_rn(v[0], scale)) | (e4m3(__fdiv_rn(v[1], scale)) << 8) | (e4m3(__fdiv_rn(v[2], scale)) << 16) |
           (e4m3(__fdiv_rn(v[3], scale)) << 24);
}

template <bool VEC>
__global__ void __launch_bounds__(32 * CACHE_ROWS_PER_BLOCK)
cache_write_bf16(const uint16_t *__restrict__ kv, int ldkv, int n, const int64_t *__restrict__ slot,
                 uint16_t *__restrict__ cache)
{
    const int r = blockIdx.x * CACHE_ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (r >= n) return;
    const int64_t s = slot[r];
    if (s < 0) return;
    const uint16_t *src = kv + (size_t)r * ldkv;
    uint16_t *dst = cache + (size_t)s * DSA_MLA_DIM;
    if (VEC) {
        for (int i = lane; i < BF16_ROW_CHUNKS; i += 32)
            reinterpret_cast<uint4 *>(dst)[i] = __ldg(reinterpret_cast<const uint4 *>(src) + i);
    } else {
        for (int i = lane; i < DSA_MLA_DIM; i += 32) dst[i] = src[i];
    }
}

template <bool VEC>
__global__ void __launch_bounds__(32 * CACHE_ROWS_PER_BLOCK)
cache_write_fp8(const uint16_t *__restrict__ kv, int ldkv, int n, const int64_t *__restrict__ slot,
                uint8_t *__restrict__ cache, int ue8m0)
{
    const int r = blockIdx.x * CACHE_ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (r >= n) return;
    const int64_t s = slot[r];
    if (s < 0) return; // the whole warp leaves: the shuffles below are warp-uniform
    const uint16_t *src = kv + (size_t)r * ldkv;
    uint8_t *dst = cache + (size_t)s * DSA_MLA_FP8_TOKEN_BYTES;

    float v[16];
    if (VEC) {
        const uint4 a = __ldg(reinterpret_cast<const uint4 *>(src) + 2 * lane);
        const uint4 b = __ldg(reinterpret_cast<const uint4 *>(src) + 2 * lane + 1);
        const uint32_t w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
        for (int j = 0; j < 8; j++) v[2 * j] = bf16_lo(w[j]), v[2 * j + 1] = bf16_hi(w[j]);
    } else {
#pragma unroll
        for (int j = 0; j < 16; j++) v[j] = __uint_as_float((uint32_t)src[16 * lane + j] << 16);
    }
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < 16; j++) amax = fmaxf(amax, fabsf(v[j]));
    // The 8 lanes of one 128-value block are lanes 8b .. 8b+7: xor 4, 2, 1 stays inside them.
#pragma unroll
    for (int o = 4; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float scale = fp8_scale(amax, ue8m0);
    const uint4 q = make_uint4(e4m3x4(v, scale), e4m3x4(v + 4, scale), e4m3x4(v + 8, scale), e4m3x4(v + 12, scale));
    if (VEC) {
        reinterpret_cast<uint4 *>(dst)[lane] = q;
    } else {
        const uint32_t qw[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int j = 0; j < 16; j++) dst[16 * lane + j] = (uint8_t)(qw[j / 4] >> (8 * (j % 4)));
    }
    if ((lane & 7) == 0) {
        const uint32_t sb = __float_as_uint(scale);
        uint8_t *sp = dst + FP8_SCALE_OFF + 4 * (lane / 8);
        sp[0] = (uint8_t)sb, sp[1] = (uint8_t)(sb >> 8), sp[2] = (uint8_t)(sb >> 16), sp[3] = (uint8_t)(sb >> 24);
    }
    // k_pe: 64 bf16 = 128 B, 16 B per lane for lanes 0..7.
    if (lane < 8) {
        if (VEC) {
            reinterpret_cast<uint4 *>(dst + FP8_PE_OFF)[lane] = __ldg(reinterpret_cast<const uint4 *>(src + DSA_KV_LORA) + lane);
        } else {
            for (int j = 0; j < 8; j++) {
                const uint16_t h = src[DSA_KV_LORA + 8 * lane + j];
                dst[FP8_PE_OFF + 16 * lane + 2 * j] = (uint8_t)h;
                dst[FP8_PE_OFF + 16 * lane + 2 * j + 1] = (uint8_t)(h >> 8);
            }
        }
    }
}

int check_args(dsa_cuda_ctx *c, const char *op, const bf16_t *kv, int ldkv, int n, const int64_t *slot,
               const void *cache)
{
    if (n < 0) return dsa_cuda_fail(c, "%s: n = %d is negative", op, n);
    if (ldkv < DSA_MLA_DIM) return dsa_cuda_fail(c, "%s: ldkv = %d < %d", op, ldkv, DSA_MLA_DIM);
    if (n > 0 && (!kv || !slot || !cache)) return dsa_cuda_fail(c, "%s: kv, slot or cache is NULL", op);
    return DSA_OK;
}

} // namespace

extern "C" int dsa_cuda_mla_cache_write_bf16(void *ctx, const bf16_t *kv, int ldkv, int n, const int64_t *slot,
                                             bf16_t *cache)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    int rc = check_args(c, "mla_cache_write_bf16", kv, ldkv, n, slot, cache);
    if (rc || n == 0) return rc;
    const int blocks = (n + CACHE_ROWS_PER_BLOCK - 1) / CACHE_ROWS_PER_BLOCK;
    const bool vec = ldkv % 8 == 0 && ((uintptr_t)kv | (uintptr_t)cache) % 16 == 0;
    if (vec)
        cache_write_bf16<true><<<blocks, 32 * CACHE_ROWS_PER_BLOCK, 0, c->stream>>>(kv, ldkv, n, slot, cache);
    else
        cache_write_bf16<false><<<blocks, 32 * CACHE_ROWS_PER_BLOCK, 0, c->stream>>>(kv, ldkv, n, slot, cache);
    return dsa_cuda_check(c, "mla_cache_write_bf16");
}

extern "C" int dsa_cuda_mla_cache_write_fp8(void *ctx, const bf16_t *kv, int ldkv, int n, const int64_t *slot,
                                            uint8_t *cache, int scale_mode)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    int rc = check_args(c, "mla_cache_write_fp8", kv, ldkv, n, slot, cache);
    if (rc) return rc;
    if (scale_mode != DSA_SCALE_FP32 && scale_mode != DSA_SCALE_UE8M0)
        return dsa_cuda_fail(c, "mla_cache_write_fp8: scale_mode %d is neither fp32 nor ue8m0", scale_mode);
    if (n == 0) return DSA_OK;
    const int blocks = (n + CACHE_ROWS_PER_BLOCK - 1) / CACHE_ROWS_PER_BLOCK;
    const int ue8m0 = scale_mode == DSA_SCALE_UE8M0;
    const bool vec = ldkv % 8 == 0 && ((uintptr_t)kv | (uintptr_t)cache) % 16 == 0;
    if (vec)
        cache_write_fp8<true><<<blocks, 32 * CACHE_ROWS_PER_BLOCK, 0, c->stream>>>(kv, ldkv, n, slot, cache, ue8m0);
    else
        cache_write_fp8<false><<<blocks, 32 * CACHE_ROWS_PER_BLOCK, 0, c->stream>>>(kv, ldkv, n, slot, cache, ue8m0);
    return dsa_cuda_check(c, "mla_cache_write_fp8");
}
