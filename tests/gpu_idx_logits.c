/* tests/gpu_idx_logits.c — the indexer-score kernels (kernels/idx_logits.cu) against the C
 * reference (kernels/ref/idx_logits.c), prefill and decode, on awkward shapes: query counts and
 * key counts off every tile size, heads padded inside the kernel (4, 20) or past its tensor-core
 * path (96, 128), causal limits inside, at and beyond the key range, ld_scores > n_keys, caches
 * not 16-byte aligned (the kernel's plain-load path), several key chunks per query tile.
 *
 * Inputs are random valid e4m3 bytes (0x7F/0xFF, the NaN codes, avoided), positive key scales,
 * weights of both signs. Tolerance: the reference sums exact products in double; the kernel's
 * FP8 tensor cores keep only ~14 bits while accumulating within each 32-wide k step (DeepSeek-V3
 * report, sec. 3.3.2), so a relative error up to ~1e-4 is expected on these wide-range random
 * codes. Measured on the H200: 2.0e-4 to 2.2e-4 over whole score matrices, and 1.6e-3 for a
 * single score (n = 1, n_keys = 1: its 32 head terms of both signs cancel, and one value has no
 * averaging). 3e-3 still catches any layout or indexing bug (a missing head or key is >= 1e-2).
 * -inf (causal) positions must match exactly, and columns past n_keys must stay untouched. */
#include <cuda_runtime_api.h>

#include "gpu_harness.h"

#define TOL 3e-3
#define POISON_WORD 0xFFFFFFFFu /* cudaMemset 0xFF: a NaN, so an unwritten score fails */

static test_rng rng = {0x9E3779B97F4A7C15ULL};

static void fill_keys(uint8_t *cache, int n_keys)
{
    for (int s = 0; s < n_keys; s++) {
        uint8_t *row = cache + (size_t)s * DSA_IDX_TOKEN_BYTES;
        test_fill_e4m3(&rng, row, DSA_IDX_DIM);
        float scale = 1e-3f + test_rnd_unit(&rng);
        memcpy(row + DSA_IDX_DIM, &scale, 4);
    }
}

static void fill_weights(float *w, size_t n)
{
    for (size_t i = 0; i < n; i++) w[i] = 2.0f * test_rnd_unit(&rng) - 1.0f;
}

static void poison_device(gpu_env *env, mirror *m)
{
    dsa_cuda_ctx *c = env->gpu.ctx;
    if (cudaMemsetAsync(m->d, 0xFF, m->bytes, c->stream) != cudaSuccess) {
        fprintf(stderr, "cudaMemsetAsync failed\n");
        exit(1);
    }
}

/* rel err over rows x [0, cols) of two [rows, ld] score arrays (rel_err_f32 per row, pooled);
 * also counts words in [cols, ld) of got that are not the poison. */
static double score_err(const float *got, const float *ref, int rows, int cols, int ld, long *touched)
{
    double num = 0, den = 0;
    *touched = 0;
    for (int r = 0; r < rows; r++) {
        const float *a = got + (size_t)r * ld, *b = ref + (size_t)r * ld;
        for (int s = 0; s < cols; s++) {
            if (isinf(b[s]) && a[s] == b[s]) continue;
            if (!isfinite(a[s]) || !isfinite(b[s])) return INFINITY;
            num += ((double)a[s] - b[s]) * ((double)a[s] - b[s]);
            den += (double)b[s] * b[s];
        }
        for (int s = cols; s < ld; s++) {
            uint32_t u;
            memcpy(&u, &a[s], 4);
            if (u != POISON_WORD) (*touched)++;
        }
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* cache_offset shifts the cache pointer (4: not 16-byte aligned) */
static void prefill_case(gpu_env *env, int n, int heads, int n_keys, int q_pos0, int ld, int cache_offset)
{
    char label[128];
    snprintf(label, sizeof label, "prefill n=%d heads=%d n_keys=%d q_pos0=%d ld=%d%s", n, heads, n_keys,
             q_pos0, ld, cache_offset ? " unaligned" : "");
    mirror q = mirror_new(env, (size_t)n * heads * DSA_IDX_DIM);
    mirror w = mirror_new(env, (size_t)n * heads * sizeof(float));
    mirror k = mirror_new(env, (size_t)cache_offset + (size_t)n_keys * DSA_IDX_TOKEN_BYTES);
    mirror s = mirror_new(env, (size_t)n * ld * sizeof(float));
    test_fill_e4m3(&rng, q.h, q.bytes);
    fill_weights(w.h, (size_t)n * heads);
    fill_keys((uint8_t *)k.h + cache_offset, n_keys);
    mirror_up(env, &q);
    mirror_up(env, &w);
    mirror_up(env, &k);
    poison_device(env, &s);

    CHECK_INT(env->ref.idx_logits_prefill(env->ref.ctx, q.h, w.h, n, heads, (uint8_t *)k.h + cache_offset, n_keys,
                                          q_pos0, s.h, ld),
              DSA_OK);
    int rc = env->gpu.idx_logits_prefill(env->gpu.ctx, q.d, w.d, n, heads, (uint8_t *)k.d + cache_offset, n_keys,
                                         q_pos0, s.d, ld);
    if (rc) {
        printf("%-60s FAIL: %s\n", label, env->gpu.last_error(env->gpu.ctx));
        check_failures++;
    } else {
        float *got = mirror_down(env, &s);
        long touched;
        expect_close(label, score_err(got, s.h, n, n_keys, ld, &touched), TOL);
        CHECK_INT(touched, 0);
        free(got);
    }
    mirror_free(env, &q);
    mirror_free(env, &w);
    mirror_free(env, &k);
    mirror_free(env, &s);
}

static void decode_case(gpu_env *env, int batch, int heads, int n_keys, size_t stride, int ld)
{
    char label[128];
    snprintf(label, sizeof label, "decode B=%d heads=%d n_keys=%d stride=%zu ld=%d", batch, heads, n_keys, stride,
             ld);
    mirror q = mirror_new(env, (size_t)batch * heads * DSA_IDX_DIM);
    mirror w = mirror_new(env, (size_t)batch * heads * sizeof(float));
    mirror k = mirror_new(env, (size_t)batch * stride);
    mirror s = mirror_new(env, (size_t)batch * ld * sizeof(float));
    test_fill_e4m3(&rng, q.h, q.bytes);
    fill_weights(w.h, (size_t)batch * heads);
    test_fill_e4m3(&rng, k.h, k.bytes); /* the gaps between requests hold junk the kernel must not read */
    for (int b = 0; b < batch; b++) fill_keys((uint8_t *)k.h + (size_t)b * stride, n_keys);
    mirror_up(env, &q);
    mirror_up(env, &w);
    mirror_up(env, &k);
    poison_device(env, &s);

    CHECK_INT(env->ref.idx_logits_decode(env->ref.ctx, q.h, w.h, batch, heads, k.h, stride, n_keys, s.h, ld),
              DSA_OK);
    int rc = env->gpu.idx_logits_decode(env->gpu.ctx, q.d, w.d, batch, heads, k.d, stride, n_keys, s.d, ld);
    if (rc) {
        printf("%-60s FAIL: %s\n", label, env->gpu.last_error(env->gpu.ctx));
        check_failures++;
    } else {
        float *got = mirror_down(env, &s);
        long touched;
        expect_close(label, score_err(got, s.h, batch, n_keys, ld, &touched), TOL);
        CHECK_INT(touched, 0);
        free(got);
    }
    mirror_free(env, &q);
    mirror_free(env, &w);
    mirror_free(env, &k);
    mirror_free(env, &s);
}

/* Bad arguments are refused with a message; n_keys = 0 decode writes nothing. */
static void argument_checks(gpu_env *env)
{
    mirror q = mirror_new(env, 2 * 32 * DSA_IDX_DIM + 16);
    mirror w = mirror_new(env, 2 * 32 * sizeof(float));
    mirror k = mirror_new(env, 2 * 100 * DSA_IDX_TOKEN_BYTES);
    mirror s = mirror_new(env, 2 * 100 * sizeof(float));
    void *g = env->gpu.ctx;
    CHECK(env->gpu.idx_logits_prefill(g, q.d, w.d, 2, 32, k.d, 100, 0, s.d, 99) != DSA_OK); /* ld < n_keys */
    CHECK(env->gpu.idx_logits_prefill(g, q.d, w.d, 2, 32, k.d, 100, 99, s.d, 100) != DSA_OK); /* causal overrun */
    CHECK(env->gpu.idx_logits_prefill(g, q.d, w.d, 2, 0, k.d, 100, 0, s.d, 100) != DSA_OK);  /* heads */
    CHECK(env->gpu.idx_logits_prefill(g, (uint8_t *)q.d + 8, w.d, 2, 32, k.d, 100, 0, s.d, 100) != DSA_OK);
    CHECK(env->gpu.idx_logits_decode(g, q.d, w.d, 2, 32, k.d, 100 * DSA_IDX_TOKEN_BYTES - 4, 100, s.d, 100) !=
          DSA_OK); /* stride < one cache */
    CHECK(env->gpu.idx_logits_decode(g, q.d, w.d, 2, 32, (uint8_t *)k.d + 2, 100 * DSA_IDX_TOKEN_BYTES, 100, s.d,
                                     100) != DSA_OK); /* cache not 4-byte aligned */
    printf("refused bad arguments, e.g.: %s\n", env->gpu.last_error(g));

    poison_device(env, &s);
    CHECK_INT(env->gpu.idx_logits_decode(g, q.d, w.d, 2, 32, k.d, 100 * DSA_IDX_TOKEN_BYTES, 0, s.d, 100), DSA_OK);
    CHECK_INT(env->gpu.idx_logits_prefill(g, q.d, w.d, 0, 32, k.d, 100, 0, s.d, 100), DSA_OK);
    float *got = mirror_down(env, &s);
    long touched;
    score_err(got, got, 2, 0, 100, &touched);
    CHECK_INT(touched, 0);
    printf("%-60s %s\n", "decode n_keys=0 and prefill n=0 write nothing", touched ? "FAIL" : "ok");
    free(got);
    mirror_free(env, &q);
    mirror_free(env, &w);
    mirror_free(env, &k);
    mirror_free(env, &s);
}

int main(void)
{
    gpu_env env;
    int rc = gpu_env_init(&env);
    if (rc) return rc;
    if (!env.gpu.idx_logits_prefill || !env.gpu.idx_logits_decode) {
        fprintf(stderr, "idx_logits kernels are not linked in\n");
        return 1;
    }

    prefill_case(&env, 1, 32, 1, 0, 1, 0);
    prefill_case(&env, 5, 4, 1000, 995, 1000, 0);
    prefill_case(&env, 64, 20, 64, 0, 67, 0);
    prefill_case(&env, 64, 64, 1000, 936, 1000, 0);
    prefill_case(&env, 300, 32, 300, 0, 301, 0);
    prefill_case(&env, 300, 4, 5000, 4700, 5003, 0);
    prefill_case(&env, 5, 64, 4097, 4092, 4100, 0);
    prefill_case(&env, 300, 64, 4097, 0, 4097, 0);      /* keys past the last query: -inf-only blocks */
    prefill_case(&env, 16, 16, 40000, 39984, 40000, 0); /* several key chunks per query tile */
    prefill_case(&env, 37, 32, 1100, 1000, 1100, 4);    /* cache not 16-byte aligned */
    prefill_case(&env, 5, 96, 1000, 990, 1001, 0);      /* heads > 64: generic kernel */

    decode_case(&env, 1, 32, 1, DSA_IDX_TOKEN_BYTES, 1);
    decode_case(&env, 3, 64, 777, 777 * DSA_IDX_TOKEN_BYTES + 36, 780); /* request 1 not 16-byte aligned */
    decode_case(&env, 8, 32, 5000, 5000 * DSA_IDX_TOKEN_BYTES + 64, 5000);
    decode_case(&env, 3, 4, 5000, 5000 * DSA_IDX_TOKEN_BYTES + 4, 5001);
    decode_case(&env, 2, 20, 777, 777 * DSA_IDX_TOKEN_BYTES + 132, 777);
    decode_case(&env, 1, 64, 50000, (size_t)50000 * DSA_IDX_TOKEN_BYTES, 50000);
    decode_case(&env, 2, 128, 777, 777 * DSA_IDX_TOKEN_BYTES, 777); /* heads > 64: generic kernel */

    argument_checks(&env);

    gpu_env_fini(&env);
    return check_done("gpu_idx_logits");
}
