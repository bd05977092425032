// kernels/norm.cu — RMSNorm and LayerNorm over d columns of each row (kernels/ops.h).
//
// Numerics follow kernels/ref/norm.c so that the outputs are bit-identical in practice:
// the statistics are sums of bf16 values (or their exact squares) taken in double, which is
// exact whatever the summation order, so the GPU's tree reduction gives the reference's value;
// 1/sqrt is taken in double and rounded to fp32 once; the per-element arithmetic is the
// reference's fp32 sequence with explicit _rn intrinsics so that nvcc cannot contract it into
// FMAs (the host reference has none); one rounding to bf16 at the output.
//
// One pass over memory: a row is loaded into registers once (16-byte loads), reduced, scaled
// and stored. x and y may be the same buffer with the same stride (each thread reads its own
// elements before writing them).
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_ops.h"

namespace {

// Rows up to 1024 columns (c_kv 512, q_lora up to 1536 is > 1024, idx 128): one warp per row,
// 8 rows per 256-thread block; each lane holds up to 4 chunks of 8 values in registers.
constexpr int NORM_WARP_ROWS = 8;
constexpr int NORM_WARP_CHUNKS = 4;
// Rows up to 8192 columns (hidden 7168 is the largest): one 256-thread block per row, again up
// to 4 register-resident chunks per thread (32 floats), so the row is read from memory once.
constexpr int NORM_BLOCK_THREADS = 256;
constexpr int NORM_BLOCK_CHUNKS = 4;
// Anything else (d not a multiple of 8, unaligned rows, d > 8192): a plain per-element kernel
// that reads the row again for each pass (from L2); correct for every shape, not tuned.
constexpr int NORM_GENERIC_THREADS = 256;

__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }
__device__ __forceinline__ float bf16f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
__device__ __forceinline__ uint16_t to_bf16(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

__device__ __forceinline__ void unpack8(uint4 q, float *v)
{
    v[0] = bf16_lo(q.x), v[1] = bf16_hi(q.x), v[2] = bf16_lo(q.y), v[3] = bf16_hi(q.y);
    v[4] = bf16_lo(q.z), v[5] = bf16_hi(q.z), v[6] = bf16_lo(q.w), v[7] = bf16_hi(q.w);
}

__device__ __forceinline__ uint32_t pack2(float a, float b) { return (uint32_t)to_bf16(a) | ((uint32_t)to_bf16(b) << 16); }

__device__ __forceinline__ double warp_sum(double v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the block; every thread gets the result. `red` holds one double per warp; the
// leading barrier makes back-to-back calls safe.
template <int THREADS> __device__ __forceinline__ double block_sum(double v, double *red)
{
    constexpr int WARPS = THREADS / 32;
    v = warp_sum(v);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    double t = 0.0;
#pragma unroll
    for (int i = 0; i < WARPS; i++) t += red[i];
    return t;
}

// The per-element output, exactly the reference's fp32 expression.
template <bool LN>
__device__ __forceinline__ float norm_value(float x, float mean, float inv, float w, float b)
{
    if (LN) return __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(x, mean), inv), w), b);
    return __fmul_rn(__fmul_rn(x, inv), w);
}

// 1/sqrt(var + eps) rounded to fp32 once, as the reference does.
__device__ __forceinline__ float inv_std(double sum_sq, int d, float eps)
{
    return (float)(1.0 / sqrt(sum_sq / d + (double)eps));
}

// Normalises the register-resident chunks of one row and stores them (16-byte stores).
template <bool LN, int CHUNKS, int STRIDE>
__device__ __forceinline__ void store_row(float (&v)[CHUNKS][8], int first, int chunks, float mean, float inv,
                                          const uint16_t *__restrict__ w, const uint16_t *__restrict__ b,
                                          uint16_t *yr)
{
#pragma unroll
    for (int i = 0; i < CHUNKS; i++) {
        const int ch = first + i * STRIDE;
        if (ch >= chunks) continue;
        float wf[8], bf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        unpack8(__ldg(reinterpret_cast<const uint4 *>(w) + ch), wf);
        if (LN) unpack8(__ldg(reinterpret_cast<const uint4 *>(b) + ch), bf);
        float o[8];
#pragma unroll
        for (int j = 0; j < 8; j++) o[j] = norm_value<LN>(v[i][j], mean, inv, wf[j], bf[j]);
        reinterpret_cast<uint4 *>(yr)[ch] = make_uint4(pack2(o[0], o[1]), pack2(o[2], o[3]), pack2(o[4], o[5]), pack2(o[6], o[7]));
    }
}

// One warp per row, d <= 32 * 8 * NORM_WARP_CHUNKS, d % 8 == 0, rows 16-byte aligned.
template <bool LN>
__global__ void __launch_bounds__(32 * NORM_WARP_ROWS)
norm_warp_rows(const uint16_t *x, int ldx, int n, int d, const uint16_t *__restrict__ w,
               const uint16_t *__restrict__ b, float eps, uint16_t *y, int ldy)
{
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * NORM_WARP_ROWS + threadIdx.x / 32;
    if (r >= n) return; // whole warps leave together: the kernel has no block barrier
    const int chunks = d / 8;
    const uint4 *xr = reinterpret_cast<const uint4 *>(x + (size_t)r * ldx);
    float v[NORM_WARP_CHUNKS][8];
    double s1 = 0.0;
#pragma unroll
    for (int i = 0; i < NORM_WARP_CHUNKS; i++) {
        const int ch = lane + 32 * i;
        if (ch < chunks) {
            unpack8(xr[ch], v[i]);
#pragma unroll
            for (int j = 0; j < 8; j++) s1 += LN ? (double)v[i][j] : (double)v[i][j] * v[i][j];
        }
    }
    s1 = warp_sum(s1);
    float mean = 0.0f, inv;
    if (LN) {
        const double dmean = s1 / d;
        double s2 = 0.0;
#pragma unroll
        for (int i = 0; i < NORM_WARP_CHUNKS; i++)
            if (lane + 32 * i < chunks)
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    const double t = v[i][j] - dmean;
                    s2 += t * t;
                }
        inv = inv_std(warp_sum(s2), d, eps);
        mean = (float)dmean;
    } else {
        inv = inv_std(s1, d, eps);
    }
    store_row<LN, NORM_WARP_CHUNKS, 32>(v, lane, chunks, mean, inv, w, b, y + (size_t)r * ldy);
}

// One block per row, d <= NORM_BLOCK_THREADS * 8 * NORM_BLOCK_CHUNKS, d % 8 == 0, aligned rows.
template <bool LN>
__global__ void __launch_bounds__(NORM_BLOCK_THREADS)
norm_block_rows(const uint16_t *x, int ldx, int d, const uint16_t *__restrict__ w, const uint16_t *__restrict__ b,
                float eps, uint16_t *y, int ldy)
{
    __shared__ double red[NORM_BLOCK_THREADS / 32];
    const int r = blockIdx.x;
    const int chunks = d / 8;
    const uint4 *xr = reinterpret_cast<const uint4 *>(x + (size_t)r * ldx);
    float v[NORM_BLOCK_CHUNKS][8];
    double s1 = 0.0;
#pragma unroll
    for (int i = 0; i < NORM_BLOCK_CHUNKS; i++) {
        const int ch = threadIdx.x + NORM_BLOCK_THREADS * i;
        if (ch < chunks) {
            unpack8(xr[ch], v[i]);
#pragma unroll
            for (int j = 0; j < 8; j++) s1 += LN ? (double)v[i][j] : (double)v[i][j] * v[i][j];
        }
    }
    s1 = block_sum<NORM_BLOCK_THREADS>(s1, red);
    float mean = 0.0f, inv;
    if (LN) {
        const double dmean = s1 / d;
        double s2 = 0.0;
#pragma unroll
        for (int i = 0; i < NORM_BLOCK_CHUNKS; i++)
            if (threadIdx.x + NORM_BLOCK_THREADS * i < chunks)
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    const double t = v[i][j] - dmean;
                    s2 += t * t;
                }
        inv = inv_std(block_sum<NORM_BLOCK_THREADS>(s2, red), d, eps);
        mean = (float)dmean;
    } else {
        inv = inv_std(s1, d, eps);
    }
    store_row<LN, NORM_BLOCK_CHUNKS, NORM_BLOCK_THREADS>(v, threadIdx.x, chunks, mean, inv, w, b, y + (size_t)r * ldy);
}

// Any shape: one block per row, element by element, the row re-read for each pass.
template <bool LN>
__global__ void __launch_bounds__(NORM_GENERIC_THREADS)
norm_generic_rows(const uint16_t *x, int ldx, int d, const uint16_t *__restrict__ w, const uint16_t *__restrict__ b,
                  float eps, uint16_t *y, int ldy)
{
    __shared__ double red[NORM_GENERIC_THREADS / 32];
    const uint16_t *xr = x + (size_t)blockIdx.x * ldx;
    uint16_t *yr = y + (size_t)blockIdx.x * ldy;
    double s1 = 0.0;
    for (int i = threadIdx.x; i < d; i += NORM_GENERIC_THREADS) {
        const double t = bf16f(xr[i]);
        s1 += LN ? t : t * t;
    }
    s1 = block_sum<NORM_GENERIC_THREADS>(s1, red);
    float mean = 0.0f, inv;
    if (LN) {
        const double dmean = s1 / d;
        double s2 = 0.0;
        for (int i = threadIdx.x; i < d; i += NORM_GENERIC_THREADS) {
            const double t = bf16f(xr[i]) - dmean;
            s2 += t * t;
        }
        inv = inv_std(block_sum<NORM_GENERIC_THREADS>(s2, red), d, eps);
        mean = (float)dmean;
    } else {
        inv = inv_std(s1, d, eps);
    }
    for (int i = threadIdx.x; i < d; i += NORM_GENERIC_THREADS)
        yr[i] = to_bf16(norm_value<LN>(bf16f(xr[i]), mean, inv, bf16f(w[i]), LN ? bf16f(b[i]) : 0.0f));
}

template <bool LN>
int launch_norm(dsa_cuda_ctx *c, const char *op, const bf16_t *x, int ldx, int n, int d, const bf16_t *w,
                const bf16_t *b, float eps, bf16_t *y, int ldy)
{
    if (n < 0) return dsa_cuda_fail(c, "%s: n = %d is negative", op, n);
    if (d <= 0) return dsa_cuda_fail(c, "%s: d = %d must be positive", op, d);
    if (ldx < d || ldy < d) return dsa_cuda_fail(c, "%s: ldx = %d and ldy = %d must be >= d = %d", op, ldx, ldy, d);
    if (n == 0) return DSA_OK;
    if (!x || !w || !y || (LN && !b)) return dsa_cuda_fail(c, "%s: a pointer argument is NULL", op);
    const uintptr_t addr = (uintptr_t)x | (uintptr_t)y | (uintptr_t)w | (uintptr_t)(LN ? b : w);
    const bool vec = d % 8 == 0 && ldx % 8 == 0 && ldy % 8 == 0 && addr % 16 == 0;
    if (vec && d <= 32 * 8 * NORM_WARP_CHUNKS) {
        const int blocks = (n + NORM_WARP_ROWS - 1) / NORM_WARP_ROWS;
        norm_warp_rows<LN><<<blocks, 32 * NORM_WARP_ROWS, 0, c->stream>>>(x, ldx, n, d, w, b, eps, y, ldy);
    } else if (vec && d <= NORM_BLOCK_THREADS * 8 * NORM_BLOCK_CHUNKS) {
        norm_block_rows<LN><<<n, NORM_BLOCK_THREADS, 0, c->stream>>>(x, ldx, d, w, b, eps, y, ldy);
    } else {
        norm_generic_rows<LN><<<n, NORM_GENERIC_THREADS, 0, c->stream>>>(x, ldx, d, w, b, eps, y, ldy);
    }
    return dsa_cuda_check(c, op);
}

} // namespace

extern "C" int dsa_cuda_rmsnorm(void *ctx, const bf16_t *x, int ldx, int n, int d, const bf16_t *w, float eps, bf16_t *y,
                                int ldy)
{
    return launch_norm<false>((dsa_cuda_ctx *)ctx, "rmsnorm", x, ldx, n, d, w, nullptr, eps, y, ldy);
}

extern "C" int dsa_cuda_layernorm(void *ctx, const bf16_t *x, int ldx, int n, int d, const bf16_t *w, const bf16_t *b,
                                  float eps, bf16_t *y, int ldy)
{
    return launch_norm<true>((dsa_cuda_ctx *)ctx, "layernorm", x, ldx, n, d, w, b, eps, y, ldy);
}
