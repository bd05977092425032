/* kernels/ref/idx_logits.c — indexer scores:
 *   score[i, s] = k_scale[s] * sum_h w[i, h] * relu(q[i, h] . k[s])
 * where q . k is the exact dot of the dequantised e4m3 values (scales are not applied to it:
 * the query's scale is folded into w, the key's is k_scale). The dot is exact in double
 * (products of e4m3 values have at most 8 significant bits); the rest is done in double and
 * rounded once to fp32. */
#include <math.h>
#include <string.h>

#include "ref_internal.h"

/* e4m3 -> value table for one call, so the inner loop is a lookup. */
static void e4m3_table(float lut[256])
{
    for (int b = 0; b < 256; b++)
        lut[b] = dsa_e4m3_to_f32((uint8_t)b);
}

/* Score of one query (heads x 128 e4m3, weights w[heads]) against one 132-byte key. */
static float score_one(const float lut[256], const uint8_t *q, const float *w, int heads,
                       const uint8_t *key)
{
    double sum = 0.0;
    for (int h = 0; h < heads; h++) {
        const uint8_t *qh = q + (size_t)h * DSA_IDX_DIM;
        double dot = 0.0;
        for (int i = 0; i < DSA_IDX_DIM; i++)
            dot += (double)lut[qh[i]] * lut[key[i]];
        if (dot > 0.0)
            sum += (double)w[h] * dot;
    }
    float k_scale;
    memcpy(&k_scale, key + DSA_IDX_DIM, 4);
    return (float)(sum * k_scale);
}

int ref_idx_logits_prefill(void *ctx, const uint8_t *q_fp8, const float *w, int n, int heads,
                           const uint8_t *idx_cache, int n_keys, int q_pos0, float *scores,
                           int ld_scores)
{
    REF_REQUIRE(ctx, "idx_logits_prefill", n >= 0 && heads > 0 && q_pos0 >= 0);
    REF_REQUIRE(ctx, "idx_logits_prefill", n_keys >= q_pos0 + n && ld_scores >= n_keys);
    REF_REQUIRE(ctx, "idx_logits_prefill", n == 0 || (q_fp8 && w && idx_cache && scores));
    float lut[256];
    e4m3_table(lut);
    for (int i = 0; i < n; i++) {
        const uint8_t *q = q_fp8 + (size_t)i * heads * DSA_IDX_DIM;
        float *row = scores + (size_t)i * ld_scores;
        for (int s = 0; s < n_keys; s++)
            row[s] = s <= q_pos0 + i
                         ? score_one(lut, q, w + (size_t)i * heads, heads,
                                     idx_cache + (size_t)s * DSA_IDX_TOKEN_BYTES)
                         : -INFINITY; /* causal */
    }
    return DSA_OK;
}

int ref_idx_logits_decode(void *ctx, const uint8_t *q_fp8, const float *w, int batch, int heads,
                          const uint8_t *idx_cache, size_t cache_stride, int n_keys,
                          float *scores, int ld_scores)
{
    REF_REQUIRE(ctx, "idx_logits_decode", batch >= 0 && heads > 0 && n_keys >= 0);
    REF_REQUIRE(ctx, "idx_logits_decode", ld_scores >= n_keys);
    REF_REQUIRE(ctx, "idx_logits_decode",
                batch <= 1 || cache_stride >= (size_t)n_keys * DSA_IDX_TOKEN_BYTES);
    REF_REQUIRE(ctx, "idx_logits_decode", batch == 0 || (q_fp8 && w && idx_cache && scores));
    float lut[256];
    e4m3_table(lut);
    for (int b = 0; b < batch; b++) {
        const uint8_t *q = q_fp8 + (size_t)b * heads * DSA_IDX_DIM;
        const uint8_t *cache = idx_cache + (size_t)b * cache_stride;
        for (int s = 0; s < n_keys; s++)
            scores[(size_t)b * ld_scores + s] =
                score_one(lut, q, w + (size_t)b * heads, heads,
                          cache + (size_t)s * DSA_IDX_TOKEN_BYTES);
    }
    return DSA_OK;
}
