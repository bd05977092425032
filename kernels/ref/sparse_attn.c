/* kernels/ref/sparse_attn.c — sparse MLA over the selected tokens (shared by all heads of a
 * row): p = softmax_j(scale * query[h] . key_j) over the 576 dims [c_kv | k_pe],
 * out_lat[h] = sum_j p_j c_kv_j (512), lse[h] = log sum_j exp(scale * query[h] . key_j)
 * (natural log). Indices < 0 are skipped (a repeated index counts as often as it appears);
 * a row with none gives zeros and lse = -inf. Everything in double with max subtraction,
 * out_lat rounded once to bf16. The keys are those of the cache, exactly: bf16 for prefill,
 * e4m3 * block scale and bf16 k_pe for FP8 decode. */
#include <math.h>
#include <stdlib.h>

#include "ref_internal.h"

/* Attention of `heads` queries (576 bf16 each) over nk gathered keys [nk, 576] (fp32). */
static void attend(const bf16_t *query, int heads, const float *keys, int nk, float scale,
                   double *p, bf16_t *out_lat, float *lse)
{
    for (int h = 0; h < heads; h++) {
        const bf16_t *q = query + (size_t)h * DSA_MLA_DIM;
        bf16_t *out = out_lat + (size_t)h * DSA_KV_LORA;
        if (nk == 0) {
            for (int c = 0; c < DSA_KV_LORA; c++)
                out[c] = 0;
            lse[h] = -INFINITY;
            continue;
        }
        double mx = -INFINITY, qf[DSA_MLA_DIM];
        for (int c = 0; c < DSA_MLA_DIM; c++)
            qf[c] = ref_bf16f(q[c]);
        for (int j = 0; j < nk; j++) {
            const float *k = keys + (size_t)j * DSA_MLA_DIM;
            double dot = 0.0;
            for (int c = 0; c < DSA_MLA_DIM; c++)
                dot += qf[c] * k[c];
            p[j] = dot * scale;
            if (p[j] > mx)
                mx = p[j];
        }
        double sum = 0.0;
        for (int j = 0; j < nk; j++) {
            p[j] = exp(p[j] - mx);
            sum += p[j];
        }
        /* keys in order for every output column (same summation order as a column loop) */
        double acc[DSA_KV_LORA] = {0};
        for (int j = 0; j < nk; j++) {
            const float *k = keys + (size_t)j * DSA_MLA_DIM;
            for (int c = 0; c < DSA_KV_LORA; c++)
                acc[c] += p[j] * k[c];
        }
        for (int c = 0; c < DSA_KV_LORA; c++)
            out[c] = dsa_f32_to_bf16((float)(acc[c] / sum));
        lse[h] = (float)(mx + log(sum));
    }
}

/* Scratch for one row's gathered keys and probabilities. */
static int scratch(void *ctx, const char *op, int topk, float **keys, double **p)
{
    size_t nk = topk > 0 ? (size_t)topk : 1;
    *keys = malloc(nk * DSA_MLA_DIM * sizeof **keys);
    *p = malloc(nk * sizeof **p);
    if (*keys && *p)
        return DSA_OK;
    free(*keys), free(*p);
    return ref_fail(ctx, "%s: out of memory", op);
}

int ref_sparse_attn_prefill(void *ctx, const bf16_t *query, int n, int heads,
                            const bf16_t *cache, const int32_t *idx, int topk, float scale,
                            bf16_t *out_lat, float *lse)
{
    REF_REQUIRE(ctx, "sparse_attn_prefill", n >= 0 && heads > 0 && topk >= 0);
    REF_REQUIRE(ctx, "sparse_attn_prefill",
                n == 0 || (query && out_lat && lse && (topk == 0 || (cache && idx))));
    float *keys;
    double *p;
    int st = scratch(ctx, "sparse_attn_prefill", topk, &keys, &p);
    if (st)
        return st;
    for (int r = 0; r < n; r++) {
        int nk = 0;
        for (int j = 0; j < topk; j++) {
            int32_t t = idx[(size_t)r * topk + j];
            if (t < 0)
                continue;
            const bf16_t *row = cache + (size_t)t * DSA_MLA_DIM;
            for (int c = 0; c < DSA_MLA_DIM; c++)
                keys[(size_t)nk * DSA_MLA_DIM + c] = ref_bf16f(row[c]);
            nk++;
        }
        attend(query + (size_t)r * heads * DSA_MLA_DIM, heads, keys, nk, scale, p,
               out_lat + (size_t)r * heads * DSA_KV_LORA, lse + (size_t)r * heads);
    }
    free(keys), free(p);
    return DSA_OK;
}

int ref_sparse_attn_decode(void *ctx, const bf16_t *query, int batch, int heads,
                           const uint8_t *cache, size_t cache_stride, const int32_t *idx,
                           int topk, float scale, bf16_t *out_lat, float *lse)
{
    REF_REQUIRE(ctx, "sparse_attn_decode", batch >= 0 && heads > 0 && topk >= 0);
    REF_REQUIRE(ctx, "sparse_attn_decode",
                batch == 0 || (query && out_lat && lse && (topk == 0 || (cache && idx))));
    float *keys;
    double *p;
    int st = scratch(ctx, "sparse_attn_decode", topk, &keys, &p);
    if (st)
        return st;
    for (int b = 0; b < batch; b++) {
        int nk = 0;
        for (int j = 0; j < topk; j++) {
            int32_t t = idx[(size_t)b * topk + j];
            if (t < 0)
                continue;
            const uint8_t *row = cache + (size_t)b * cache_stride +
                                 (size_t)t * DSA_MLA_FP8_TOKEN_BYTES;
            ref_mla_fp8_row_to_f32(row,
                                   keys + (size_t)nk * DSA_MLA_DIM);
            nk++;
        }
        attend(query + (size_t)b * heads * DSA_MLA_DIM, heads, keys, nk, scale, p,
               out_lat + (size_t)b * heads * DSA_KV_LORA, lse + (size_t)b * heads);
    }
    free(keys), free(p);
    return DSA_OK;
}
