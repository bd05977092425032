/* tests/gpu_moe.c — moe_experts' decode path (kernels/moe.cu, path A: n * topk <= 512 pairs)
 * against the C reference, run eagerly and captured in a CUDA graph.
 *
 * Cases: glm-4.7-flash's expert shapes (64 experts, hidden 2048, inter 1536) at n = 1, 3, 8, 64
 * with top-4 and top-8; the tiny model's (8 experts, 256, 128); shapes that take the element-by-
 * element loads (hidden, inter not multiples of 8, x not 16-byte aligned) and partial tiles and
 * k blocks; FP8 block-scaled experts (k not a multiple of 128 too); routings with every token on
 * the same experts (one expert with up to 64 pairs: several passes of 16), with an expert
 * repeated within a token, with ids of -1, and with an id >= n_experts (that token's row must be
 * NaN, the others right). Residual none, separate, or aliasing out. Cases above 512 pairs check
 * the grouped path (path B: GEMMs spread over side streams; bf16 and FP8, even and skewed
 * routings, residual in place) and that it refuses a capture; it is deterministic too.
 * Graphs: dsa_cuda_moe_reserve, capture on ctx->stream, instantiate, replay twice against the
 * reference, then new ids and weights uploaded into the same buffers and replayed again (the
 * routing lives on the device); capturing without a reserve must fail with a message naming
 * dsa_cuda_moe_reserve (checked first, while the scratch is still empty).
 *
 * Tolerance: ||gpu - ref|| / ||ref|| <= 1e-2 on the bf16 outputs, as for every bf16 op here.
 * Both sides round at the same points (gate_up to bf16, swiglu to bf16, expert sum + residual
 * once); they differ in the accumulation (tensor-core fp32 vs double), which can flip an
 * intermediate bf16 rounding now and then: a few 1e-3 at most. FP8: the activations are
 * quantised with the same expression on both sides (codes normally identical), products of
 * e4m3 values are exact on both, so the same bound holds.
 * Determinism: neither path sums with atomics, so a second run (eager or graph replay) must
 * give the same bits as the first: checked as a count of differing elements, which must be 0.
 * Outputs are poisoned (0xFF: NaN) before every GPU run so unwritten elements fail.
 * Timing lines ("info:") are printed for graph replays on glm and DeepSeek-V3 shapes with the
 * routing rotated so that every replay reads cold experts; they are not checked. */
#include <cuda_runtime_api.h>

#include "cuda_ops.h"
#include "gpu_harness.h"

static gpu_env env;

static dsa_cuda_ctx *cuda_ctx(void) { return (dsa_cuda_ctx *)env.gpu.ctx; }

/* 0xFF bytes on the device copy: NaN as bf16. */
static void poison(mirror *m)
{
    if (m->bytes) cuda_ok(cudaMemsetAsync(m->d, 0xff, m->bytes, cuda_ctx()->stream), "cudaMemsetAsync");
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void)
{
    rng_state = dsa_splitmix64(rng_state);
    return (uint32_t)(rng_state >> 32);
}

/* ---------------------------------------------------------------- experts */

/* test_weight, test_weight_new and test_weight_free: tests/gpu_harness.h */

/* A layer's routed experts, host and device copies (device-only sets, for timing, have no
 * host data: guh / dnh are unused then). */
typedef struct expert_set {
    int ne, hidden, inter, fp8, device_only;
    test_weight *gu, *dn;
    void **dev; /* device-only: the allocations */
    dsa_weight *guh, *gud, *dnh, *dnd;
} expert_set;

static expert_set experts_new(int ne, int hidden, int inter, int fp8, uint64_t seed)
{
    expert_set E;
    memset(&E, 0, sizeof E);
    E.ne = ne, E.hidden = hidden, E.inter = inter, E.fp8 = fp8;
    E.gu = xmalloc((size_t)ne * sizeof *E.gu), E.dn = xmalloc((size_t)ne * sizeof *E.dn);
    E.guh = xmalloc((size_t)ne * sizeof *E.guh), E.gud = xmalloc((size_t)ne * sizeof *E.gud);
    E.dnh = xmalloc((size_t)ne * sizeof *E.dnh), E.dnd = xmalloc((size_t)ne * sizeof *E.dnd);
    for (int e = 0; e < ne; e++) {
        E.gu[e] = test_weight_new(&env, 2 * inter, hidden, fp8, seed + 2 * (uint64_t)e);
        E.dn[e] = test_weight_new(&env, hidden, inter, fp8, seed + 1 + 2 * (uint64_t)e);
        E.guh[e] = E.gu[e].h, E.gud[e] = E.gu[e].d, E.dnh[e] = E.dn[e].h, E.dnd[e] = E.dn[e].d;
    }
    return E;
}

static void *dev_alloc(size_t bytes)
{
    void *p = NULL;
    gpu_ok(&env, env.gpu.alloc(env.gpu.ctx, &p, bytes), "alloc");
    return p;
}

/* Random contents made on the device only (values matter not: timing). */
static dsa_weight dev_weight(expert_set *E, int *slot, int n, int k, uint64_t seed)
{
    dsa_weight w = {E->fp8 ? DSA_FP8_E4M3 : DSA_BF16, n, k, NULL, NULL};
    const size_t count = (size_t)n * k;
    w.data = E->dev[(*slot)++] = dev_alloc(count * (E->fp8 ? 1 : 2));
    if (E->fp8) {
        const size_t ns = (size_t)((n + 127) / 128) * ((k + 127) / 128);
        w.scale = E->dev[(*slot)++] = dev_alloc(ns * 4);
        gpu_ok(&env, dsa_cuda_fill_e4m3(env.gpu.ctx, w.data, count, seed), "fill_e4m3");
        gpu_ok(&env, dsa_cuda_fill_f32(env.gpu.ctx, w.scale, ns, seed ^ 1, 0.01f), "fill_f32");
    } else {
        gpu_ok(&env, dsa_cuda_fill_bf16(env.gpu.ctx, w.data, count, seed, 1.0f / sqrtf((float)k)), "fill_bf16");
    }
    return w;
}

static expert_set experts_new_device(int ne, int hidden, int inter, int fp8)
{
    expert_set E;
    memset(&E, 0, sizeof E);
    E.ne = ne, E.hidden = hidden, E.inter = inter, E.fp8 = fp8, E.device_only = 1;
    E.dev = xmalloc((size_t)ne * 4 * sizeof *E.dev);
    E.gud = xmalloc((size_t)ne * sizeof *E.gud), E.dnd = xmalloc((size_t)ne * sizeof *E.dnd);
    int slot = 0;
    for (int e = 0; e < ne; e++) {
        E.gud[e] = dev_weight(&E, &slot, 2 * inter, hidden, 5000 + 2 * (uint64_t)e);
        E.dnd[e] = dev_weight(&E, &slot, hidden, inter, 5001 + 2 * (uint64_t)e);
    }
    return E;
}

static void experts_free(expert_set *E)
{
    if (E->device_only) {
        for (int i = 0; i < E->ne * 4; i++)
            if (E->dev[i]) env.gpu.release(env.gpu.ctx, E->dev[i]);
    } else {
        for (int e = 0; e < E->ne; e++) test_weight_free(&env, &E->gu[e]), test_weight_free(&env, &E->dn[e]);
    }
    free(E->dev), free(E->gu), free(E->dn), free(E->guh), free(E->gud), free(E->dnh), free(E->dnd);
    memset(E, 0, sizeof *E);
}

/* ---------------------------------------------------------------- routing */

enum { ROUTE_RANDOM, ROUTE_SAME, ROUTE_DUP, ROUTE_BAD };
static const char *route_name(int r)
{
    return r == ROUTE_SAME ? "all tokens on the same experts"
           : r == ROUTE_DUP ? "an expert twice per token"
           : r == ROUTE_BAD ? "one id >= n_experts"
                            : "random";
}

static int row_has(const int32_t *row, int len, int32_t e)
{
    for (int j = 0; j < len; j++)
        if (row[j] == e) return 1;
    return 0;
}

/* ids [n, topk] and weights (positive, summing to 2.5 per token, like a routed_scale):
 * ROUTE_RANDOM: topk distinct random experts per token; ROUTE_SAME: experts 3, 4, ... for every
 * token; ROUTE_DUP: random, slot 1 repeats slot 0 (the reference adds both); ROUTE_BAD: random,
 * token n/2's slot 0 is n_experts. Every token t with t % 5 == 3 loses its last slot (-1). */
static void make_routing(int n, int topk, int ne, int route, uint64_t seed, int32_t *ids, float *wts)
{
    rng_state = seed;
    for (int t = 0; t < n; t++) {
        int32_t *id = ids + (size_t)t * topk;
        float *w = wts + (size_t)t * topk, sum = 0.0f;
        for (int j = 0; j < topk; j++) {
            int32_t e;
            if (route == ROUTE_SAME) e = (3 + j) % ne;
            else do e = (int32_t)(rnd() % (uint32_t)ne); while (row_has(id, j, e));
            id[j] = e;
            w[j] = 0.1f + (float)(rnd() & 0xffff) / 65536.0f;
            sum += w[j];
        }
        for (int j = 0; j < topk; j++) w[j] *= 2.5f / sum;
        if (route == ROUTE_DUP && topk >= 2) id[1] = id[0];
        if (t % 5 == 3 && topk >= 2) id[topk - 1] = -1;
    }
    if (route == ROUTE_BAD) ids[(size_t)(n / 2) * topk] = ne;
}

static int row_is_bad(const int32_t *ids, int t, int topk, int ne)
{
    for (int j = 0; j < topk; j++)
        if (ids[(size_t)t * topk + j] >= ne) return 1;
    return 0;
}

/* The reference output: ids >= ne become -1 (the reference rejects them; the GPU flags the
 * row). in_place: residual is copied into the output buffer first and passed aliased. */
static bf16_t *ref_run(const expert_set *E, const bf16_t *x, int n, int topk, const int32_t *ids, const float *wts,
                       const bf16_t *residual, int in_place)
{
    const size_t nh = (size_t)n * E->hidden;
    int32_t *rid = xmalloc((size_t)n * topk * 4 + 4);
    for (size_t i = 0; i < (size_t)n * topk; i++) rid[i] = ids[i] >= E->ne ? -1 : ids[i];
    bf16_t *out = xmalloc(nh * 2);
    if (in_place) memcpy(out, residual, nh * 2);
    ref_ok(&env, env.ref.moe_experts(env.ref.ctx, x, n, E->hidden, rid, wts, topk, E->ne, E->inter, E->guh, E->dnh,
                               in_place ? out : residual, out),
           "moe_experts");
    free(rid);
    return out;
}

/* rel err over the rows with no id >= ne; *bad_not_nan counts non-NaN values in the others. */
static double compare(const bf16_t *g, const bf16_t *r, int n, int hidden, const int32_t *ids, int topk, int ne,
                      long *bad_not_nan)
{
    double num = 0, den = 0;
    *bad_not_nan = 0;
    for (int t = 0; t < n; t++) {
        const int bad = row_is_bad(ids, t, topk, ne);
        for (int c = 0; c < hidden; c++) {
            const size_t o = (size_t)t * hidden + c;
            const double a = dsa_bf16_to_f32(g[o]), b = dsa_bf16_to_f32(r[o]);
            if (bad) {
                if (!isnan(a)) (*bad_not_nan)++;
                continue;
            }
            if (!isfinite(a)) return INFINITY;
            num += (a - b) * (a - b);
            den += b * b;
        }
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static long differing(const bf16_t *a, const bf16_t *b, size_t n)
{
    long d = 0;
    for (size_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

static const char *res_name(int residual) { return residual == 0 ? "none" : residual == 1 ? "yes" : "in place"; }

/* ---------------------------------------------------------------- eager */

/* x_offset: x starts that many bf16 elements into its buffer (1: not 16-byte aligned). */
static void test_eager(const expert_set *E, int n, int topk, int route, int residual, int x_offset)
{
    const int hidden = E->hidden, inter = E->inter, ne = E->ne;
    const size_t nh = (size_t)n * hidden;
    mirror xb = mirror_rand_bf16(&env, nh + (size_t)x_offset, 211 + (uint64_t)n, 1.0f);
    const bf16_t *xh = (const bf16_t *)xb.h + x_offset, *xd = (const bf16_t *)xb.d + x_offset;
    int32_t *ids = xmalloc((size_t)n * topk * 4 + 4);
    float *wts = xmalloc((size_t)n * topk * 4 + 4);
    make_routing(n, topk, ne, route, 7000 + (uint64_t)n * 31 + (uint64_t)topk, ids, wts);
    mirror mi = mirror_copy(&env, ids, (size_t)n * topk * 4), mw = mirror_copy(&env, wts, (size_t)n * topk * 4);
    mirror res = mirror_rand_bf16(&env, nh, 213 + (uint64_t)n, 1.0f);
    bf16_t *ref = ref_run(E, xh, n, topk, ids, wts, residual ? res.h : NULL, residual == 2);
    mirror out = residual == 2 ? res : mirror_new(&env, nh * 2);

    bf16_t *g[2];
    for (int rep = 0; rep < 2; rep++) {
        if (residual == 2) mirror_up(&env, &res); /* the previous run overwrote it */
        else poison(&out);
        gpu_ok(&env, env.gpu.moe_experts(env.gpu.ctx, xd, n, hidden, mi.d, mw.d, topk, ne, inter, E->gud, E->dnd,
                                   residual ? res.d : NULL, out.d),
               "moe_experts");
        g[rep] = mirror_down(&env, &out);
    }
    long bad_not_nan = 0;
    const double err = compare(g[0], ref, n, hidden, ids, topk, ne, &bad_not_nan);
    char what[200];
    snprintf(what, sizeof what, "moe_experts %s n=%d top-%d hidden=%d inter=%d E=%d %s, residual %s%s",
             E->fp8 ? "fp8" : "bf16", n, topk, hidden, inter, ne, route_name(route), res_name(residual),
             x_offset ? ", x unaligned" : "");
    expect_close(what, err, 1e-2);
    if (route == ROUTE_BAD) expect_close("  ...the bad id's row is NaN (non-NaN count)", (double)bad_not_nan, 0.0);
    expect_close("  ...same bits on a second run (differing count)", (double)differing(g[0], g[1], nh), 0.0);
    free(g[0]), free(g[1]), free(ref), free(ids), free(wts);
    if (residual != 2) mirror_free(&env, &out);
    mirror_free(&env, &res), mirror_free(&env, &xb), mirror_free(&env, &mi), mirror_free(&env, &mw);
}

/* ---------------------------------------------------------------- graphs */

/* Captures one moe_experts call on ctx->stream into *exec; returns the launcher's status
 * (the capture is ended either way, and nothing is left instantiated on failure). */
static int capture(const expert_set *E, const bf16_t *x, int n, int topk, const int32_t *ids, const float *wts,
                   const bf16_t *residual, bf16_t *out, cudaGraphExec_t *exec)
{
    cudaStream_t s = cuda_ctx()->stream;
    cudaGraph_t graph = NULL;
    *exec = NULL;
    cuda_ok(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    const int rc = env.gpu.moe_experts(env.gpu.ctx, x, n, E->hidden, ids, wts, topk, E->ne, E->inter, E->gud, E->dnd,
                                       residual, out);
    const cudaError_t end = cudaStreamEndCapture(s, &graph);
    if (!rc && end != cudaSuccess) {
        fprintf(stderr, "cudaStreamEndCapture: %s\n", cudaGetErrorString(end));
        exit(1);
    }
    if (!rc) cuda_ok(cudaGraphInstantiate(exec, graph, 0), "cudaGraphInstantiate");
    if (graph) cudaGraphDestroy(graph);
    (void)cudaGetLastError(); /* a failed capture leaves no sticky error behind */
    return rc;
}

/* A capture that must fail with a message containing `needle`. */
static void expect_capture_failure(const expert_set *E, int n, int topk, const char *needle, const char *what)
{
    const size_t nh = (size_t)n * E->hidden;
    mirror x = mirror_rand_bf16(&env, nh, 311, 1.0f), out = mirror_new(&env, nh * 2);
    int32_t *ids = xmalloc((size_t)n * topk * 4);
    float *wts = xmalloc((size_t)n * topk * 4);
    make_routing(n, topk, E->ne, ROUTE_RANDOM, 313, ids, wts);
    mirror mi = mirror_copy(&env, ids, (size_t)n * topk * 4), mw = mirror_copy(&env, wts, (size_t)n * topk * 4);
    gpu_ok(&env, env.gpu.sync(env.gpu.ctx), "sync");
    cudaGraphExec_t exec = NULL;
    const int rc = capture(E, x.d, n, topk, mi.d, mw.d, NULL, out.d, &exec);
    const char *msg = env.gpu.last_error(env.gpu.ctx);
    const int ok = rc != DSA_OK && strstr(msg, needle) != NULL;
    printf("  (message: %s)\n", rc ? msg : "none: the capture succeeded");
    expect_close(what, ok ? 0.0 : 1.0, 0.0);
    if (exec) cudaGraphExecDestroy(exec);
    free(ids), free(wts);
    mirror_free(&env, &x), mirror_free(&env, &out), mirror_free(&env, &mi), mirror_free(&env, &mw);
}

/* reserve_tokens >= n: dsa_cuda_moe_reserve's max_tokens. */
static void test_graph(const expert_set *E, int n, int topk, int reserve_tokens)
{
    const int hidden = E->hidden, inter = E->inter, ne = E->ne;
    const size_t nh = (size_t)n * hidden;
    mirror x = mirror_rand_bf16(&env, nh, 411 + (uint64_t)n, 1.0f);
    mirror res = mirror_rand_bf16(&env, nh, 413 + (uint64_t)n, 1.0f), out = mirror_new(&env, nh * 2);
    int32_t *ids = xmalloc((size_t)n * topk * 4);
    float *wts = xmalloc((size_t)n * topk * 4);
    make_routing(n, topk, ne, ROUTE_RANDOM, 8000 + (uint64_t)n, ids, wts);
    mirror mi = mirror_copy(&env, ids, (size_t)n * topk * 4), mw = mirror_copy(&env, wts, (size_t)n * topk * 4);
    bf16_t *ref = ref_run(E, x.h, n, topk, ids, wts, res.h, 0);

    poison(&out);
    gpu_ok(&env, env.gpu.moe_experts(env.gpu.ctx, x.d, n, hidden, mi.d, mw.d, topk, ne, inter, E->gud, E->dnd, res.d, out.d),
           "moe_experts (eager)");
    bf16_t *eager = mirror_down(&env, &out);

    gpu_ok(&env, dsa_cuda_moe_reserve(env.gpu.ctx, reserve_tokens, topk, hidden, inter), "dsa_cuda_moe_reserve");
    poison(&out);
    cudaGraphExec_t exec = NULL;
    char what[200];
    snprintf(what, sizeof what, "graph: moe_experts %s n=%d top-%d hidden=%d inter=%d E=%d (reserved for %d tokens)",
             E->fp8 ? "fp8" : "bf16", n, topk, hidden, inter, ne, reserve_tokens);
    if (capture(E, x.d, n, topk, mi.d, mw.d, res.d, out.d, &exec)) {
        printf("%-60s capture failed: %s FAIL\n", what, env.gpu.last_error(env.gpu.ctx));
        check_failures++;
    } else {
        long bad_not_nan = 0;
        for (int rep = 0; rep < 2; rep++) {
            poison(&out);
            cuda_ok(cudaGraphLaunch(exec, cuda_ctx()->stream), "cudaGraphLaunch");
            bf16_t *g = mirror_down(&env, &out);
            char line[240];
            snprintf(line, sizeof line, "%s, replay %d", what, rep + 1);
            expect_close(line, compare(g, ref, n, hidden, ids, topk, ne, &bad_not_nan), 1e-2);
            expect_close("  ...same bits as the eager run (differing count)", (double)differing(g, eager, nh), 0.0);
            free(g);
        }
        /* New routing through the same device buffers: the replay must follow it. */
        make_routing(n, topk, ne, ROUTE_RANDOM, 9000 + (uint64_t)n, ids, wts);
        memcpy(mi.h, ids, (size_t)n * topk * 4), memcpy(mw.h, wts, (size_t)n * topk * 4);
        mirror_up(&env, &mi), mirror_up(&env, &mw);
        free(ref);
        ref = ref_run(E, x.h, n, topk, ids, wts, res.h, 0);
        poison(&out);
        cuda_ok(cudaGraphLaunch(exec, cuda_ctx()->stream), "cudaGraphLaunch");
        bf16_t *g = mirror_down(&env, &out);
        expect_close("  ...replay 3 after new ids and weights were uploaded", compare(g, ref, n, hidden, ids, topk, ne,
                                                                                       &bad_not_nan),
                     1e-2);
        free(g);
        cudaGraphExecDestroy(exec);
    }
    free(ref), free(eager), free(ids), free(wts);
    mirror_free(&env, &x), mirror_free(&env, &res), mirror_free(&env, &out), mirror_free(&env, &mi);
    mirror_free(&env, &mw);
}

/* ---------------------------------------------------------------- timing (info only) */

/* Graph replays with the routing rotated: replay r sends token t's slot j to expert
 * (r*n*topk + t*topk + j) % ne, so consecutive replays read different experts (cold in L2
 * unless every expert is touched every time anyway). Prints the mean time and the rate over
 * the touched experts' weights. */
static void time_graph(const expert_set *E, int n, int topk, const char *model)
{
    enum { REPLAYS = 15 }; /* + a warm-up on the 16th rotation: glm n = 1 covers 64 experts once */
    const int hidden = E->hidden, inter = E->inter, ne = E->ne, pairs = n * topk;
    const size_t nh = (size_t)n * hidden;
    bf16_t *x = dev_alloc(nh * 2), *out = dev_alloc(nh * 2);
    gpu_ok(&env, dsa_cuda_fill_bf16(env.gpu.ctx, x, nh, 17, 1.0f), "fill_bf16");
    mirror mi = mirror_new(&env, (size_t)pairs * 4), mw = mirror_new(&env, (size_t)pairs * 4);
    int32_t *ids = mi.h;
    float *wts = mw.h;
    for (int i = 0; i < pairs; i++) ids[i] = i % ne, wts[i] = 1.0f / (float)topk;
    mirror_up(&env, &mi), mirror_up(&env, &mw);
    gpu_ok(&env, dsa_cuda_moe_reserve(env.gpu.ctx, n, topk, hidden, inter), "dsa_cuda_moe_reserve");
    cudaGraphExec_t exec = NULL;
    if (capture(E, x, n, topk, mi.d, mw.d, x, out, &exec)) {
        printf("info: timing %s capture failed: %s\n", model, env.gpu.last_error(env.gpu.ctx));
        check_failures++;
    } else {
        cudaStream_t s = cuda_ctx()->stream;
        cudaEvent_t ev[2];
        cuda_ok(cudaEventCreate(&ev[0]), "cudaEventCreate"), cuda_ok(cudaEventCreate(&ev[1]), "cudaEventCreate");
        double total_ms = 0;
        for (int r = -1; r < REPLAYS; r++) { /* r = -1: warm-up */
            const int rr = r < 0 ? REPLAYS : r;
            for (int i = 0; i < pairs; i++) ids[i] = (int32_t)(((long long)rr * pairs + i) % ne);
            mirror_up(&env, &mi);
            cuda_ok(cudaEventRecord(ev[0], s), "cudaEventRecord");
            cuda_ok(cudaGraphLaunch(exec, s), "cudaGraphLaunch");
            cuda_ok(cudaEventRecord(ev[1], s), "cudaEventRecord");
            cuda_ok(cudaEventSynchronize(ev[1]), "cudaEventSynchronize");
            float ms = 0;
            cuda_ok(cudaEventElapsedTime(&ms, ev[0], ev[1]), "cudaEventElapsedTime");
            if (r >= 0) total_ms += ms;
        }
        const int touched = pairs < ne ? pairs : ne;
        const double bytes = (double)touched * 3 * hidden * inter * (E->fp8 ? 1 : 2);
        const double us = 1e3 * total_ms / REPLAYS;
        printf("info: %s %s n=%d top-%d: %.1f us per graph replay, %d experts' weights = %.1f MB -> %.2f TB/s\n", model,
               E->fp8 ? "fp8" : "bf16", n, topk, us, touched, bytes / 1e6, bytes / (us * 1e-6) / 1e12);
        cudaEventDestroy(ev[0]), cudaEventDestroy(ev[1]);
        cudaGraphExecDestroy(exec);
    }
    env.gpu.release(env.gpu.ctx, x), env.gpu.release(env.gpu.ctx, out);
    mirror_free(&env, &mi), mirror_free(&env, &mw);
}

/* ---------------------------------------------------------------- main */

int main(void)
{
    int rc = gpu_env_init(&env);
    if (rc) return rc;

    /* tiny: the tiny model's experts (8, hidden 256, inter 128). */
    expert_set tiny = experts_new(8, 256, 128, 0, 1000);

    /* First, while the scratch is empty: a capture without a reserve must fail clearly. */
    if (cuda_ctx()->scratch_bytes == 0)
        expect_capture_failure(&tiny, 4, 2, "dsa_cuda_moe_reserve", "capture without dsa_cuda_moe_reserve fails");
    else
        printf("capture without dsa_cuda_moe_reserve: skipped (the scratch is already %zu bytes)\n",
               cuda_ctx()->scratch_bytes);

    for (int residual = 0; residual < 3; residual++) {
        test_eager(&tiny, 1, 2, ROUTE_RANDOM, residual, 0);
        test_eager(&tiny, 7, 2, ROUTE_RANDOM, residual, 0);
    }
    test_eager(&tiny, 64, 8, ROUTE_RANDOM, 1, 0); /* every expert, 64 pairs each: 4 passes */
    test_eager(&tiny, 40, 2, ROUTE_SAME, 1, 0);
    test_eager(&tiny, 5, 2, ROUTE_DUP, 1, 0);
    test_eager(&tiny, 8, 2, ROUTE_BAD, 1, 0); /* token 4 */
    test_eager(&tiny, 3, 2, ROUTE_RANDOM, 1, 1);  /* x not 16-byte aligned: element loads for x */
    test_eager(&tiny, 300, 2, ROUTE_RANDOM, 1, 0); /* 600 pairs: the grouped path */
    test_eager(&tiny, 300, 8, ROUTE_RANDOM, 2, 0); /* grouped, every expert ~260 rows, in place */
    test_eager(&tiny, 520, 2, ROUTE_SAME, 0, 0);   /* grouped, two experts with all the rows */
    expect_capture_failure(&tiny, 300, 2, "grouped path", "capturing the grouped path (600 pairs) fails");

    /* Element-by-element loads and partial tiles: hidden 100 and inter 36 (neither a multiple
     * of 8, of the 16-row down tile or of 128); hidden 264 (16-byte rows) with inter 52. */
    expert_set odd = experts_new(5, 100, 36, 0, 2000);
    test_eager(&odd, 1, 3, ROUTE_RANDOM, 1, 0);
    test_eager(&odd, 9, 3, ROUTE_RANDOM, 2, 0);
    test_eager(&odd, 24, 3, ROUTE_SAME, 1, 0);
    expert_set odd2 = experts_new(6, 264, 52, 0, 3000);
    test_eager(&odd2, 5, 2, ROUTE_RANDOM, 1, 0);

    /* glm-4.7-flash experts. */
    expert_set glm = experts_new(64, 2048, 1536, 0, 4000);
    static const int ns[] = {1, 3, 8, 64};
    for (int i = 0; i < 4; i++)
        for (int topk = 4; topk <= 8; topk += 4) test_eager(&glm, ns[i], topk, ROUTE_RANDOM, 1, 0);
    test_eager(&glm, 3, 4, ROUTE_RANDOM, 0, 0);
    test_eager(&glm, 8, 8, ROUTE_RANDOM, 2, 0);
    test_eager(&glm, 64, 4, ROUTE_SAME, 1, 0); /* 4 experts with 64 pairs (51 for the last slot) */
    test_eager(&glm, 8, 4, ROUTE_DUP, 1, 0);
    test_eager(&glm, 160, 4, ROUTE_RANDOM, 1, 0); /* grouped: 64 experts, ~10 rows each, over the side streams */

    /* FP8 block-scaled experts: small ones, ones with k not a multiple of 128 (hidden 272,
     * inter 144: partial k blocks, up rows across a 128-row scale block), glm-shaped ones. */
    expert_set f8 = experts_new(16, 512, 256, 1, 6000);
    test_eager(&f8, 1, 4, ROUTE_RANDOM, 1, 0);
    test_eager(&f8, 3, 4, ROUTE_RANDOM, 2, 0);
    test_eager(&f8, 8, 4, ROUTE_RANDOM, 0, 0);
    test_eager(&f8, 20, 2, ROUTE_SAME, 1, 0);
    test_eager(&f8, 200, 4, ROUTE_RANDOM, 1, 0); /* grouped, FP8 GEMMs on the side streams */
    expert_set f8odd = experts_new(6, 272, 144, 1, 6500);
    test_eager(&f8odd, 5, 2, ROUTE_RANDOM, 1, 0);
    expert_set f8glm = experts_new(8, 2048, 1536, 1, 7000);
    test_eager(&f8glm, 1, 4, ROUTE_RANDOM, 1, 0);
    test_eager(&f8glm, 3, 4, ROUTE_RANDOM, 1, 0);

    /* Graphs. */
    test_graph(&tiny, 7, 2, 7);
    test_graph(&odd, 9, 3, 9);
    test_graph(&glm, 1, 4, 1);
    test_graph(&glm, 8, 4, 64);
    test_graph(&glm, 64, 8, 64);
    test_graph(&f8, 3, 4, 3);
    test_graph(&f8odd, 5, 2, 5);

    /* Timing (info): glm (bf16 set above, FP8 made on the device), DeepSeek-V3 (on the device). */
    time_graph(&glm, 1, 4, "glm-4.7-flash");
    time_graph(&glm, 8, 4, "glm-4.7-flash");
    time_graph(&glm, 64, 4, "glm-4.7-flash");
    experts_free(&tiny), experts_free(&odd), experts_free(&odd2), experts_free(&glm);
    experts_free(&f8), experts_free(&f8odd), experts_free(&f8glm);
    expert_set t = experts_new_device(64, 2048, 1536, 1);
    time_graph(&t, 1, 4, "glm-4.7-flash");
    time_graph(&t, 64, 4, "glm-4.7-flash");
    experts_free(&t);
    for (int fp8 = 0; fp8 < 2; fp8++) {
        t = experts_new_device(256, 7168, 2048, fp8);
        time_graph(&t, 1, 8, "deepseek-v3.2");
        time_graph(&t, 64, 8, "deepseek-v3.2");
        experts_free(&t);
    }

    gpu_env_fini(&env);
    return check_done("gpu_moe");
}
