/* kernels/ref/swiglu.c — out[r, c] = bf16(silu(gate) * up), gu = [gate | up] per row. */
#include <math.h>

#include "ref_internal.h"

int ref_swiglu(void *ctx, const bf16_t *gu, int n, int inter, bf16_t *out)
{
    REF_REQUIRE(ctx, "swiglu", n >= 0 && inter > 0);
    REF_REQUIRE(ctx, "swiglu", n == 0 || (gu && out));
    for (int r = 0; r < n; r++) {
        const bf16_t *g = gu + (size_t)r * 2 * inter, *u = g + inter;
        for (int c = 0; c < inter; c++) {
            float x = ref_bf16f(g[c]);
            float silu = x / (1.0f + expf(-x));
            out[(size_t)r * inter + c] = dsa_f32_to_bf16(silu * ref_bf16f(u[c]));
        }
    }
    return DSA_OK;
}
