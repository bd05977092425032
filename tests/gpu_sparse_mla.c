/* tests/gpu_sparse_mla.c — sparse MLA attention (kernels/sparse_mla_prefill.cu,
 * kernels/sparse_mla_decode.cu, shared code in kernels/sparse_mla_core.cuh) against the C
 * reference (kernels/ref/sparse_attn.c).
 *
 * Shapes: both kernels of each op (h64: heads 64, 128; narrow: heads 4, 16, 20, and 96 = three
 * 32-head blocks), row counts 1, 3, 37, topk 64, 2048 and off-tile values (0, 77, 1000), the two
 * softmax scales of the model family (1/sqrt(192), 1/sqrt(256)). Index rows mix every case the
 * reference allows: random keys, -1 holes, a -1 tail (top-k padding), repeated keys (counted
 * twice), and one row of all -1 (zeros and lse = -inf). Decode: B = 1, 2, 5 requests, each with
 * its own FP8 cache (written by the reference's cache writer) at cache_stride > rows * 656, with
 * junk in the gaps; topk 2048 at small B takes the split-KV path plus the combine kernel.
 *
 * Tolerances. out_lat: ||gpu - ref|| / ||ref|| <= 1e-2: the kernels round P to bf16 before the
 * PV product (as FlashMLA does; the reference keeps double) and round the output to bf16, each
 * ~2^-9 relative; any layout or indexing bug is O(1). Decode also widens the FP8 keys to bf16
 * (e4m3 x scale rounded, another 2^-9 per element), same bound. lse: max |gpu - ref| <= 1e-3
 * (prefill: fp32 scores of exact bf16 products, ~1e-5) and 4e-3 (decode: the bf16-rounded keys
 * move each score by ~2^-9 of its terms; the H200 measured 0.7e-3 to 2.3e-3 as the max over
 * 5 x 64 rows, so 2e-3 was too tight); -inf must match exactly. Outputs are poisoned
 * (0xFF: NaN) on the device before each launch, so an element the kernel does not write fails. */
#include <cuda_runtime_api.h>
#include <string.h>

#include "gpu_harness.h"

#define OUT_TOL 1e-2
#define LSE_TOL_PREFILL 1e-3
#define LSE_TOL_DECODE 4e-3
#define CACHE_ROWS 5000

static test_rng rng = {0x243F6A8885A308D3ULL};

static void poison_device(gpu_env *env, mirror *m)
{
    dsa_cuda_ctx *c = env->gpu.ctx;
    if (cudaMemsetAsync(m->d, 0xFF, m->bytes ? m->bytes : 1, c->stream) != cudaSuccess) {
        fprintf(stderr, "cudaMemsetAsync failed\n");
        exit(1);
    }
}

/* Index rows [n, topk] over keys [0, n_keys): row 1 (if any) all -1; other rows get a -1 tail
 * of random length (sometimes none), ~3% -1 holes and ~3% repeats of the previous key. */
static void make_indices(int32_t *idx, int n, int topk, int n_keys)
{
    for (int r = 0; r < n; r++) {
        int32_t *row = idx + (size_t)r * topk;
        int valid = topk;
        if (r % 3 == 2 && topk > 0) valid = (int)(test_rnd(&rng) % (uint32_t)topk); /* a -1 tail */
        for (int j = 0; j < topk; j++) {
            uint32_t u = test_rnd(&rng) % 100;
            if (r == 1 || j >= valid || u < 3)
                row[j] = -1;
            else if (u < 6 && j > 0 && row[j - 1] >= 0)
                row[j] = row[j - 1]; /* repeated key: counts twice in the reference */
            else
                row[j] = (int32_t)(test_rnd(&rng) % (uint32_t)n_keys);
        }
    }
}

/* max |a - b| over n lse values; -inf must match exactly; NaN anywhere fails (inf). */
static double lse_err(const float *a, const float *b, size_t n)
{
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        if (isinf(b[i]) || isinf(a[i])) {
            if (a[i] != b[i]) return INFINITY;
            continue;
        }
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        double d = fabs((double)a[i] - b[i]);
        if (d > e) e = d;
    }
    return e;
}

/* Rows whose reference lse is -inf (no valid key) must be exactly zero. */
static long nonzero_empty_rows(const bf16_t *out, const float *ref_lse, size_t rows_heads)
{
    long bad = 0;
    for (size_t i = 0; i < rows_heads; i++) {
        if (!isinf(ref_lse[i])) continue;
        for (int c = 0; c < DSA_KV_LORA; c++) bad += out[i * DSA_KV_LORA + c] != 0;
    }
    return bad;
}

static void compare(gpu_env *env, const char *label, const mirror *out, const mirror *lse, size_t rows_heads,
                    double lse_tol)
{
    bf16_t *got = mirror_down(env, out);
    float *got_lse = mirror_down(env, lse);
    char what[160];
    snprintf(what, sizeof what, "%s out_lat", label);
    expect_close(what, rel_err_bf16(got, out->h, rows_heads * DSA_KV_LORA), OUT_TOL);
    snprintf(what, sizeof what, "%s lse (max abs)", label);
    expect_close(what, lse_err(got_lse, lse->h, rows_heads), lse_tol);
    CHECK_INT(nonzero_empty_rows(got, lse->h, rows_heads), 0);
    free(got);
    free(got_lse);
}

static void prefill_case(gpu_env *env, int n, int heads, int topk, float scale)
{
    char label[128];
    snprintf(label, sizeof label, "prefill n=%d heads=%d topk=%d scale=1/%.0f", n, heads, topk,
             1.0 / ((double)scale * scale));
    const size_t rows_heads = (size_t)n * heads;
    mirror q = mirror_rand_bf16(env, rows_heads * DSA_MLA_DIM, 1000 + (uint64_t)n * heads + topk, 1.7f);
    mirror cache = mirror_rand_bf16(env, (size_t)CACHE_ROWS * DSA_MLA_DIM, 77, 1.0f);
    mirror idx = mirror_new(env, (size_t)n * topk * sizeof(int32_t));
    make_indices(idx.h, n, topk, CACHE_ROWS);
    mirror_up(env, &idx);
    mirror out = mirror_new(env, rows_heads * DSA_KV_LORA * sizeof(bf16_t));
    mirror lse = mirror_new(env, rows_heads * sizeof(float));
    poison_device(env, &out);
    poison_device(env, &lse);

    CHECK_INT(env->ref.sparse_attn_prefill(env->ref.ctx, q.h, n, heads, cache.h, idx.h, topk, scale, out.h, lse.h),
              DSA_OK);
    int rc = env->gpu.sparse_attn_prefill(env->gpu.ctx, q.d, n, heads, cache.d, idx.d, topk, scale, out.d, lse.d);
    if (rc) {
        printf("%-60s FAIL: %s\n", label, env->gpu.last_error(env->gpu.ctx));
        check_failures++;
    } else {
        compare(env, label, &out, &lse, rows_heads, LSE_TOL_PREFILL);
    }
    mirror_free(env, &q);
    mirror_free(env, &cache);
    mirror_free(env, &idx);
    mirror_free(env, &out);
    mirror_free(env, &lse);
}

/* Request b's FP8 cache: `rows` tokens written by the reference cache writer from random bf16
 * rows, at b * stride; the bytes between requests keep the 0xA5 junk of mirror_new. */
static mirror make_fp8_caches(gpu_env *env, int batch, int rows, size_t stride)
{
    mirror c = mirror_new(env, (size_t)batch * stride);
    bf16_t *kv = malloc((size_t)rows * DSA_MLA_DIM * sizeof(bf16_t));
    int64_t *slot = malloc((size_t)rows * sizeof(int64_t));
    if (!kv || !slot) {
        fprintf(stderr, "out of host memory\n");
        exit(1);
    }
    for (int t = 0; t < rows; t++) slot[t] = t;
    for (int b = 0; b < batch; b++) {
        env->ref.fill_bf16(env->ref.ctx, kv, (size_t)rows * DSA_MLA_DIM, 500 + (uint64_t)b, 1.0f);
        CHECK_INT(env->ref.mla_cache_write_fp8(env->ref.ctx, kv, DSA_MLA_DIM, rows, slot,
                                               (uint8_t *)c.h + (size_t)b * stride, DSA_SCALE_FP32),
                  DSA_OK);
    }
    free(kv);
    free(slot);
    mirror_up(env, &c);
    return c;
}

static void decode_case(gpu_env *env, int batch, int heads, int topk, float scale)
{
    const int rows = 3000;
    const size_t stride = (size_t)rows * DSA_MLA_FP8_TOKEN_BYTES + 7 * 16; /* gap between requests */
    char label[128];
    snprintf(label, sizeof label, "decode B=%d heads=%d topk=%d scale=1/%.0f", batch, heads, topk,
             1.0 / ((double)scale * scale));
    const size_t rows_heads = (size_t)batch * heads;
    mirror q = mirror_rand_bf16(env, rows_heads * DSA_MLA_DIM, 3000 + (uint64_t)batch * heads + topk, 1.7f);
    mirror cache = make_fp8_caches(env, batch, rows, stride);
    mirror idx = mirror_new(env, (size_t)batch * topk * sizeof(int32_t));
    make_indices(idx.h, batch, topk, rows);
    mirror_up(env, &idx);
    mirror out = mirror_new(env, rows_heads * DSA_KV_LORA * sizeof(bf16_t));
    mirror lse = mirror_new(env, rows_heads * sizeof(float));
    poison_device(env, &out);
    poison_device(env, &lse);

    CHECK_INT(
        env->ref.sparse_attn_decode(env->ref.ctx, q.h, batch, heads, cache.h, stride, idx.h, topk, scale, out.h, lse.h),
        DSA_OK);
    int rc =
        env->gpu.sparse_attn_decode(env->gpu.ctx, q.d, batch, heads, cache.d, stride, idx.d, topk, scale, out.d, lse.d);
    if (rc) {
        printf("%-60s FAIL: %s\n", label, env->gpu.last_error(env->gpu.ctx));
        check_failures++;
    } else {
        compare(env, label, &out, &lse, rows_heads, LSE_TOL_DECODE);
    }
    mirror_free(env, &q);
    mirror_free(env, &cache);
    mirror_free(env, &idx);
    mirror_free(env, &out);
    mirror_free(env, &lse);
}

/* Bad arguments fail with a message and launch nothing. */
static void argument_checks(gpu_env *env)
{
    mirror q = mirror_new(env, DSA_MLA_DIM * sizeof(bf16_t) * 2);
    mirror o = mirror_new(env, DSA_KV_LORA * sizeof(bf16_t) * 2);
    mirror l = mirror_new(env, 2 * sizeof(float));
    mirror idx = mirror_new(env, 64 * sizeof(int32_t));
    mirror c = mirror_new(env, 64 * DSA_MLA_FP8_TOKEN_BYTES + 64);
    void *g = env->gpu.ctx;
    CHECK(env->gpu.sparse_attn_prefill(g, q.d, 1, 0, c.d, idx.d, 64, 0.1f, o.d, l.d) != DSA_OK);
    CHECK(env->gpu.sparse_attn_prefill(g, q.d, 1, 1, c.d, idx.d, 64, -0.1f, o.d, l.d) != DSA_OK);
    CHECK(env->gpu.sparse_attn_prefill(g, q.d, 1, 1, NULL, idx.d, 64, 0.1f, o.d, l.d) != DSA_OK);
    CHECK(env->gpu.sparse_attn_prefill(g, q.d, 1, 1, (bf16_t *)((char *)c.d + 2), idx.d, 64, 0.1f, o.d, l.d) != DSA_OK);
    CHECK(env->gpu.sparse_attn_decode(g, q.d, 1, 1, c.d, 100, idx.d, 64, 0.1f, o.d, l.d) != DSA_OK); /* stride % 16 */
    CHECK(env->gpu.sparse_attn_decode(g, q.d, -1, 1, c.d, 656, idx.d, 64, 0.1f, o.d, l.d) != DSA_OK);
    CHECK_INT(env->gpu.sparse_attn_prefill(g, q.d, 0, 1, c.d, idx.d, 64, 0.1f, o.d, l.d), DSA_OK); /* n = 0 */
    printf("argument checks: %s\n", env->gpu.last_error(g));
    mirror_free(env, &q);
    mirror_free(env, &o);
    mirror_free(env, &l);
    mirror_free(env, &idx);
    mirror_free(env, &c);
}

/* gpu_sparse_mla [prefill|decode]: one kernel's cases only (a sanitizer run of one kernel takes
 * a fraction of the whole test's time under racecheck); no argument runs everything. */
int main(int argc, char **argv)
{
    const int prefill = argc < 2 || strcmp(argv[1], "prefill") == 0;
    const int decode = argc < 2 || strcmp(argv[1], "decode") == 0;
    if (argc > 2 || (!prefill && !decode)) {
        fprintf(stderr, "usage: gpu_sparse_mla [prefill|decode]\n");
        return 2;
    }
    gpu_env env;
    int rc = gpu_env_init(&env);
    if (rc) return rc;
    const float s192 = 1.0f / sqrtf(192.0f), s256 = 1.0f / sqrtf(256.0f);

    if (prefill) {
        /* topk 64: every row count x head count (both kernels), both scales */
        const int ns[] = {1, 3, 37}, hs[] = {4, 20, 64, 128};
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 4; j++) prefill_case(&env, ns[i], hs[j], 64, (i + j) % 2 ? s192 : s256);
        /* topk 2048 (32 chunks, -1 tails) and off-tile topk */
        prefill_case(&env, 3, 128, 2048, s192);
        prefill_case(&env, 1, 64, 2048, s256);
        prefill_case(&env, 37, 20, 2048, s192);
        prefill_case(&env, 3, 4, 2048, s256);
        prefill_case(&env, 5, 96, 1000, s192); /* narrow, 3 head blocks, partial last chunk */
        prefill_case(&env, 4, 64, 77, s256);   /* one pair, the odd chunk mostly empty */
        prefill_case(&env, 3, 16, 0, s192);    /* no keys at all */
    }
    if (decode) {
        /* decode: split-KV (small B, topk 2048) and single-block paths */
        const int bs[] = {1, 2, 5}, dh[] = {16, 64, 128};
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                decode_case(&env, bs[i], dh[j], 64, (i + j) % 2 ? s192 : s256);
                decode_case(&env, bs[i], dh[j], 2048, (i + j) % 2 ? s256 : s192);
            }
        decode_case(&env, 3, 20, 1000, s192); /* uneven splits */
        decode_case(&env, 2, 128, 77, s256);
    }

    argument_checks(&env);
    gpu_env_fini(&env);
    return check_done("gpu_sparse_mla");
}
