/* kernels/ref/idx_fused.c — the fused indexer, by definition: the reference scores
 * (idx_logits.c) into a buffer of its own, then the reference top-k (topk.c) of each row:
 * prefill row i has the q_pos0 + i + 1 causal scores, decode rows all n_keys. */
#include <stdlib.h>

#include "ref_internal.h"

int ref_idx_fused_prefill(void *ctx, const uint8_t *q_fp8, const float *w, int n, int heads,
                          const uint8_t *idx_cache, int n_keys, int q_pos0, int k, int32_t *out)
{
    REF_REQUIRE(ctx, "idx_fused_prefill", n >= 0 && heads > 0 && q_pos0 >= 0 && k >= 0);
    REF_REQUIRE(ctx, "idx_fused_prefill", n_keys >= q_pos0 + n);
    if (n == 0 || k == 0)
        return DSA_OK;
    REF_REQUIRE(ctx, "idx_fused_prefill", q_fp8 && w && idx_cache && out);
    float *scores = malloc((size_t)n * n_keys * sizeof *scores);
    if (!scores)
        return ref_fail(ctx, "idx_fused_prefill: out of memory (%d x %d scores)", n, n_keys);
    int rc = ref_idx_logits_prefill(ctx, q_fp8, w, n, heads, idx_cache, n_keys, q_pos0, scores,
                                    n_keys);
    if (!rc)
        rc = ref_topk(ctx, scores, n, n_keys, q_pos0 + 1, 1, k, out);
    free(scores);
    return rc;
}

int ref_idx_fused_decode(void *ctx, const uint8_t *q_fp8, const float *w, int batch, int heads,
                         const uint8_t *idx_cache, size_t cache_stride, int n_keys, int k,
                         int32_t *out)
{
    REF_REQUIRE(ctx, "idx_fused_decode", batch >= 0 && heads > 0 && n_keys >= 0 && k >= 0);
    REF_REQUIRE(ctx, "idx_fused_decode",
                batch <= 1 || cache_stride >= (size_t)n_keys * DSA_IDX_TOKEN_BYTES);
    if (batch == 0 || k == 0)
        return DSA_OK;
    REF_REQUIRE(ctx, "idx_fused_decode", out && (n_keys == 0 || (q_fp8 && w && idx_cache)));
    float *scores = malloc((size_t)batch * (n_keys > 0 ? n_keys : 1) * sizeof *scores);
    if (!scores)
        return ref_fail(ctx, "idx_fused_decode: out of memory (%d x %d scores)", batch, n_keys);
    int rc = DSA_OK;
    if (n_keys > 0)
        rc = ref_idx_logits_decode(ctx, q_fp8, w, batch, heads, idx_cache, cache_stride, n_keys,
                                   scores, n_keys);
    if (!rc)
        rc = ref_topk(ctx, scores, batch, n_keys, n_keys, 0, k, out);
    free(scores);
    return rc;
}
