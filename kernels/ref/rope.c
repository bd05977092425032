/* kernels/ref/rope.c — rotary position embedding over 64 dims (dsa_rope in ops.h).
 * Angles and their sine/cosine are computed in double: the oracle gives the exact rotation.
 * (Serving stacks build an fp32 cos/sin cache; at position p that differs from the exact angle
 * by about p * 2^-24 rad, far below bf16 precision at the contexts the CPU path runs.) */
#include <math.h>

#include "ref_internal.h"

void ref_rope64(float *v, int32_t pos, dsa_rope rope)
{
    const int half = DSA_ROPE_DIM / 2;
    for (int i = 0; i < half; i++) {
        double inv_freq = pow((double)rope.theta, -2.0 * i / DSA_ROPE_DIM);
        double angle = (double)pos * inv_freq;
        double c = cos(angle), s = sin(angle);
        int ia = rope.style == DSA_ROPE_HALF ? i : 2 * i;
        int ib = rope.style == DSA_ROPE_HALF ? i + half : 2 * i + 1;
        double a = v[ia], b = v[ib];
        v[ia] = (float)(a * c - b * s);
        v[ib] = (float)(a * s + b * c);
    }
}

int ref_rope(void *ctx, bf16_t *x, int n, int heads, int ld_row, int ld_head, int col,
             const int32_t *pos, dsa_rope rope)
{
    REF_REQUIRE(ctx, "rope", n >= 0 && heads > 0 && col >= 0 && ld_head >= 0 && ld_row >= 0);
    REF_REQUIRE(ctx, "rope", rope.style == DSA_ROPE_INTERLEAVED || rope.style == DSA_ROPE_HALF);
    REF_REQUIRE(ctx, "rope", rope.theta > 0.0f);
    REF_REQUIRE(ctx, "rope", n == 0 || (x && pos));
    float v[DSA_ROPE_DIM];
    for (int r = 0; r < n; r++)
        for (int h = 0; h < heads; h++) {
            bf16_t *p = x + (size_t)r * ld_row + (size_t)h * ld_head + col;
            for (int i = 0; i < DSA_ROPE_DIM; i++)
                v[i] = ref_bf16f(p[i]);
            ref_rope64(v, pos[r], rope);
            for (int i = 0; i < DSA_ROPE_DIM; i++)
                p[i] = dsa_f32_to_bf16(v[i]);
        }
    return DSA_OK;
}
