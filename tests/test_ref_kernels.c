/* tests/test_ref_kernels.c — the reference's dense and indexer ops against hand-worked cases:
 * norms, GEMM (bf16 and FP8 block-scaled), RoPE (both styles), SwiGLU, embedding, MLA cache
 * writes (bf16, FP8 656-byte rows), indexer prep (q and k), indexer logits (prefill causality,
 * decode batches) and top-k (ties, padding, growing row lengths). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "ops.h"
#include "ref.h"

static dsa_ops ops;

static bf16_t B(float f) { return dsa_f32_to_bf16(f); }
static float F(bf16_t h) { return dsa_bf16_to_f32(h); }

/* |got - want| within k bf16 half-ulps of want (a half ulp is at most 2^-8 relative) */
#define CHECK_BF16(got, want, k) CHECK_NEAR(F(got), (want), (k) * 0x1p-8 * fabs(want) + 1e-30)

static void test_norms(void)
{
    /* rmsnorm: a constant row normalises to 1 (times w = 2); [1,2,3,4] by hand:
     * rms = sqrt(30/4) = 2.7386128 -> [0.3651483, 0.7302967, 1.0954451, 1.4605934] * 2.
     * ldx = 6 and ldy = 5 check the strides; the padding must stay untouched. */
    bf16_t x[12], w[4], y[10];
    for (int i = 0; i < 12; i++)
        x[i] = B(99.0f);
    for (int i = 0; i < 4; i++) {
        x[i] = B(3.0f);
        x[6 + i] = B((float)(i + 1));
        w[i] = B(2.0f);
    }
    for (int i = 0; i < 10; i++)
        y[i] = 0xffff;
    CHECK_INT(ops.rmsnorm(ops.ctx, x, 6, 2, 4, w, 1e-6f, y, 5), DSA_OK);
    for (int i = 0; i < 4; i++)
        CHECK_INT(y[i], 0x4000); /* exactly 2.0 */
    CHECK_BF16(y[5], 0.7302967, 1);
    CHECK_BF16(y[6], 1.4605934, 1);
    CHECK_BF16(y[7], 2.1908901, 1);
    CHECK_BF16(y[8], 2.9211867, 1);
    CHECK_INT(y[4], 0xffff);
    CHECK_INT(y[9], 0xffff);

    /* layernorm of [1,2,3,4]: mean 2.5, biased var 1.25, w = [1,1,2,2], b = [0,0,0,1]:
     * [-1.3416354, -0.4472118, 0.8944236, 3.6832708] */
    bf16_t lw[4] = {B(1), B(1), B(2), B(2)}, lb[4] = {B(0), B(0), B(0), B(1)}, ly[4];
    CHECK_INT(ops.layernorm(ops.ctx, x + 6, 4, 1, 4, lw, lb, 1e-5f, ly, 4), DSA_OK);
    CHECK_BF16(ly[0], -1.3416354, 1);
    CHECK_BF16(ly[1], -0.4472118, 1);
    CHECK_BF16(ly[2], 0.8944236, 1);
    CHECK_BF16(ly[3], 3.6832708, 1);
}

static void test_gemm(void)
{
    /* A [2, 3] (lda 4), W [2, 3]: D = A W^T = [[1-3, 3], [4-6, 7.5]] */
    bf16_t A[8] = {B(1), B(2), B(3), B(77), B(4), B(5), B(6), B(77)};
    bf16_t Wd[6] = {B(1), B(0), B(-1), B(0.5f), B(0.5f), B(0.5f)};
    dsa_weight W = {DSA_BF16, 2, 3, Wd, NULL};
    bf16_t D[6] = {0, 0, 0xffff, 0, 0, 0xffff};
    CHECK_INT(ops.gemm(ops.ctx, A, 4, 2, &W, NULL, D, 3), DSA_OK);
    CHECK(F(D[0]) == -2.0f && F(D[1]) == 3.0f && F(D[3]) == -2.0f && F(D[4]) == 7.5f);
    CHECK_INT(D[2], 0xffff);
    /* residual aliasing D: D = A W^T + 1 */
    D[0] = D[1] = D[3] = D[4] = B(1.0f);
    CHECK_INT(ops.gemm(ops.ctx, A, 4, 2, &W, D, D, 3), DSA_OK);
    CHECK(F(D[0]) == -1.0f && F(D[1]) == 4.0f && F(D[3]) == -1.0f && F(D[4]) == 8.5f);
    /* one rounding at the end: 1 + 2^-8 is a bf16 tie -> 1.0; 1 + 3*2^-8 -> 1 + 2^-6 */
    bf16_t a2[2] = {B(1.0f), B(0x1p-8f)}, w2[4] = {B(1), B(1), B(1), B(3)};
    dsa_weight W2 = {DSA_BF16, 2, 2, w2, NULL};
    bf16_t d2[2];
    CHECK_INT(ops.gemm(ops.ctx, a2, 2, 1, &W2, NULL, d2, 2), DSA_OK);
    CHECK_INT(d2[0], 0x3f80);
    CHECK_INT(d2[1], 0x3f82);

    /* FP8 weights, k = 256 (two 128-blocks), n = 129 (two block rows): W all e4m3 1.0 (0x38),
     * scales [row block 0: 0.5, 0.25 | row block 1: 4, 8]. A = 1.0 in block 0, 2.0 in
     * block 1, quantised to 448 with scales 1/448 and 2/448 (dequantising to exactly 1, 2).
     * D[j < 128] = 128*1*0.5 + 128*2*0.25 = 128; D[128] = 128*1*4 + 128*2*8 = 2560. */
    static uint8_t w8[129 * 256];
    memset(w8, 0x38, sizeof w8);
    float s8[4] = {0.5f, 0.25f, 4.0f, 8.0f};
    dsa_weight W8 = {DSA_FP8_E4M3, 129, 256, w8, s8};
    bf16_t a8[256], d8[129];
    for (int i = 0; i < 256; i++)
        a8[i] = B(i < 128 ? 1.0f : 2.0f);
    CHECK_INT(ops.gemm(ops.ctx, a8, 256, 1, &W8, NULL, d8, 129), DSA_OK);
    CHECK(F(d8[0]) == 128.0f && F(d8[127]) == 128.0f);
    CHECK(F(d8[128]) == 2560.0f);

    /* A is really quantised, and a partial last block (k = 130) is a block of its own:
     * A = [1, 0.3, 0 ..., 0 | 0, 0.25], W = e4m3 1.0 at k = 1 and k = 129, scales [1, 2].
     * Block 0: amax 1, bf16(0.3) = 0.30078125 -> 134.75 -> e4m3 128 -> 128/448 = 0.2857143.
     * Block 1: amax 0.25 -> exactly 0.25, times 2 -> 0.5. D = 0.7857143 (unquantised: 0.8008). */
    static uint8_t wq[130];
    bf16_t aq[130], dq;
    memset(wq, 0, sizeof wq);
    wq[1] = wq[129] = 0x38;
    float sq[2] = {1.0f, 2.0f};
    dsa_weight WQ = {DSA_FP8_E4M3, 1, 130, wq, sq};
    for (int i = 0; i < 130; i++)
        aq[i] = 0;
    aq[0] = B(1.0f), aq[1] = B(0.3f), aq[129] = B(0.25f);
    CHECK_INT(ops.gemm(ops.ctx, aq, 130, 1, &WQ, NULL, &dq, 1), DSA_OK);
    CHECK_NEAR(F(dq), 0.7857143, 0.002);
}

static void test_rope(void)
{
    const float c1 = 0.5403023f, s1 = 0.8414710f;          /* angle 1 (pair 0, pos 1) */
    const float c_a1 = 0.7317610f, s_a1 = 0.6815614f;      /* 10000^(-2/64) = 0.7498942 */
    const float c_a2 = 0.8460091f, s_a2 = 0.5331684f;      /* 10000^(-4/64) = 0.5623413 */
    dsa_rope inter = {DSA_ROPE_INTERLEAVED, 10000.0f}, half = {DSA_ROPE_HALF, 10000.0f};

    /* Layout: 2 rows x 2 heads, head width 80 with rope at cols [16, 80), ld_head 100 (gap
     * [80, 100) must stay), ld_row 210. Row 0 at pos 0 is unchanged; row 1 at pos 1. */
    static bf16_t x[2 * 210];
    for (int i = 0; i < 2 * 210; i++)
        x[i] = B(5.0f);
    for (int r = 0; r < 2; r++)
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 64; i++)
                x[r * 210 + h * 100 + 16 + i] = B(r == 0 ? dsa_rand_uniform(1, (uint64_t)i) : 0);
    bf16_t *h0 = x + 210 + 16, *h1 = x + 210 + 100 + 16;
    h0[0] = B(1); /* pair 0 = (0, 1): (1, 0) -> (cos 1, sin 1) */
    h0[3] = B(1); /* pair 1 = (2, 3): (0, 1) -> (-sin a1, cos a1) */
    h1[5] = B(2); /* pair 2 = (4, 5): (0, 2) -> (-2 sin a2, 2 cos a2) */
    bf16_t before[2 * 210];
    memcpy(before, x, sizeof x);
    int32_t pos[2] = {0, 1};
    CHECK_INT(ops.rope(ops.ctx, x, 2, 2, 210, 100, 16, pos, inter), DSA_OK);
    CHECK(memcmp(x, before, 210 * sizeof(bf16_t)) == 0); /* pos 0: identity, bit for bit */
    CHECK_BF16(h0[0], c1, 1);
    CHECK_BF16(h0[1], s1, 1);
    CHECK_BF16(h0[2], -s_a1, 1);
    CHECK_BF16(h0[3], c_a1, 1);
    CHECK_BF16(h1[4], -2 * s_a2, 1);
    CHECK_BF16(h1[5], 2 * c_a2, 1);
    int other = 0; /* every other rope value stays 0; columns outside the rope stay 5 */
    for (int i = 0; i < 64; i++) {
        other += (i > 3 && F(h0[i]) != 0.0f) + (i != 4 && i != 5 && F(h1[i]) != 0.0f);
    }
    for (int c = 0; c < 16; c++)
        other += F(x[210 + c]) != 5.0f;
    for (int c = 80; c < 116; c++)
        other += F(x[210 + c]) != 5.0f;
    CHECK_INT(other, 0);

    /* half style: pair i = (i, i + 32) */
    bf16_t y[64] = {0};
    y[0] = B(1);  /* pair 0: (1, 0) -> y[0] = cos 1, y[32] = sin 1 */
    y[33] = B(1); /* pair 1: (0, 1) -> y[1] = -sin a1, y[33] = cos a1 */
    CHECK_INT(ops.rope(ops.ctx, y, 1, 1, 64, 64, 0, pos + 1, half), DSA_OK);
    CHECK_BF16(y[0], c1, 1);
    CHECK_BF16(y[32], s1, 1);
    CHECK_BF16(y[1], -s_a1, 1);
    CHECK_BF16(y[33], c_a1, 1);
    CHECK_INT(y[2], 0);
    CHECK_INT(y[31], 0);
    /* and at pos 0 the half style is the identity too */
    bf16_t z[64];
    for (int i = 0; i < 64; i++)
        z[i] = B(dsa_rand_uniform(9, (uint64_t)i));
    memcpy(y, z, sizeof z);
    CHECK_INT(ops.rope(ops.ctx, y, 1, 1, 64, 64, 0, pos, half), DSA_OK);
    CHECK(memcmp(y, z, sizeof z) == 0);
}

static void test_swiglu_embed(void)
{
    /* [g0 g1 | u0 u1] = [1 -2 | 2 3]: silu(1)*2 = 1.4621172, silu(-2)*3 = -0.7152175 */
    bf16_t gu[4] = {B(1), B(-2), B(2), B(3)}, out[2];
    CHECK_INT(ops.swiglu(ops.ctx, gu, 1, 2, out), DSA_OK);
    CHECK_BF16(out[0], 1.4621172, 1);
    CHECK_BF16(out[1], -0.7152175, 1);

    bf16_t table[6] = {B(1), B(2), B(3), B(4), B(5), B(6)}, e[4];
    int32_t tok[2] = {2, 0};
    CHECK_INT(ops.embed(ops.ctx, tok, 2, table, 2, e), DSA_OK);
    CHECK(F(e[0]) == 5 && F(e[1]) == 6 && F(e[2]) == 1 && F(e[3]) == 2);
    tok[1] = -1;
    CHECK(ops.embed(ops.ctx, tok, 2, table, 2, e) != DSA_OK);
}

static void test_mla_cache(void)
{
    /* bf16: rows to slots [2, 0] of a 3-row cache; slot 1 untouched; slot -1 skipped */
    static bf16_t kv[2 * 600], guarded[4 * 576];
    bf16_t *cache = guarded + 576; /* a guard row before slot 0 catches a write to slot -1 */
    for (int i = 0; i < 2 * 600; i++)
        kv[i] = B(dsa_rand_uniform(3, (uint64_t)i));
    memset(guarded, 0xab, sizeof guarded);
    int64_t slot[2] = {2, 0};
    CHECK_INT(ops.mla_cache_write_bf16(ops.ctx, kv, 600, 2, slot, cache), DSA_OK);
    CHECK(memcmp(cache + 2 * 576, kv, 576 * 2) == 0);
    CHECK(memcmp(cache, kv + 600, 576 * 2) == 0);
    CHECK_INT(cache[576], 0xabab);
    CHECK_INT(cache[2 * 576 - 1], 0xabab);
    int64_t none = -1;
    CHECK_INT(ops.mla_cache_write_bf16(ops.ctx, kv + 600, 600, 1, &none, cache), DSA_OK);
    CHECK(memcmp(cache + 2 * 576, kv, 576 * 2) == 0);
    CHECK_INT(guarded[0], 0xabab);
    CHECK_INT(guarded[575], 0xabab);

    /* FP8, exact case: block b holds 2^-b * (e4m3 codes 0x00..0x7e, alternating sign), so its
     * amax is 448 * 2^-b, its fp32 scale exactly 2^-b and every value quantises exactly. */
    static uint8_t c8[3 * DSA_MLA_FP8_TOKEN_BYTES];
    memset(c8, 0xab, sizeof c8);
    uint8_t code[512];
    for (int b = 0; b < 4; b++)
        for (int i = 0; i < 128; i++) {
            uint8_t c = (uint8_t)((i * 5 + b) % 0x7f); /* covers 0x00..0x7e */
            if (i == 127)
                c = 0x7e; /* the block max, whatever the pattern gave */
            if (i % 2 && c)
                c |= 0x80;
            code[b * 128 + i] = c;
            kv[b * 128 + i] = B(ldexpf(dsa_e4m3_to_f32(c), -b));
        }
    /* row 1 (slot 0): arbitrary values, checked within e4m3 precision below */
    for (int i = 0; i < 576; i++)
        kv[600 + i] = B(3.0f * dsa_rand_uniform(11, (uint64_t)i) * (i < 128 ? 1 : 0.01f));
    int64_t s8[2] = {1, 0};
    CHECK_INT(ops.mla_cache_write_fp8(ops.ctx, kv, 600, 2, s8, c8, DSA_SCALE_FP32), DSA_OK);
    const uint8_t *r1 = c8 + DSA_MLA_FP8_TOKEN_BYTES;
    CHECK(memcmp(r1, code, 512) == 0);
    for (int b = 0; b < 4; b++) {
        float sc;
        memcpy(&sc, r1 + 512 + 4 * b, 4); /* scales at offset 512 */
        CHECK(sc == ldexpf(1.0f, -b));
    }
    CHECK(memcmp(r1 + 528, kv + 512, 128) == 0); /* k_pe bf16 at 528, bit for bit */
    CHECK_INT(c8[2 * DSA_MLA_FP8_TOKEN_BYTES], 0xab);
    /* row 1 dequantised: within half an e4m3 step of its block (relative 2^-4, subnormal
     * steps 2^-9 * scale) */
    const uint8_t *r0 = c8;
    int bad = 0;
    for (int i = 0; i < 512; i++) {
        float sc, x = F(kv[600 + i]);
        memcpy(&sc, r0 + 512 + 4 * (i / 128), 4);
        float deq = dsa_e4m3_to_f32(r0[i]) * sc;
        bad += fabsf(deq - x) > fabsf(x) * 0x1p-4f + sc * 0x1p-10f + 1e-7f;
    }
    CHECK_INT(bad, 0);
    float sc0;
    memcpy(&sc0, r0 + 512, 4);
    CHECK(sc0 > 0.0f && sc0 <= 3.0f / 448.0f);
    CHECK(memcmp(r0 + 528, kv + 600 + 512, 128) == 0);
    /* slot -1 writes nothing (row 0 of c8 is where slot -1 of c8 + 656 would be) */
    static uint8_t keep[DSA_MLA_FP8_TOKEN_BYTES];
    memcpy(keep, c8, sizeof keep);
    int64_t neg = -1;
    CHECK_INT(ops.mla_cache_write_fp8(ops.ctx, kv, 600, 1, &neg, c8 + DSA_MLA_FP8_TOKEN_BYTES,
                                      DSA_SCALE_FP32),
              DSA_OK);
    CHECK(memcmp(keep, c8, sizeof keep) == 0);

    /* ue8m0: block amax 300 -> scale 1.0, 300 -> e4m3 288 (0x79), 1.0 -> 0x38; an all-zero
     * block gets the floored scale 1e-4/448 rounded up to 2^-22 and zero bytes. */
    for (int i = 0; i < 576; i++)
        kv[i] = B(i < 128 ? 1.0f : 0.0f);
    kv[0] = B(300.0f);
    int64_t s0 = 2;
    CHECK_INT(ops.mla_cache_write_fp8(ops.ctx, kv, 600, 1, &s0, c8, DSA_SCALE_UE8M0), DSA_OK);
    const uint8_t *r2 = c8 + 2 * DSA_MLA_FP8_TOKEN_BYTES;
    float sc[4];
    memcpy(sc, r2 + 512, 16);
    CHECK_INT(r2[0], 0x79);
    CHECK_INT(r2[1], 0x38);
    CHECK_INT(r2[200], 0x00);
    CHECK(sc[0] == 1.0f && sc[1] == 0x1p-22f && sc[3] == 0x1p-22f);
}

static int popcount(unsigned x)
{
    int c = 0;
    for (; x; x >>= 1)
        c += x & 1;
    return c;
}

static void test_idx_prep(void)
{
    dsa_rope inter = {DSA_ROPE_INTERLEAVED, 10000.0f}, half = {DSA_ROPE_HALF, 10000.0f};
    /* q side, 2 heads at pos 5. Head 0 = e_64 (outside the rope dims): Hadamard gives
     * +-128^-0.5 = bf16 0.08837890625 with sign (-1)^popcount(64 & j), i.e. minus for j >= 64.
     * fp32 scale: amax/448 -> bytes +-448 (0x7e / 0xfe); w = 1 * 2^-0.5 * scale * 128^-0.5.
     * ue8m0: scale 2^-12 (amax/448 = 1.97e-4), 0.08837890625 * 4096 = 362 -> e4m3 352 (0x7b). */
    static bf16_t q[2 * 128];
    bf16_t wraw[2] = {B(1.0f), B(2.0f)};
    memset(q, 0, sizeof q);
    q[64] = B(1.0f);
    q[128] = B(1.0f); /* head 1 = e_0, rotated by pos 5 */
    int32_t pos = 5;
    uint8_t q8[256];
    float w[2];
    const float amax = 0.08837890625f;
    for (int mode = 0; mode < 2; mode++) {
        CHECK_INT(ops.idx_prep_q(ops.ctx, q, wraw, 1, 2, &pos, inter, mode, q8, w), DSA_OK);
        uint8_t hi = mode == DSA_SCALE_FP32 ? 0x7e : 0x7b;
        int bad = 0;
        for (int j = 0; j < 128; j++)
            bad += q8[j] != (j >= 64 ? (hi | 0x80) : hi);
        CHECK_INT(bad, 0);
        double scale = mode == DSA_SCALE_FP32 ? (double)(amax / 448.0f) : 0x1p-12;
        CHECK_NEAR(w[0], scale / sqrt(2.0) / sqrt(128.0), 1e-6 * w[0]);
    }
    /* Head 1: dequantise, undo the Hadamard: back to RoPE(e_0, pos 5) = (cos 5, sin 5) on the
     * pair (0, 1) interleaved, (0, 32) half; within e4m3 precision. */
    for (int st = 0; st < 2; st++) {
        CHECK_INT(ops.idx_prep_q(ops.ctx, q, wraw, 1, 2, &pos, st ? half : inter,
                                 DSA_SCALE_FP32, q8, w),
                  DSA_OK);
        /* scale of head 1 recovered from w: w = 2 * 2^-0.5 * scale * 128^-0.5 */
        double scale = w[1] / 2.0 * sqrt(2.0) * sqrt(128.0);
        float v[128];
        for (int j = 0; j < 128; j++)
            v[j] = (float)(dsa_e4m3_to_f32(q8[128 + j]) * scale);
        dsa_hadamard128(v);
        int b = st ? 32 : 1;
        CHECK_NEAR(v[0], 0.2836622, 0.06);
        CHECK_NEAR(v[b], -0.9589243, 0.06);
        double rest = 0.0;
        for (int j = 0; j < 128; j++)
            if (j != 0 && j != b)
                rest = fmax(rest, fabs(v[j]));
        CHECK(rest < 0.06);
    }

    /* k side. x_i = (-1)^popcount(i & 3) has mean 0 and variance 1, so LayerNorm (w = 2,
     * b = 0) gives 2x (bf16 exact). At pos 0 RoPE is the identity and the Hadamard of
     * 2x = 2 sqrt(128) H e_3 is 2 sqrt(128) e_3 = 22.627 -> bf16 22.625: byte 3 = 0x7e, all
     * others 0, scale 22.625/448 at offset 128.
     * Rows: x (pos 0) -> slot 3; 3x + 5 (pos 0) -> slot 1, same bytes since LayerNorm removes
     * the affine change; x (pos 3) -> slot 0 and 3x + 5 (pos 3) -> slot 2: equal to each
     * other only if LayerNorm runs before RoPE, and different from slot 3 (RoPE acted). */
    static bf16_t k[4 * 130];
    bf16_t lnw[128], lnb[128];
    for (int i = 0; i < 128; i++) {
        float xi = (popcount((unsigned)(i & 3)) & 1) ? -1.0f : 1.0f;
        k[0 * 130 + i] = k[2 * 130 + i] = B(xi);
        k[1 * 130 + i] = k[3 * 130 + i] = B(3 * xi + 5);
        lnw[i] = B(2.0f);
        lnb[i] = B(0.0f);
    }
    int32_t kpos[4] = {0, 0, 3, 3};
    int64_t kslot[4] = {3, 1, 0, 2};
    static uint8_t kc[5 * DSA_IDX_TOKEN_BYTES];
    memset(kc, 0xab, sizeof kc);
    CHECK_INT(ops.idx_prep_k(ops.ctx, k, 130, 4, lnw, lnb, kpos, inter, DSA_SCALE_FP32, kslot,
                             kc),
              DSA_OK);
    const uint8_t *k3 = kc + 3 * DSA_IDX_TOKEN_BYTES;
    int bad = 0;
    for (int j = 0; j < 128; j++)
        bad += k3[j] != (j == 3 ? 0x7e : 0x00);
    CHECK_INT(bad, 0);
    float ks;
    memcpy(&ks, k3 + 128, 4);
    CHECK(ks == 22.625f / 448.0f);
    CHECK(memcmp(kc + 1 * DSA_IDX_TOKEN_BYTES, k3, DSA_IDX_TOKEN_BYTES) == 0);
    CHECK(memcmp(kc + 0 * DSA_IDX_TOKEN_BYTES, kc + 2 * DSA_IDX_TOKEN_BYTES,
                 DSA_IDX_TOKEN_BYTES) == 0);
    CHECK(memcmp(kc, k3, 128) != 0);
    CHECK_INT(kc[4 * DSA_IDX_TOKEN_BYTES], 0xab);
    /* slot -1 (padding) writes nothing: row 0 of kc sits where slot -1 of kc + 132 would */
    uint8_t keep[DSA_IDX_TOKEN_BYTES];
    memcpy(keep, kc, sizeof keep);
    int64_t neg = -1;
    CHECK_INT(ops.idx_prep_k(ops.ctx, k, 130, 1, lnw, lnb, kpos, inter, DSA_SCALE_FP32, &neg,
                             kc + DSA_IDX_TOKEN_BYTES),
              DSA_OK);
    CHECK(memcmp(keep, kc, sizeof keep) == 0);
}

/* one 132-byte indexer key: the given leading e4m3 bytes, zeros, then the scale */
static void put_key(uint8_t *dst, const uint8_t *b, int nb, float scale)
{
    memset(dst, 0, 128);
    memcpy(dst, b, (size_t)nb);
    memcpy(dst + 128, &scale, 4);
}

static void test_idx_logits(void)
{
    /* keys: k0 = [1, 1] scale 0.5; k1 = [-1, 1] scale 2; k2 = [2, 0] scale 1; k3 = [1] s 1.
     * queries at positions 1 and 2 (q_pos0 = 1), 2 heads, w = [3, 0.5]:
     *   q0: h0 = [1, 2], h1 = [-2, 0]     q1: h0 = [-1, 0], h1 = [2, 0.5]
     * score = k_scale * sum_h w_h relu(q_h . k):
     *   (0,0): (3*3 + 0.5*relu(-2)) * 0.5 = 4.5      (0,1): (3*1 + 0.5*2) * 2 = 8
     *   (1,0): (3*relu(-1) + 0.5*2.5) * 0.5 = 0.625  (1,1): (3*1 + 0.5*relu(-1.5)) * 2 = 6
     *   (1,2): (3*relu(-2) + 0.5*4) * 1 = 2
     *   (0,2), (0,3), (1,3): beyond the causal limit -> -inf */
    static uint8_t cache[4 * DSA_IDX_TOKEN_BYTES];
    put_key(cache + 0 * 132, (const uint8_t[]){0x38, 0x38}, 2, 0.5f);
    put_key(cache + 1 * 132, (const uint8_t[]){0xb8, 0x38}, 2, 2.0f);
    put_key(cache + 2 * 132, (const uint8_t[]){0x40}, 1, 1.0f);
    put_key(cache + 3 * 132, (const uint8_t[]){0x38}, 1, 1.0f);
    static uint8_t q[2 * 2 * 128];
    q[0] = 0x38, q[1] = 0x40;          /* row 0 head 0 */
    q[128] = 0xc0;                     /* row 0 head 1 */
    q[256] = 0xb8;                     /* row 1 head 0 */
    q[384] = 0x40, q[385] = 0x30;      /* row 1 head 1 */
    float w[4] = {3.0f, 0.5f, 3.0f, 0.5f};
    float sc[2 * 5];
    for (int i = 0; i < 10; i++)
        sc[i] = 1234.0f;
    CHECK_INT(ops.idx_logits_prefill(ops.ctx, q, w, 2, 2, cache, 4, 1, sc, 5), DSA_OK);
    CHECK(sc[0] == 4.5f && sc[1] == 8.0f);
    CHECK(isinf(sc[2]) && sc[2] < 0 && isinf(sc[3]) && sc[3] < 0);
    CHECK(sc[5] == 0.625f && sc[6] == 6.0f && sc[7] == 2.0f);
    CHECK(isinf(sc[8]) && sc[8] < 0);
    CHECK(sc[4] == 1234.0f && sc[9] == 1234.0f); /* beyond n_keys: untouched */
    CHECK(ops.idx_logits_prefill(ops.ctx, q, w, 2, 2, cache, 2, 1, sc, 5) != DSA_OK);

    /* decode, 1 head, 2 requests with their own caches (stride 5 keys, n_keys 3):
     * request 0 = keys k0..k2 above, q = [1, 2], w = 3: [4.5, 6, 6];
     * request 1 keys: [1] s 4, [-1] s 1, [1, 1] s 0.25; q = [0.5], w = 2: [4, 0, 0.25]. */
    static uint8_t dc[2 * 5 * 132];
    memcpy(dc, cache, 3 * 132);
    put_key(dc + 5 * 132 + 0 * 132, (const uint8_t[]){0x38}, 1, 4.0f);
    put_key(dc + 5 * 132 + 1 * 132, (const uint8_t[]){0xb8}, 1, 1.0f);
    put_key(dc + 5 * 132 + 2 * 132, (const uint8_t[]){0x38, 0x38}, 2, 0.25f);
    static uint8_t dq[2 * 128];
    dq[0] = 0x38, dq[1] = 0x40, dq[128] = 0x30;
    float dw[2] = {3.0f, 2.0f}, ds[2 * 4];
    CHECK_INT(ops.idx_logits_decode(ops.ctx, dq, dw, 2, 1, dc, 5 * 132, 3, ds, 4), DSA_OK);
    CHECK(ds[0] == 4.5f && ds[1] == 6.0f && ds[2] == 6.0f);
    CHECK(ds[4] == 4.0f && ds[5] == 0.0f && ds[6] == 0.25f);
}

static void test_topk(void)
{
    int32_t out[16];
    /* ties to the lower index, -inf is just low */
    float s1[6] = {1, 3, 3, 2, -INFINITY, 5};
    CHECK_INT(ops.topk(ops.ctx, s1, 1, 6, 6, 0, 3, out), DSA_OK);
    CHECK(out[0] == 5 && out[1] == 1 && out[2] == 2);
    float s2[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    CHECK_INT(ops.topk(ops.ctx, s2, 1, 4, 4, 0, 2, out), DSA_OK);
    CHECK(out[0] == 0 && out[1] == 1);

    /* growing rows: len = 1 + 2r over ld 6, k = 4; values past len must be ignored */
    float s3[18] = {7, 9, 9, 9, 9, 9,                  /* len 1 */
                    1, 2, 2, 100, 100, 100,            /* len 3 */
                    -INFINITY, 4, -1, 4, 3, 100};      /* len 5 */
    CHECK_INT(ops.topk(ops.ctx, s3, 3, 6, 1, 2, 4, out), DSA_OK);
    const int32_t want3[12] = {0, -1, -1, -1, 1, 2, 0, -1, 1, 3, 4, 2};
    CHECK(memcmp(out, want3, sizeof want3) == 0);

    /* len clipped to ld: row 1 asks 7 of 6 */
    float s4[12] = {0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5};
    CHECK_INT(ops.topk(ops.ctx, s4, 2, 6, 5, 2, 2, out), DSA_OK);
    CHECK(out[0] == 4 && out[1] == 3 && out[2] == 5 && out[3] == 4);

    /* -inf within len are candidates; len 0 gives all -1 */
    float s5[2] = {-INFINITY, -INFINITY};
    CHECK_INT(ops.topk(ops.ctx, s5, 1, 2, 2, 0, 3, out), DSA_OK);
    CHECK(out[0] == 0 && out[1] == 1 && out[2] == -1);
    CHECK_INT(ops.topk(ops.ctx, s5, 1, 2, 0, 0, 2, out), DSA_OK);
    CHECK(out[0] == -1 && out[1] == -1);
}

int main(void)
{
    if (dsa_ref_ops_init(&ops) != DSA_OK)
        return 1;
    test_norms();
    test_gemm();
    test_rope();
    test_swiglu_embed();
    test_mla_cache();
    test_idx_prep();
    test_idx_logits();
    test_topk();
    dsa_ref_ops_fini(&ops);
    return check_done("test_ref_kernels");
}
