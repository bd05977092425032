/* tests/gpu_idx_fused.c — the fused indexer (kernels/idx_fused.cu: scores and exact top-k without
 * the score matrix) against what it replaces, prefill and decode.
 *
 * Three comparisons per case, as index sets (the CUDA op writes each row's set in any order):
 *   exact  the GPU idx_logits scores (the unfused kernel, downloaded) selected on the host by the
 *          reference top-k: the fused op computes bit-identical scores and selects exactly, so its
 *          sets must be EQUAL (tolerance 0; ties to the lower index).
 *   ref    the CPU reference fused op (reference logits + reference topk). Its scores differ from the
 *          GPU's by FP8 tensor-core rounding (~2e-4 relative, up to ~2e-3 for one score: see
 *          gpu_idx_logits.c), so two keys whose scores are that close to the k-th best may swap: an
 *          index in one set and not the other is accepted when its reference score is within
 *          3e-3 * (the largest |score| of the keys involved) of the reference's k-th best score. The
 *          printed err counts the differences NOT so explained (tolerance 0); the -1 padding must
 *          match exactly, indices must be distinct and within the row.
 *   pair   the GPU unfused pair (idx_logits then topk on the device): equal sets (tolerance 0). If
 *          only this line fails, look at kernels/topk.cu.
 * Each case runs the fused op twice (the second run must not see the first's scratch) with the
 * output poisoned (0xA5 bytes: an invalid index) before each run.
 *
 * Data: random (valid e4m3 codes, positive key scales, weights of both signs), and adversarial
 * patterns built from equal query/key codes with chosen key scales: scores increasing along the keys,
 * decreasing, all equal (ties everywhere: the lowest indices win; every candidate list overflows,
 * so the rows are recomputed densely), few distinct keys (heavy ties at the k-th best), and peaks
 * exactly at the sample positions (kernels/topk_core.cuh sample_position: the sampled threshold
 * keeps fewer than k keys, or every key, so the rows are recomputed densely). The op's count of recomputed rows
 * (dsa_cuda_idx_fused_fallback_rows) must not move on random data and must move on the peaks.
 * Shapes: 4/20/32/64 heads (padded tiles) and 96/128 (CUDA-core path), key counts off every tile,
 * q_pos0 = 0 (early rows shorter than k) and > 0, first rows shorter and longer than 8192 (the
 * dense and the sampled path), keys past the last query, a cache not 16-byte aligned, k > n_keys,
 * decode B = 1..8 with n_keys < k and > k, n_keys = 0, and a prefill and a decode step replayed
 * from a CUDA graph. */
#include <cuda_runtime_api.h>

#include "cuda_ops.h"
#include "gpu_harness.h"

#define TIE_TOL 3e-3
#define OUT_POISON 0xA5 /* 0xA5A5A5A5: a negative index, neither valid nor the -1 pad */

enum { DATA_RANDOM, DATA_INCREASING, DATA_DECREASING, DATA_EQUAL, DATA_FEW, DATA_PEAKS };
static const char *data_name[] = {"random", "increasing", "decreasing", "equal", "few keys", "sample peaks"};

static test_rng rng = {0x9E3779B97F4A7C15ULL};

/* Query codes and weights of a data pattern: random, or 1.0 everywhere (e4m3 0x38) with positive
 * weights, so a key's score is its scale times one positive constant of the query. */
static void fill_queries(uint8_t *q, float *w, int rows, int heads, int mode)
{
    const size_t nq = (size_t)rows * heads;
    if (mode == DATA_RANDOM || mode == DATA_FEW) {
        test_fill_e4m3(&rng, q, nq * DSA_IDX_DIM);
        for (size_t i = 0; i < nq; i++) w[i] = 2.0f * test_rnd_unit(&rng) - 1.0f;
    } else {
        memset(q, 0x38, nq * DSA_IDX_DIM);
        for (size_t i = 0; i < nq; i++) w[i] = 0.25f + 0.5f * test_rnd_unit(&rng);
    }
}

/* n_keys cache rows of a data pattern; s_len: the first row's length (the sampled range). */
static void fill_keys(uint8_t *cache, int n_keys, int s_len, int mode)
{
    uint8_t few[7][DSA_IDX_TOKEN_BYTES];
    for (int j = 0; j < 7; j++) {
        test_fill_e4m3(&rng, few[j], DSA_IDX_DIM);
        float scale = 1e-3f + test_rnd_unit(&rng);
        memcpy(few[j] + DSA_IDX_DIM, &scale, 4);
    }
    for (int s = 0; s < n_keys; s++) {
        uint8_t *row = cache + (size_t)s * DSA_IDX_TOKEN_BYTES;
        float scale;
        switch (mode) {
        case DATA_FEW: memcpy(row, few[s % 7], DSA_IDX_TOKEN_BYTES); continue;
        case DATA_RANDOM: test_fill_e4m3(&rng, row, DSA_IDX_DIM); scale = 1e-3f + test_rnd_unit(&rng); break;
        /* steps of 1/8 stay distinct after the product with the query's constant */
        case DATA_INCREASING: memset(row, 0x38, DSA_IDX_DIM); scale = 1.0f + 0.125f * (float)s; break;
        case DATA_DECREASING: memset(row, 0x38, DSA_IDX_DIM); scale = 1.0f + 0.125f * (float)(n_keys - s); break;
        default: memset(row, 0x38, DSA_IDX_DIM); scale = 0.5f; break;
        }
        memcpy(row + DSA_IDX_DIM, &scale, 4);
    }
    /* the middle sample of each sample chunk (topk_core.cuh sample_position), for both sample
     * counts idx_fused uses (kernels/idx_fused.cu sample_count): 128 chunks of 32, or 64. With
     * 4096 samples and a small k, the threshold is the hot score and only the 192 hot keys pass
     * (fewer than k); with 2048 samples and k = 2048 the rank is above the 64 hot samples, tau is
     * the common score and every key passes (more than the selection holds). */
    if (mode == DATA_PEAKS)
        for (int chunks = 128; chunks >= 64; chunks /= 2)
            for (int c = 0; c < chunks; c++) {
                const float hot = 4.0f;
                memcpy(cache + (size_t)((2LL * c + 1) * s_len / (2 * chunks)) * DSA_IDX_TOKEN_BYTES + DSA_IDX_DIM, &hot, 4);
            }
}

static void poison_out(gpu_env *env, mirror *m)
{
    dsa_cuda_ctx *c = env->gpu.ctx;
    if (cudaMemsetAsync(m->d, OUT_POISON, m->bytes, c->stream) != cudaSuccess) {
        fprintf(stderr, "cudaMemsetAsync failed\n");
        exit(1);
    }
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* A row's k entries, sorted (the -1 padding first). */
static void sorted_row(int32_t *dst, const int32_t *src, int k)
{
    memcpy(dst, src, (size_t)k * sizeof *dst);
    qsort(dst, (size_t)k, sizeof *dst, cmp_i32);
}

/* Entries that differ between the sorted sets of every row (exact comparison). */
static long exact_diff(const int32_t *got, const int32_t *want, int rows, int k, const char *what)
{
    int32_t *a = malloc((size_t)k * sizeof *a), *b = malloc((size_t)k * sizeof *b);
    if (!a || !b) { fprintf(stderr, "out of host memory\n"); exit(1); }
    long bad = 0;
    int reported = 0;
    for (int r = 0; r < rows; r++) {
        sorted_row(a, got + (size_t)r * k, k);
        sorted_row(b, want + (size_t)r * k, k);
        long row_bad = 0;
        int first = -1;
        for (int j = 0; j < k; j++)
            if (a[j] != b[j]) {
                if (first < 0) first = j;
                row_bad++;
            }
        if (row_bad && !reported) {
            fprintf(stderr, "  %s: row %d: %ld of %d differ; first at sorted position %d: got %d, want %d\n", what, r,
                    row_bad, k, first, a[first], b[first]);
            reported = 1;
        }
        bad += row_bad;
    }
    free(a);
    free(b);
    return bad;
}

typedef struct fcase {
    int decode;       /* 0: prefill (rows = n queries at q_pos0 ..), 1: decode (rows = batch) */
    int rows, heads, n_keys, q_pos0, k, mode;
    size_t stride;    /* decode: bytes between requests' caches (0: n_keys * 132) */
    int cache_offset; /* bytes the cache starts into its allocation (4: not 16-byte aligned) */
    int graph;        /* also replay the op from a captured CUDA graph */
} fcase;

/* The reference score of (row r, key s), computed alone (one query against one key). */
typedef struct ref_scorer {
    gpu_env *env;
    const fcase *t;
    const uint8_t *q, *cache; /* host */
    const float *w;
} ref_scorer;

static double ref_score(const ref_scorer *rs, int r, int s)
{
    const fcase *t = rs->t;
    const uint8_t *q = rs->q + (size_t)r * t->heads * DSA_IDX_DIM;
    const float *w = rs->w + (size_t)r * t->heads;
    float v = NAN;
    int rc = t->decode ? rs->env->ref.idx_logits_decode(rs->env->ref.ctx, q, w, 1, t->heads,
                                                        rs->cache + (size_t)r * t->stride +
                                                            (size_t)s * DSA_IDX_TOKEN_BYTES,
                                                        0, 1, &v, 1)
                       : rs->env->ref.idx_logits_prefill(rs->env->ref.ctx, q, w, 1, t->heads,
                                                         rs->cache + (size_t)s * DSA_IDX_TOKEN_BYTES, 1, 0, &v, 1);
    if (rc) {
        fprintf(stderr, "reference score failed: %s\n", rs->env->ref.last_error(rs->env->ref.ctx));
        exit(1);
    }
    return v;
}

/* Differences between got and the reference's sets that the score tolerance does not explain;
 * row r has len = clamp(len0 + r * len_step, 0, n_keys) valid keys. */
static long judged_diff(const int32_t *got, const int32_t *want, int rows, int k, const ref_scorer *rs,
                        int n_keys, long long len0, int len_step, long *swaps)
{
    int32_t *a = malloc((size_t)k * sizeof *a), *b = malloc((size_t)k * sizeof *b);
    if (!a || !b) { fprintf(stderr, "out of host memory\n"); exit(1); }
    long bad = 0;
    int reported = 0;
    *swaps = 0;
    for (int r = 0; r < rows; r++) {
        long long len = len0 + (long long)r * len_step;
        len = len < 0 ? 0 : len > n_keys ? n_keys : len;
        sorted_row(a, got + (size_t)r * k, k);
        sorted_row(b, want + (size_t)r * k, k);
        const int pad = (int)(len < k ? k - len : 0);
        long row_bad = 0;
        for (int j = 0; j < k; j++) { /* the padding: exactly k - min(k, len) entries of -1 */
            if ((j < pad) != (a[j] == -1)) row_bad++;
            if (j >= pad && (a[j] < 0 || a[j] >= len || (j > pad && a[j] == a[j - 1])))
                row_bad++; /* out of the row, or twice */
        }
        if (!row_bad && memcmp(a, b, (size_t)k * sizeof *a)) {
            /* tau = the reference's k-th best; the scale = the largest |score| involved */
            double tau = INFINITY, amax = 0;
            for (int j = pad; j < k; j++) {
                const double v = ref_score(rs, r, b[j]);
                tau = fmin(tau, v);
                amax = fmax(amax, fabs(v));
            }
            /* merge the sorted sets: an index in one only must score within tol of the k-th best */
            int n_odd = 0;
            int32_t *odd = malloc((size_t)2 * k * sizeof *odd);
            if (!odd) { fprintf(stderr, "out of host memory\n"); exit(1); }
            for (int i = pad, j = pad; i < k || j < k;) {
                if (j >= k || (i < k && a[i] < b[j])) odd[n_odd++] = a[i++];
                else if (i >= k || b[j] < a[i]) odd[n_odd++] = b[j++];
                else i++, j++;
            }
            double *v = malloc((size_t)(n_odd ? n_odd : 1) * sizeof *v);
            if (!v) { fprintf(stderr, "out of host memory\n"); exit(1); }
            for (int i = 0; i < n_odd; i++) amax = fmax(amax, fabs(v[i] = ref_score(rs, r, odd[i])));
            for (int i = 0; i < n_odd; i++) {
                if (fabs(v[i] - tau) <= TIE_TOL * amax) (*swaps)++;
                else row_bad++;
            }
            free(v);
            free(odd);
        }
        if (row_bad && !reported) {
            fprintf(stderr, "  row %d (len %lld): %ld unexplained differences from the reference\n", r, len, row_bad);
            reported = 1;
        }
        bad += row_bad;
    }
    free(a);
    free(b);
    return bad;
}

static int run_op(gpu_env *env, const fcase *t, const uint8_t *q, const float *w, const uint8_t *cache, int32_t *out)
{
    return t->decode ? env->gpu.idx_fused_decode(env->gpu.ctx, q, w, t->rows, t->heads, cache, t->stride, t->n_keys,
                                                 t->k, out)
                     : env->gpu.idx_fused_prefill(env->gpu.ctx, q, w, t->rows, t->heads, cache, t->n_keys, t->q_pos0,
                                                  t->k, out);
}

static void run_case(gpu_env *env, fcase t)
{
    if (t.decode && !t.stride) t.stride = (size_t)t.n_keys * DSA_IDX_TOKEN_BYTES;
    char label[128];
    if (t.decode)
        snprintf(label, sizeof label, "decode B=%d h=%d keys=%d k=%d %s%s", t.rows, t.heads, t.n_keys, t.k,
                 data_name[t.mode], t.stride % 16 ? " unaligned" : "");
    else
        snprintf(label, sizeof label, "prefill n=%d h=%d keys=%d q0=%d k=%d %s%s", t.rows, t.heads, t.n_keys, t.q_pos0,
                 t.k, data_name[t.mode], t.cache_offset ? " unaligned" : "");
    const size_t cache_bytes = t.decode ? (size_t)t.rows * t.stride : (size_t)t.n_keys * DSA_IDX_TOKEN_BYTES;
    const int ld = t.n_keys > 0 ? t.n_keys : 1;
    const long long len0 = t.decode ? t.n_keys : (long long)t.q_pos0 + 1;
    const int len_step = t.decode ? 0 : 1;
    const size_t out_n = (size_t)t.rows * t.k;

    mirror q = mirror_new(env, (size_t)t.rows * t.heads * DSA_IDX_DIM);
    mirror w = mirror_new(env, (size_t)t.rows * t.heads * sizeof(float));
    mirror k = mirror_new(env, (size_t)t.cache_offset + cache_bytes);
    mirror s = mirror_new(env, (size_t)t.rows * ld * sizeof(float)); /* GPU scores of the unfused kernel */
    mirror o = mirror_new(env, out_n * sizeof(int32_t));
    fill_queries(q.h, w.h, t.rows, t.heads, t.mode);
    uint8_t *kh = (uint8_t *)k.h + t.cache_offset;
    if (t.decode) {
        test_fill_e4m3(&rng, kh, cache_bytes); /* the gaps between requests hold junk the kernels must not read */
        for (int b = 0; b < t.rows; b++) fill_keys(kh + (size_t)b * t.stride, t.n_keys, t.n_keys, t.mode);
    } else {
        fill_keys(kh, t.n_keys, t.q_pos0 + 1, t.mode);
    }
    mirror_up(env, &q);
    mirror_up(env, &w);
    mirror_up(env, &k);
    const uint8_t *kd = (const uint8_t *)k.d + t.cache_offset;

    /* CPU: the reference fused op (its ties are judged by scores computed one at a time) */
    int32_t *want_ref = malloc(out_n * sizeof *want_ref), *want_exact = malloc(out_n * sizeof *want_exact);
    if (!want_ref || !want_exact) { fprintf(stderr, "out of host memory\n"); exit(1); }
    const ref_scorer rs = {env, &t, q.h, kh, w.h};
    int rc = t.decode ? env->ref.idx_fused_decode(env->ref.ctx, q.h, w.h, t.rows, t.heads, kh, t.stride, t.n_keys,
                                                  t.k, want_ref)
                      : env->ref.idx_fused_prefill(env->ref.ctx, q.h, w.h, t.rows, t.heads, kh, t.n_keys, t.q_pos0,
                                                   t.k, want_ref);
    if (rc) {
        fprintf(stderr, "reference failed: %s\n", env->ref.last_error(env->ref.ctx));
        exit(1);
    }

    /* GPU unfused: the scores, selected exactly on the host, and the device pair */
    int gpu_rc = DSA_OK;
    if (t.n_keys > 0)
        gpu_rc = t.decode ? env->gpu.idx_logits_decode(env->gpu.ctx, q.d, w.d, t.rows, t.heads, kd, t.stride,
                                                       t.n_keys, s.d, ld)
                          : env->gpu.idx_logits_prefill(env->gpu.ctx, q.d, w.d, t.rows, t.heads, kd, t.n_keys,
                                                        t.q_pos0, s.d, ld);
    if (gpu_rc) gpu_die(env, "idx_logits");
    float *gpu_scores = mirror_down(env, &s);
    if (env->ref.topk(env->ref.ctx, gpu_scores, t.rows, t.n_keys, (int)len0, len_step, t.k, want_exact)) {
        fprintf(stderr, "reference topk failed: %s\n", env->ref.last_error(env->ref.ctx));
        exit(1);
    }
    poison_out(env, &o);
    if (t.n_keys > 0 && env->gpu.topk(env->gpu.ctx, s.d, t.rows, t.n_keys, (int)len0, len_step, t.k, o.d))
        gpu_die(env, "topk");
    int32_t *pair = mirror_down(env, &o);
    if (t.n_keys == 0)
        for (size_t i = 0; i < out_n; i++) pair[i] = -1;

    char what[200];
    const unsigned long long fallbacks0 = dsa_cuda_idx_fused_fallback_rows(env->gpu.ctx);
    for (int rep = 0; rep < 2; rep++) {
        poison_out(env, &o);
        if (run_op(env, &t, q.d, w.d, kd, o.d)) {
            printf("%-60s FAIL: %s\n", label, env->gpu.last_error(env->gpu.ctx));
            check_failures++;
            break;
        }
        int32_t *got = mirror_down(env, &o);
        snprintf(what, sizeof what, "%s%s = exact", label, rep ? " again" : "");
        expect_close(what, (double)exact_diff(got, want_exact, t.rows, t.k, what), 0.0);
        if (!rep) {
            long swaps;
            snprintf(what, sizeof what, "%s ~ ref", label);
            expect_close(what, (double)judged_diff(got, want_ref, t.rows, t.k, &rs, t.n_keys, len0, len_step, &swaps),
                         0.0);
            if (swaps) printf("    (%ld index swaps at the k-th best score, within the tie tolerance)\n", swaps);
            snprintf(what, sizeof what, "%s = pair", label);
            expect_close(what, (double)exact_diff(got, pair, t.rows, t.k, what), 0.0);
        }
        free(got);
    }
    const unsigned long long fallbacks = dsa_cuda_idx_fused_fallback_rows(env->gpu.ctx) - fallbacks0;
    if (fallbacks) printf("    (%llu rows recomputed densely in 2 runs)\n", fallbacks);
    if (t.mode == DATA_RANDOM || t.mode == DATA_PEAKS) {
        snprintf(what, sizeof what, "%s: rows recomputed %s", label, t.mode == DATA_RANDOM ? "= 0" : "> 0");
        const int ok = t.mode == DATA_RANDOM ? fallbacks == 0 : fallbacks > 0;
        printf("%-60s %s\n", what, ok ? "ok" : "FAIL");
        if (!ok) check_failures++;
    }

    if (t.graph) { /* captured once (scratch reserved first), replayed */
        void *graph = NULL;
        void *scratch = NULL;
        size_t need = dsa_cuda_idx_fused_scratch_bytes(env->gpu.ctx, t.rows, t.heads, t.n_keys, t.k, t.decode);
        if (need && dsa_cuda_scratch(env->gpu.ctx, need, &scratch)) gpu_die(env, "scratch");
        poison_out(env, &o);
        if (env->gpu.graph_begin(env->gpu.ctx)) gpu_die(env, "graph_begin");
        int op_rc = run_op(env, &t, q.d, w.d, kd, o.d);
        int end_rc = env->gpu.graph_end(env->gpu.ctx, &graph);
        snprintf(what, sizeof what, "%s = exact, graph", label);
        if (op_rc || end_rc) {
            printf("%-60s FAIL: %s\n", what, env->gpu.last_error(env->gpu.ctx));
            check_failures++;
        } else {
            if (env->gpu.graph_launch(env->gpu.ctx, graph)) gpu_die(env, "graph_launch");
            int32_t *got = mirror_down(env, &o);
            expect_close(what, (double)exact_diff(got, want_exact, t.rows, t.k, what), 0.0);
            free(got);
        }
        if (graph) env->gpu.graph_free(env->gpu.ctx, graph);
    }

    free(pair);
    free(gpu_scores);
    free(want_ref);
    free(want_exact);
    mirror_free(env, &q);
    mirror_free(env, &w);
    mirror_free(env, &k);
    mirror_free(env, &s);
    mirror_free(env, &o);
}

/* Bad arguments are refused with a message; n = 0, batch = 0 and k = 0 write nothing. */
static void argument_checks(gpu_env *env)
{
    mirror q = mirror_new(env, 2 * 32 * DSA_IDX_DIM + 16);
    mirror w = mirror_new(env, 2 * 32 * sizeof(float));
    mirror k = mirror_new(env, 2 * 100 * DSA_IDX_TOKEN_BYTES);
    mirror o = mirror_new(env, 2 * 64 * sizeof(int32_t));
    void *g = env->gpu.ctx;
    CHECK(env->gpu.idx_fused_prefill(g, q.d, w.d, 2, 32, k.d, 100, 99, 64, o.d) != DSA_OK); /* causal overrun */
    CHECK(env->gpu.idx_fused_prefill(g, q.d, w.d, 2, 0, k.d, 100, 0, 64, o.d) != DSA_OK);   /* heads */
    CHECK(env->gpu.idx_fused_prefill(g, q.d, w.d, 2, 32, k.d, 100, 0, -1, o.d) != DSA_OK);  /* k */
    CHECK(env->gpu.idx_fused_prefill(g, q.d, w.d, -1, 32, k.d, 100, 0, 64, o.d) != DSA_OK); /* n */
    CHECK(env->gpu.idx_fused_prefill(g, (uint8_t *)q.d + 8, w.d, 2, 32, k.d, 100, 0, 64, o.d) != DSA_OK);
    CHECK(env->gpu.idx_fused_prefill(g, q.d, w.d, 2, 32, k.d, 100, 0, 64, NULL) != DSA_OK);
    CHECK(env->gpu.idx_fused_decode(g, q.d, w.d, 2, 32, k.d, 100 * DSA_IDX_TOKEN_BYTES - 4, 100, 64, o.d) !=
          DSA_OK); /* stride < one cache */
    CHECK(env->gpu.idx_fused_decode(g, q.d, w.d, 2, 32, (uint8_t *)k.d + 2, 100 * DSA_IDX_TOKEN_BYTES, 100, 64,
                                    o.d) != DSA_OK); /* cache not 4-byte aligned */
    CHECK(env->gpu.idx_fused_decode(g, q.d, w.d, 2, 32, k.d, 100 * DSA_IDX_TOKEN_BYTES, -1, 64, o.d) != DSA_OK);
    printf("refused bad arguments, e.g.: %s\n", env->gpu.last_error(g));
    CHECK(dsa_cuda_idx_fused_scratch_bytes(g, 4096, 32, 200000, 2048, 0) > 0);

    poison_out(env, &o);
    CHECK_INT(env->gpu.idx_fused_prefill(g, q.d, w.d, 0, 32, k.d, 100, 0, 64, o.d), DSA_OK);
    CHECK_INT(env->gpu.idx_fused_prefill(g, q.d, w.d, 2, 32, k.d, 100, 0, 0, o.d), DSA_OK);
    CHECK_INT(env->gpu.idx_fused_decode(g, q.d, w.d, 0, 32, k.d, 100 * DSA_IDX_TOKEN_BYTES, 100, 64, o.d), DSA_OK);
    CHECK_INT(env->gpu.idx_fused_decode(g, q.d, w.d, 2, 32, k.d, 100 * DSA_IDX_TOKEN_BYTES, 100, 0, o.d), DSA_OK);
    uint8_t *got = mirror_down(env, &o);
    long touched = 0;
    for (size_t i = 0; i < o.bytes; i++) touched += got[i] != OUT_POISON;
    CHECK_INT(touched, 0);
    printf("%-60s %s\n", "n = 0, batch = 0 and k = 0 write nothing", touched ? "FAIL" : "ok");
    free(got);
    mirror_free(env, &q);
    mirror_free(env, &w);
    mirror_free(env, &k);
    mirror_free(env, &o);
}

int main(void)
{
    gpu_env env;
    int rc = gpu_env_init(&env);
    if (rc) return rc;
    if (!env.gpu.idx_fused_prefill || !env.gpu.idx_fused_decode || !env.ref.idx_fused_prefill ||
        !env.ref.idx_fused_decode) {
        fprintf(stderr, "idx_fused is not in the ops tables\n");
        return 1;
    }

    const fcase cases[] = {
        /* decode, rows, heads, n_keys, q_pos0, k, data, stride, cache offset, graph */
        /* prefill: dense path (the first row too short to sample: <= 8192 keys) */
        {0, 1, 32, 1, 0, 64, DATA_RANDOM, 0, 0, 0},
        {0, 64, 32, 64, 0, 16, DATA_RANDOM, 0, 0, 0},     /* q_pos0 = 0: rows 0..14 shorter than k */
        {0, 3, 32, 50, 47, 64, DATA_RANDOM, 0, 0, 0},     /* k > n_keys */
        {0, 5, 96, 1000, 995, 64, DATA_RANDOM, 0, 0, 0},  /* heads > 64: CUDA-core scores */
        /* prefill: more shapes; a first row of > 8192 keys (q_pos0 >= 8192) takes the sampled path */
        {0, 300, 64, 4097, 0, 64, DATA_RANDOM, 0, 0, 0},  /* keys past the last query; short rows */
        {0, 700, 32, 700, 0, 64, DATA_RANDOM, 0, 0, 0},   /* q_pos0 = 0: later rows reach the main pass */
        {0, 37, 32, 5000, 4963, 64, DATA_RANDOM, 0, 0, 0},
        {0, 24, 64, 9001, 8977, 256, DATA_RANDOM, 0, 0, 0},
        {0, 300, 4, 6000, 5700, 64, DATA_RANDOM, 0, 0, 0},  /* 16 queries per tile */
        {0, 5, 20, 3000, 2995, 100, DATA_RANDOM, 0, 0, 0},
        {0, 64, 32, 12000, 11936, 256, DATA_RANDOM, 0, 0, 1}, /* several query tiles and key chunks */
        {0, 40, 32, 8192, 8152, 64, DATA_RANDOM, 0, 0, 0},    /* first row 8153 keys: the dense path */
        {0, 40, 32, 8300, 8260, 64, DATA_RANDOM, 0, 0, 0},    /* 8261: sampled */
        {0, 4, 32, 3000, 2996, 1000, DATA_RANDOM, 0, 0, 0}, /* large k: a short main pass */
        {0, 37, 32, 3100, 3000, 64, DATA_RANDOM, 0, 4, 0},  /* cache not 16-byte aligned */
        {0, 16, 32, 40000, 39984, 2048, DATA_RANDOM, 0, 0, 0},   /* 2048 samples (idx_fused.cu sample_count) */
        {0, 8, 32, 120000, 119992, 2048, DATA_RANDOM, 0, 0, 0},  /* 4096 samples */
        /* prefill: adversarial */
        {0, 20, 64, 6000, 5980, 64, DATA_INCREASING, 0, 0, 0},   /* every key survives */
        {0, 8, 32, 30000, 29992, 256, DATA_INCREASING, 0, 0, 0}, /* ... past the selection's shared memory */
        {0, 8, 32, 20000, 19992, 128, DATA_DECREASING, 0, 0, 0}, /* none survives */
        {0, 8, 32, 20000, 19992, 128, DATA_EQUAL, 0, 0, 0},      /* all tie */
        {0, 40, 32, 6000, 5960, 300, DATA_FEW, 0, 0, 0},         /* 7 distinct keys */
        {0, 600, 32, 2000, 0, 64, DATA_EQUAL, 0, 0, 0},          /* ties and short rows */
        {0, 8, 32, 60000, 59992, 256, DATA_PEAKS, 0, 0, 0},      /* fewer than k pass the threshold */
        {0, 8, 64, 60000, 59992, 2048, DATA_PEAKS, 0, 0, 0},
        /* decode */
        {1, 1, 32, 1000, 0, 2048, DATA_RANDOM, 0, 0, 0}, /* n_keys < k */
        {1, 8, 32, 1500, 0, 2048, DATA_RANDOM, 0, 0, 0},
        {1, 4, 32, 0, 0, 64, DATA_RANDOM, 0, 0, 0},      /* no keys: all -1 */
        {1, 8, 64, 5000, 0, 64, DATA_RANDOM, 5000 * DSA_IDX_TOKEN_BYTES + 64, 0, 0},
        {1, 8, 32, 20000, 0, 2048, DATA_RANDOM, 0, 0, 1},
        {1, 1, 32, 50000, 0, 2048, DATA_RANDOM, 0, 0, 0},
        {1, 2, 32, 120000, 0, 2048, DATA_RANDOM, 0, 0, 0},
        {1, 3, 20, 777, 0, 64, DATA_RANDOM, 777 * DSA_IDX_TOKEN_BYTES + 36, 0, 0}, /* request 1 unaligned */
        {1, 2, 128, 777, 0, 64, DATA_RANDOM, 0, 0, 0},                             /* heads > 64 */
        {1, 8, 32, 30000, 0, 256, DATA_INCREASING, 0, 0, 0},
        {1, 4, 32, 9000, 0, 500, DATA_FEW, 0, 0, 0},
        {1, 2, 32, 60000, 0, 256, DATA_PEAKS, 0, 0, 1},
        {1, 3, 32, 20000, 0, 128, DATA_EQUAL, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&env, cases[i]);

    argument_checks(&env);

    gpu_env_fini(&env);
    return check_done("gpu_idx_fused");
}
