/* tests/gpu_topk.c — the CUDA top-k (kernels/topk.cu) against the C reference.
 *
 * Selection is exact, so the tolerance is zero: for every row the GPU's k indices, sorted, must
 * equal the reference's, sorted (the GPU may write the set in any order; the -1 padding sorts
 * first in both). Ties are broken by the contract (equal scores: the lower index wins), so the set
 * is unique and set equality judges ties too. The printed "err" is the number of mismatched
 * entries over all rows. The output is poisoned (0xA5 bytes) before every launch.
 *
 * Shapes cover every GPU path: few rows (1..64: each row split over several blocks, the row's
 * last block resolving the candidates) and many rows (> 132: one block per row; rows of at most
 * 8192 scores in smaller blocks, rows of at most 12288 read once into shared memory, longer rows
 * through the sampled threshold), lengths below, at and just above k, clipped to ld, and zero.
 * Each row's scores follow one of the patterns below (cycling over the rows), with +inf planted
 * past len so a kernel that reads beyond a row's length selects it and fails. The last patterns
 * are hard on a sampled threshold: increasing or decreasing scores and the best k at the end of
 * the row (which a sample taken at the row's ends misjudges); the best scores exactly where the
 * sampler reads (too few candidates) and four distinct values, all equal, +-0 (too many), which
 * make the kernel fall back to its exact general path, in both the one-block and the split path.
 * Each case runs twice, so state left behind by a call (the split path's counters) would show, then
 * once through dsa_cuda_topk_flagged on every third row (the other rows must stay untouched).
 * Tolerance: 0 mismatched indices (an exact selection has no rounding). */
#include "cuda_ops.h"
#include "gpu_harness.h"

enum {
    PAT_NORMAL,    /* sum of four uniforms: bell-shaped, continuous */
    PAT_QUANT,     /* normal rounded to halves: ~15 values, thousands tie at the threshold */
    PAT_EQUAL,     /* one value everywhere: the lowest k indices */
    PAT_ZEROS,     /* +0 and -0 alternating (equal for the reference), 1% positive */
    PAT_NEG_INF,   /* 95% -inf: fewer than k finite scores in long rows */
    PAT_NEG_WIDE,  /* negative, magnitudes 2^-140 (subnormal) .. 2^20 */
    PAT_NAN_INF,   /* NaN, -inf and quantised values in turn (NaN ranks below -inf) */
    PAT_NARROW,    /* 1 +- 1e-3: everything in a few top-11-bit bins (the narrowing passes) */
    PAT_UNIFORM,   /* uniform [-10, 10): what `dsa-bench kernels` times */
    PAT_RAMP_UP,   /* i: increasing along the row, the best k at the end (a sample sees too few) */
    PAT_RAMP_DOWN, /* -i: the best k at the start */
    PAT_BEST_LAST, /* uniform [0, 1), but the last 2048 positions are the best (in 100 .. 101) */
    PAT_FEW,       /* four values 0..3: a quarter of the row ties at the top (too many candidates) */
    PAT_SAMPLED,   /* the positions the sampler reads are the best: too few candidates, whatever k */
    PAT_COUNT
};
static const char *pat_name[PAT_COUNT] = {
    "normal",  "quantised",  "all-equal",  "+-0",        "-inf heavy",      "negative wide", "nan/-inf",
    "narrow",  "uniform",    "increasing", "decreasing", "best at the end", "four values", "best where sampled"};

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Whether kernels/topk.cu's sampler reads position i of a row of len >= 4096 scores: 128 chunks of
 * 32, each centred in one of 128 equal strata. Only PAT_SAMPLED uses it, to make the sample
 * over-represent the best scores; if the sampler changes, that pattern still checks exactness. */
static int sampled_position(int i, int len)
{
    int c = (int)((long long)i * 128 / len); /* i's stratum, or the one after it */
    for (int d = -1; d <= 1; d++) {
        long long cc = c + d, mid = (2 * cc + 1) * len / 256;
        if (cc >= 0 && cc < 128 && i >= mid - 16 && i < mid + 16) return 1;
    }
    return 0;
}

/* uniform in [0, 1) from (seed, i) */
static float unif(uint64_t seed, uint64_t i) { return (float)(mix64(seed ^ mix64(i)) >> 40) * (1.0f / 16777216.0f); }

static float score_at(int pat, uint64_t seed, int i, int len)
{
    float n = 0;
    for (int j = 0; j < 4; j++) n += unif(seed + (uint64_t)j * 0x1000193, (uint64_t)i) - 0.5f;
    n *= 3.4641f; /* unit variance */
    switch (pat) {
    case PAT_NORMAL: return n;
    case PAT_QUANT: return roundf(n * 2.0f) * 0.5f;
    case PAT_EQUAL: return 0.75f;
    case PAT_ZEROS: return i % 100 == 7 ? 0.5f + unif(seed, (uint64_t)i) : (i & 1) ? -0.0f : 0.0f;
    case PAT_NEG_INF: return unif(seed ^ 0x5555, (uint64_t)i) < 0.95f ? -INFINITY : n;
    case PAT_NEG_WIDE: {
        int e = (int)(mix64(seed ^ (uint64_t)i * 7919) % 161) - 140;
        return -ldexpf(1.0f + unif(seed, (uint64_t)i), e);
    }
    case PAT_NAN_INF: return i % 3 == 0 ? NAN : i % 3 == 1 ? -INFINITY : roundf(n * 2.0f) * 0.5f;
    case PAT_NARROW: return 1.0f + (unif(seed, (uint64_t)i) - 0.5f) * 2e-3f;
    case PAT_UNIFORM: return 20.0f * unif(seed, (uint64_t)i) - 10.0f;
    case PAT_RAMP_UP: return (float)i; /* exact below 2^24 */
    case PAT_RAMP_DOWN: return -(float)i;
    case PAT_BEST_LAST: return (i >= len - 2048 ? 100.0f : 0.0f) + unif(seed, (uint64_t)i);
    case PAT_FEW: return (float)(mix64(seed ^ (uint64_t)i * 31) & 3);
    case PAT_SAMPLED: return (len >= 4096 && sampled_position(i, len) ? 100.0f : 0.0f) + unif(seed, (uint64_t)i);
    }
    return 0;
}

typedef struct tcase {
    const char *name;
    int rows, ld, len0, len_step, k;
    int pat;    /* -1: rows cycle through every pattern */
    int offset; /* scores start this many floats into the allocation (row starts off 16 B) */
} tcase;

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int row_len(const tcase *t, int r)
{
    long long len = (long long)t->len0 + (long long)r * t->len_step;
    return (int)(len < 0 ? 0 : len > t->ld ? t->ld : len);
}

static int row_pat(const tcase *t, int r) { return t->pat >= 0 ? t->pat : r % PAT_COUNT; }

/* Mismatched entries between the sorted index sets of every row; details of the first bad row. */
static long long compare_sets(const tcase *t, const int32_t *gpu, const int32_t *ref)
{
    const int k = t->k;
    int32_t *a = malloc((size_t)k * sizeof *a), *b = malloc((size_t)k * sizeof *b);
    if (!a || !b) { fprintf(stderr, "out of host memory\n"); exit(1); }
    long long bad = 0;
    int reported = 0;
    for (int r = 0; r < t->rows; r++) {
        memcpy(a, gpu + (size_t)r * k, (size_t)k * sizeof *a);
        memcpy(b, ref + (size_t)r * k, (size_t)k * sizeof *b);
        qsort(a, (size_t)k, sizeof *a, cmp_i32);
        qsort(b, (size_t)k, sizeof *b, cmp_i32);
        long long row_bad = 0;
        int first = -1;
        for (int j = 0; j < k; j++)
            if (a[j] != b[j]) {
                if (first < 0) first = j;
                row_bad++;
            }
        if (row_bad && !reported) {
            fprintf(stderr, "  %s: row %d (len %d, %s): %lld of %d differ; first at sorted position %d: gpu %d, ref %d\n",
                    t->name, r, row_len(t, r), pat_name[row_pat(t, r)], row_bad, k, first, a[first], b[first]);
            reported = 1;
        }
        bad += row_bad;
    }
    free(a);
    free(b);
    return bad;
}

static void run_case(gpu_env *env, const tcase *t)
{
    const size_t n = (size_t)t->rows * t->ld + (size_t)t->offset;
    const size_t out_n = (size_t)t->rows * t->k;
    mirror sc = mirror_new(env, n * sizeof(float));
    float *h = sc.h;
    for (size_t i = 0; i < n; i++) h[i] = INFINITY; /* past every len: must never be selected */
    for (int r = 0; r < t->rows; r++) {
        const int len = row_len(t, r), pat = row_pat(t, r);
        float *row = h + t->offset + (size_t)r * t->ld;
        for (int i = 0; i < len; i++) row[i] = score_at(pat, 1000003u * (uint64_t)(r + 1) + (uint64_t)t->ld, i, len);
    }
    mirror_up(env, &sc);
    const float *hs = h + t->offset;
    const float *ds = (const float *)sc.d + t->offset;

    mirror out = mirror_new(env, out_n * sizeof(int32_t));
    if (env->ref.topk(env->ref.ctx, hs, t->rows, t->ld, t->len0, t->len_step, t->k, out.h)) {
        fprintf(stderr, "reference topk failed: %s\n", env->ref.last_error(env->ref.ctx));
        exit(1);
    }
    /* Twice: the second run checks that nothing of the first (scratch counters) leaks into it. */
    for (int rep = 0; rep < 2; rep++) {
        cudaStream_t stream = ((dsa_cuda_ctx *)env->gpu.ctx)->stream;
        if (cudaMemsetAsync(out.d, 0xA5, out_n * sizeof(int32_t), stream) != cudaSuccess) {
            fprintf(stderr, "cudaMemsetAsync failed\n");
            exit(1);
        }
        if (env->gpu.topk(env->gpu.ctx, ds, t->rows, t->ld, t->len0, t->len_step, t->k, out.d)) gpu_die(env, "topk");
        int32_t *g = mirror_down(env, &out);
        char what[160];
        snprintf(what, sizeof what, "%s%s (rows %d, ld %d, len %d%+d*r, k %d)", t->name, rep ? " again" : "", t->rows,
                 t->ld, t->len0, t->len_step, t->k);
        expect_close(what, (double)compare_sets(t, g, out.h), 0.0);
        free(g);
    }
    /* dsa_cuda_topk_flagged (idx_fused's fallback): rows r % 3 == 0 only, always one block per
     * row; the other rows must keep the poison. */
    mirror flags = mirror_new(env, (size_t)t->rows * sizeof(int));
    int32_t *want = malloc(out_n * sizeof *want);
    if (!want) { fprintf(stderr, "out of host memory\n"); exit(1); }
    memcpy(want, out.h, out_n * sizeof *want);
    for (int r = 0; r < t->rows; r++) {
        ((int *)flags.h)[r] = r % 3 == 0;
        if (r % 3) memset(want + (size_t)r * t->k, 0xA5, (size_t)t->k * sizeof *want);
    }
    mirror_up(env, &flags);
    if (cudaMemsetAsync(out.d, 0xA5, out_n * sizeof(int32_t), ((dsa_cuda_ctx *)env->gpu.ctx)->stream) != cudaSuccess) {
        fprintf(stderr, "cudaMemsetAsync failed\n");
        exit(1);
    }
    if (dsa_cuda_topk_flagged(env->gpu.ctx, ds, t->rows, t->ld, t->len0, t->len_step, t->k, flags.d, out.d))
        gpu_die(env, "topk_flagged");
    int32_t *g = mirror_down(env, &out);
    char what[160];
    snprintf(what, sizeof what, "%s, flagged rows only", t->name);
    expect_close(what, (double)compare_sets(t, g, want), 0.0);
    free(g);
    free(want);
    mirror_free(env, &flags);
    mirror_free(env, &out);
    mirror_free(env, &sc);
}

int main(void)
{
    gpu_env env;
    int rc = gpu_env_init(&env);
    if (rc) return rc;
    if (!env.gpu.topk) {
        fprintf(stderr, "dsa_cuda_topk is not linked in\n");
        return 1;
    }

    const tcase cases[] = {
        /* len <= k: every index, then -1 */
        {"len 1 < k", 1, 16, 1, 0, 64, PAT_NORMAL, 0},
        {"len 50, 25, 0 (k > ld)", 3, 50, 50, -25, 64, -1, 0},
        {"len = k", 3, 100, 64, 0, 64, -1, 0},
        {"len = k + 1", 3, 65, 65, 0, 64, -1, 1},
        {"len 30..93 across k", 64, 130, 30, 1, 64, -1, 0},
        /* many rows: one block per row */
        {"prefill short rows across k", 300, 2400, 1900, 1, 2048, -1, 0},
        {"prefill short rows", 300, 5311, 5000, 1, 64, -1, 2},
        {"prefill rows in shared memory, clipped", 300, 20003, 19800, 1, 2048, -1, 3},
        {"prefill rows with a filter pass", 300, 40401, 40000, 1, 2048, -1, 0},
        {"prefill 200K rows", 70, 200007, 200000 - 69, 1, 2048, -1, 1},
        /* few rows: split over blocks */
        {"decode 200K normal", 1, 200000, 200000, 0, 2048, PAT_NORMAL, 0},
        {"decode 200K quantised", 1, 200000, 200000, 0, 2048, PAT_QUANT, 0},
        {"decode 200K all equal", 1, 200000, 200000, 0, 2048, PAT_EQUAL, 0},
        {"decode 200K -inf heavy", 1, 200001, 200001, 0, 2048, PAT_NEG_INF, 3},
        {"decode 200K narrow", 1, 200000, 200000, 0, 2048, PAT_NARROW, 0},
        {"decode 200K negative wide, k 64", 1, 200000, 200000, 0, 64, PAT_NEG_WIDE, 0},
        {"decode +-0", 1, 20000, 20000, 0, 2048, PAT_ZEROS, 0},
        {"decode nan/-inf, k 25000", 1, 30000, 30000, 0, 25000, PAT_NAN_INF, 0},
        {"decode 8 x 200K, k 64", 8, 200003, 200000, 0, 64, -1, 0},
        {"decode 3 rows growing", 3, 20010, 19990, 1, 2048, -1, 1},
        {"decode 32 x 64K", 32, 65536, 65536, 0, 2048, -1, 0},
        {"64 rows of 20000", 64, 20000, 20000, 0, 2048, -1, 0},
        {"64 rows from len 0, clipped", 64, 25000, -10, 400, 64, -1, 0},
        /* many rows (> 132 SMs: one block per row) as a causal prefill chunk */
        {"prefill 8K causal", 200, 8192, 8192 - 199, 1, 2048, -1, 0},
        {"prefill 64K causal", 140, 65536, 65536 - 139, 1, 2048, -1, 1},
        {"prefill 200K causal uniform", 140, 200000, 200000 - 139, 1, 2048, PAT_UNIFORM, 0},
        {"prefill 200K causal, every pattern", 140, 200003, 200000 - 139, 1, 2048, -1, 2},
        {"prefill rows across k, shared memory and sampling", 200, 20011, 0, 100, 2048, -1, 3},
        {"prefill 50K rows, k 64", 140, 50000, 50000 - 139, 1, 64, -1, 0},
        /* few rows: the split path, the benchmark's distribution and the sample-defeating ones */
        {"decode 200K uniform", 1, 200000, 200000, 0, 2048, PAT_UNIFORM, 0},
        {"decode 200K increasing", 1, 200000, 200000, 0, 2048, PAT_RAMP_UP, 0},
        {"decode 200K decreasing", 1, 200000, 200000, 0, 2048, PAT_RAMP_DOWN, 1},
        {"decode 200K best 2048 at the end", 1, 200001, 200001, 0, 2048, PAT_BEST_LAST, 0},
        {"decode 200K four values", 1, 200000, 200000, 0, 2048, PAT_FEW, 0},
        {"decode 200K best where sampled", 1, 200000, 200000, 0, 2048, PAT_SAMPLED, 0},
        {"decode 200K uniform again after fallbacks", 1, 200000, 200000, 0, 2048, PAT_UNIFORM, 3},
        {"decode 8 x 200K uniform", 8, 200000, 200000, 0, 2048, PAT_UNIFORM, 0},
        {"decode 32 x 200K, every pattern", 32, 200000, 200000, 0, 2048, -1, 1},
        {"decode 64 x 200K, every pattern", 64, 200000, 200000, 0, 2048, -1, 0},
        {"decode rows short and long", 8, 30001, 0, 4000, 2048, -1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&env, &cases[i]);

    /* Bad arguments are refused with a message, not launched. */
    void *d = NULL;
    if (env.gpu.alloc(env.gpu.ctx, &d, 4096)) gpu_die(&env, "alloc");
    CHECK(env.gpu.topk(env.gpu.ctx, d, 1, 16, 16, 0, -1, d) != DSA_OK);
    CHECK(env.gpu.topk(env.gpu.ctx, d, -1, 16, 16, 0, 4, d) != DSA_OK);
    CHECK(env.gpu.topk(env.gpu.ctx, d, 1, -16, 16, 0, 4, d) != DSA_OK);
    CHECK(env.gpu.topk(env.gpu.ctx, NULL, 1, 16, 16, 0, 4, d) != DSA_OK);
    CHECK(env.gpu.topk(env.gpu.ctx, d, 0, 16, 16, 0, 4, d) == DSA_OK); /* nothing to do */
    env.gpu.release(env.gpu.ctx, d);

    gpu_env_fini(&env);
    return check_done("gpu_topk");
}
