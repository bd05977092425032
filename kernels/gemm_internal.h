/* kernels/gemm_internal.h — entry points the kernels of this folder share with each other (not
 * part of the ops table): cuBLASLt GEMM variants (gemm.c) and the FP8 activation helpers
 * (quant_fp8.cu). */
#ifndef DSA_KERNELS_GEMM_INTERNAL_H
#define DSA_KERNELS_GEMM_INTERNAL_H

#include "cuda_ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* gemm.c: D = A . W^T (+ residual) with a caller-provided FP8 scratch and optional fp32 D,
 * every launch on `stream` with `lt_ws` (c->lt_ws_bytes) as cuBLASLt's workspace: the context's
 * own pair, or a side stream's (GEMMs running at once must not share a workspace). */
size_t dsa_cuda_gemm_ws_bytes(void *ctx, int m, const dsa_weight *W, const void *D, int ldd, int d_f32,
                              const bf16_t *residual);
int dsa_cuda_gemm_ex(void *ctx, const char *op, const bf16_t *A, int lda, int m, const dsa_weight *W,
                     const bf16_t *residual, void *D, int ldd, int d_f32, void *ws, size_t ws_bytes,
                     cudaStream_t stream, void *lt_ws);
/* gemm.c: bf16 strided-batched GEMM, one batch entry per attention head. */
int dsa_cuda_gemm_heads(void *ctx, const char *op, int m, int n, int k, int heads, const bf16_t *A, int lda,
                        long long stride_a, const bf16_t *W, int ldw, long long stride_w, int w_is_kn, bf16_t *D,
                        int ldd, long long stride_d);

/* gemm.c: bf16 pointer-array batch on `stream` with its cuBLASLt workspace: for each i < batch,
 * D_ptrs[i] = A_ptrs[i] . W_ptrs[i]^T (W [n, k] row-major, A [m, k] with ld lda, D [m, n] with
 * ld ldd, fp32 when d_f32). The three arrays are in device memory, every pointer 16-byte aligned. */
int dsa_cuda_gemm_ptr_array(void *ctx, const char *op, int m, int n, int k, int batch, const void *const *A_ptrs,
                            int lda, const void *const *W_ptrs, void *const *D_ptrs, int ldd, int d_f32,
                            cudaStream_t stream, void *lt_ws, size_t lt_ws_bytes);

/* quant_fp8.cu, each launched on `stream`: activations to e4m3 with one scale per 1x128 block;
 * block-scale re-striding; a row copy with optional fp32 <-> bf16 conversion. */
int dsa_cuda_quant_e4m3_rows(dsa_cuda_ctx *c, cudaStream_t stream, const bf16_t *A, int lda, int m, int m_total, int k,
                             uint8_t *q, float *scales);
int dsa_cuda_pad_block_scales(dsa_cuda_ctx *c, cudaStream_t stream, const float *src, int rows, int cols, int ld_dst,
                              float *dst);
int dsa_cuda_copy_rows(dsa_cuda_ctx *c, cudaStream_t stream, const void *src, int ld_src, int src_f32, int m, int n,
                       void *dst, int ld_dst, int dst_f32);

#ifdef __cplusplus
}
#endif
#endif
