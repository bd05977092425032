/* The whole tiny model on the GPU against the C reference (--device cpu): prefill in chunks,
 * then a batched decode step, bf16 and FP8 weights.
 *
 * Two GPU runs per case:
 * - free-running: the GPU computes everything from the embedding on. Its end-to-end error is
 *   printed, not judged: a 1-ulp difference that flips a near-tie (a top-k boundary key, an MoE
 *   expert choice, an e4m3 rounding of an FP8 GEMM input) changes that layer's output by far more
 *   than rounding, and every later layer carries it, so the free run measures the model's
 *   sensitivity as much as the kernels.
 * - layer-forced: each layer starts from the reference's input rows and attends with the
 *   reference's indices (the forward's debug hooks overwrite them), so each layer is judged on
 *   its own: its output, and each F layer's own top-k choice, against the reference's from the
 *   same input. Bounds:
 *     - every F layer's top-k sets (all chunks) >= 99% equal to the reference's with bf16
 *       weights; >= 95% with FP8 weights, where each GEMM input is rounded to e4m3 (3 mantissa
 *       bits) and a 1-ulp bf16 difference at a rounding midpoint moves a query element by 2^-4:
 *       measured on the H200, 0.7% of layer 0's indices flip from identical inputs in prefill
 *       and 3% of a 3-request decode's 192 (too few indices for a tighter bound);
 *     - every layer's output rows within TOL relative (Frobenius) of the reference's: bf16
 *       weights 2e-2 (bf16 activations, GEMMs summed in another order, FP8 indexer/cache
 *       quantisation: a few bf16 ulps of 2^-8 each); FP8 weights 5e-2 (the activations are also
 *       quantised to e4m3 per 1x128 before each GEMM; a 1-ulp bf16 difference at an e4m3
 *       rounding midpoint moves that element by 2^-4 relative);
 *     - S layers attend with their F layer's indices (seen through the hook, not by timing). */
#include <math.h>

#include "gpu_harness.h"
#include "forward.h"
#include "plan.h"
#include "schedule.h"

#define MAXCALLS 4096

typedef struct call {
    int layer, src, rows, topk;
    int32_t *idx; /* host copy of the indices the layer's own indexer chose (or reused) */
} call;

typedef struct xcall {
    int layer, rows, ld;
    bf16_t *x; /* host copy of the layer's input rows as this run computed them */
} xcall;

typedef struct seen {
    const dsa_ops *ops;
    call calls[MAXCALLS];
    xcall xs[MAXCALLS];
    int n, nx, layers;
    const struct seen *force; /* the reference's calls, in the same order; NULL = free run */
    int bad;                  /* a hook step failed */
} seen;

static void on_layer_input(void *user, int layer, bf16_t *x, int rows, int ld)
{
    seen *s = user;
    if (s->nx >= MAXCALLS) { s->bad = 1; return; }
    xcall *c = &s->xs[s->nx];
    size_t bytes = (size_t)rows * ld * 2;
    c->layer = layer, c->rows = rows, c->ld = ld;
    c->x = malloc(bytes);
    if (!c->x || s->ops->download(s->ops->ctx, c->x, x, bytes)) s->bad = 1;
    /* layer 0's input is the embedding, identical by construction; the last call (layer =
     * layers, the final norm's input) is left alone so the final states judge the last layer */
    if (s->force && layer > 0 && layer < s->layers) {
        const xcall *r = s->force->nx > s->nx ? &s->force->xs[s->nx] : NULL;
        if (!r || r->layer != layer || r->rows != rows || r->ld != ld || s->ops->upload(s->ops->ctx, x, r->x, bytes))
            s->bad = 1;
    }
    s->nx++;
}

static void on_indices(void *user, int layer, int src, int32_t *idx, int rows, int topk)
{
    seen *s = user;
    if (s->n >= MAXCALLS) { s->bad = 1; return; }
    call *c = &s->calls[s->n];
    size_t bytes = (size_t)rows * topk * 4;
    c->layer = layer, c->src = src, c->rows = rows, c->topk = topk;
    c->idx = malloc(bytes);
    if (!c->idx || s->ops->download(s->ops->ctx, c->idx, idx, bytes)) s->bad = 1;
    if (s->force && layer == src) { /* an F layer: attend with the reference's choice */
        const call *r = s->force->n > s->n ? &s->force->calls[s->n] : NULL;
        if (!r || r->layer != layer || r->rows != rows || r->topk != topk ||
            s->ops->upload(s->ops->ctx, idx, r->idx, bytes))
            s->bad = 1;
    }
    s->n++;
}

static void seen_free(seen *s)
{
    for (int i = 0; i < s->n; i++) free(s->calls[i].idx);
    for (int i = 0; i < s->nx; i++) free(s->xs[i].x);
    s->n = s->nx = 0;
}

/* Relative error of layer `layer`'s computed input rows (= layer - 1's output) over all chunks. */
static double layer_err(const seen *g, const seen *r, int layer)
{
    double num = 0, den = 0;
    if (g->nx != r->nx) return INFINITY;
    for (int i = 0; i < g->nx; i++) {
        const xcall *a = &g->xs[i], *b = &r->xs[i];
        if (a->layer != b->layer || a->rows != b->rows) return INFINITY;
        if (a->layer != layer) continue;
        for (size_t j = 0; j < (size_t)a->rows * a->ld; j++) {
            double d = (double)dsa_bf16_to_f32(a->x[j]) - dsa_bf16_to_f32(b->x[j]);
            num += d * d;
            den += (double)dsa_bf16_to_f32(b->x[j]) * dsa_bf16_to_f32(b->x[j]);
        }
    }
    return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
}

static int forward(const dsa_ops *ops, const dsa_model *m, const char *fs, int phase, int ctx, int batch, int chunk,
                   int flags, seen *s, bf16_t **hidden, int *rows) /* flags: bit 0 FP8 weights, bit 1 fused indexer */
{
    s->ops = ops;
    s->layers = m->n_layers;
    dsa_fwd_opts o = {.layers = m->n_layers, .seed = 3, .weight_fp8 = flags & 1, .fused_indexer = (flags >> 1) & 1,
                      .on_indices = on_indices,
                      .on_layer_input = on_layer_input, .user = s};
    dsa_fwd *f;
    dsa_err e = {{0}};
    int rc = dsa_fwd_create(m, ops, &o, fs, phase, ctx, batch, chunk, &f, &e);
    if (!rc) rc = dsa_fwd_step(f, NULL, &e);
    if (!rc) {
        *rows = dsa_fwd_rows(f);
        *hidden = malloc((size_t)*rows * m->hidden * 2);
        rc = dsa_fwd_download_hidden(f, *hidden, &e);
    }
    if (rc) fprintf(stderr, "%s forward failed: %s\n", ops->name, e.msg);
    dsa_fwd_destroy(f);
    if (s->bad) fprintf(stderr, "%s forward: the index hook failed (download, upload or call order)\n", ops->name);
    return rc || s->bad;
}

static int cmp_int(const void *a, const void *b) { return *(const int32_t *)a - *(const int32_t *)b; }

/* Counts the reference's valid indices (*total) and how many of them the GPU also chose. */
static void overlap(const int32_t *gpu, const int32_t *ref, int rows, int topk, long *same, long *total)
{
    int32_t *a = malloc((size_t)topk * 4), *b = malloc((size_t)topk * 4);
    for (int r = 0; r < rows; r++) {
        memcpy(a, gpu + (size_t)r * topk, (size_t)topk * 4);
        memcpy(b, ref + (size_t)r * topk, (size_t)topk * 4);
        qsort(a, topk, 4, cmp_int);
        qsort(b, topk, 4, cmp_int);
        int i = 0; /* both sorted: walk the reference's valid indices, advancing through the GPU's */
        for (int j = 0; j < topk; j++) {
            if (b[j] < 0) continue;
            (*total)++;
            while (i < topk && a[i] < b[j]) i++;
            if (i < topk && a[i] == b[j]) (*same)++, i++;
        }
    }
    free(a), free(b);
}

/* Per-layer overlap of an F layer over all its calls (chunks); -1 when the calls do not line up. */
static double layer_overlap(const seen *g, const seen *r, int layer)
{
    long same = 0, total = 0;
    if (g->n != r->n) return -1;
    for (int i = 0; i < g->n; i++) {
        const call *a = &g->calls[i], *b = &r->calls[i];
        if (a->layer != b->layer || a->rows != b->rows || a->topk != b->topk) return -1;
        if (a->layer == layer) overlap(a->idx, b->idx, a->rows, a->topk, &same, &total);
    }
    return total ? (double)same / total : 1.0;
}

static void compare(const char *what, const dsa_model *m, const char *fs, int phase, int ctx, int batch, int chunk,
                    int flags, gpu_env *env)
{
    seen *sr = calloc(1, sizeof *sr), *sf = calloc(1, sizeof *sf), *sg = calloc(1, sizeof *sg);
    bf16_t *hr = NULL, *hf = NULL, *hg = NULL;
    int rr = 0, rf = 0, rg = 0;
    CHECK_INT(forward(&env->ref, m, fs, phase, ctx, batch, chunk, flags, sr, &hr, &rr), 0);
    CHECK_INT(forward(&env->gpu, m, fs, phase, ctx, batch, chunk, flags, sf, &hf, &rf), 0);
    sg->force = sr;
    CHECK_INT(forward(&env->gpu, m, fs, phase, ctx, batch, chunk, flags, sg, &hg, &rg), 0);
    CHECK_INT(rg, rr);
    CHECK_INT(rf, rr);
    char line[200];
    double tol = (flags & 1) ? 5e-2 : 2e-2, min_overlap = (flags & 1) ? 0.95 : 0.99;
    if (hf && hr && rf == rr)
        printf("%s: free-running GPU: final hidden rel err %.3g (information)\n", what,
               rel_err_bf16(hf, hr, (size_t)rr * m->hidden));
    if (hg && hr && rg == rr) {
        snprintf(line, sizeof line, "%s: layer-forced GPU: final hidden states", what);
        expect_close(line, rel_err_bf16(hg, hr, (size_t)rr * m->hidden), tol);
    }
    CHECK(sg->n > 0 && sg->n == sr->n && sg->nx == sr->nx);
    for (int l = 0; l < m->n_layers; l++) {
        int src = dsa_schedule_source_layer(fs, l);
        snprintf(line, sizeof line, "%s: layer %d output from the reference's input", what, l);
        expect_close(line, layer_err(sg, sr, l + 1), tol);
        if (fs[l] == 'S') {
            int seen_l = 0, reuse = 1;
            for (int i = 0; i < sg->n; i++) {
                const call *c = &sg->calls[i];
                if (c->layer != l) continue;
                seen_l = 1;
                /* the call just before for layer src in the same chunk holds its (forced) indices */
                int j = i - 1;
                while (j >= 0 && sg->calls[j].layer != src) j--;
                reuse &= c->src == src && j >= 0 && !memcmp(c->idx, sr->calls[j].idx, (size_t)c->rows * c->topk * 4);
            }
            printf("%s: layer %d (S) attends with layer %d's indices: %s\n", what, l, src, seen_l && reuse ? "ok" : "FAIL");
            CHECK(seen_l && reuse);
        } else {
            double free_ov = layer_overlap(sf, sr, l), ov = layer_overlap(sg, sr, l);
            printf("%s: layer %d (F) top-k overlap with the reference: layer-forced %.4f %s (free-running %.4f)\n",
                   what, l, ov, ov >= min_overlap ? "ok" : "FAIL", free_ov);
            CHECK(ov >= min_overlap);
        }
    }
    seen_free(sr), seen_free(sf), seen_free(sg);
    free(sr), free(sf), free(sg);
    free(hr), free(hf), free(hg);
}

int main(void)
{
    gpu_env env;
    int rc = gpu_env_init(&env);
    if (rc) return rc;
    dsa_model m;
    dsa_err e = {{0}};
    CHECK_INT(dsa_model_load("tiny", &m, &e), 0);
    char fs[DSA_MAX_LAYERS + 1];
    CHECK_INT(dsa_schedule_resolve("1/2", &m, m.n_layers, fs, &e), 0);
    compare("prefill 300 tokens, chunks of 128", &m, fs, DSA_PREFILL, 300, 1, 128, 0, &env);
    compare("prefill 300 tokens, chunks of 128, FP8 weights", &m, fs, DSA_PREFILL, 300, 1, 128, 1, &env);
    compare("decode context 500, batch 3", &m, fs, DSA_DECODE, 500, 3, 8192, 0, &env);
    compare("decode context 500, batch 3, FP8 weights", &m, fs, DSA_DECODE, 500, 3, 8192, 1, &env);
    /* flags bit 1: the fused indexer (idx_fused) in place of idx_logits + topk */
    compare("prefill 300 tokens, chunks of 128, fused indexer", &m, fs, DSA_PREFILL, 300, 1, 128, 2, &env);
    compare("decode context 500, batch 3, fused indexer", &m, fs, DSA_DECODE, 500, 3, 8192, 2, &env);
    dsa_model_set_kv(&m, "idx_rope=interleaved", &e);
    CHECK_INT(dsa_schedule_resolve("full", &m, m.n_layers, fs, &e), 0);
    compare("prefill 200 tokens, full, interleaved indexer RoPE", &m, fs, DSA_PREFILL, 200, 1, 8192, 0, &env);
    gpu_env_fini(&env);
    return check_done("gpu_forward");
}
