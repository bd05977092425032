/* kernels/ref/mla.c — MLA's weight absorption around the latent attention.
 * w_kvb [heads, nope + v, 512]: rows [0, nope) of head h are W_UK[h], rows [nope, nope + v)
 * are W_UV[h] (DeepSeek's wkv_b viewed per head). Double accumulation, one bf16 rounding. */
#include <string.h>

#include "ref_internal.h"

int ref_mla_absorb(void *ctx, const bf16_t *q, int n, int heads, int nope, int v,
                   const bf16_t *w_kvb, bf16_t *query)
{
    REF_REQUIRE(ctx, "mla_absorb", n >= 0 && heads > 0 && nope > 0 && v > 0);
    REF_REQUIRE(ctx, "mla_absorb", n == 0 || (q && w_kvb && query));
    const int dq = nope + DSA_ROPE_DIM;
    double acc[DSA_KV_LORA];
    for (int r = 0; r < n; r++)
        for (int h = 0; h < heads; h++) {
            const bf16_t *qh = q + ((size_t)r * heads + h) * dq;
            const bf16_t *wuk = w_kvb + (size_t)h * (nope + v) * DSA_KV_LORA;
            bf16_t *out = query + ((size_t)r * heads + h) * DSA_MLA_DIM;
            /* q_lat = q_nope (1 x nope) . W_UK[h] (nope x 512) */
            for (int c = 0; c < DSA_KV_LORA; c++)
                acc[c] = 0.0;
            for (int d = 0; d < nope; d++) {
                double a = ref_bf16f(qh[d]);
                const bf16_t *wd = wuk + (size_t)d * DSA_KV_LORA;
                for (int c = 0; c < DSA_KV_LORA; c++)
                    acc[c] += a * ref_bf16f(wd[c]);
            }
            for (int c = 0; c < DSA_KV_LORA; c++)
                out[c] = dsa_f32_to_bf16((float)acc[c]);
            memcpy(out + DSA_KV_LORA, qh + nope, DSA_ROPE_DIM * sizeof(bf16_t));
        }
    return DSA_OK;
}

int ref_mla_out(void *ctx, const bf16_t *out_lat, int n, int heads, int nope, int v,
                const bf16_t *w_kvb, bf16_t *o)
{
    REF_REQUIRE(ctx, "mla_out", n >= 0 && heads > 0 && nope > 0 && v > 0);
    REF_REQUIRE(ctx, "mla_out", n == 0 || (out_lat && w_kvb && o));
    for (int r = 0; r < n; r++)
        for (int h = 0; h < heads; h++) {
            const bf16_t *lat = out_lat + ((size_t)r * heads + h) * DSA_KV_LORA;
            const bf16_t *wuv = w_kvb + ((size_t)h * (nope + v) + nope) * DSA_KV_LORA;
            for (int j = 0; j < v; j++) {
                const bf16_t *wj = wuv + (size_t)j * DSA_KV_LORA;
                double acc = 0.0;
                for (int c = 0; c < DSA_KV_LORA; c++)
                    acc += (double)ref_bf16f(lat[c]) * ref_bf16f(wj[c]);
                o[(size_t)r * heads * v + (size_t)h * v + j] = dsa_f32_to_bf16((float)acc);
            }
        }
    return DSA_OK;
}
