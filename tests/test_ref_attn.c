/* tests/test_ref_attn.c — the reference's MLA ops against hand-worked cases: weight absorption,
 * output projection, sparse attention over a bf16 cache (prefill) and an FP8 cache (decode):
 * one index, two equal scores (the mean), a hand softmax, skipped -1 indices, empty rows. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "ops.h"
#include "ref.h"

static dsa_ops ops;

static bf16_t B(float f) { return dsa_f32_to_bf16(f); }
static float F(bf16_t h) { return dsa_bf16_to_f32(h); }
#define CHECK_BF16(got, want) CHECK_NEAR(F(got), (want), 0x1p-8 * fabs(want) + 1e-30)

static void test_absorb_out(void)
{
    /* heads 2, nope 2, v 2: w_kvb [2, 4, 512], rows 0-1 W_UK[h], rows 2-3 W_UV[h]. */
    enum { H = 2, NOPE = 2, V = 2 };
    static bf16_t w[H * (NOPE + V) * 512];
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
        w[i] = B(0);
#define W(h, row, c) w[((h) * (NOPE + V) + (row)) * 512 + (c)]
    W(0, 0, 0) = B(1);
    W(0, 1, 0) = B(2), W(0, 1, 1) = B(1);
    W(1, 0, 511) = B(1);
    W(1, 1, 511) = B(4);
    W(0, 2, 0) = B(3), W(0, 2, 5) = B(0.5f);
    W(0, 3, 0) = B(-1);
    W(1, 2, 511) = B(-1.5f);
    W(1, 3, 511) = B(0.25f);
#undef W
    /* q [1, 2, 66]: head 0 q_nope = [1, 2], head 1 q_nope = [3, -1]; q_pe = 0.5 * (i + 1) */
    bf16_t q[2 * 66];
    q[0] = B(1), q[1] = B(2), q[66] = B(3), q[67] = B(-1);
    for (int i = 0; i < 64; i++)
        q[2 + i] = q[68 + i] = B(0.5f * (i + 1));
    static bf16_t query[2 * 576];
    CHECK_INT(ops.mla_absorb(ops.ctx, q, 1, H, NOPE, V, w, query), DSA_OK);
    /* head 0: q_lat[0] = 1*1 + 2*2 = 5, q_lat[1] = 2*1 = 2; head 1: q_lat[511] = 3 - 4 = -1 */
    CHECK(F(query[0]) == 5 && F(query[1]) == 2 && F(query[2]) == 0);
    CHECK(F(query[576 + 511]) == -1 && F(query[576]) == 0);
    CHECK(memcmp(query + 512, q + 2, 128) == 0 && memcmp(query + 576 + 512, q + 68, 128) == 0);

    /* out_lat [1, 2, 512]: head 0 = e_0 + 2 e_5, head 1 = 2 e_511.
     * o[h*v + j] = out_lat[h] . W_UV[h][j]: [3 + 1, -1, -3, 0.5] */
    static bf16_t lat[2 * 512];
    for (int i = 0; i < 1024; i++)
        lat[i] = 0;
    lat[0] = B(1), lat[5] = B(2), lat[512 + 511] = B(2);
    bf16_t o[4];
    CHECK_INT(ops.mla_out(ops.ctx, lat, 1, H, NOPE, V, w, o), DSA_OK);
    CHECK(F(o[0]) == 4 && F(o[1]) == -1 && F(o[2]) == -3 && F(o[3]) == 0.5f);
}

static void test_sparse_prefill(void)
{
    /* cache rows (c_kv | k_pe):
     *   row 0: c_kv[0] = 2, c_kv[2] = 4, c_kv[511] = -1, k_pe[0] = 1
     *   row 1: c_kv[0] = 4, c_kv[1] = 2, c_kv[511] = 3,  k_pe[0] = -1
     *   row 2: c_kv[0] = 0.5, c_kv[3] = 7, k_pe[0] = 0.25
     *   row 3: all 100 (never selected) */
    static bf16_t cache[4 * 576];
    for (int i = 0; i < 4 * 576; i++)
        cache[i] = i >= 3 * 576 ? B(100) : 0;
    cache[0] = B(2), cache[2] = B(4), cache[511] = B(-1), cache[512] = B(1);
    cache[576] = B(4), cache[577] = B(2), cache[576 + 511] = B(3), cache[576 + 512] = B(-1);
    cache[1152] = B(0.5f), cache[1155] = B(7), cache[1152 + 512] = B(0.25f);

    /* queries [3 rows, 2 heads, 576], scale 0.125, topk 3:
     *  row 0, idx [2, -1, -1]: one key. h0 = e_0 + 2 e_512: score 0.5 + 0.5 = 1 -> lse 0.125;
     *         h1 = 0: lse 0. Both: out = c_kv of row 2.
     *  row 1, idx [-1, 0, 1]: h0 = e_0 + e_512: 2 + 1 = 3 and 4 - 1 = 3, equal only with the
     *         k_pe dims -> the mean [3, 1, 2, ..., 1], lse = 0.375 + ln 2.
     *         h1 = 4.375 e_1: scores 0 and 0.125 * 8.75 = 1.09375 -> p = (0.2509128, 0.7490872)
     *  row 2, idx all -1: zeros, lse -inf. */
    static bf16_t qry[3 * 2 * 576];
    for (int i = 0; i < 3 * 2 * 576; i++)
        qry[i] = 0;
    qry[0] = B(1), qry[512] = B(2);
    qry[1152] = B(1), qry[1152 + 512] = B(1);
    qry[1152 + 576 + 1] = B(4.375f);
    for (int i = 0; i < 576; i++)
        qry[2 * 1152 + i] = qry[2 * 1152 + 576 + i] = B(1);
    int32_t idx[9] = {2, -1, -1, -1, 0, 1, -1, -1, -1};
    static bf16_t out[3 * 2 * 512];
    float lse[6];
    CHECK_INT(ops.sparse_attn_prefill(ops.ctx, qry, 3, 2, cache, idx, 3, 0.125f, out, lse),
              DSA_OK);
    CHECK(memcmp(out, cache + 1152, 1024) == 0);       /* row 0 head 0 = c_kv of row 2 */
    CHECK(memcmp(out + 512, cache + 1152, 1024) == 0); /* row 0 head 1 */
    CHECK_NEAR(lse[0], 0.125, 1e-6);
    CHECK_NEAR(lse[1], 0.0, 1e-6);
    const bf16_t *o10 = out + 1024, *o11 = out + 1536;
    CHECK(F(o10[0]) == 3 && F(o10[1]) == 1 && F(o10[2]) == 2 && F(o10[511]) == 1);
    CHECK(F(o10[3]) == 0);
    CHECK_NEAR(lse[2], 1.0681472, 1e-6);
    CHECK_BF16(o11[0], 3.4981744);
    CHECK_BF16(o11[1], 1.4981744);
    CHECK_BF16(o11[2], 1.0036511);
    CHECK_BF16(o11[511], 1.9963489);
    CHECK_NEAR(lse[3], 1.3826499, 1e-6);
    int nz = 0;
    for (int i = 2048; i < 3072; i++)
        nz += out[i] != 0;
    CHECK_INT(nz, 0);
    CHECK(isinf(lse[4]) && lse[4] < 0 && isinf(lse[5]) && lse[5] < 0);
}

static void test_sparse_decode(void)
{
    /* Two requests, each with a 3-row FP8 cache (stride 3 * 656 B), written by the cache op
     * with ue8m0 scales so the values below (powers of two times small integers) dequantise
     * exactly. Unselected rows hold 100s.
     *   request 0 row 1: c_kv[0] = 2, c_kv[200] = -4, c_kv[400] = 0.5, k_pe[0] = 0.75
     *   request 1 row 0: c_kv[0] = 3, c_kv[130] = 2, k_pe[1] = 0
     *   request 1 row 2: c_kv[0] = 1, c_kv[300] = 4, k_pe[1] = 1
     * request 0: q = e_0 + 2 e_512, idx [1, -1]: out = its c_kv, lse = 0.125 * (2 + 1.5).
     * request 1: q = e_0 + 2 e_513, idx [0, 2]: scores 3 and 1 + 2 = 3 -> the mean
     *   out[0] = 2, out[130] = 1, out[300] = 2, lse = 0.375 + ln 2. */
    static bf16_t kv[6 * 576];
    for (int i = 0; i < 6 * 576; i++)
        kv[i] = B(100);
    bf16_t *r01 = kv + 1 * 576, *r10 = kv + 3 * 576, *r12 = kv + 5 * 576;
    for (int i = 0; i < 576; i++)
        r01[i] = r10[i] = r12[i] = 0;
    r01[0] = B(2), r01[200] = B(-4), r01[400] = B(0.5f), r01[512] = B(0.75f);
    r10[0] = B(3), r10[130] = B(2);
    r12[0] = B(1), r12[300] = B(4), r12[513] = B(1);
    static uint8_t cache[6 * DSA_MLA_FP8_TOKEN_BYTES];
    int64_t slot[6] = {0, 1, 2, 3, 4, 5};
    CHECK_INT(ops.mla_cache_write_fp8(ops.ctx, kv, 576, 6, slot, cache, DSA_SCALE_UE8M0),
              DSA_OK);

    static bf16_t qry[2 * 576];
    for (int i = 0; i < 2 * 576; i++)
        qry[i] = 0;
    qry[0] = B(1), qry[512] = B(2);
    qry[576] = B(1), qry[576 + 513] = B(2);
    int32_t idx[4] = {1, -1, 0, 2};
    static bf16_t out[2 * 512];
    float lse[2];
    CHECK_INT(ops.sparse_attn_decode(ops.ctx, qry, 2, 1, cache, 3 * DSA_MLA_FP8_TOKEN_BYTES,
                                     idx, 2, 0.125f, out, lse),
              DSA_OK);
    CHECK(memcmp(out, r01, 1024) == 0);
    CHECK_NEAR(lse[0], 0.4375, 1e-6);
    const bf16_t *o1 = out + 512;
    CHECK(F(o1[0]) == 2 && F(o1[130]) == 1 && F(o1[300]) == 2 && F(o1[1]) == 0);
    CHECK_NEAR(lse[1], 1.0681472, 1e-6);

    /* all indices -1: zeros and -inf */
    int32_t none[2] = {-1, -1};
    CHECK_INT(ops.sparse_attn_decode(ops.ctx, qry, 1, 1, cache, 0, none, 2, 0.125f, out, lse),
              DSA_OK);
    CHECK(out[0] == 0 && out[200] == 0 && isinf(lse[0]) && lse[0] < 0);
}

int main(void)
{
    if (dsa_ref_ops_init(&ops) != DSA_OK)
        return 1;
    test_absorb_out();
    test_sparse_prefill();
    test_sparse_decode();
    dsa_ref_ops_fini(&ops);
    return check_done("test_ref_attn");
}
