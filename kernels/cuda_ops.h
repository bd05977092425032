/* kernels/cuda_ops.h — the CUDA launchers behind the ops table, one per operation, each with
 * the signature of its dsa_ops member (kernels/ops.h says what each computes). ctx is a
 * dsa_cuda_ctx (kernels/cuda_ctx.h); every launch goes to its stream and is asynchronous. */
#ifndef DSA_KERNELS_CUDA_OPS_H
#define DSA_KERNELS_CUDA_OPS_H

#include "cuda_ctx.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* stream_hold.cu: one thread spins until flags_dev[1] is set (see cuda_ops.c stream_hold) */
int dsa_cuda_stream_hold_launch(void *ctx, volatile int *flags_dev);
/* fill.cu */
int dsa_cuda_fill_bf16(void *ctx, bf16_t *dst, size_t n, uint64_t seed, float scale);
int dsa_cuda_fill_f32(void *ctx, float *dst, size_t n, uint64_t seed, float scale);
/* Random valid e4m3 codes (no NaN codes), for benchmarks' FP8 operands. */
int dsa_cuda_fill_e4m3(void *ctx, uint8_t *dst, size_t n, uint64_t seed);
/* embed.cu */
int dsa_cuda_embed(void *ctx, const int32_t *tokens, int n, const bf16_t *table, int hidden, bf16_t *out);
/* norm.cu */
int dsa_cuda_rmsnorm(void *ctx, const bf16_t *x, int ldx, int n, int d, const bf16_t *w, float eps, bf16_t *y,
                     int ldy);
int dsa_cuda_layernorm(void *ctx, const bf16_t *x, int ldx, int n, int d, const bf16_t *w, const bf16_t *b,
                       float eps, bf16_t *y, int ldy);
/* gemm.c (cuBLASLt) */
int dsa_cuda_gemm(void *ctx, const bf16_t *A, int lda, int m, const dsa_weight *W, const bf16_t *residual,
                  bf16_t *D, int ldd);
/* rope.cu */
int dsa_cuda_rope(void *ctx, bf16_t *x, int n, int heads, int ld_row, int ld_head, int col, const int32_t *pos,
                  dsa_rope rope);
/* swiglu.cu */
int dsa_cuda_swiglu(void *ctx, const bf16_t *gu, int n, int inter, bf16_t *out);
/* mla_cache.cu */
int dsa_cuda_mla_cache_write_bf16(void *ctx, const bf16_t *kv, int ldkv, int n, const int64_t *slot,
                                  bf16_t *cache);
int dsa_cuda_mla_cache_write_fp8(void *ctx, const bf16_t *kv, int ldkv, int n, const int64_t *slot,
                                 uint8_t *cache, int scale_mode);
/* idx_prep.cu */
int dsa_cuda_idx_prep_q(void *ctx, const bf16_t *q, const bf16_t *wraw, int n, int heads, const int32_t *pos,
                        dsa_rope rope, int scale_mode, uint8_t *q_fp8, float *w);
int dsa_cuda_idx_prep_k(void *ctx, const bf16_t *k, int ldk, int n, const bf16_t *ln_w, const bf16_t *ln_b,
                        const int32_t *pos, dsa_rope rope, int scale_mode, const int64_t *slot,
                        uint8_t *idx_cache);
/* idx_logits.cu */
int dsa_cuda_idx_logits_prefill(void *ctx, const uint8_t *q_fp8, const float *w, int n, int heads,
                                const uint8_t *idx_cache, int n_keys, int q_pos0, float *scores, int ld_scores);
int dsa_cuda_idx_logits_decode(void *ctx, const uint8_t *q_fp8, const float *w, int batch, int heads,
                               const uint8_t *idx_cache, size_t cache_stride, int n_keys, float *scores,
                               int ld_scores);
/* topk.cu */
int dsa_cuda_topk(void *ctx, const float *scores, int rows, int ld_scores, int len0, int len_step, int k,
                  int32_t *out);
/* Not an op: dsa_cuda_topk on the rows whose row_flags[r] is non-zero only (the others' out rows
 * are left as they are): idx_fused's dense fallback. */
int dsa_cuda_topk_flagged(void *ctx, const float *scores, int rows, int ld_scores, int len0, int len_step, int k,
                          const int *row_flags, int32_t *out);
/* idx_fused.cu: indexer scores and their exact top-k in one op, without the score matrix */
int dsa_cuda_idx_fused_prefill(void *ctx, const uint8_t *q_fp8, const float *w, int n, int heads,
                               const uint8_t *idx_cache, int n_keys, int q_pos0, int k, int32_t *out);
int dsa_cuda_idx_fused_decode(void *ctx, const uint8_t *q_fp8, const float *w, int batch, int heads,
                              const uint8_t *idx_cache, size_t cache_stride, int n_keys, int k, int32_t *out);
/* Not an op: the scratch bytes idx_fused_prefill (decode = 0, rows = n) or idx_fused_decode (decode = 1,
 * rows = batch) takes for these sizes (0 when it takes none). A captured graph cannot grow the scratch:
 * dsa_cuda_scratch this many bytes (the largest shape the graph runs) before capturing. */
size_t dsa_cuda_idx_fused_scratch_bytes(void *ctx, int rows, int heads, int n_keys, int k, int decode);
/* Not an op: how many rows idx_fused has recomputed densely on this context so far, because its
 * sampled threshold kept fewer than k or too many candidates (adversarial data: ties everywhere,
 * scores peaking at the sample positions). Synchronises with the device. */
unsigned long long dsa_cuda_idx_fused_fallback_rows(void *ctx);
/* mla_proj.cu: the per-head absorb and output projections */
int dsa_cuda_mla_absorb(void *ctx, const bf16_t *q, int n, int heads, int nope, int v, const bf16_t *w_kvb,
                        bf16_t *query);
int dsa_cuda_mla_out(void *ctx, const bf16_t *out_lat, int n, int heads, int nope, int v, const bf16_t *w_kvb,
                     bf16_t *o);
/* sparse_mla_prefill.cu, sparse_mla_decode.cu */
int dsa_cuda_sparse_attn_prefill(void *ctx, const bf16_t *query, int n, int heads, const bf16_t *cache,
                                 const int32_t *idx, int topk, float scale, bf16_t *out_lat, float *lse);
int dsa_cuda_sparse_attn_decode(void *ctx, const bf16_t *query, int batch, int heads, const uint8_t *cache,
                                size_t cache_stride, const int32_t *idx, int topk, float scale, bf16_t *out_lat,
                                float *lse);
/* moe.cu */
int dsa_cuda_moe_router(void *ctx, const bf16_t *x, int n, int hidden, const bf16_t *w_router, const float *bias,
                        dsa_router_cfg cfg, int32_t *ids, float *weights);
int dsa_cuda_moe_experts(void *ctx, const bf16_t *x, int n, int hidden, const int32_t *ids, const float *weights,
                         int topk, int n_experts, int inter, const dsa_weight *gate_up, const dsa_weight *down,
                         const bf16_t *residual, bf16_t *out);
/* Not an op: grows the scratch that moe_experts' decode path (n * topk <= 512, the one a CUDA
 * graph can capture) needs for up to max_tokens tokens, so that it need not grow (allocate)
 * inside a capture. Call it before capturing; inside one it only checks the size. */
int dsa_cuda_moe_reserve(void *ctx, int max_tokens, int topk, int hidden, int inter);

#ifdef __cplusplus
}
#endif
#endif
