// kernels/rope.cu — rotary position embedding over DSA_ROPE_DIM (64) values of each head, in
// place (dsa_rope in kernels/ops.h): pair i is (2i, 2i+1) interleaved or (i, i+32) half.
//
// Numerics as kernels/ref/rope.c: angle, cosine and sine in double (an fp32 angle at position
// 200K would be off by ~0.01 rad), the rotation in double without FMA contraction, then
// double -> fp32 -> bf16 exactly as the reference rounds.
//
// One block per row: its 32 (cos, sin) pairs depend only on the row's position, so they are
// computed once into shared memory and shared by all heads of the row (128 heads for
// DeepSeek's q_pe). Then one thread per (head, pair). Memory traffic is one read and one write
// of the 64 values per head; the accesses of a warp cover one head's 128 contiguous bytes.
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_ops.h"

namespace {

constexpr int ROPE_PAIRS = DSA_ROPE_DIM / 2;
// 128 threads = 4 heads per step; q_pe with 128 heads loops 32 times, k_pe (1 head) runs one
// warp. Work per row is small, so many small blocks keep the SMs busy at n >= a few hundred.
constexpr int ROPE_MAX_THREADS = 128;

__device__ __forceinline__ float bf16f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
__device__ __forceinline__ uint16_t to_bf16(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

__global__ void __launch_bounds__(ROPE_MAX_THREADS)
rope_rows(uint16_t *x, int heads, int ld_row, int ld_head, int col, const int32_t *__restrict__ pos, int half_style,
          float theta)
{
    __shared__ double cos_t[ROPE_PAIRS], sin_t[ROPE_PAIRS];
    const int r = blockIdx.x;
    if (threadIdx.x < ROPE_PAIRS) {
        const int i = threadIdx.x;
        const double inv_freq = pow((double)theta, -2.0 * i / DSA_ROPE_DIM);
        const double angle = (double)pos[r] * inv_freq;
        double s, c;
        sincos(angle, &s, &c);
        cos_t[i] = c;
        sin_t[i] = s;
    }
    __syncthreads();
    uint16_t *row = x + (size_t)r * ld_row + col;
    for (int p = threadIdx.x; p < heads * ROPE_PAIRS; p += blockDim.x) {
        const int h = p / ROPE_PAIRS, i = p % ROPE_PAIRS;
        uint16_t *v = row + (size_t)h * ld_head;
        const int ia = half_style ? i : 2 * i;
        const int ib = half_style ? i + ROPE_PAIRS : 2 * i + 1;
        const double a = bf16f(v[ia]), b = bf16f(v[ib]);
        const double c = cos_t[i], s = sin_t[i];
        const float ra = (float)__dsub_rn(__dmul_rn(a, c), __dmul_rn(b, s));
        const float rb = (float)__dadd_rn(__dmul_rn(a, s), __dmul_rn(b, c));
        v[ia] = to_bf16(ra);
        v[ib] = to_bf16(rb);
    }
}

} // namespace

extern "C" int dsa_cuda_rope(void *ctx, bf16_t *x, int n, int heads, int ld_row, int ld_head, int col,
                             const int32_t *pos, dsa_rope rope)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (n < 0) return dsa_cuda_fail(c, "rope: n = %d is negative", n);
    if (heads <= 0) return dsa_cuda_fail(c, "rope: heads = %d must be positive", heads);
    if (col < 0 || ld_head < 0 || ld_row < 0)
        return dsa_cuda_fail(c, "rope: col = %d, ld_head = %d, ld_row = %d must be >= 0", col, ld_head, ld_row);
    if (rope.style != DSA_ROPE_INTERLEAVED && rope.style != DSA_ROPE_HALF)
        return dsa_cuda_fail(c, "rope: style %d is neither interleaved nor half", rope.style);
    if (!(rope.theta > 0.0f)) return dsa_cuda_fail(c, "rope: theta = %g must be positive", (double)rope.theta);
    if (n == 0) return DSA_OK;
    if (!x || !pos) return dsa_cuda_fail(c, "rope: x or pos is NULL");
    const int work = heads * ROPE_PAIRS;
    const int threads = work < ROPE_MAX_THREADS ? (work + 31) / 32 * 32 : ROPE_MAX_THREADS;
    rope_rows<<<n, threads, 0, c->stream>>>(x, heads, ld_row, ld_head, col, pos, rope.style == DSA_ROPE_HALF,
                                            rope.theta);
    return dsa_cuda_check(c, "rope");
}
