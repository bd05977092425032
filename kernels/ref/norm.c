/* kernels/ref/norm.c — RMSNorm and LayerNorm over d columns of each row. Statistics in double,
 * the normalised value in fp32, one rounding to bf16 at the output (no intermediate bf16 step,
 * unlike Hugging Face's RMSNorm, which rounds before the weight: ops.h defines the op as one
 * expression). x and y may be the same buffer with the same stride. */
#include <math.h>

#include "ref_internal.h"

int ref_rmsnorm(void *ctx, const bf16_t *x, int ldx, int n, int d, const bf16_t *w, float eps,
                bf16_t *y, int ldy)
{
    REF_REQUIRE(ctx, "rmsnorm", n >= 0 && d > 0 && ldx >= d && ldy >= d);
    REF_REQUIRE(ctx, "rmsnorm", n == 0 || (x && w && y));
    for (int r = 0; r < n; r++) {
        const bf16_t *xr = x + (size_t)r * ldx;
        bf16_t *yr = y + (size_t)r * ldy;
        double ss = 0.0;
        for (int c = 0; c < d; c++) {
            double v = ref_bf16f(xr[c]);
            ss += v * v;
        }
        float inv = (float)(1.0 / sqrt(ss / d + (double)eps));
        for (int c = 0; c < d; c++)
            yr[c] = dsa_f32_to_bf16(ref_bf16f(xr[c]) * inv * ref_bf16f(w[c]));
    }
    return DSA_OK;
}

int ref_layernorm(void *ctx, const bf16_t *x, int ldx, int n, int d, const bf16_t *w,
                  const bf16_t *b, float eps, bf16_t *y, int ldy)
{
    REF_REQUIRE(ctx, "layernorm", n >= 0 && d > 0 && ldx >= d && ldy >= d);
    REF_REQUIRE(ctx, "layernorm", n == 0 || (x && w && b && y));
    for (int r = 0; r < n; r++) {
        const bf16_t *xr = x + (size_t)r * ldx;
        bf16_t *yr = y + (size_t)r * ldy;
        double sum = 0.0, ss = 0.0;
        for (int c = 0; c < d; c++)
            sum += ref_bf16f(xr[c]);
        double mean = sum / d;
        for (int c = 0; c < d; c++) { /* two passes: no cancellation in the variance */
            double v = ref_bf16f(xr[c]) - mean;
            ss += v * v;
        }
        float inv = (float)(1.0 / sqrt(ss / d + (double)eps)); /* biased variance */
        float fmean = (float)mean;
        for (int c = 0; c < d; c++) {
            float v = (ref_bf16f(xr[c]) - fmean) * inv;
            yr[c] = dsa_f32_to_bf16(v * ref_bf16f(w[c]) + ref_bf16f(b[c]));
        }
    }
    return DSA_OK;
}
