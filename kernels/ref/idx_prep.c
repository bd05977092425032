/* kernels/ref/idx_prep.c — the indexer's query and key preparation after their GEMMs:
 * (key: LayerNorm ->) RoPE on dims [0, 64) -> Hadamard-128 -> e4m3 with one fp32 scale.
 *
 * Intermediate rounding (a choice, stated here so the CUDA kernels can match it): every step's
 * output is rounded to bf16 before the next step, as in DeepSeek-V3.2's reference model, where
 * LayerNorm, apply_rotary_emb and the Hadamard transform each return a bf16 tensor and act_quant
 * reads bf16. So: LayerNorm -> bf16, RoPE -> bf16, Hadamard -> bf16 -> amax, quantise. Each
 * step itself is computed in fp32 or better. */
#include <math.h>
#include <string.h>

#include "ref_internal.h"

/* RoPE on [0, 64), Hadamard, quantise one 128-vector held as bf16-exact floats.
 * Returns the scale. */
static float rope_hadamard_quant(float *v, int32_t pos, dsa_rope rope, int scale_mode,
                                 uint8_t *out)
{
    ref_rope64(v, pos, rope);
    for (int i = 0; i < DSA_ROPE_DIM; i++)
        v[i] = ref_round_bf16(v[i]);
    dsa_hadamard128(v);
    for (int i = 0; i < DSA_IDX_DIM; i++)
        v[i] = ref_round_bf16(v[i]);
    return ref_quant_e4m3(v, DSA_IDX_DIM, scale_mode, out);
}

static int check_common(void *ctx, const char *op, dsa_rope rope, int scale_mode)
{
    REF_REQUIRE(ctx, op, rope.style == DSA_ROPE_INTERLEAVED || rope.style == DSA_ROPE_HALF);
    REF_REQUIRE(ctx, op, rope.theta > 0.0f);
    REF_REQUIRE(ctx, op, scale_mode == DSA_SCALE_FP32 || scale_mode == DSA_SCALE_UE8M0);
    return DSA_OK;
}

int ref_idx_prep_q(void *ctx, const bf16_t *q, const bf16_t *wraw, int n, int heads,
                   const int32_t *pos, dsa_rope rope, int scale_mode, uint8_t *q_fp8, float *w)
{
    int st = check_common(ctx, "idx_prep_q", rope, scale_mode);
    if (st)
        return st;
    REF_REQUIRE(ctx, "idx_prep_q", n >= 0 && heads > 0);
    REF_REQUIRE(ctx, "idx_prep_q", n == 0 || (q && wraw && pos && q_fp8 && w));
    /* w = wraw * heads^-0.5 * q_scale * 128^-0.5: the softmax scale and the query's FP8 scale
     * folded into the per-head weight, so the logits kernel works on raw e4m3 dots. */
    const double head_scale = 1.0 / sqrt((double)heads), dim_scale = 1.0 / sqrt(DSA_IDX_DIM);
    float v[DSA_IDX_DIM];
    for (int r = 0; r < n; r++)
        for (int h = 0; h < heads; h++) {
            size_t o = ((size_t)r * heads + h) * DSA_IDX_DIM;
            for (int i = 0; i < DSA_IDX_DIM; i++)
                v[i] = ref_bf16f(q[o + i]);
            float scale = rope_hadamard_quant(v, pos[r], rope, scale_mode, q_fp8 + o);
            double wr = ref_bf16f(wraw[(size_t)r * heads + h]);
            w[(size_t)r * heads + h] = (float)(wr * head_scale * scale * dim_scale);
        }
    return DSA_OK;
}

int ref_idx_prep_k(void *ctx, const bf16_t *k, int ldk, int n, const bf16_t *ln_w,
                   const bf16_t *ln_b, const int32_t *pos, dsa_rope rope, int scale_mode,
                   const int64_t *slot, uint8_t *idx_cache)
{
    int st = check_common(ctx, "idx_prep_k", rope, scale_mode);
    if (st)
        return st;
    REF_REQUIRE(ctx, "idx_prep_k", n >= 0 && ldk >= DSA_IDX_DIM);
    REF_REQUIRE(ctx, "idx_prep_k", n == 0 || (k && ln_w && ln_b && pos && slot && idx_cache));
    bf16_t normed[DSA_IDX_DIM];
    float v[DSA_IDX_DIM];
    for (int r = 0; r < n; r++) {
        if (slot[r] < 0) /* padding row, as in the MLA cache writes */
            continue;
        /* The LayerNorm op itself, so "LayerNorm -> bf16" has one definition. */
        st = ref_layernorm(ctx, k + (size_t)r * ldk, ldk, 1, DSA_IDX_DIM, ln_w, ln_b, 1e-6f,
                           normed, DSA_IDX_DIM);
        if (st)
            return st;
        for (int i = 0; i < DSA_IDX_DIM; i++)
            v[i] = ref_bf16f(normed[i]);
        uint8_t *dst = idx_cache + (size_t)slot[r] * DSA_IDX_TOKEN_BYTES;
        float scale = rope_hadamard_quant(v, pos[r], rope, scale_mode, dst);
        memcpy(dst + DSA_IDX_DIM, &scale, 4);
    }
    return DSA_OK;
}
