// kernels/quant_fp8.cu — the small kernels around the FP8 block-scaled GEMM of kernels/gemm.c:
//   1. activations bf16 -> e4m3 with one fp32 scale per row and 1x128 block (DeepSeek's act
//      quantisation; the reference is ref_linear_row in kernels/ref/gemm.c, fp32 scale mode),
//      scales written in cuBLASLt's VEC128_32F layout: scale[kb * rows + r] (the row index is the
//      contiguous one, as PyTorch's blockwise scaled_mm passes them);
//   2. the weight's 128x128 block scales re-strided to cuBLASLt's BLK128x128_32F layout, whose
//      k-block dimension is padded to a multiple of 4 (only when ceil(k/128) % 4 != 0);
//   3. a row copy with bf16 <-> fp32 conversion for the padded fallback (residual in, result
//      out).
// These are internal to the GEMM: gemm.c declares their launchers (plain C, no header of
// their own, as kernels/cuda_ops.h lists only the ops table).
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <stdint.h>

#include "cuda_ops.h"

#include "gemm_internal.h"

namespace {

constexpr int QBLK = 128;              // quantisation block: 1 x 128 values
constexpr int QUANT_WARPS = 8;         // one warp per (row, block): 4 values per lane
constexpr int SMALL_THREADS = 256;     // the two elementwise kernels

#include "fp8_device.cuh"

// Rows >= m (padding up to m_total) quantise as zeros. k % 16 == 0, so a lane's 4 values are
// all inside the row or all past its end.
__global__ void __launch_bounds__(32 * QUANT_WARPS)
quant_rows(const uint16_t *__restrict__ A, int lda, int m, int m_total, int k, int nkb, bool vec,
           uint8_t *__restrict__ q, float *__restrict__ scales)
{
    const long long unit = (long long)blockIdx.x * QUANT_WARPS + threadIdx.x / 32;
    if (unit >= (long long)m_total * nkb) return;
    const int r = (int)(unit / nkb), kb = (int)(unit % nkb), lane = threadIdx.x & 31;
    const int col = kb * QBLK + 4 * lane;
    const bool live = r < m && col < k;
    float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (live) {
        const uint16_t *p = A + (size_t)r * lda + col;
        if (vec) {
            const uint2 u = __ldg(reinterpret_cast<const uint2 *>(p));
            v[0] = __uint_as_float(u.x << 16), v[1] = __uint_as_float(u.x & 0xffff0000u);
            v[2] = __uint_as_float(u.y << 16), v[3] = __uint_as_float(u.y & 0xffff0000u);
        } else {
#pragma unroll
            for (int j = 0; j < 4; j++) v[j] = __uint_as_float((uint32_t)p[j] << 16);
        }
    }
    float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    // The reference's fp32 mode (the op has no scale-mode argument): max(amax, 1e-4) / 448.
    const float scale = fmaxf(amax, DSA_FP8_AMAX_FLOOR) / DSA_FP8_MAX;
    if (col < k)
        *reinterpret_cast<uint32_t *>(q + (size_t)r * k + col) =
            e4m3(__fdiv_rn(v[0], scale)) | (e4m3(__fdiv_rn(v[1], scale)) << 8) | (e4m3(__fdiv_rn(v[2], scale)) << 16) |
            (e4m3(__fdiv_rn(v[3], scale)) << 24);
    if (lane == 0) scales[(size_t)kb * m_total + r] = scale;
}

__global__ void __launch_bounds__(SMALL_THREADS)
pad_scales(const float *__restrict__ src, int rows, int cols, int ld_dst, float *__restrict__ dst)
{
    const int i = blockIdx.x * SMALL_THREADS + threadIdx.x;
    if (i >= rows * ld_dst) return;
    const int r = i / ld_dst, col = i % ld_dst;
    dst[i] = col < cols ? src[(size_t)r * cols + col] : 0.0f;
}

// dst[r, j] = src[r, j] for r < m, j < n, converting bf16 <-> fp32 (to bf16: round to nearest even).
__global__ void __launch_bounds__(SMALL_THREADS)
copy_rows(const void *__restrict__ src, int ld_src, int src_f32, int m, int n, void *__restrict__ dst, int ld_dst,
          int dst_f32)
{
    const size_t total = (size_t)m * n;
    for (size_t i = blockIdx.x * (size_t)SMALL_THREADS + threadIdx.x; i < total; i += (size_t)gridDim.x * SMALL_THREADS) {
        const size_t r = i / n, j = i - r * n;
        const float v = src_f32 ? static_cast<const float *>(src)[r * ld_src + j]
                                : __uint_as_float((uint32_t) static_cast<const uint16_t *>(src)[r * ld_src + j] << 16);
        if (dst_f32)
            static_cast<float *>(dst)[r * ld_dst + j] = v;
        else
            static_cast<uint16_t *>(dst)[r * ld_dst + j] = __bfloat16_as_ushort(__float2bfloat16_rn(v));
    }
}

} // namespace

int dsa_cuda_quant_e4m3_rows(dsa_cuda_ctx *c, cudaStream_t stream, const bf16_t *A, int lda, int m, int m_total, int k,
                             uint8_t *q, float *scales)
{
    if (k % 16 || m > m_total || m < 0)
        return dsa_cuda_fail(c, "quant_e4m3_rows: k = %d (must be a multiple of 16), m = %d, m_total = %d", k, m, m_total);
    if (m_total == 0) return DSA_OK;
    const int nkb = (k + QBLK - 1) / QBLK;
    const long long units = (long long)m_total * nkb;
    const long long blocks = (units + QUANT_WARPS - 1) / QUANT_WARPS;
    const bool vec = lda % 4 == 0 && (uintptr_t)A % 8 == 0;
    quant_rows<<<(unsigned)blocks, 32 * QUANT_WARPS, 0, stream>>>(A, lda, m, m_total, k, nkb, vec, q, scales);
    return dsa_cuda_check(c, "gemm: FP8 activation quantisation");
}

int dsa_cuda_pad_block_scales(dsa_cuda_ctx *c, cudaStream_t stream, const float *src, int rows, int cols, int ld_dst,
                              float *dst)
{
    const int total = rows * ld_dst;
    if (total <= 0) return DSA_OK;
    pad_scales<<<(total + SMALL_THREADS - 1) / SMALL_THREADS, SMALL_THREADS, 0, stream>>>(src, rows, cols, ld_dst, dst);
    return dsa_cuda_check(c, "gemm: FP8 weight scale layout");
}

int dsa_cuda_copy_rows(dsa_cuda_ctx *c, cudaStream_t stream, const void *src, int ld_src, int src_f32, int m, int n,
                       void *dst, int ld_dst, int dst_f32)
{
    const size_t total = (size_t)m * n;
    if (total == 0) return DSA_OK;
    size_t blocks = (total + SMALL_THREADS - 1) / SMALL_THREADS;
    if (blocks > (size_t)c->sms * 16) blocks = (size_t)c->sms * 16;
    copy_rows<<<(unsigned)blocks, SMALL_THREADS, 0, stream>>>(src, ld_src, src_f32, m, n, dst, ld_dst, dst_f32);
    return dsa_cuda_check(c, "gemm: FP8 padded fallback copy");
}
