/* tests/gpu_basic_ops.c — the "basic" CUDA ops against the C reference on the device: embed,
 * rmsnorm, layernorm, rope, swiglu, the MLA cache writes (bf16 and FP8), the indexer's q and k
 * preparation, gemm (bf16 and FP8 block-scaled), mla_absorb / mla_out, moe_router and
 * moe_experts. Every op runs through its dsa_ops member with the arguments the reference gets.
 *
 * Tolerances, and why:
 * - Copies (embed, bf16 cache rows, k_pe bytes) must be exact.
 * - bf16 outputs: ||gpu - ref|| / ||ref|| <= 1e-2. One bf16 rounding is 2^-9 relative; the
 *   norms, RoPE and the MLA cache quantisation are written to match the reference bit for bit,
 *   the GEMMs (cuBLASLt, fp32 accumulation in another order) and the MoE (fp32 atomics vs
 *   double) differ by a few bf16 ulps at most.
 * - FP8 bytes are compared as dequantised values (e4m3 * scale), rel err <= 1e-2: a code that
 *   flips costs one e4m3 step (6%) on one element, a small share of the norm.
 * - FP8 scales: equal or within 1 fp32 ulp (both sides compute max(amax, 1e-4) / 448 from the
 *   same bf16 values with IEEE division, so they are normally identical). The indexer's scales
 *   come after RoPE, whose double cos/sin may differ from glibc's in the last ulp; that can flip
 *   one bf16 rounding, and if that element is the block's amax the scale moves by one bf16 step
 *   (<= 2^-7 relative). So there up to 0.1% of the scales (at least 1) may move by <= 2^-7.
 * - The indexer weights w fold the scale in, so they follow the same rule; compared at 1e-3.
 * - Router: the GPU's logits are an fp32 GEMM, the reference's a double sum, so the selected
 *   expert sets must be equal except where the reference's biased scores (or group scores) of
 *   the swapped experts tie within 1e-6; weights at 1e-4 (sigmoid of slightly different logits).
 * Outputs are poisoned before the GPU run (0xFF: NaN in bf16/fp32) so unwritten elements fail;
 * caches keep the harness's 0xA5 poison in both copies, and untouched slots must still match. */
#include <cuda_runtime_api.h>

#include "gpu_harness.h"

static gpu_env env;

/* 0xFF bytes on the device copy: NaN as bf16 and fp32, -1 as integers. */
static void poison(mirror *m)
{
    cudaStream_t s = ((dsa_cuda_ctx *)env.gpu.ctx)->stream;
    if (m->bytes && cudaMemsetAsync(m->d, 0xff, m->bytes, s) != cudaSuccess) {
        fprintf(stderr, "cudaMemsetAsync failed\n");
        exit(1);
    }
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void)
{
    rng_state = dsa_splitmix64(rng_state);
    return (uint32_t)(rng_state >> 32);
}

static const char *style_name(int style) { return style == DSA_ROPE_HALF ? "half" : "interleaved"; }
static const char *mode_name(int mode) { return mode == DSA_SCALE_UE8M0 ? "ue8m0" : "fp32"; }

/* ||a - b|| / ||b|| over a rows x cols region with row stride ld (bf16). */
static double region_err_bf16(const bf16_t *a, const bf16_t *b, int rows, int cols, size_t ld)
{
    double num = 0, den = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            double x = dsa_bf16_to_f32(a[r * ld + c]), y = dsa_bf16_to_f32(b[r * ld + c]);
            if (!isfinite(x)) return INFINITY;
            num += (x - y) * (x - y);
            den += y * y;
        }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static int within_ulp(float a, float b)
{
    if (a == b) return 1;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    if ((ia < 0) != (ib < 0) || !isfinite(a) || !isfinite(b)) return 0;
    long long d = (long long)ia - ib;
    return d >= -1 && d <= 1;
}

/* Scales beyond 1 ulp: returns how many; *worst gets the largest relative difference. */
static int scale_misses(const float *g, const float *r, size_t n, double *worst)
{
    int miss = 0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (within_ulp(g[i], r[i])) continue;
        miss++;
        double d = isfinite(g[i]) ? fabs((double)g[i] - r[i]) / fabs((double)r[i]) : INFINITY;
        if (!(d <= *worst)) *worst = d;
    }
    return miss;
}

/* The rule for scales that follow a RoPE: all within 1 ulp, or at most 0.1% (at least one)
 * off by at most 2^-7 relative. Prints one line; counts a failure otherwise. */
static void expect_scales(const char *what, const float *g, const float *r, size_t n, int strict)
{
    double worst;
    int miss = scale_misses(g, r, n, &worst);
    int allowed = strict ? 0 : (int)(n / 1000) + 1;
    int ok = miss <= allowed && (miss == 0 || worst <= 1.0 / 128);
    printf("%-60s %d of %zu beyond 1 ulp (allowed %d), worst %.2e %s\n", what, miss, n, allowed, worst,
           ok ? "ok" : "FAIL");
    if (!ok) check_failures++;
}

/* ---------------------------------------------------------------- embed */

static void test_embed(int n, int hidden)
{
    const int vocab = 1000;
    int32_t *tok = xmalloc((size_t)n * 4);
    for (int r = 0; r < n; r++) tok[r] = (int32_t)(rnd() % vocab);
    mirror t = mirror_copy(&env, tok, (size_t)n * 4);
    mirror table = mirror_rand_bf16(&env, (size_t)vocab * hidden, 11, 1.0f);
    mirror out = mirror_new(&env, (size_t)n * hidden * 2);
    poison(&out);
    ref_ok(&env, env.ref.embed(env.ref.ctx, t.h, n, table.h, hidden, out.h), "embed");
    gpu_ok(&env, env.gpu.embed(env.gpu.ctx, t.d, n, table.d, hidden, out.d), "embed");
    bf16_t *g = mirror_down(&env, &out);
    char what[96];
    snprintf(what, sizeof what, "embed n=%d hidden=%d (exact)", n, hidden);
    expect_close(what, rel_err_bf16(g, out.h, (size_t)n * hidden), 0.0);
    free(g), free(tok);
    mirror_free(&env, &t), mirror_free(&env, &table), mirror_free(&env, &out);
}

/* ---------------------------------------------------------------- norms */

static void test_norm(int layer, int n, int d, int ldx, int ldy, int in_place)
{
    mirror x = mirror_rand_bf16(&env, (size_t)n * ldx, 21 + d, 2.0f);
    mirror w = mirror_rand_bf16(&env, (size_t)d, 22, 1.0f);
    mirror b = mirror_rand_bf16(&env, (size_t)d, 23, 0.5f);
    mirror y = in_place ? x : mirror_new(&env, (size_t)n * ldy * 2);
    if (in_place) ldy = ldx;
    else poison(&y);
    const float eps = 1e-6f;
    if (layer) {
        ref_ok(&env, env.ref.layernorm(env.ref.ctx, x.h, ldx, n, d, w.h, b.h, eps, y.h, ldy), "layernorm");
        gpu_ok(&env, env.gpu.layernorm(env.gpu.ctx, x.d, ldx, n, d, w.d, b.d, eps, y.d, ldy), "layernorm");
    } else {
        ref_ok(&env, env.ref.rmsnorm(env.ref.ctx, x.h, ldx, n, d, w.h, eps, y.h, ldy), "rmsnorm");
        gpu_ok(&env, env.gpu.rmsnorm(env.gpu.ctx, x.d, ldx, n, d, w.d, eps, y.d, ldy), "rmsnorm");
    }
    bf16_t *g = mirror_down(&env, &y);
    char what[96];
    snprintf(what, sizeof what, "%s n=%d d=%d ldx=%d ldy=%d%s", layer ? "layernorm" : "rmsnorm", n, d, ldx, ldy,
             in_place ? " in place" : "");
    expect_close(what, region_err_bf16(g, y.h, n, d, (size_t)ldy), 1e-2);
    if (in_place) /* the columns past d are untouched in both */
        expect_close("  ...columns past d untouched",
                     ldx > d ? region_err_bf16(g + d, (bf16_t *)y.h + d, n, ldx - d, (size_t)ldx) : 0.0, 0.0);
    free(g);
    mirror_free(&env, &w), mirror_free(&env, &b);
    if (!in_place) mirror_free(&env, &y);
    mirror_free(&env, &x);
}

/* ---------------------------------------------------------------- rope */

static int32_t *positions(int n)
{
    int32_t *p = xmalloc((size_t)n * 4);
    for (int r = 0; r < n; r++) p[r] = r % 3 == 0 ? (int32_t)(rnd() % 200000) : r; /* near 0 and up to 200K */
    return p;
}

/* MLA's q_pe (heads x (nope + 64), rope at column nope) or k_pe (one head of a 576 row). */
static void test_rope(int n, int heads, int nope, int style, int k_side)
{
    const int ld_head = k_side ? DSA_MLA_DIM : nope + DSA_ROPE_DIM;
    const int ld_row = k_side ? DSA_MLA_DIM : heads * ld_head;
    const int col = k_side ? DSA_KV_LORA : nope;
    if (k_side) heads = 1;
    int32_t *pos = positions(n);
    mirror p = mirror_copy(&env, pos, (size_t)n * 4);
    mirror x = mirror_rand_bf16(&env, (size_t)n * ld_row, 31 + heads, 1.5f);
    dsa_rope rope = {style, k_side ? 10000.0f : 50000.0f};
    ref_ok(&env, env.ref.rope(env.ref.ctx, x.h, n, heads, ld_row, ld_head, col, p.h, rope), "rope");
    gpu_ok(&env, env.gpu.rope(env.gpu.ctx, x.d, n, heads, ld_row, ld_head, col, p.d, rope), "rope");
    bf16_t *g = mirror_down(&env, &x);
    char what[96];
    snprintf(what, sizeof what, "rope %s %s n=%d heads=%d ld_row=%d col=%d", k_side ? "k_pe" : "q_pe",
             style_name(style), n, heads, ld_row, col);
    expect_close(what, rel_err_bf16(g, x.h, (size_t)n * ld_row), 1e-2);
    free(g), free(pos);
    mirror_free(&env, &p), mirror_free(&env, &x);
}

/* ---------------------------------------------------------------- swiglu */

static void test_swiglu(int n, int inter)
{
    mirror gu = mirror_rand_bf16(&env, (size_t)n * 2 * inter, 41, 4.0f);
    mirror out = mirror_new(&env, (size_t)n * inter * 2);
    poison(&out);
    ref_ok(&env, env.ref.swiglu(env.ref.ctx, gu.h, n, inter, out.h), "swiglu");
    gpu_ok(&env, env.gpu.swiglu(env.gpu.ctx, gu.d, n, inter, out.d), "swiglu");
    bf16_t *g = mirror_down(&env, &out);
    char what[96];
    snprintf(what, sizeof what, "swiglu n=%d inter=%d", n, inter);
    expect_close(what, rel_err_bf16(g, out.h, (size_t)n * inter), 1e-2);
    free(g);
    mirror_free(&env, &gu), mirror_free(&env, &out);
}

/* ---------------------------------------------------------------- MLA cache */

/* Slots in reverse order, every fifth row padding (-1), in a cache with 5 spare slots. */
static int64_t *slots_reversed(int n, int *n_slots)
{
    int64_t *s = xmalloc((size_t)n * 8);
    *n_slots = n + 5;
    for (int r = 0; r < n; r++) s[r] = (r % 5 == 4) ? -1 : (int64_t)(n + 4 - r);
    return s;
}

static void test_mla_cache_bf16(int n, int ldkv)
{
    int n_slots;
    int64_t *slot = slots_reversed(n, &n_slots);
    mirror sl = mirror_copy(&env, slot, (size_t)n * 8);
    mirror kv = mirror_rand_bf16(&env, (size_t)n * ldkv, 51, 1.0f);
    mirror cache = mirror_new(&env, (size_t)n_slots * DSA_MLA_DIM * 2); /* 0xA5 in both copies */
    ref_ok(&env, env.ref.mla_cache_write_bf16(env.ref.ctx, kv.h, ldkv, n, sl.h, cache.h), "mla_cache_write_bf16");
    gpu_ok(&env, env.gpu.mla_cache_write_bf16(env.gpu.ctx, kv.d, ldkv, n, sl.d, cache.d), "mla_cache_write_bf16");
    uint8_t *g = mirror_down(&env, &cache);
    char what[96];
    snprintf(what, sizeof what, "mla_cache_write_bf16 n=%d ldkv=%d reversed slots (bytes equal)", n, ldkv);
    expect_close(what, memcmp(g, cache.h, cache.bytes) ? 1.0 : 0.0, 0.0);
    free(g), free(slot);
    mirror_free(&env, &sl), mirror_free(&env, &kv), mirror_free(&env, &cache);
}

static float load_f32(const uint8_t *p)
{
    float f;
    memcpy(&f, p, 4);
    return f;
}

static void test_mla_cache_fp8(int n, int ldkv, int mode)
{
    int n_slots;
    int64_t *slot = slots_reversed(n, &n_slots);
    mirror sl = mirror_copy(&env, slot, (size_t)n * 8);
    mirror kv = mirror_rand_bf16(&env, (size_t)n * ldkv, 52, 3.0f);
    const size_t row = DSA_MLA_FP8_TOKEN_BYTES;
    mirror cache = mirror_new(&env, (size_t)n_slots * row);
    ref_ok(&env, env.ref.mla_cache_write_fp8(env.ref.ctx, kv.h, ldkv, n, sl.h, cache.h, mode), "mla_cache_write_fp8");
    gpu_ok(&env, env.gpu.mla_cache_write_fp8(env.gpu.ctx, kv.d, ldkv, n, sl.d, cache.d, mode), "mla_cache_write_fp8");
    uint8_t *g = mirror_down(&env, &cache);
    const uint8_t *r = cache.h;
    unsigned char *written = xmalloc((size_t)n_slots);
    for (int i = 0; i < n; i++)
        if (slot[i] >= 0) written[slot[i]] = 1;
    float *dg = xmalloc((size_t)n_slots * DSA_KV_LORA * 4), *dr = xmalloc((size_t)n_slots * DSA_KV_LORA * 4);
    float *sg = xmalloc((size_t)n_slots * 4 * 4), *sr = xmalloc((size_t)n_slots * 4 * 4);
    size_t nv = 0, ns = 0;
    int bad_bytes = 0;
    for (int s = 0; s < n_slots; s++) {
        const uint8_t *a = g + s * row, *b = r + s * row;
        if (!written[s]) {
            bad_bytes += memcmp(a, b, row) != 0;
            continue;
        }
        for (int blk = 0; blk < DSA_KV_LORA / 128; blk++) {
            float ga = load_f32(a + DSA_KV_LORA + 4 * blk), rb = load_f32(b + DSA_KV_LORA + 4 * blk);
            sg[ns] = ga, sr[ns] = rb, ns++;
            for (int i = 0; i < 128; i++, nv++) {
                dg[nv] = dsa_e4m3_to_f32(a[blk * 128 + i]) * ga;
                dr[nv] = dsa_e4m3_to_f32(b[blk * 128 + i]) * rb;
            }
        }
        bad_bytes += memcmp(a + DSA_KV_LORA + 16, b + DSA_KV_LORA + 16, 2 * DSA_ROPE_DIM) != 0; /* k_pe */
    }
    char what[96];
    snprintf(what, sizeof what, "mla_cache_write_fp8 %s n=%d ldkv=%d: dequantised c_kv", mode_name(mode), n, ldkv);
    expect_close(what, rel_err_f32(dg, dr, nv), 1e-2);
    snprintf(what, sizeof what, "  ...scales (%s)", mode_name(mode));
    expect_scales(what, sg, sr, ns, 1);
    expect_close("  ...k_pe bytes and untouched slots (rows differing)", bad_bytes, 0.0);
    free(g), free(slot), free(written), free(dg), free(dr), free(sg), free(sr);
    mirror_free(&env, &sl), mirror_free(&env, &kv), mirror_free(&env, &cache);
}

/* ---------------------------------------------------------------- indexer prep */

static void test_idx_prep_q(int n, int heads, int style, int mode)
{
    int32_t *pos = positions(n);
    mirror p = mirror_copy(&env, pos, (size_t)n * 4);
    mirror q = mirror_rand_bf16(&env, (size_t)n * heads * DSA_IDX_DIM, 61 + heads, 2.0f);
    mirror wraw = mirror_rand_bf16(&env, (size_t)n * heads, 62, 1.0f);
    mirror qf = mirror_new(&env, (size_t)n * heads * DSA_IDX_DIM);
    mirror w = mirror_new(&env, (size_t)n * heads * 4);
    poison(&qf), poison(&w);
    dsa_rope rope = {style, 10000.0f};
    ref_ok(&env, env.ref.idx_prep_q(env.ref.ctx, q.h, wraw.h, n, heads, p.h, rope, mode, qf.h, w.h), "idx_prep_q");
    gpu_ok(&env, env.gpu.idx_prep_q(env.gpu.ctx, q.d, wraw.d, n, heads, p.d, rope, mode, qf.d, w.d), "idx_prep_q");
    uint8_t *gq = mirror_down(&env, &qf);
    float *gw = mirror_down(&env, &w);
    const size_t nv = (size_t)n * heads * DSA_IDX_DIM;
    float *a = xmalloc(nv * 4), *b = xmalloc(nv * 4);
    size_t same = 0;
    for (size_t i = 0; i < nv; i++) {
        a[i] = dsa_e4m3_to_f32(gq[i]);
        b[i] = dsa_e4m3_to_f32(((uint8_t *)qf.h)[i]);
        same += gq[i] == ((uint8_t *)qf.h)[i];
    }
    char what[96];
    snprintf(what, sizeof what, "idx_prep_q %s %s n=%d heads=%d: e4m3 codes (%.4f%% equal)", style_name(style),
             mode_name(mode), n, heads, 100.0 * same / nv);
    expect_close(what, rel_err_f32(a, b, nv), 1e-2);
    expect_close("  ...w", rel_err_f32(gw, w.h, (size_t)n * heads), 1e-3);
    expect_scales("  ...w within 1 ulp (it carries the scale)", gw, w.h, (size_t)n * heads, 0);
    free(gq), free(gw), free(a), free(b), free(pos);
    mirror_free(&env, &p), mirror_free(&env, &q), mirror_free(&env, &wraw), mirror_free(&env, &qf), mirror_free(&env, &w);
}

static void test_idx_prep_k(int n, int ldk, int style, int mode)
{
    int32_t *pos = positions(n);
    int n_slots;
    int64_t *slot = slots_reversed(n, &n_slots);
    mirror p = mirror_copy(&env, pos, (size_t)n * 4), sl = mirror_copy(&env, slot, (size_t)n * 8);
    mirror k = mirror_rand_bf16(&env, (size_t)n * ldk, 71, 3.0f);
    mirror lw = mirror_rand_bf16(&env, DSA_IDX_DIM, 72, 1.0f), lb = mirror_rand_bf16(&env, DSA_IDX_DIM, 73, 0.3f);
    const size_t row = DSA_IDX_TOKEN_BYTES;
    mirror cache = mirror_new(&env, (size_t)n_slots * row);
    dsa_rope rope = {style, 10000.0f};
    ref_ok(&env, env.ref.idx_prep_k(env.ref.ctx, k.h, ldk, n, lw.h, lb.h, p.h, rope, mode, sl.h, cache.h), "idx_prep_k");
    gpu_ok(&env, env.gpu.idx_prep_k(env.gpu.ctx, k.d, ldk, n, lw.d, lb.d, p.d, rope, mode, sl.d, cache.d), "idx_prep_k");
    uint8_t *g = mirror_down(&env, &cache);
    const uint8_t *r = cache.h;
    unsigned char *written = xmalloc((size_t)n_slots);
    for (int i = 0; i < n; i++)
        if (slot[i] >= 0) written[slot[i]] = 1;
    float *dg = xmalloc((size_t)n_slots * DSA_IDX_DIM * 4), *dr = xmalloc((size_t)n_slots * DSA_IDX_DIM * 4);
    float *sg = xmalloc((size_t)n_slots * 4), *sr = xmalloc((size_t)n_slots * 4);
    size_t nv = 0, ns = 0;
    int bad = 0;
    for (int s = 0; s < n_slots; s++) {
        const uint8_t *a = g + s * row, *b = r + s * row;
        if (!written[s]) {
            bad += memcmp(a, b, row) != 0;
            continue;
        }
        sg[ns] = load_f32(a + DSA_IDX_DIM), sr[ns] = load_f32(b + DSA_IDX_DIM);
        for (int i = 0; i < DSA_IDX_DIM; i++, nv++) {
            dg[nv] = dsa_e4m3_to_f32(a[i]) * sg[ns];
            dr[nv] = dsa_e4m3_to_f32(b[i]) * sr[ns];
        }
        ns++;
    }
    char what[96];
    snprintf(what, sizeof what, "idx_prep_k %s %s n=%d ldk=%d reversed slots: dequantised", style_name(style),
             mode_name(mode), n, ldk);
    expect_close(what, rel_err_f32(dg, dr, nv), 1e-2);
    expect_scales("  ...scales", sg, sr, ns, 0);
    expect_close("  ...untouched slots (rows differing)", bad, 0.0);
    free(g), free(pos), free(slot), free(written), free(dg), free(dr), free(sg), free(sr);
    mirror_free(&env, &p), mirror_free(&env, &sl), mirror_free(&env, &k), mirror_free(&env, &lw), mirror_free(&env, &lb);
    mirror_free(&env, &cache);
}

/* ---------------------------------------------------------------- weights */

/* test_weight, test_weight_new and test_weight_free: tests/gpu_harness.h */

/* ---------------------------------------------------------------- gemm */

/* residual: 0 none, 1 a separate buffer, 2 aliasing D (in place). */
static void test_gemm(int m, int n, int k, int lda, int ldd, int residual, int fp8)
{
    test_weight w = test_weight_new(&env, n, k, fp8, 81 + (uint64_t)k);
    mirror a = mirror_rand_bf16(&env, (size_t)m * lda, 82, 1.0f);
    mirror res = mirror_rand_bf16(&env, (size_t)m * ldd, 83, 1.0f);
    mirror d = residual == 2 ? res : mirror_new(&env, (size_t)m * ldd * 2);
    if (residual != 2) poison(&d);
    const bf16_t *rh = residual ? res.h : NULL, *rd = residual ? res.d : NULL;
    ref_ok(&env, env.ref.gemm(env.ref.ctx, a.h, lda, m, &w.h, rh, d.h, ldd), "gemm");
    gpu_ok(&env, env.gpu.gemm(env.gpu.ctx, a.d, lda, m, &w.d, rd, d.d, ldd), "gemm");
    bf16_t *g = mirror_down(&env, &d);
    char what[96];
    snprintf(what, sizeof what, "gemm %s m=%d n=%d k=%d lda=%d ldd=%d residual=%s", fp8 ? "fp8" : "bf16", m, n, k, lda,
             ldd, residual == 0 ? "none" : residual == 1 ? "yes" : "in place");
    expect_close(what, region_err_bf16(g, d.h, m, n, (size_t)ldd), 1e-2);
    free(g);
    if (residual != 2) mirror_free(&env, &d);
    mirror_free(&env, &res), mirror_free(&env, &a);
    test_weight_free(&env, &w);
}

/* ---------------------------------------------------------------- MLA projections */

static void test_mla_proj(int n, int heads, int nope, int v)
{
    const int dq = nope + DSA_ROPE_DIM;
    mirror q = mirror_rand_bf16(&env, (size_t)n * heads * dq, 91, 1.0f);
    mirror wkvb = mirror_rand_bf16(&env, (size_t)heads * (nope + v) * DSA_KV_LORA, 92, 0.05f);
    mirror query = mirror_new(&env, (size_t)n * heads * DSA_MLA_DIM * 2);
    mirror lat = mirror_rand_bf16(&env, (size_t)n * heads * DSA_KV_LORA, 93, 1.0f);
    mirror o = mirror_new(&env, (size_t)n * heads * v * 2);
    poison(&query), poison(&o);
    ref_ok(&env, env.ref.mla_absorb(env.ref.ctx, q.h, n, heads, nope, v, wkvb.h, query.h), "mla_absorb");
    gpu_ok(&env, env.gpu.mla_absorb(env.gpu.ctx, q.d, n, heads, nope, v, wkvb.d, query.d), "mla_absorb");
    ref_ok(&env, env.ref.mla_out(env.ref.ctx, lat.h, n, heads, nope, v, wkvb.h, o.h), "mla_out");
    gpu_ok(&env, env.gpu.mla_out(env.gpu.ctx, lat.d, n, heads, nope, v, wkvb.d, o.d), "mla_out");
    bf16_t *gq = mirror_down(&env, &query), *go = mirror_down(&env, &o);
    char what[96];
    snprintf(what, sizeof what, "mla_absorb n=%d heads=%d nope=%d v=%d (q_lat)", n, heads, nope, v);
    expect_close(what, region_err_bf16(gq, query.h, n * heads, DSA_KV_LORA, DSA_MLA_DIM), 1e-2);
    expect_close("  ...q_pe columns (exact)",
                 region_err_bf16(gq + DSA_KV_LORA, (bf16_t *)query.h + DSA_KV_LORA, n * heads, DSA_ROPE_DIM, DSA_MLA_DIM),
                 0.0);
    snprintf(what, sizeof what, "mla_out n=%d heads=%d nope=%d v=%d", n, heads, nope, v);
    expect_close(what, rel_err_bf16(go, o.h, (size_t)n * heads * v), 1e-2);
    free(gq), free(go);
    mirror_free(&env, &q), mirror_free(&env, &wkvb), mirror_free(&env, &query), mirror_free(&env, &lat);
    mirror_free(&env, &o);
}

/* ---------------------------------------------------------------- MoE */

/* The reference's biased scores of one token (and its group scores), to judge near-ties. */
static void host_scores(const bf16_t *x, int hidden, const bf16_t *wr, const float *bias, dsa_router_cfg cfg,
                        float *biased, float *gscore)
{
    const int ne = cfg.n_experts, ng = cfg.n_group > 1 ? cfg.n_group : 1, gs = ne / ng;
    for (int e = 0; e < ne; e++) {
        double logit = 0;
        for (int c = 0; c < hidden; c++)
            logit += (double)dsa_bf16_to_f32(x[c]) * dsa_bf16_to_f32(wr[(size_t)e * hidden + c]);
        float s = (float)(1.0 / (1.0 + exp(-(double)(float)logit)));
        biased[e] = s + (bias ? bias[e] : 0.0f);
    }
    for (int g = 0; g < ng; g++) {
        float b1 = -INFINITY, b2 = -INFINITY;
        for (int e = g * gs; e < (g + 1) * gs; e++) {
            if (biased[e] > b1) b2 = b1, b1 = biased[e];
            else if (biased[e] > b2) b2 = biased[e];
        }
        gscore[g] = gs >= 2 ? b1 + b2 : b1;
    }
}

static int row_has(const int32_t *row, int topk, int32_t e)
{
    for (int j = 0; j < topk; j++)
        if (row[j] == e) return j;
    return -1;
}

static void test_router(int n, int hidden, dsa_router_cfg cfg, int with_bias)
{
    const int ne = cfg.n_experts, topk = cfg.topk;
    const int ng = cfg.n_group > 1 ? cfg.n_group : 1, gs = ne / ng;
    mirror x = mirror_rand_bf16(&env, (size_t)n * hidden, 101, 1.0f);
    mirror wr = mirror_rand_bf16(&env, (size_t)ne * hidden, 102, 2.0f / sqrtf((float)hidden));
    mirror bias = mirror_rand_f32(&env, (size_t)ne, 103, 0.01f);
    mirror ids = mirror_new(&env, (size_t)n * topk * 4), wts = mirror_new(&env, (size_t)n * topk * 4);
    poison(&ids), poison(&wts);
    ref_ok(&env, env.ref.moe_router(env.ref.ctx, x.h, n, hidden, wr.h, with_bias ? bias.h : NULL, cfg, ids.h, wts.h),
           "moe_router");
    gpu_ok(&env, env.gpu.moe_router(env.gpu.ctx, x.d, n, hidden, wr.d, with_bias ? bias.d : NULL, cfg, ids.d, wts.d),
           "moe_router");
    int32_t *gi = mirror_down(&env, &ids);
    float *gw = mirror_down(&env, &wts);
    const int32_t *ri = ids.h;
    const float *rw = wts.h;
    float *biased = xmalloc((size_t)ne * 4), *gsc = xmalloc((size_t)ng * 4);
    float *wa = xmalloc((size_t)n * topk * 4), *wb = xmalloc((size_t)n * topk * 4);
    size_t nw = 0;
    int mismatches = 0, ties = 0;
    for (int r = 0; r < n; r++) {
        const int32_t *g = gi + (size_t)r * topk, *rr = ri + (size_t)r * topk;
        int same = 1;
        for (int j = 0; j < topk; j++) same &= g[j] >= 0 && g[j] < ne && row_has(rr, topk, g[j]) >= 0;
        if (same) {
            for (int j = 0; j < topk; j++) {
                wa[nw] = gw[(size_t)r * topk + j];
                wb[nw] = rw[(size_t)r * topk + row_has(rr, topk, g[j])];
                nw++;
            }
            continue;
        }
        /* A swapped pair is a tie if the reference's scores of the two experts, or of their
         * groups, are within 1e-6 (2e-6 for a sum of two). */
        host_scores((const bf16_t *)x.h + (size_t)r * hidden, hidden, wr.h, with_bias ? bias.h : NULL, cfg, biased, gsc);
        int tolerated = 1;
        for (int j = 0; j < topk && tolerated; j++) {
            const int32_t a = g[j];
            if (a >= 0 && a < ne && row_has(rr, topk, a) >= 0) continue;
            int found = 0;
            for (int i = 0; i < topk && !found && a >= 0 && a < ne; i++) {
                const int32_t b = rr[i];
                if (row_has(g, topk, b) >= 0) continue;
                found = fabsf(biased[a] - biased[b]) <= 1e-6f || fabsf(gsc[a / gs] - gsc[b / gs]) <= 2e-6f;
            }
            tolerated = found;
        }
        if (tolerated) ties++;
        else mismatches++;
    }
    char what[120];
    snprintf(what, sizeof what, "moe_router n=%d hidden=%d E=%d groups=%d/%d top-%d%s: id sets (%d near-ties)", n, hidden,
             ne, cfg.topk_group, cfg.n_group, topk, with_bias ? "" : " no bias", ties);
    expect_close(what, mismatches, 0.0);
    expect_close("  ...weights of the matching tokens", rel_err_f32(wa, wb, nw), 1e-4);
    free(gi), free(gw), free(biased), free(gsc), free(wa), free(wb);
    mirror_free(&env, &x), mirror_free(&env, &wr), mirror_free(&env, &bias), mirror_free(&env, &ids);
    mirror_free(&env, &wts);
}

/* residual: 0 none, 1 separate, 2 aliasing out. Routing from the reference router, with a
 * few ids knocked out (-1 = no expert). */
static void test_experts(int n, int hidden, int inter, dsa_router_cfg cfg, int residual, int fp8)
{
    const int ne = cfg.n_experts, topk = cfg.topk;
    mirror x = mirror_rand_bf16(&env, (size_t)n * hidden, 111, 1.0f);
    bf16_t *wr = xmalloc((size_t)ne * hidden * 2);
    ref_ok(&env, env.ref.fill_bf16(env.ref.ctx, wr, (size_t)ne * hidden, 112, 2.0f / sqrtf((float)hidden)), "fill");
    int32_t *ids = xmalloc((size_t)n * topk * 4);
    float *wts = xmalloc((size_t)n * topk * 4);
    ref_ok(&env, env.ref.moe_router(env.ref.ctx, x.h, n, hidden, wr, NULL, cfg, ids, wts), "moe_router");
    for (int r = 3; r < n; r += 7) ids[(size_t)r * topk + topk - 1] = -1;
    mirror mi = mirror_copy(&env, ids, (size_t)n * topk * 4), mw = mirror_copy(&env, wts, (size_t)n * topk * 4);
    test_weight *gu = xmalloc((size_t)ne * sizeof *gu), *dn = xmalloc((size_t)ne * sizeof *dn);
    dsa_weight *guh = xmalloc((size_t)ne * sizeof *guh), *gud = xmalloc((size_t)ne * sizeof *gud);
    dsa_weight *dnh = xmalloc((size_t)ne * sizeof *dnh), *dnd = xmalloc((size_t)ne * sizeof *dnd);
    for (int e = 0; e < ne; e++) {
        gu[e] = test_weight_new(&env, 2 * inter, hidden, fp8, 1000 + 2 * (uint64_t)e);
        dn[e] = test_weight_new(&env, hidden, inter, fp8, 1001 + 2 * (uint64_t)e);
        guh[e] = gu[e].h, gud[e] = gu[e].d, dnh[e] = dn[e].h, dnd[e] = dn[e].d;
    }
    mirror res = mirror_rand_bf16(&env, (size_t)n * hidden, 113, 1.0f);
    mirror out = residual == 2 ? res : mirror_new(&env, (size_t)n * hidden * 2);
    if (residual != 2) poison(&out);
    ref_ok(&env, env.ref.moe_experts(env.ref.ctx, x.h, n, hidden, ids, wts, topk, ne, inter, guh, dnh,
                               residual ? res.h : NULL, out.h),
           "moe_experts");
    gpu_ok(&env, env.gpu.moe_experts(env.gpu.ctx, x.d, n, hidden, mi.d, mw.d, topk, ne, inter, gud, dnd,
                               residual ? res.d : NULL, out.d),
           "moe_experts");
    bf16_t *g = mirror_down(&env, &out);
    char what[120];
    snprintf(what, sizeof what, "moe_experts %s n=%d hidden=%d inter=%d E=%d top-%d residual=%s", fp8 ? "fp8" : "bf16", n,
             hidden, inter, ne, topk, residual == 0 ? "none" : residual == 1 ? "yes" : "in place");
    expect_close(what, rel_err_bf16(g, out.h, (size_t)n * hidden), 1e-2);
    free(g);
    for (int e = 0; e < ne; e++) test_weight_free(&env, &gu[e]), test_weight_free(&env, &dn[e]);
    free(gu), free(dn), free(guh), free(gud), free(dnh), free(dnd), free(wr), free(ids), free(wts);
    if (residual != 2) mirror_free(&env, &out);
    mirror_free(&env, &res), mirror_free(&env, &x), mirror_free(&env, &mi), mirror_free(&env, &mw);
}

int main(void)
{
    int rc = gpu_env_init(&env);
    if (rc) return rc;
    static const int ns[] = {1, 7, 300};
    const int nn = (int)(sizeof ns / sizeof ns[0]);

    for (int i = 0; i < nn; i++) {
        test_embed(ns[i], 256);
        test_embed(ns[i], 2048);
    }
    test_embed(7, 100); /* rows not a multiple of 16 bytes */

    for (int i = 0; i < nn; i++) {
        const int n = ns[i];
        test_norm(0, n, 512, 576, 576, 1);   /* the c_kv slice of [c_kv | k_pe], in place */
        test_norm(0, n, 256, 256, 256, 0);   /* one warp per row */
        test_norm(0, n, 2048, 2048, 2048, 0); /* one block per row */
        test_norm(0, n, 7168, 7168, 7168, 0);
        test_norm(0, n, 100, 104, 100, 0);   /* generic path: d % 8 != 0 */
        test_norm(0, n, 9000, 9000, 9000, 0); /* generic path: d > 8192 */
        test_norm(1, n, 128, 128, 128, 0);
        test_norm(1, n, 128, 136, 128, 0);
        test_norm(1, n, 2048, 2048, 2048, 0);
        test_norm(1, n, 100, 100, 100, 0);
    }

    for (int i = 0; i < nn; i++)
        for (int style = 0; style < 2; style++) {
            test_rope(ns[i], 4, 32, style, 0);
            test_rope(ns[i], 20, 192, style, 0);
            test_rope(ns[i], 64, 128, style, 0);
            test_rope(ns[i], 1, 0, style, 1);
        }

    for (int i = 0; i < nn; i++) {
        test_swiglu(ns[i], 128);
        test_swiglu(ns[i], 1536);
        test_swiglu(ns[i], 100);
    }

    for (int i = 0; i < nn; i++) {
        test_mla_cache_bf16(ns[i], 576);
        test_mla_cache_bf16(ns[i], 640);
        for (int mode = 0; mode < 2; mode++) {
            test_mla_cache_fp8(ns[i], 576, mode);
            test_mla_cache_fp8(ns[i], 640, mode);
        }
        test_mla_cache_fp8(ns[i], 577, DSA_SCALE_FP32); /* unaligned rows: the scalar path */
    }

    for (int i = 0; i < nn; i++)
        for (int style = 0; style < 2; style++)
            for (int mode = 0; mode < 2; mode++) {
                test_idx_prep_q(ns[i], 4, style, mode);
                test_idx_prep_q(ns[i], 5, style, mode); /* odd: a half-warp with no head */
                test_idx_prep_q(ns[i], 64, style, mode);
                test_idx_prep_k(ns[i], 128, style, mode);
                test_idx_prep_k(ns[i], 136, style, mode);
            }

    /* (The FP8 reference decodes every e4m3 product in software: its m = 300 cases take a few
     * seconds each, so FP8 runs fewer of them.) */
    for (int fp8 = 0; fp8 < 2; fp8++) {
        for (int i = 0; i < nn; i++) {
            if (!fp8 || ns[i] < 300) test_gemm(ns[i], 576, 2048, 2048, 576, 0, fp8);
            test_gemm(ns[i], 576, 2048, 2048, 576, 1, fp8);
        }
        test_gemm(fp8 ? 16 : 300, 576, 2048, 2112, 640, 1, fp8); /* lda > k, ldd > n */
        test_gemm(7, 256, 2048, 2048, 256, 2, fp8);   /* residual aliasing D (o_proj) */
        test_gemm(300, 256, 640, 640, 256, 0, fp8);   /* ceil(k/128) = 5: padded FP8 scale layout */
        test_gemm(1, 64, 256, 256, 64, 0, fp8);       /* the tiny model's q_a */
    }

    for (int i = 0; i < nn; i++) {
        test_mla_proj(ns[i], 4, 32, 32);
        test_mla_proj(ns[i], 20, 192, 256);
    }
    test_mla_proj(1, 64, 128, 128);
    test_mla_proj(7, 64, 128, 128);
    test_mla_proj(120, 64, 128, 128);

    const dsa_router_cfg tiny = {8, 2, 2, 1, 1, 1.0f};    /* 8 experts, 2 groups, keep 1, top-2 */
    const dsa_router_cfg glm = {64, 4, 1, 1, 1, 2.5f};    /* 64 experts, one group, top-4 */
    const dsa_router_cfg dsv3 = {256, 8, 8, 4, 1, 2.5f};  /* DeepSeek-V3: 8 groups, keep 4, top-8 */
    for (int i = 0; i < nn; i++) {
        test_router(ns[i], 256, tiny, 1);
        test_router(ns[i], 2048, glm, 1);
        test_router(ns[i], 512, dsv3, 1);
    }
    test_router(300, 256, tiny, 0);

    for (int i = 0; i < nn; i++) test_experts(ns[i], 256, 128, tiny, 1, 0);
    test_experts(300, 256, 128, tiny, 2, 0);
    test_experts(7, 256, 128, tiny, 0, 0);
    test_experts(300, 256, 128, glm, 1, 0);
    test_experts(7, 2048, 512, tiny, 1, 0);
    test_experts(300, 256, 128, tiny, 1, 1); /* FP8 experts */
    test_experts(7, 256, 128, glm, 2, 1);

    gpu_env_fini(&env);
    return check_done("gpu_basic_ops");
}
