/* kernels/ref/moe.c — mixture of experts: the router (DeepSeek-V3 grouped sigmoid routing) and
 * the routed experts (SwiGLU per expert, weighted sum). */
#include <math.h>
#include <stdlib.h>

#include "ref_internal.h"

/* Index of the largest v[i] over i in [0, n) with allowed[i], ties to the lower index
 * (a strict > while scanning upwards); -1 when none is allowed. */
static int argmax_allowed(const float *v, const unsigned char *allowed, int n)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (allowed[i] && (best < 0 || v[i] > v[best]))
            best = i;
    return best;
}

int ref_moe_router(void *ctx, const bf16_t *x, int n, int hidden, const bf16_t *w_router,
                   const float *bias, dsa_router_cfg cfg, int32_t *ids, float *weights)
{
    const int ne = cfg.n_experts;
    /* n_group <= 1: one group holding every expert (no group stage). */
    const int ng = cfg.n_group > 1 ? cfg.n_group : 1;
    const int tg = cfg.n_group > 1 ? cfg.topk_group : 1;
    REF_REQUIRE(ctx, "moe_router", n >= 0 && hidden > 0 && ne > 0);
    REF_REQUIRE(ctx, "moe_router", ne % ng == 0 && tg >= 1 && tg <= ng);
    REF_REQUIRE(ctx, "moe_router", cfg.topk >= 1 && cfg.topk <= tg * (ne / ng));
    REF_REQUIRE(ctx, "moe_router", n == 0 || (x && w_router && ids && weights));
    const int gs = ne / ng;

    float *s = malloc((size_t)ne * sizeof *s), *biased = malloc((size_t)ne * sizeof *biased);
    float *gscore = malloc((size_t)ng * sizeof *gscore);
    unsigned char *gkeep = malloc((size_t)ng), *allowed = malloc((size_t)ne);
    unsigned char *gfree = malloc((size_t)ng);
    if (!s || !biased || !gscore || !gkeep || !allowed || !gfree) {
        free(s), free(biased), free(gscore), free(gkeep), free(allowed), free(gfree);
        return ref_fail(ctx, "moe_router: out of memory");
    }
    for (int r = 0; r < n; r++) {
        const bf16_t *xr = x + (size_t)r * hidden;
        /* Scores in fp32 from an fp32 router GEMM (DeepSeek runs the router in fp32). */
        for (int e = 0; e < ne; e++) {
            const bf16_t *we = w_router + (size_t)e * hidden;
            double logit = 0.0;
            for (int c = 0; c < hidden; c++)
                logit += (double)ref_bf16f(xr[c]) * ref_bf16f(we[c]);
            s[e] = (float)(1.0 / (1.0 + exp(-(double)(float)logit)));
            biased[e] = s[e] + (bias ? bias[e] : 0.0f); /* the bias steers selection only */
        }
        /* Group score: sum of the group's top-2 biased scores (its top-1 if it has one). */
        for (int g = 0; g < ng; g++) {
            float b1 = -INFINITY, b2 = -INFINITY;
            for (int e = g * gs; e < (g + 1) * gs; e++) {
                if (biased[e] > b1) {
                    b2 = b1;
                    b1 = biased[e];
                } else if (biased[e] > b2) {
                    b2 = biased[e];
                }
            }
            gscore[g] = gs >= 2 ? b1 + b2 : b1;
        }
        /* Keep the topk_group best groups, ties to the lower group index. */
        for (int g = 0; g < ng; g++)
            gkeep[g] = 0, gfree[g] = 1;
        for (int t = 0; t < tg; t++) {
            int g = argmax_allowed(gscore, gfree, ng);
            gkeep[g] = 1, gfree[g] = 0;
        }
        /* Pick topk experts of the kept groups by biased score, ties to the lower index. */
        for (int e = 0; e < ne; e++)
            allowed[e] = gkeep[e / gs];
        int32_t *id = ids + (size_t)r * cfg.topk;
        float *w = weights + (size_t)r * cfg.topk;
        float sum = 0.0f;
        for (int j = 0; j < cfg.topk; j++) {
            int e = argmax_allowed(biased, allowed, ne);
            allowed[e] = 0;
            id[j] = e;
            w[j] = s[e]; /* the unbiased score */
            sum += w[j];
        }
        for (int j = 0; j < cfg.topk; j++) {
            if (cfg.norm_topk)
                w[j] /= sum + 1e-20f; /* DeepSeek's guard against an all-zero sum */
            w[j] *= cfg.routed_scale;
        }
    }
    free(s), free(biased), free(gscore), free(gkeep), free(allowed), free(gfree);
    return DSA_OK;
}

/* E_e(x) = down_e(swiglu(gate_up_e(x))), mirroring the GPU path's storage: the gate_up GEMM
 * output is bf16 (a linear layer's output), SwiGLU's output is bf16 (the swiglu op itself),
 * the down projection stays fp32 and is accumulated over experts in double, the residual is
 * added in fp32 and the sum rounded to bf16 once. An id < 0 is skipped (no expert). */
int ref_moe_experts(void *ctx, const bf16_t *x, int n, int hidden, const int32_t *ids,
                    const float *weights, int topk, int n_experts, int inter,
                    const dsa_weight *gate_up, const dsa_weight *down, const bf16_t *residual,
                    bf16_t *out)
{
    REF_REQUIRE(ctx, "moe_experts", n >= 0 && hidden > 0 && topk >= 0 && n_experts > 0);
    REF_REQUIRE(ctx, "moe_experts", inter > 0);
    REF_REQUIRE(ctx, "moe_experts", n == 0 || (x && out && (topk == 0 || (ids && weights))));
    REF_REQUIRE(ctx, "moe_experts", gate_up && down);
    float *gu = malloc((size_t)2 * inter * sizeof *gu), *y = malloc((size_t)hidden * sizeof *y);
    bf16_t *gu16 = malloc((size_t)2 * inter * sizeof *gu16);
    bf16_t *h16 = malloc((size_t)inter * sizeof *h16);
    double *acc = malloc((size_t)hidden * sizeof *acc);
    int st = DSA_OK;
    if (!gu || !y || !gu16 || !h16 || !acc)
        st = ref_fail(ctx, "moe_experts: out of memory");
    for (int r = 0; r < n && st == DSA_OK; r++) {
        const bf16_t *xr = x + (size_t)r * hidden;
        for (int c = 0; c < hidden; c++)
            acc[c] = 0.0;
        for (int j = 0; j < topk && st == DSA_OK; j++) {
            int e = ids[(size_t)r * topk + j];
            if (e < 0)
                continue;
            if (e >= n_experts) {
                st = ref_fail(ctx, "moe_experts: expert id %d >= n_experts %d (row %d)", e,
                              n_experts, r);
                break;
            }
            const dsa_weight *wg = &gate_up[e], *wd = &down[e];
            if ((st = ref_check_weight(ctx, "moe_experts gate_up", wg)) ||
                (st = ref_check_weight(ctx, "moe_experts down", wd)))
                break;
            if (wg->n != 2 * inter || wg->k != hidden || wd->n != hidden || wd->k != inter) {
                st = ref_fail(ctx,
                              "moe_experts: expert %d has gate_up [%d, %d] and down [%d, %d], "
                              "expected [%d, %d] and [%d, %d]",
                              e, wg->n, wg->k, wd->n, wd->k, 2 * inter, hidden, hidden, inter);
                break;
            }
            if ((st = ref_linear_row(ctx, xr, wg, gu)))
                break;
            for (int c = 0; c < 2 * inter; c++)
                gu16[c] = dsa_f32_to_bf16(gu[c]);
            if ((st = ref_swiglu(ctx, gu16, 1, inter, h16)))
                break;
            if ((st = ref_linear_row(ctx, h16, wd, y)))
                break;
            double wj = weights[(size_t)r * topk + j];
            for (int c = 0; c < hidden; c++)
                acc[c] += wj * y[c];
        }
        if (st)
            break;
        /* Row r of residual is read before row r of out is written: they may alias. */
        for (int c = 0; c < hidden; c++) {
            size_t o = (size_t)r * hidden + c;
            double v = acc[c] + (residual ? ref_bf16f(residual[o]) : 0.0f);
            out[o] = dsa_f32_to_bf16((float)v);
        }
    }
    free(gu), free(y), free(gu16), free(h16), free(acc);
    return st;
}
