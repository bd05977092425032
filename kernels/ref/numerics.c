/* kernels/ref/numerics.c — number formats (bf16, FP8 e4m3), FP8 scales and quantisation,
 * and the deterministic synthetic data (splitmix64, fill_bf16, fill_f32). */
#include <math.h>
#include <string.h>

#include "ref_internal.h"

float dsa_bf16_to_f32(bf16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

bf16_t dsa_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: truncating could give inf; keep it a quiet NaN */
        return (bf16_t)((u >> 16) | 0x0040u);
    /* Round to nearest even: add half an ulp minus one, plus the lowest kept bit. Finite values
     * past the largest bf16 carry into the exponent and become inf, as RNE should. */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

/* Round a non-negative double to the nearest integer, ties to even. Exact for our inputs. */
static double rne(double q)
{
    double f = floor(q), d = q - f;
    if (d > 0.5 || (d == 0.5 && fmod(f, 2.0) != 0.0))
        f += 1.0;
    return f;
}

uint8_t dsa_f32_to_e4m3(float f)
{
    if (isnan(f))
        return 0x7f;
    uint8_t sign = signbit(f) ? 0x80 : 0x00;
    double a = fabs((double)f);
    if (a >= 448.0) /* saturate: no e4m3 infinity; inf also maps to the largest finite */
        return sign | 0x7e;
    if (a < 0x1p-6) {
        /* Subnormal range: multiples of 2^-9. The count is the encoding; a result of 8 is
         * 2^-6, the smallest normal, whose encoding is 0x08 too. */
        return sign | (uint8_t)rne(a * 512.0);
    }
    int e;
    frexp(a, &e);                     /* a in [2^(e-1), 2^e) */
    int E = e - 1;                    /* unbiased exponent, -6..8 */
    double q = rne(ldexp(a, 3 - E)); /* 1.mmm scaled to 8..16 */
    if (q == 16.0) {                  /* rounded up to the next power of two */
        q = 8.0;
        E++;
    }
    /* a < 448 keeps E <= 8 and, at E = 8, q <= 14: the result never exceeds 0x7e. */
    return sign | (uint8_t)(((E + 7) << 3) | ((int)q - 8));
}

float dsa_e4m3_to_f32(uint8_t b)
{
    int exp = (b >> 3) & 0xf, man = b & 7;
    float v;
    if (exp == 15 && man == 7)
        v = NAN;
    else if (exp == 0)
        v = ldexpf((float)man, -9);
    else
        v = ldexpf((float)(8 + man), exp - 10); /* (1 + man/8) * 2^(exp-7) */
    return (b & 0x80) ? -v : v;
}

float dsa_fp8_scale(float amax, int scale_mode)
{
    /* fmaxf also maps a NaN amax to the floor. */
    float s = fmaxf(amax, DSA_FP8_AMAX_FLOOR) / DSA_FP8_MAX;
    if (scale_mode == DSA_SCALE_UE8M0 && isfinite(s)) {
        int e;
        float m = frexpf(s, &e); /* s = m * 2^e, m in [0.5, 1) */
        s = (m == 0.5f) ? s : ldexpf(1.0f, e);
    }
    return s;
}

float ref_quant_e4m3(const float *x, int n, int scale_mode, uint8_t *out)
{
    float amax = 0.0f;
    for (int i = 0; i < n; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    float scale = dsa_fp8_scale(amax, scale_mode);
    for (int i = 0; i < n; i++)
        out[i] = dsa_f32_to_e4m3(x[i] / scale);
    return scale;
}

uint64_t dsa_splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float dsa_rand_uniform(uint64_t seed, uint64_t i)
{
    uint64_t h = dsa_splitmix64(seed ^ dsa_splitmix64(i)) >> 40; /* 24 bits: exact in fp32 */
    return (float)h * 0x1p-23f - 1.0f;
}

int ref_fill_bf16(void *ctx, bf16_t *dst, size_t n, uint64_t seed, float scale)
{
    REF_REQUIRE(ctx, "fill_bf16", dst || n == 0);
    for (size_t i = 0; i < n; i++)
        dst[i] = dsa_f32_to_bf16(scale * dsa_rand_uniform(seed, i));
    return DSA_OK;
}

int ref_fill_e4m3(void *ctx, uint8_t *dst, size_t n, uint64_t seed)
{
    REF_REQUIRE(ctx, "fill_e4m3", dst || n == 0);
    for (size_t i = 0; i < n; i++) {
        uint32_t r = (uint32_t)(dsa_splitmix64(seed ^ dsa_splitmix64(i)) >> 32);
        dst[i] = (uint8_t)((r % 0x7f) | ((r >> 16) & 0x80));
    }
    return DSA_OK;
}

int ref_fill_f32(void *ctx, float *dst, size_t n, uint64_t seed, float scale)
{
    REF_REQUIRE(ctx, "fill_f32", dst || n == 0);
    for (size_t i = 0; i < n; i++)
        dst[i] = scale * dsa_rand_uniform(seed, i);
    return DSA_OK;
}
