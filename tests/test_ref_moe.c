/* tests/test_ref_moe.c — the reference's MoE ops against hand-worked cases: grouped sigmoid
 * routing (group score = sum of top-2, kept groups, ties to the lower index, unbiased
 * normalised weights) and the routed experts (SwiGLU, weighted fp32 sum, residual). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "ops.h"
#include "ref.h"

static dsa_ops ops;

static bf16_t B(float f) { return dsa_f32_to_bf16(f); }
static float F(bf16_t h) { return dsa_bf16_to_f32(h); }

static void test_router(void)
{
    /* hidden 1, so logit_e = x * w_router[e]. Token 0: x = 1, logits [1 0 0 0 2 -1 2 0]:
     *   s      = [.7310586 .5 .5 .5 .8807971 .2689414 .8807971 .5]
     *   bias   = [0 0 0 0 0 0 0.5 -1]
     *   biased = [.7311 .5 .5 .5 .8808 .2689 1.3808 -.5]
     * 4 groups of 2: scores [1.2311, 1.0, 1.1497, 0.8808] -> keep groups 0 and 2 -> experts
     * {0, 1, 4, 5} -> ids [4, 0]; weights s4, s0 normalised, times 2.5: [1.3661228, 1.1338772].
     * Expert 6 has the best biased score but its group is dropped.
     * Token 1: x = 0, every s = 0.5, biased [.5 x6, 1.0, -.5]: group scores [1, 1, 1, 0.5],
     * ties -> groups 0, 1 -> ids [0, 1] (ties again), weights 0.5 / 1.0 * 2.5 = 1.25. */
    const float logit[8] = {1, 0, 0, 0, 2, -1, 2, 0};
    bf16_t wr[8], x[2] = {B(1), B(0)};
    for (int e = 0; e < 8; e++)
        wr[e] = B(logit[e]);
    const float bias[8] = {0, 0, 0, 0, 0, 0, 0.5f, -1.0f};
    const float s0 = 0.7310586f, s4 = 0.8807971f, s6 = 0.8807971f;
    int32_t ids[6];
    float w[6];
    dsa_router_cfg grouped = {8, 2, 4, 2, 1, 2.5f};
    CHECK_INT(ops.moe_router(ops.ctx, x, 2, 1, wr, bias, grouped, ids, w), DSA_OK);
    CHECK(ids[0] == 4 && ids[1] == 0);
    CHECK_NEAR(w[0], 1.3661228, 1e-6);
    CHECK_NEAR(w[1], 1.1338772, 1e-6);
    CHECK(ids[2] == 0 && ids[3] == 1);
    CHECK_NEAR(w[2], 1.25, 1e-6);
    CHECK_NEAR(w[3], 1.25, 1e-6);

    /* 2 groups of 4, keep 1: group 0 = [.7311 .5 .5 .5] scores 1.2311 by its top 2 (2.2311
     * summed whole), group 1 = [.8808 .2689 1.3808 -.5] scores 2.2616 (2.0305 whole): only
     * the top-2 rule keeps group 1 -> ids [6, 4]; weights s6, s4 -> 0.5 each. */
    dsa_router_cfg two = {8, 2, 2, 1, 1, 1.0f};
    CHECK_INT(ops.moe_router(ops.ctx, x, 1, 1, wr, bias, two, ids, w), DSA_OK);
    CHECK(ids[0] == 6 && ids[1] == 4);
    CHECK_NEAR(w[0], 0.5, 1e-6);
    CHECK_NEAR(w[1], 0.5, 1e-6);

    /* no groups, no normalisation, scale 1, top 3: token 0 -> [6, 4, 0] with the unbiased
     * s; token 1 -> [6, 0, 1] (the 0.5 ties go to the lower index), weights 0.5 */
    dsa_router_cfg flat = {8, 3, 1, 1, 0, 1.0f};
    CHECK_INT(ops.moe_router(ops.ctx, x, 2, 1, wr, bias, flat, ids, w), DSA_OK);
    CHECK(ids[0] == 6 && ids[1] == 4 && ids[2] == 0);
    CHECK_NEAR(w[0], s6, 1e-6);
    CHECK_NEAR(w[1], s4, 1e-6);
    CHECK_NEAR(w[2], s0, 1e-6);
    CHECK(ids[3] == 6 && ids[4] == 0 && ids[5] == 1);
    CHECK_NEAR(w[5], 0.5, 1e-6);

    /* groups of one expert: the group score is its own score (top-1); keep 3 groups
     * (6, 4, 0 for token 0) -> ids [6, 4] */
    dsa_router_cfg single = {8, 2, 8, 3, 1, 1.0f};
    CHECK_INT(ops.moe_router(ops.ctx, x, 1, 1, wr, bias, single, ids, w), DSA_OK);
    CHECK(ids[0] == 6 && ids[1] == 4);

    /* impossible configurations are errors */
    dsa_router_cfg bad = {8, 5, 4, 2, 1, 1.0f}; /* 5 experts from 2 groups of 2 */
    CHECK(ops.moe_router(ops.ctx, x, 1, 1, wr, bias, bad, ids, w) != DSA_OK);
}

static void test_experts(void)
{
    /* hidden 2, inter 1, 2 experts:
     *   E0: gate [1 0], up [0 1], down [[1], [2]]   E1: gate [0 1], up [1 0], down [[-1], [.5]]
     * x = [1, 2]: E0: g = 1, u = 2, h = bf16(silu(1) * 2 = 1.4621172) = 1.4609375,
     *   y0 = [1.4609375, 2.921875]; E1: g = 2, u = 1, h = bf16(1.7615942) = 1.7578125,
     *   y1 = [-1.7578125, 0.87890625].
     * Row 0: ids [0, -1] (the -1 is skipped), weights [1, 9], residual [1, 1]:
     *   [2.4609375 (a tie -> 2.46875), 3.921875].
     * Row 1: ids [1, 0], weights [0.5, 0.25], residual 0:
     *   0.5 y1 + 0.25 y0 = [-0.513671875 (tie -> -0.515625), 1.169921875 -> 1.171875]. */
    bf16_t gu0[4] = {B(1), B(0), B(0), B(1)}, dn0[2] = {B(1), B(2)};
    bf16_t gu1[4] = {B(0), B(1), B(1), B(0)}, dn1[2] = {B(-1), B(0.5f)};
    dsa_weight gate_up[2] = {{DSA_BF16, 2, 2, gu0, NULL}, {DSA_BF16, 2, 2, gu1, NULL}};
    dsa_weight down[2] = {{DSA_BF16, 2, 1, dn0, NULL}, {DSA_BF16, 2, 1, dn1, NULL}};
    bf16_t x[4] = {B(1), B(2), B(1), B(2)};
    int32_t ids[4] = {0, -1, 1, 0};
    float w[4] = {1.0f, 9.0f, 0.5f, 0.25f};
    bf16_t out[4] = {B(1), B(1), B(0), B(0)}; /* the residual, aliased */
    CHECK_INT(ops.moe_experts(ops.ctx, x, 2, 2, ids, w, 2, 2, 1, gate_up, down, out, out),
              DSA_OK);
    CHECK(F(out[0]) == 2.46875f && F(out[1]) == 3.921875f);
    CHECK(F(out[2]) == -0.515625f && F(out[3]) == 1.171875f);

    /* an expert id out of range is an error naming it */
    int32_t bad_ids[2] = {2, 0};
    CHECK(ops.moe_experts(ops.ctx, x, 1, 2, bad_ids, w, 2, 2, 1, gate_up, down, NULL, out) !=
          DSA_OK);
    CHECK(strstr(ops.last_error(ops.ctx), "expert id 2") != NULL);
}

int main(void)
{
    if (dsa_ref_ops_init(&ops) != DSA_OK)
        return 1;
    test_router();
    test_experts();
    dsa_ref_ops_fini(&ops);
    return check_done("test_ref_moe");
}
