/* tests/test_ref_numerics.c — the reference's number formats and helpers against values worked
 * out by hand: bf16 and e4m3 rounding (ties to even, saturation, subnormals), FP8 scales,
 * splitmix64 test vectors, the uniform formula, the Hadamard transform, and the table's
 * memory ops and error reporting. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "ops.h"
#include "ref.h"

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void test_bf16(void)
{
    CHECK_INT(dsa_f32_to_bf16(1.0f), 0x3f80);
    CHECK_INT(dsa_f32_to_bf16(-2.0f), 0xc000);
    CHECK_INT(dsa_f32_to_bf16(0.0f), 0x0000);
    CHECK_INT(dsa_f32_to_bf16(-0.0f), 0x8000);
    /* bf16 keeps 7 mantissa bits: 1 + 2^-8 is half an ulp above 1 -> tie -> even (1.0) */
    CHECK_INT(dsa_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    /* 1 + 3*2^-8 lies halfway between 0x3f81 (odd) and 0x3f82 (even) -> 0x3f82 */
    CHECK_INT(dsa_f32_to_bf16(1.0f + 0x3p-8f), 0x3f82);
    /* just above the tie rounds up, below half an ulp rounds down */
    CHECK_INT(dsa_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    CHECK_INT(dsa_f32_to_bf16(1.0f + 0x1p-9f), 0x3f80);
    CHECK_INT(dsa_f32_to_bf16(3.14159265f), 0x4049); /* 3.140625; next is 3.15625 */
    CHECK_INT(dsa_f32_to_bf16(INFINITY), 0x7f80);
    CHECK_INT(dsa_f32_to_bf16(-INFINITY), 0xff80);
    CHECK_INT(dsa_f32_to_bf16(FLT_MAX), 0x7f80); /* rounds past the largest bf16 */
    /* NaN stays NaN, even one whose payload sits only in the bits that are dropped */
    bf16_t n1 = dsa_f32_to_bf16(NAN), n2 = dsa_f32_to_bf16(f32_from_bits(0x7f800001u));
    CHECK((n1 & 0x7f80) == 0x7f80 && (n1 & 0x7f) != 0);
    CHECK((n2 & 0x7f80) == 0x7f80 && (n2 & 0x7f) != 0);
    CHECK(isnan(dsa_bf16_to_f32(n2)));
    CHECK(dsa_bf16_to_f32(0x4049) == 3.140625f);
    CHECK(dsa_bf16_to_f32(0xbf80) == -1.0f);
    CHECK(dsa_bf16_to_f32(0x0001) == 0x1p-133f); /* smallest subnormal */
}

static void test_e4m3(void)
{
    /* decode: (1 + m/8) * 2^(e-7), subnormals m * 2^-9, 0x7f / 0xff NaN */
    CHECK(dsa_e4m3_to_f32(0x38) == 1.0f);
    CHECK(dsa_e4m3_to_f32(0x3a) == 1.25f);
    CHECK(dsa_e4m3_to_f32(0x7e) == 448.0f);
    CHECK(dsa_e4m3_to_f32(0xfe) == -448.0f);
    CHECK(dsa_e4m3_to_f32(0x77) == 240.0f); /* e 14, m 7: 1.875 * 128 */
    CHECK(dsa_e4m3_to_f32(0x08) == 0x1p-6f);
    CHECK(dsa_e4m3_to_f32(0x01) == 0x1p-9f);
    CHECK(dsa_e4m3_to_f32(0x07) == 7 * 0x1p-9f);
    CHECK(dsa_e4m3_to_f32(0x00) == 0.0f && !signbit(dsa_e4m3_to_f32(0x00)));
    CHECK(dsa_e4m3_to_f32(0x80) == 0.0f && signbit(dsa_e4m3_to_f32(0x80)));
    CHECK(isnan(dsa_e4m3_to_f32(0x7f)) && isnan(dsa_e4m3_to_f32(0xff)));
    int nans = 0;
    for (int b = 0; b < 256; b++)
        nans += isnan(dsa_e4m3_to_f32((uint8_t)b));
    CHECK_INT(nans, 2);

    /* encode: exact values, ties to even, saturation, subnormals, NaN */
    CHECK_INT(dsa_f32_to_e4m3(1.0f), 0x38);
    CHECK_INT(dsa_f32_to_e4m3(-1.0f), 0xb8);
    CHECK_INT(dsa_f32_to_e4m3(1.125f), 0x39);
    CHECK_INT(dsa_f32_to_e4m3(1.0625f), 0x38); /* halfway 1 .. 1.125 -> even 1.0 */
    CHECK_INT(dsa_f32_to_e4m3(1.1875f), 0x3a); /* halfway 1.125 .. 1.25 -> even 1.25 */
    CHECK_INT(dsa_f32_to_e4m3(1.07f), 0x39);
    CHECK_INT(dsa_f32_to_e4m3(448.0f), 0x7e);
    CHECK_INT(dsa_f32_to_e4m3(432.0f), 0x7e); /* halfway 416 .. 448 -> even (m 6) 448 */
    CHECK_INT(dsa_f32_to_e4m3(424.0f), 0x7d); /* 416 */
    CHECK_INT(dsa_f32_to_e4m3(470.0f), 0x7e); /* would round to 480 = the NaN code 0x7f */
    CHECK_INT(dsa_f32_to_e4m3(-479.0f), 0xfe);
    CHECK_INT(dsa_f32_to_e4m3(500.0f), 0x7e);
    CHECK_INT(dsa_f32_to_e4m3(1e9f), 0x7e);
    CHECK_INT(dsa_f32_to_e4m3(-1e9f), 0xfe);
    CHECK_INT(dsa_f32_to_e4m3(INFINITY), 0x7e);
    CHECK_INT(dsa_f32_to_e4m3(-INFINITY), 0xfe);
    CHECK_INT(dsa_f32_to_e4m3(NAN), 0x7f);
    CHECK_INT(dsa_f32_to_e4m3(0x1p-9f), 0x01);     /* smallest subnormal */
    CHECK_INT(dsa_f32_to_e4m3(-0x1p-9f), 0x81);
    CHECK_INT(dsa_f32_to_e4m3(0x1p-10f), 0x00);    /* halfway 0 .. 2^-9 -> even 0 */
    CHECK_INT(dsa_f32_to_e4m3(0x3p-11f), 0x01);    /* 0.75 * 2^-9 */
    CHECK_INT(dsa_f32_to_e4m3(0x3p-10f), 0x02);    /* 1.5 * 2^-9: halfway 1 .. 2 -> 2 */
    CHECK_INT(dsa_f32_to_e4m3(0x5p-10f), 0x02);    /* 2.5 * 2^-9: halfway 2 .. 3 -> 2 */
    CHECK_INT(dsa_f32_to_e4m3(0xfp-10f), 0x08);    /* 7.5 * 2^-9: halfway 7 .. 8 -> 8 = 2^-6 */
    CHECK_INT(dsa_f32_to_e4m3(1e-30f), 0x00);
    CHECK_INT(dsa_f32_to_e4m3(-0.0f), 0x80);
    CHECK_INT(dsa_f32_to_e4m3(15.5f), 0x58);       /* halfway 15 .. 16 -> 16 (biased e 11, m 0) */
    CHECK_INT(dsa_f32_to_e4m3(3.0f), 0x44);        /* 1.5 * 2 */

    /* Every finite code survives a round trip; the midpoint of two neighbouring codes goes
     * to the one with the even mantissa (the even code), and a hair off it to the nearer. */
    for (int b = 0; b < 0x7e; b++) {
        for (int s = 0; s < 2; s++) {
            uint8_t lo = (uint8_t)(b | (s << 7)), hi = (uint8_t)((b + 1) | (s << 7));
            float a = dsa_e4m3_to_f32(lo), c = dsa_e4m3_to_f32(hi), mid = (a + c) / 2;
            CHECK_INT(dsa_f32_to_e4m3(a), lo);
            CHECK_INT(dsa_f32_to_e4m3(mid), (b % 2 == 0) ? lo : hi);
            CHECK_INT(dsa_f32_to_e4m3(nextafterf(mid, 0.0f)), lo);
            CHECK_INT(dsa_f32_to_e4m3(nextafterf(mid, s ? -1e9f : 1e9f)), hi);
        }
    }
    CHECK_INT(dsa_f32_to_e4m3(dsa_e4m3_to_f32(0x7e)), 0x7e);
    CHECK_INT(dsa_f32_to_e4m3(464.0f), 0x7e); /* halfway to the (NaN) 480: saturates */
}

static void test_fp8_scale(void)
{
    CHECK(dsa_fp8_scale(448.0f, DSA_SCALE_FP32) == 1.0f);
    CHECK(dsa_fp8_scale(448.0f, DSA_SCALE_UE8M0) == 1.0f);
    CHECK(dsa_fp8_scale(224.0f, DSA_SCALE_FP32) == 0.5f);
    CHECK(dsa_fp8_scale(224.0f, DSA_SCALE_UE8M0) == 0.5f);
    CHECK(dsa_fp8_scale(300.0f, DSA_SCALE_FP32) == 300.0f / 448.0f);
    CHECK(dsa_fp8_scale(300.0f, DSA_SCALE_UE8M0) == 1.0f); /* 0.67 -> up to 2^0 */
    CHECK(dsa_fp8_scale(449.0f, DSA_SCALE_UE8M0) == 2.0f); /* just above 1 -> 2 */
    CHECK(dsa_fp8_scale(3.5f, DSA_SCALE_UE8M0) == 0x1p-7f); /* 3.5/448 = 2^-7 exactly */
    CHECK(dsa_fp8_scale(3.6f, DSA_SCALE_UE8M0) == 0x1p-6f);
    /* amax floored at 1e-4: 1e-4/448 = 2.23e-7, between 2^-23 and 2^-22 */
    CHECK(dsa_fp8_scale(0.0f, DSA_SCALE_FP32) == 1e-4f / 448.0f);
    CHECK(dsa_fp8_scale(1e-9f, DSA_SCALE_FP32) == 1e-4f / 448.0f);
    CHECK(dsa_fp8_scale(0.0f, DSA_SCALE_UE8M0) == 0x1p-22f);
}

static void test_random(void)
{
    /* splitmix64 test vectors: state 0 gives 0xe220a8397b1dcdaf; state 1234567 gives
     * 6457827717110365317, then 3203168211198807973 (the next state adds the golden gamma). */
    CHECK(dsa_splitmix64(0) == 0xe220a8397b1dcdafull);
    CHECK(dsa_splitmix64(1234567) == 6457827717110365317ull);
    CHECK(dsa_splitmix64(1234567 + 0x9e3779b97f4a7c15ull) == 3203168211198807973ull);
    /* seed = splitmix64(i) makes seed ^ splitmix64(i) = 0: u = (0xe220a8 * 2^-23) - 1 */
    uint64_t seed = dsa_splitmix64(5);
    CHECK(dsa_rand_uniform(seed, 5) == (float)(14819496.0 / 8388608.0 - 1.0));
    double sum = 0.0;
    int in_range = 1;
    for (int i = 0; i < 20000; i++) {
        float u = dsa_rand_uniform(42, (uint64_t)i);
        in_range &= (u >= -1.0f && u < 1.0f);
        sum += u;
    }
    CHECK(in_range);
    CHECK(fabs(sum / 20000) < 0.02);
    CHECK(dsa_rand_uniform(42, 0) != dsa_rand_uniform(43, 0));
}

static int popcount(unsigned x)
{
    int c = 0;
    for (; x; x >>= 1)
        c += x & 1;
    return c;
}

static void test_hadamard(void)
{
    const float s = 0.08838834764831843f; /* 128^-0.5 */
    const int basis[] = {0, 1, 5, 64, 127};
    for (size_t t = 0; t < sizeof basis / sizeof basis[0]; t++) {
        int i = basis[t];
        float v[128] = {0};
        v[i] = 1.0f;
        dsa_hadamard128(v);
        int bad = 0;
        for (int j = 0; j < 128; j++) {
            float want = (popcount((unsigned)(i & j)) & 1) ? -s : s;
            bad += fabsf(v[j] - want) > 1e-7f;
        }
        CHECK_INT(bad, 0);
    }
    /* all ones -> sqrt(128) e_0 */
    float ones[128];
    for (int j = 0; j < 128; j++)
        ones[j] = 1.0f;
    dsa_hadamard128(ones);
    CHECK_NEAR(ones[0], 11.313708498984761, 1e-5);
    CHECK_NEAR(ones[77], 0.0, 1e-6);
    /* H is its own inverse */
    float x[128], y[128];
    for (int j = 0; j < 128; j++)
        x[j] = y[j] = dsa_rand_uniform(7, (uint64_t)j) * 3.0f;
    dsa_hadamard128(y);
    CHECK(fabsf(y[3] - x[3]) > 1e-3f); /* it did something */
    dsa_hadamard128(y);
    double err = 0.0;
    for (int j = 0; j < 128; j++)
        err = fmax(err, fabs(y[j] - x[j]));
    CHECK(err < 1e-6);
}

static void test_table(void)
{
    dsa_ops ops;
    CHECK_INT(dsa_ref_ops_init(&ops), DSA_OK);
    CHECK_STR(ops.name, "cpu");
    /* every entry filled */
    CHECK(ops.last_error && ops.alloc && ops.release && ops.upload && ops.download && ops.sync);
    CHECK(ops.fill_bf16 && ops.fill_f32 && ops.embed && ops.rmsnorm && ops.layernorm);
    CHECK(ops.gemm && ops.rope && ops.swiglu && ops.mla_cache_write_bf16);
    CHECK(ops.mla_cache_write_fp8 && ops.idx_prep_q && ops.idx_prep_k);
    CHECK(ops.idx_logits_prefill && ops.idx_logits_decode && ops.topk && ops.mla_absorb);
    CHECK(ops.sparse_attn_prefill && ops.sparse_attn_decode && ops.mla_out);
    CHECK(ops.moe_router && ops.moe_experts);
    CHECK_STR(ops.last_error(ops.ctx), "");

    unsigned char *p = NULL;
    CHECK_INT(ops.alloc(ops.ctx, (void **)&p, 64), DSA_OK);
    int nonzero = 0;
    for (int i = 0; i < 64; i++)
        nonzero += p[i] != 0;
    CHECK_INT(nonzero, 0); /* zero-filled */
    unsigned char src[64], dst[64];
    for (int i = 0; i < 64; i++)
        src[i] = (unsigned char)(i * 7);
    CHECK_INT(ops.upload(ops.ctx, p, src, 64), DSA_OK);
    CHECK_INT(ops.download(ops.ctx, dst, p, 64), DSA_OK);
    CHECK(memcmp(src, dst, 64) == 0);
    CHECK_INT(ops.sync(ops.ctx), DSA_OK);
    ops.release(ops.ctx, p);

    /* fill_f32 follows the formula: with seed = splitmix64(5), element 5 is 0.7666282 * scale */
    float f[6];
    bf16_t h[6];
    CHECK_INT(ops.fill_f32(ops.ctx, f, 6, dsa_splitmix64(5), 2.0f), DSA_OK);
    CHECK(f[5] == 2.0f * (float)(14819496.0 / 8388608.0 - 1.0));
    CHECK_INT(ops.fill_bf16(ops.ctx, h, 6, dsa_splitmix64(5), 2.0f), DSA_OK);
    CHECK_INT(h[5], 0x3fc4); /* 1.5332432 -> bf16 1.53125 */
    CHECK(dsa_bf16_to_f32(h[2]) == dsa_bf16_to_f32(dsa_f32_to_bf16(f[2])));

    /* errors: non-zero status and a message naming the op */
    bf16_t x[4] = {0}, w[4] = {0};
    CHECK(ops.rmsnorm(ops.ctx, x, 4, 1, 0, w, 1e-6f, x, 4) != DSA_OK);
    CHECK(strstr(ops.last_error(ops.ctx), "rmsnorm") != NULL);
    dsa_weight fp8 = {DSA_FP8_E4M3, 1, 4, w, NULL};
    CHECK(ops.gemm(ops.ctx, x, 4, 1, &fp8, NULL, x, 4) != DSA_OK);
    CHECK(strstr(ops.last_error(ops.ctx), "scales") != NULL);
    dsa_ref_ops_fini(&ops);
    CHECK(ops.ctx == NULL);
}

int main(void)
{
    test_bf16();
    test_e4m3();
    test_fp8_scale();
    test_random();
    test_hadamard();
    test_table();
    return check_done("test_ref_numerics");
}
