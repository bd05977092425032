// kernels/idx_prep.cu — the indexer's query and key preparation after their GEMMs
// (kernels/ops.h idx_prep_q / idx_prep_k, oracle kernels/ref/idx_prep.c):
//   (key: LayerNorm -> bf16 ->) RoPE on dims [0, 64) -> bf16 -> Hadamard-128 -> bf16 -> amax ->
//   e4m3 with one fp32 scale per 128-vector.
//
// Layout of the work: a half-warp (16 lanes) per 128-vector, 8 consecutive values per lane, so
// a lane loads its values with one 16-byte load. The Hadamard butterflies of strides 1, 2, 4 are
// inside a lane, strides 8..64 are xor-shuffles over lane bits 1..8 (never leaving the half);
// half-style RoPE pairs (i, i+32) are lanes l and l^4. All 32 lanes of a warp always execute the
// shuffles (a half-warp with no vector computes on zeros and stores nothing).
//
// Numerics, chosen so the outputs match the reference bit for bit in practice:
// - RoPE: angle, cos and sin in double (computed once per position into shared memory), the
//   rotation in double without FMA contraction, double -> fp32 -> bf16 as the reference rounds.
// - Hadamard in double: sums of 128 bf16 values are exact there, so the butterfly order does not
//   matter; then * 128^-0.5 in double, -> fp32 -> bf16, as the reference.
// - LayerNorm: statistics in double (exact sums), the fp32 per-element expression with _rn
//   intrinsics (no FMA), as kernels/ref/norm.c.
// - Scale: max(amax, 1e-4) / 448 in fp32 (ue8m0: rounded up to a power of two); e4m3 of
//   x / scale with IEEE division, RNE, saturating. w = wraw * heads^-0.5 * scale * 128^-0.5
//   evaluated left to right in double, rounded to fp32.
// The remaining difference is the last ulp of CUDA's double cos/sin/pow against glibc's, which
// can flip a bf16 rounding after RoPE once in a long while (then one value moves by one bf16
// step, and the scale too if it was the amax).
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <stdint.h>

#include "cuda_ops.h"

namespace {

constexpr int HALF = 16;                          // lanes per 128-vector
constexpr int PER_LANE = DSA_IDX_DIM / HALF;      // 8 values per lane
constexpr int ROPE_PAIRS = DSA_ROPE_DIM / 2;      // 32
constexpr int ROPE_LANES = DSA_ROPE_DIM / PER_LANE; // lanes 0..7 hold the rotated dims
static_assert(DSA_IDX_DIM == 128 && DSA_ROPE_DIM == 64, "idx_prep is written for 128-dim heads with 64 rope dims");

// Query side: one block per token (its heads share one position, so one cos/sin table), up to
// 16 half-warps (256 threads) looping over the heads: 32..64 heads take 2..4 steps.
constexpr int Q_MAX_HALFWARPS = 16;
// Key side: one row per half-warp, 16 rows per 256-thread block, a cos/sin table per row.
constexpr int K_ROWS_PER_BLOCK = 16;

__device__ __forceinline__ float bf16f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
__device__ __forceinline__ float round_bf16(float f) { return __uint_as_float((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(f)) << 16); }

#include "fp8_device.cuh"

// 8 bf16 at p (16-byte aligned when vec) -> fp32.
__device__ __forceinline__ void load8(const uint16_t *p, bool vec, float (&v)[PER_LANE])
{
    if (vec) {
        const uint4 q = __ldg(reinterpret_cast<const uint4 *>(p));
        const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int j = 0; j < 4; j++) v[2 * j] = __uint_as_float(w[j] << 16), v[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
    } else {
#pragma unroll
        for (int j = 0; j < PER_LANE; j++) v[j] = bf16f(p[j]);
    }
}

// The (cos, sin) table of one position: 32 pairs, computed by `lanes` threads starting at t.
__device__ __forceinline__ void rope_table(int32_t pos, float theta, int t, int lanes, double *cos_t, double *sin_t)
{
    for (int i = t; i < ROPE_PAIRS; i += lanes) {
        const double inv_freq = pow((double)theta, -2.0 * i / DSA_ROPE_DIM);
        double s, c;
        sincos((double)pos * inv_freq, &s, &c);
        cos_t[i] = c;
        sin_t[i] = s;
    }
}

__device__ __forceinline__ float rot_lo(double a, double b, double c, double s)
{
    return (float)__dsub_rn(__dmul_rn(a, c), __dmul_rn(b, s)); // a' = a cos - b sin
}
__device__ __forceinline__ float rot_hi(double a, double b, double c, double s)
{
    return (float)__dadd_rn(__dmul_rn(a, s), __dmul_rn(b, c)); // b' = a sin + b cos
}

// RoPE -> bf16 -> Hadamard -> bf16 -> scale and e4m3 of one 128-vector held by a half-warp
// (lane hl holds elements 8hl .. 8hl+7 as bf16-exact floats). Called by all 32 lanes.
// Returns the scale; q gets this lane's 8 e4m3 bytes.
__device__ __forceinline__ float rope_hadamard_quant(float (&v)[PER_LANE], int hl, int half_style, const double *cos_t,
                                                     const double *sin_t, int ue8m0, uint32_t (&q)[2])
{
    // RoPE on dims [0, 64).
    if (half_style) {
        float other[PER_LANE];
#pragma unroll
        for (int j = 0; j < PER_LANE; j++) other[j] = __shfl_xor_sync(0xffffffffu, v[j], ROPE_LANES / 2);
        if (hl < ROPE_LANES) {
            const bool lo = hl < ROPE_LANES / 2; // elements i < 32 pair with i + 32, four lanes up
#pragma unroll
            for (int j = 0; j < PER_LANE; j++) {
                const int i = (lo ? 8 * hl : 8 * hl - ROPE_PAIRS) + j;
                const double a = lo ? v[j] : other[j], b = lo ? other[j] : v[j];
                v[j] = round_bf16(lo ? rot_lo(a, b, cos_t[i], sin_t[i]) : rot_hi(a, b, cos_t[i], sin_t[i]));
            }
        }
    } else if (hl < ROPE_LANES) {
#pragma unroll
        for (int j = 0; j < PER_LANE; j += 2) {
            const int i = (8 * hl + j) / 2;
            const double a = v[j], b = v[j + 1];
            v[j] = round_bf16(rot_lo(a, b, cos_t[i], sin_t[i]));
            v[j + 1] = round_bf16(rot_hi(a, b, cos_t[i], sin_t[i]));
        }
    }

    // Hadamard-128, Sylvester order: H[i][j] = (-1)^popcount(i & j).
    double t[PER_LANE];
#pragma unroll
    for (int j = 0; j < PER_LANE; j++) t[j] = v[j];
#pragma unroll
    for (int h = 1; h < PER_LANE; h *= 2)
#pragma unroll
        for (int j = 0; j < PER_LANE; j++)
            if (!(j & h)) {
                const double a = t[j], b = t[j + h];
                t[j] = a + b;
                t[j + h] = a - b;
            }
#pragma unroll
    for (int m = 1; m < HALF; m *= 2)
#pragma unroll
        for (int j = 0; j < PER_LANE; j++) {
            const double o = __shfl_xor_sync(0xffffffffu, t[j], m);
            t[j] = (hl & m) ? o - t[j] : t[j] + o;
        }
    const double inv_sqrt_dim = 1.0 / sqrt((double)DSA_IDX_DIM);
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < PER_LANE; j++) {
        v[j] = round_bf16((float)__dmul_rn(t[j], inv_sqrt_dim));
        amax = fmaxf(amax, fabsf(v[j]));
    }
#pragma unroll
    for (int m = HALF / 2; m > 0; m >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, m));
    const float scale = fp8_scale(amax, ue8m0);
#pragma unroll
    for (int k = 0; k < 2; k++)
        q[k] = e4m3(__fdiv_rn(v[4 * k], scale)) | (e4m3(__fdiv_rn(v[4 * k + 1], scale)) << 8) |
               (e4m3(__fdiv_rn(v[4 * k + 2], scale)) << 16) | (e4m3(__fdiv_rn(v[4 * k + 3], scale)) << 24);
    return scale;
}

__global__ void __launch_bounds__(HALF * Q_MAX_HALFWARPS)
idx_prep_q_kernel(const uint16_t *__restrict__ q, const uint16_t *__restrict__ wraw, int heads,
                  const int32_t *__restrict__ pos, int half_style, float theta, int ue8m0, bool vec,
                  uint8_t *__restrict__ q_fp8, float *__restrict__ w)
{
    __shared__ double cos_t[ROPE_PAIRS], sin_t[ROPE_PAIRS];
    const int r = blockIdx.x;
    if (threadIdx.x < 32) rope_table(pos[r], theta, threadIdx.x, 32, cos_t, sin_t);
    __syncthreads();
    const int hl = threadIdx.x % HALF, hw = threadIdx.x / HALF, halfwarps = blockDim.x / HALF;
    const double head_scale = 1.0 / sqrt((double)heads), dim_scale = 1.0 / sqrt((double)DSA_IDX_DIM);
    // The trip count is the same for both halves of a warp, so the shuffles stay converged.
    for (int h0 = 0; h0 < heads; h0 += halfwarps) {
        const int h = h0 + hw;
        const bool valid = h < heads;
        const size_t vec_off = ((size_t)r * heads + (valid ? h : 0)) * DSA_IDX_DIM;
        float v[PER_LANE];
        if (valid)
            load8(q + vec_off + PER_LANE * hl, vec, v);
        else
#pragma unroll
            for (int j = 0; j < PER_LANE; j++) v[j] = 0.0f;
        uint32_t qb[2];
        const float scale = rope_hadamard_quant(v, hl, half_style, cos_t, sin_t, ue8m0, qb);
        if (valid) {
            reinterpret_cast<uint2 *>(q_fp8 + vec_off)[hl] = make_uint2(qb[0], qb[1]);
            if (hl == 0) {
                const double wr = bf16f(wraw[(size_t)r * heads + h]);
                w[(size_t)r * heads + h] = (float)__dmul_rn(__dmul_rn(__dmul_rn(wr, head_scale), (double)scale), dim_scale);
            }
        }
    }
}

__global__ void __launch_bounds__(HALF * K_ROWS_PER_BLOCK)
idx_prep_k_kernel(const uint16_t *__restrict__ k, int ldk, int n, const uint16_t *__restrict__ ln_w,
                  const uint16_t *__restrict__ ln_b, const int32_t *__restrict__ pos, int half_style, float theta,
                  int ue8m0, bool vec, const int64_t *__restrict__ slot, uint8_t *__restrict__ idx_cache)
{
    __shared__ double cos_t[K_ROWS_PER_BLOCK][ROPE_PAIRS], sin_t[K_ROWS_PER_BLOCK][ROPE_PAIRS];
    const int hl = threadIdx.x % HALF, hw = threadIdx.x / HALF;
    const int r = blockIdx.x * K_ROWS_PER_BLOCK + hw;
    const int64_t s = r < n ? slot[r] : -1;
    const bool valid = s >= 0; // padding rows (slot < 0) and rows past n store nothing
    rope_table(valid ? pos[r] : 0, theta, hl, HALF, cos_t[hw], sin_t[hw]); // (a dummy table for empty rows)
    __syncwarp(); // each half-warp reads only the table its own lanes wrote

    float v[PER_LANE];
    if (valid)
        load8(k + (size_t)r * ldk + PER_LANE * hl, vec, v);
    else
#pragma unroll
        for (int j = 0; j < PER_LANE; j++) v[j] = 0.0f;

    // LayerNorm over the 128 values (eps 1e-6), as ref_layernorm: double statistics, two passes.
    double sum = 0.0;
#pragma unroll
    for (int j = 0; j < PER_LANE; j++) sum += v[j];
#pragma unroll
    for (int m = HALF / 2; m > 0; m >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, m);
    const double mean = sum / DSA_IDX_DIM;
    double ss = 0.0;
#pragma unroll
    for (int j = 0; j < PER_LANE; j++) {
        const double d = v[j] - mean;
        ss += d * d;
    }
#pragma unroll
    for (int m = HALF / 2; m > 0; m >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, m);
    const float inv = (float)(1.0 / sqrt(ss / DSA_IDX_DIM + (double)1e-6f));
    const float fmean = (float)mean;
    float wv[PER_LANE], bv[PER_LANE];
    load8(ln_w + PER_LANE * hl, vec, wv);
    load8(ln_b + PER_LANE * hl, vec, bv);
#pragma unroll
    for (int j = 0; j < PER_LANE; j++)
        v[j] = round_bf16(__fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(v[j], fmean), inv), wv[j]), bv[j]));

    uint32_t qb[2];
    const float scale = rope_hadamard_quant(v, hl, half_style, cos_t[hw], sin_t[hw], ue8m0, qb);
    if (valid) {
        uint8_t *dst = idx_cache + (size_t)s * DSA_IDX_TOKEN_BYTES; // 132-byte rows: 4-byte aligned only
        reinterpret_cast<uint32_t *>(dst)[2 * hl] = qb[0];
        reinterpret_cast<uint32_t *>(dst)[2 * hl + 1] = qb[1];
        if (hl == 0) *reinterpret_cast<float *>(dst + DSA_IDX_DIM) = scale;
    }
}

int check_common(dsa_cuda_ctx *c, const char *op, dsa_rope rope, int scale_mode)
{
    if (rope.style != DSA_ROPE_INTERLEAVED && rope.style != DSA_ROPE_HALF)
        return dsa_cuda_fail(c, "%s: rope style %d is neither interleaved nor half", op, rope.style);
    if (!(rope.theta > 0.0f)) return dsa_cuda_fail(c, "%s: rope theta = %g must be positive", op, (double)rope.theta);
    if (scale_mode != DSA_SCALE_FP32 && scale_mode != DSA_SCALE_UE8M0)
        return dsa_cuda_fail(c, "%s: scale_mode %d is neither fp32 nor ue8m0", op, scale_mode);
    return DSA_OK;
}

} // namespace

extern "C" int dsa_cuda_idx_prep_q(void *ctx, const bf16_t *q, const bf16_t *wraw, int n, int heads, const int32_t *pos,
                                   dsa_rope rope, int scale_mode, uint8_t *q_fp8, float *w)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    int rc = check_common(c, "idx_prep_q", rope, scale_mode);
    if (rc) return rc;
    if (n < 0 || heads <= 0) return dsa_cuda_fail(c, "idx_prep_q: n = %d, heads = %d", n, heads);
    if (n == 0) return DSA_OK;
    if (!q || !wraw || !pos || !q_fp8 || !w) return dsa_cuda_fail(c, "idx_prep_q: a pointer argument is NULL");
    if ((uintptr_t)q_fp8 % 8) return dsa_cuda_fail(c, "idx_prep_q: q_fp8 must be 8-byte aligned");
    const int halfwarps = heads < Q_MAX_HALFWARPS ? (heads + 1) / 2 * 2 : Q_MAX_HALFWARPS;
    const bool vec = (uintptr_t)q % 16 == 0;
    idx_prep_q_kernel<<<n, HALF * halfwarps, 0, c->stream>>>(q, wraw, heads, pos, rope.style == DSA_ROPE_HALF, rope.theta,
                                                            scale_mode == DSA_SCALE_UE8M0, vec, q_fp8, w);
    return dsa_cuda_check(c, "idx_prep_q");
}

extern "C" int dsa_cuda_idx_prep_k(void *ctx, const bf16_t *k, int ldk, int n, const bf16_t *ln_w, const bf16_t *ln_b,
                                   const int32_t *pos, dsa_rope rope, int scale_mode, const int64_t *slot,
                                   uint8_t *idx_cache)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    int rc = check_common(c, "idx_prep_k", rope, scale_mode);
    if (rc) return rc;
    if (n < 0 || ldk < DSA_IDX_DIM) return dsa_cuda_fail(c, "idx_prep_k: n = %d, ldk = %d (must be >= %d)", n, ldk, DSA_IDX_DIM);
    if (n == 0) return DSA_OK;
    if (!k || !ln_w || !ln_b || !pos || !slot || !idx_cache)
        return dsa_cuda_fail(c, "idx_prep_k: a pointer argument is NULL");
    if ((uintptr_t)idx_cache % 4) return dsa_cuda_fail(c, "idx_prep_k: idx_cache must be 4-byte aligned");
    const bool vec = ldk % 8 == 0 && ((uintptr_t)k | (uintptr_t)ln_w | (uintptr_t)ln_b) % 16 == 0;
    const int blocks = (n + K_ROWS_PER_BLOCK - 1) / K_ROWS_PER_BLOCK;
    idx_prep_k_kernel<<<blocks, HALF * K_ROWS_PER_BLOCK, 0, c->stream>>>(k, ldk, n, ln_w, ln_b, pos,
                                                                         rope.style == DSA_ROPE_HALF, rope.theta,
                                                                         scale_mode == DSA_SCALE_UE8M0, vec, slot, idx_cache);
    return dsa_cuda_check(c, "idx_prep_k");
}
