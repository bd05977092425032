/* kernels/ops.h — the table of operations the DSA forward path is written against.
 *
 * Two implementations fill it: the C reference (kernels/ref/, the correctness oracle, also
 * `--device cpu`) and the CUDA kernels (the .cu files of kernels/). src/forward.c calls only through this
 * table, so the GPU-vs-reference test checks kernels, not two copies of the model.
 *
 * Conventions
 * - Pointers are in the implementation's memory (host for ref, device for CUDA).
 * - bf16 is stored as raw uint16_t bits; conversions round to nearest even.
 * - Row-major everywhere. A weight W of a linear layer is [n_out, k_in] (PyTorch layout):
 *   D[m, n] = sum_k A[m, k] * W[n, k] (+ residual[m, n]); accumulation in fp32, D rounded to bf16.
 * - "ld" arguments are row strides in elements, so an op can read or write a slice of a row
 *   (e.g. the c_kv part of [c_kv | k_pe]).
 * - Every op returns DSA_OK (0) or a non-zero status; last_error() gives the message.
 * - Shapes fixed in every real model, which kernels may specialise to: kv_lora 512,
 *   rope 64, indexer head dim 128.
 */
#ifndef DSA_KERNELS_OPS_H
#define DSA_KERNELS_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t bf16_t;

enum { DSA_OK = 0, DSA_EOP = 3 };

#define DSA_KV_LORA 512
#define DSA_ROPE_DIM 64
#define DSA_MLA_DIM (DSA_KV_LORA + DSA_ROPE_DIM) /* 576: one latent cache row */
#define DSA_IDX_DIM 128
/* Decode MLA cache, FlashMLA's FP8 layout: 512 e4m3 | 4 fp32 scales (one per 128) | 64 bf16. */
#define DSA_MLA_FP8_TOKEN_BYTES 656
/* Indexer key cache: 128 e4m3 | 1 fp32 scale. */
#define DSA_IDX_TOKEN_BYTES 132
#define DSA_FP8_MAX 448.0f
#define DSA_FP8_AMAX_FLOOR 1e-4f

enum dsa_rope_style { DSA_ROPE_INTERLEAVED = 0, /* pairs (2i, 2i+1): MLA everywhere, GLM indexer */
                      DSA_ROPE_HALF = 1 };      /* pairs (i, i+32): DeepSeek-V3.2 indexer */
enum dsa_fp8_scale { DSA_SCALE_FP32 = 0,        /* scale = amax / 448 */
                     DSA_SCALE_UE8M0 = 1 };     /* rounded up to a power of two */
enum dsa_dtype { DSA_BF16 = 0, DSA_FP8_E4M3 = 1, DSA_F32 = 2 };

/* A linear layer's weight [n, k]. FP8 weights carry one fp32 scale per 128x128 block
 * (scale[(n/128) * ceil(k/128) + k/128]), as DeepSeek-V3.2 and GLM-5 ship them. */
typedef struct dsa_weight {
    int dtype; /* enum dsa_dtype: DSA_BF16 or DSA_FP8_E4M3 */
    int n, k;
    void *data;
    float *scale; /* FP8 only */
} dsa_weight;

/* RoPE: rotate `DSA_ROPE_DIM` values starting at column `col` of each of `heads` heads of
 * each row; row r sits at x + r*ld_row, head h at + h*ld_head; position of row r = pos[r].
 * inv_freq_i = theta^(-2i/64); pair i is (2i, 2i+1) interleaved or (i, i+32) half. */
typedef struct dsa_rope {
    int style;   /* enum dsa_rope_style */
    float theta; /* rope_theta of the model */
} dsa_rope;

/* MoE routing, DeepSeek-V3 style: s = sigmoid(x . W_router); selection on s + bias with
 * n_group groups scored by the sum of their top-2 members, topk_group groups kept;
 * weights = s of the chosen experts, normalised to sum 1 if norm_topk, times routed_scale. */
typedef struct dsa_router_cfg {
    int n_experts, topk, n_group, topk_group, norm_topk;
    float routed_scale;
} dsa_router_cfg;

typedef struct dsa_ops {
    const char *name; /* "cpu" or "cuda" */
    void *ctx;        /* implementation state (stream, handles, error message) */
    const char *(*last_error)(void *ctx);

    /* memory */
    int (*alloc)(void *ctx, void **p, size_t bytes); /* zero-filled */
    void (*release)(void *ctx, void *p);
    int (*upload)(void *ctx, void *dst, const void *src, size_t bytes);
    int (*download)(void *ctx, void *dst, const void *src, size_t bytes);
    int (*sync)(void *ctx);

    /* Deterministic synthetic data: dst[i] = bf16(scale * u(seed, i)), u uniform in [-1, 1),
     * u(seed, i) = ((splitmix64(seed ^ splitmix64(i)) >> 40) * 2^-23) - 1. Both
     * implementations use this formula so CPU and GPU runs see the same weights. */
    int (*fill_bf16)(void *ctx, bf16_t *dst, size_t n, uint64_t seed, float scale);
    int (*fill_f32)(void *ctx, float *dst, size_t n, uint64_t seed, float scale);
    /* Valid e4m3 codes (never the NaN codes): r = splitmix64(seed ^ splitmix64(i)) >> 32,
     * dst[i] = (r % 0x7f) | ((r >> 16) & 0x80): uniform over the 127 magnitude codes, random sign. */
    int (*fill_e4m3)(void *ctx, uint8_t *dst, size_t n, uint64_t seed);

    /* out[r, :] = table[tokens[r], :] */
    int (*embed)(void *ctx, const int32_t *tokens, int n, const bf16_t *table, int hidden,
                 bf16_t *out);
    /* y = x / rms(x) * w, over d columns; eps inside the sqrt */
    int (*rmsnorm)(void *ctx, const bf16_t *x, int ldx, int n, int d, const bf16_t *w,
                   float eps, bf16_t *y, int ldy);
    /* y = (x - mean) / sqrt(var + eps) * w + b (biased variance) */
    int (*layernorm)(void *ctx, const bf16_t *x, int ldx, int n, int d, const bf16_t *w,
                     const bf16_t *b, float eps, bf16_t *y, int ldy);
    /* D = A . W^T (+ residual); A [m, k] bf16 (lda), residual/D [m, n] (ldd; residual may
     * alias D). W of dtype FP8 implies A quantised to e4m3 with one scale per 1x128. */
    int (*gemm)(void *ctx, const bf16_t *A, int lda, int m, const dsa_weight *W,
                const bf16_t *residual, bf16_t *D, int ldd);
    /* in place, see dsa_rope */
    int (*rope)(void *ctx, bf16_t *x, int n, int heads, int ld_row, int ld_head, int col,
                const int32_t *pos, dsa_rope rope);
    /* out[r, c] = bf16(silu(gu[r, c]) * gu[r, inter + c]); gu [n, 2*inter] */
    int (*swiglu)(void *ctx, const bf16_t *gu, int n, int inter, bf16_t *out);

    /* MLA caches. kv [n, 576] bf16 rows (ldkv) = [normed c_kv | roped k_pe]; row r goes to
     * cache slot slot[r]. bf16 cache rows are 576 bf16; FP8 rows are DSA_MLA_FP8_TOKEN_BYTES. */
    int (*mla_cache_write_bf16)(void *ctx, const bf16_t *kv, int ldkv, int n,
                                const int64_t *slot, bf16_t *cache);
    int (*mla_cache_write_fp8)(void *ctx, const bf16_t *kv, int ldkv, int n,
                               const int64_t *slot, uint8_t *cache, int scale_mode);

    /* Indexer query side, after its GEMMs: q [n, heads, 128] bf16 (raw q_i), wraw [n, heads]
     * bf16 (x . W_iw). RoPE on dims [0, 64) of each head, Hadamard-128 (Sylvester order,
     * scaled 128^-0.5), e4m3 quantisation with one scale per head vector. Writes
     * q_fp8 [n, heads, 128] and w[n, h] = wraw * heads^-0.5 * q_scale * 128^-0.5 (fp32). */
    int (*idx_prep_q)(void *ctx, const bf16_t *q, const bf16_t *wraw, int n, int heads,
                      const int32_t *pos, dsa_rope rope, int scale_mode, uint8_t *q_fp8,
                      float *w);
    /* Indexer key side: k [n, 128] bf16 (ldk, raw x . W_ik) -> LayerNorm(w, b, eps 1e-6) ->
     * RoPE dims [0, 64) -> Hadamard -> e4m3 + fp32 scale -> cache slot slot[r] (132 B). */
    int (*idx_prep_k)(void *ctx, const bf16_t *k, int ldk, int n, const bf16_t *ln_w,
                      const bf16_t *ln_b, const int32_t *pos, dsa_rope rope, int scale_mode,
                      const int64_t *slot, uint8_t *idx_cache);

    /* Prefill indexer scores: n queries at positions q_pos0 .. q_pos0+n-1 of one request,
     * against keys 0 .. n_keys-1 of its indexer cache (n_keys >= q_pos0 + n).
     * score[i, s] = k_scale[s] * sum_h w[i, h] * relu(q[i, h] . k[s]) for s <= q_pos0 + i,
     * -inf for s beyond (causal). scores [n, ld_scores] fp32. */
    int (*idx_logits_prefill)(void *ctx, const uint8_t *q_fp8, const float *w, int n, int heads,
                              const uint8_t *idx_cache, int n_keys, int q_pos0, float *scores,
                              int ld_scores);
    /* Decode indexer scores: request b's one query against keys 0 .. n_keys-1 of its own cache
     * at idx_cache + b * cache_stride bytes. scores [B, ld_scores]. */
    int (*idx_logits_decode)(void *ctx, const uint8_t *q_fp8, const float *w, int batch,
                             int heads, const uint8_t *idx_cache, size_t cache_stride,
                             int n_keys, float *scores, int ld_scores);
    /* Row r holds len0 + r * len_step valid scores; out[r, 0..k) = the indices of its
     * min(k, len) highest, ties to the lower index, sorted by (score desc, index asc);
     * -1 pads the rest. */
    int (*topk)(void *ctx, const float *scores, int rows, int ld_scores, int len0, int len_step,
                int k, int32_t *out);
    /* Fused indexer: out[i, 0..k) = topk over s of idx_logits_prefill's score[i, s] (same
     * causal rule), without materialising the scores; same output contract as topk (ties to the
     * lower index, -1 padding). Row i has q_pos0 + i + 1 scores: the result is that of
     * idx_logits_prefill then topk(len0 = q_pos0 + 1, len_step = 1) on the same arguments (the
     * CUDA version, like its topk, writes each row's index set in any order). */
    int (*idx_fused_prefill)(void *ctx, const uint8_t *q_fp8, const float *w, int n, int heads,
                             const uint8_t *idx_cache, int n_keys, int q_pos0, int k,
                             int32_t *out);
    /* Fused decode indexer: request b's one query against keys 0 .. n_keys-1 of its cache at
     * idx_cache + b * cache_stride bytes; out[b, 0..k) = idx_logits_decode then topk
     * (len0 = n_keys, len_step = 0), without materialising the scores. */
    int (*idx_fused_decode)(void *ctx, const uint8_t *q_fp8, const float *w, int batch, int heads,
                            const uint8_t *idx_cache, size_t cache_stride, int n_keys, int k,
                            int32_t *out);

    /* query[r, h] = [q_nope[r, h] . W_UK[h] (512) | q_pe[r, h] (64)]; q [n, heads, nope+64];
     * w_kvb [heads, nope + v, 512]: rows [0, nope) are W_UK[h], rows [nope, nope+v) W_UV[h]. */
    int (*mla_absorb)(void *ctx, const bf16_t *q, int n, int heads, int nope, int v,
                      const bf16_t *w_kvb, bf16_t *query);
    /* out_lat[r, h] = sum_j p_j c_kv[idx[r, j]], p = softmax_j(scale * query[r, h] .
     * cache[idx[r, j]]) over idx >= 0; lse[r, h] = log sum exp (natural log). A row with no
     * valid index gives zeros and lse = -inf. Prefill: bf16 cache of one request. */
    int (*sparse_attn_prefill)(void *ctx, const bf16_t *query, int n, int heads,
                               const bf16_t *cache, const int32_t *idx, int topk, float scale,
                               bf16_t *out_lat, float *lse);
    /* Decode: request b reads its FP8 cache at cache + b * cache_stride bytes (c_kv
     * dequantised as e4m3 * scale of its 128-block, k_pe bf16). */
    int (*sparse_attn_decode)(void *ctx, const bf16_t *query, int batch, int heads,
                              const uint8_t *cache, size_t cache_stride, const int32_t *idx,
                              int topk, float scale, bf16_t *out_lat, float *lse);
    /* o[r, h*v + j] = out_lat[r, h] . W_UV[h][j] */
    int (*mla_out)(void *ctx, const bf16_t *out_lat, int n, int heads, int nope, int v,
                   const bf16_t *w_kvb, bf16_t *o);

    /* x [n, hidden]; w_router [n_experts, hidden] bf16; bias [n_experts] fp32.
     * ids [n, topk] int32, weights [n, topk] fp32 (ids in selection order). */
    int (*moe_router)(void *ctx, const bf16_t *x, int n, int hidden, const bf16_t *w_router,
                      const float *bias, dsa_router_cfg cfg, int32_t *ids, float *weights);
    /* out[r] = residual[r] + sum_j weights[r, j] * E_{ids[r, j]}(x[r]), E_e(x) =
     * down_e(swiglu(gate_up_e(x))); gate_up[e] [2*inter, hidden], down[e] [hidden, inter].
     * The expert sum is taken in fp32 and rounded once; residual may alias out. */
    int (*moe_experts)(void *ctx, const bf16_t *x, int n, int hidden, const int32_t *ids,
                       const float *weights, int topk, int n_experts, int inter,
                       const dsa_weight *gate_up, const dsa_weight *down,
                       const bf16_t *residual, bf16_t *out);

    /* Optional (NULL in the reference). Device timing: record event `slot` (0..7) on the
     * stream; elapsed_ms between two recorded slots, waiting for the later one. */
    int (*event_record)(void *ctx, int slot);
    int (*event_elapsed_ms)(void *ctx, int from, int to, double *ms);
    /* Optional CUDA graphs: ops launched between graph_begin and graph_end are captured into
     * *graph (nothing runs); graph_launch replays it on the stream. */
    int (*graph_begin)(void *ctx);
    int (*graph_end)(void *ctx, void **graph);
    int (*graph_launch)(void *ctx, void *graph);
    void (*graph_free)(void *ctx, void *graph);
    /* Optional: stream_hold returns once the stream is blocked on the device, so what the host
     * queues next (events, a graph launch) reaches the GPU at once on stream_release. Only for
     * a few launches: a held stream cannot take an eager step's thousand. stream_release fails
     * when the hold timed out (the timing it bracketed is then not the work's). */
    int (*stream_hold)(void *ctx);
    int (*stream_release)(void *ctx);
} dsa_ops;

#ifdef __cplusplus
}
#endif
#endif
