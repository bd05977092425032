/* kernels/ref/ref_internal.h — shared by the reference's own files only (not part of its API):
 * the context, error reporting, small helpers and the prototypes ref_ops.c puts in the table. */
#ifndef DSA_KERNELS_REF_INTERNAL_H
#define DSA_KERNELS_REF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"
#include "ref.h"

typedef struct ref_ctx {
    char err[512];
} ref_ctx;

/* Records the message in ctx (when non-NULL) and returns DSA_EOP, so an op writes
 * `return ref_fail(ctx, "rmsnorm: d = %d", d);`. */
int ref_fail(void *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Argument check: fails the op with "<op>: <condition>" when cond is false. */
#define REF_REQUIRE(ctx, op, cond)                                   \
    do {                                                             \
        if (!(cond))                                                 \
            return ref_fail((ctx), "%s: invalid argument (%s)", op, #cond); \
    } while (0)

/* bf16 -> fp32 inline (the same bit shift as dsa_bf16_to_f32): the hot loops call it per
 * element, and a call per element made the tiny model's prefill take seconds. */
static inline float ref_bf16f(bf16_t h)
{
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

/* bf16 round trip: the value an fp32 intermediate has once stored as bf16. */
static inline float ref_round_bf16(float x) { return dsa_bf16_to_f32(dsa_f32_to_bf16(x)); }

/* Quantise n values to e4m3 with one scale: amax over |x|, scale = dsa_fp8_scale(amax, mode),
 * out[i] = e4m3(x[i] / scale) (saturating). Returns the scale. */
float ref_quant_e4m3(const float *x, int n, int scale_mode, uint8_t *out);

/* Rotates the 64 values at v (fp32, in place) for position pos; see dsa_rope in ops.h. */
void ref_rope64(float *v, int32_t pos, dsa_rope rope);

/* Checks a linear layer's weight (non-NULL, dtype, sizes, FP8 scales); op names the caller. */
int ref_check_weight(void *ctx, const char *op, const dsa_weight *W);
/* out[j] = sum_k a[k] * W[j, k] for one row a of W->k values: fp32 result, not rounded
 * (double accumulation). FP8 W: a is quantised per 1x128 block (scale = amax/448, fp32 mode)
 * and each block's exact e4m3 dot is multiplied by both scales. */
int ref_linear_row(void *ctx, const bf16_t *a, const dsa_weight *W, float *out);

/* Dequantises one FP8 MLA cache row (DSA_MLA_FP8_TOKEN_BYTES) into 576 floats:
 * c_kv = e4m3 * scale of its 128-block, then k_pe bf16. */
void ref_mla_fp8_row_to_f32(const uint8_t *row, float *out);

/* The operations, in ops.h order. */
int ref_alloc(void *ctx, void **p, size_t bytes);
void ref_release(void *ctx, void *p);
int ref_upload(void *ctx, void *dst, const void *src, size_t bytes);
int ref_download(void *ctx, void *dst, const void *src, size_t bytes);
int ref_sync(void *ctx);
int ref_fill_bf16(void *ctx, bf16_t *dst, size_t n, uint64_t seed, float scale);
int ref_fill_f32(void *ctx, float *dst, size_t n, uint64_t seed, float scale);
int ref_fill_e4m3(void *ctx, uint8_t *dst, size_t n, uint64_t seed);
int ref_embed(void *ctx, const int32_t *tokens, int n, const bf16_t *table, int hidden,
              bf16_t *out);
int ref_rmsnorm(void *ctx, const bf16_t *x, int ldx, int n, int d, const bf16_t *w, float eps,
                bf16_t *y, int ldy);
int ref_layernorm(void *ctx, const bf16_t *x, int ldx, int n, int d, const bf16_t *w,
                  const bf16_t *b, float eps, bf16_t *y, int ldy);
int ref_gemm(void *ctx, const bf16_t *A, int lda, int m, const dsa_weight *W,
             const bf16_t *residual, bf16_t *D, int ldd);
int ref_rope(void *ctx, bf16_t *x, int n, int heads, int ld_row, int ld_head, int col,
             const int32_t *pos, dsa_rope rope);
int ref_swiglu(void *ctx, const bf16_t *gu, int n, int inter, bf16_t *out);
int ref_mla_cache_write_bf16(void *ctx, const bf16_t *kv, int ldkv, int n, const int64_t *slot,
                             bf16_t *cache);
int ref_mla_cache_write_fp8(void *ctx, const bf16_t *kv, int ldkv, int n, const int64_t *slot,
                            uint8_t *cache, int scale_mode);
int ref_idx_prep_q(void *ctx, const bf16_t *q, const bf16_t *wraw, int n, int heads,
                   const int32_t *pos, dsa_rope rope, int scale_mode, uint8_t *q_fp8, float *w);
int ref_idx_prep_k(void *ctx, const bf16_t *k, int ldk, int n, const bf16_t *ln_w,
                   const bf16_t *ln_b, const int32_t *pos, dsa_rope rope, int scale_mode,
                   const int64_t *slot, uint8_t *idx_cache);
int ref_idx_logits_prefill(void *ctx, const uint8_t *q_fp8, const float *w, int n, int heads,
                           const uint8_t *idx_cache, int n_keys, int q_pos0, float *scores,
                           int ld_scores);
int ref_idx_logits_decode(void *ctx, const uint8_t *q_fp8, const float *w, int batch, int heads,
                          const uint8_t *idx_cache, size_t cache_stride, int n_keys,
                          float *scores, int ld_scores);
int ref_topk(void *ctx, const float *scores, int rows, int ld_scores, int len0, int len_step,
             int k, int32_t *out);
int ref_idx_fused_prefill(void *ctx, const uint8_t *q_fp8, const float *w, int n, int heads,
                          const uint8_t *idx_cache, int n_keys, int q_pos0, int k, int32_t *out);
int ref_idx_fused_decode(void *ctx, const uint8_t *q_fp8, const float *w, int batch, int heads,
                         const uint8_t *idx_cache, size_t cache_stride, int n_keys, int k,
                         int32_t *out);
int ref_mla_absorb(void *ctx, const bf16_t *q, int n, int heads, int nope, int v,
                   const bf16_t *w_kvb, bf16_t *query);
int ref_sparse_attn_prefill(void *ctx, const bf16_t *query, int n, int heads,
                            const bf16_t *cache, const int32_t *idx, int topk, float scale,
                            bf16_t *out_lat, float *lse);
int ref_sparse_attn_decode(void *ctx, const bf16_t *query, int batch, int heads,
                           const uint8_t *cache, size_t cache_stride, const int32_t *idx,
                           int topk, float scale, bf16_t *out_lat, float *lse);
int ref_mla_out(void *ctx, const bf16_t *out_lat, int n, int heads, int nope, int v,
                const bf16_t *w_kvb, bf16_t *o);
int ref_moe_router(void *ctx, const bf16_t *x, int n, int hidden, const bf16_t *w_router,
                   const float *bias, dsa_router_cfg cfg, int32_t *ids, float *weights);
int ref_moe_experts(void *ctx, const bf16_t *x, int n, int hidden, const int32_t *ids,
                    const float *weights, int topk, int n_experts, int inter,
                    const dsa_weight *gate_up, const dsa_weight *down, const bf16_t *residual,
                    bf16_t *out);

#endif
