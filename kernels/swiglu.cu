// kernels/swiglu.cu — out[r, c] = bf16(silu(gu[r, c]) * gu[r, inter + c]), gu = [gate | up].
// Elementwise and memory-bound: each thread takes 8 columns (one 16-byte load of gate, one of
// up, one 16-byte store), grid-stride over all rows. The fp32 expression is the reference's
// (kernels/ref/swiglu.c): expf at full precision, IEEE division, one rounding to bf16.
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_ops.h"

namespace {

// 256 threads, a grid of up to 16 blocks per SM looping over the rows: enough 16-byte loads in
// flight to stream at full bandwidth without launching one block per 2048 columns.
constexpr int SWIGLU_THREADS = 256;
constexpr int SWIGLU_BLOCKS_PER_SM = 16;

__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }
__device__ __forceinline__ uint16_t to_bf16(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

__device__ __forceinline__ float swiglu1(float g, float u)
{
    const float silu = g / (1.0f + expf(-g));
    return __fmul_rn(silu, u);
}

__device__ __forceinline__ uint32_t swiglu2(uint32_t g, uint32_t u)
{
    return (uint32_t)to_bf16(swiglu1(bf16_lo(g), bf16_lo(u))) | ((uint32_t)to_bf16(swiglu1(bf16_hi(g), bf16_hi(u))) << 16);
}

// inter % 8 == 0 and 16-byte aligned buffers.
__global__ void __launch_bounds__(SWIGLU_THREADS)
swiglu_vec8(const uint16_t *__restrict__ gu, int n, int inter, uint16_t *__restrict__ out)
{
    const int per_row = inter / 8;
    const size_t total = (size_t)n * per_row;
    for (size_t i = blockIdx.x * (size_t)SWIGLU_THREADS + threadIdx.x; i < total; i += (size_t)gridDim.x * SWIGLU_THREADS) {
        const size_t r = i / per_row;
        const int c8 = (int)(i - r * per_row);
        const uint4 *g4 = reinterpret_cast<const uint4 *>(gu + r * 2 * inter);
        const uint4 g = __ldg(g4 + c8), u = __ldg(g4 + per_row + c8);
        reinterpret_cast<uint4 *>(out + r * inter)[c8] =
            make_uint4(swiglu2(g.x, u.x), swiglu2(g.y, u.y), swiglu2(g.z, u.z), swiglu2(g.w, u.w));
    }
}

__global__ void __launch_bounds__(SWIGLU_THREADS)
swiglu_scalar(const uint16_t *__restrict__ gu, int n, int inter, uint16_t *__restrict__ out)
{
    const size_t total = (size_t)n * inter;
    for (size_t i = blockIdx.x * (size_t)SWIGLU_THREADS + threadIdx.x; i < total; i += (size_t)gridDim.x * SWIGLU_THREADS) {
        const size_t r = i / inter, col = i - r * inter;
        const uint16_t *g = gu + r * 2 * inter;
        out[i] = to_bf16(swiglu1(__uint_as_float((uint32_t)g[col] << 16), __uint_as_float((uint32_t)g[inter + col] << 16)));
    }
}

} // namespace

extern "C" int dsa_cuda_swiglu(void *ctx, const bf16_t *gu, int n, int inter, bf16_t *out)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (n < 0) return dsa_cuda_fail(c, "swiglu: n = %d is negative", n);
    if (inter <= 0) return dsa_cuda_fail(c, "swiglu: inter = %d must be positive", inter);
    if (n == 0) return DSA_OK;
    if (!gu || !out) return dsa_cuda_fail(c, "swiglu: gu or out is NULL");
    const bool vec = inter % 8 == 0 && ((uintptr_t)gu | (uintptr_t)out) % 16 == 0;
    const size_t work = vec ? (size_t)n * (inter / 8) : (size_t)n * inter;
    size_t blocks = (work + SWIGLU_THREADS - 1) / SWIGLU_THREADS;
    const size_t cap = (size_t)c->sms * SWIGLU_BLOCKS_PER_SM;
    if (blocks > cap) blocks = cap;
    if (vec)
        swiglu_vec8<<<(unsigned)blocks, SWIGLU_THREADS, 0, c->stream>>>(gu, n, inter, out);
    else
        swiglu_scalar<<<(unsigned)blocks, SWIGLU_THREADS, 0, c->stream>>>(gu, n, inter, out);
    return dsa_cuda_check(c, "swiglu");
}
