/* tests/gpu_profiler.c — CUPTI attribution (src/profiler.h) on the GPU.
 *
 * 1. A small program of known launches in known components, through the CUDA ops table:
 *      embed      3 fills                    (3 kernels)
 *      q_proj     1 GEMM (cuBLASLt)          (1 or more kernels: the library's choice)
 *      attn_norm  2 RMSNorms                 (2 kernels)
 *    run eagerly (external correlation) and replayed as a CUDA graph (graph-node maps), the graph
 *    captured before tracing starts (as `dsa-bench run` does: the decode graph is captured in the
 *    warm-up) and, once, while tracing. Every record of every measured repetition must be in
 *    the right component and layer with the right count, nothing unattributed, nothing dropped,
 *    warm-ups not counted. The graph is checked with each node lookup alone (the CLONED callback's
 *    ids, the node index) and with both.
 * 2. Cross-check without CUPTI, for three components (a GEMM, an RMSNorm, a top-k): the CUPTI
 *    sum of 20 back-to-back launches' kernel durations against the CUDA-event span of the same
 *    20 launches run untraced, within 5%. The event span also holds the gaps between kernels
 *    (about 1-2 us each on one stream while the host runs ahead), so every launch is sized to
 *    take 0.1 ms or more: 20 gaps are then under 2% of the span, and 5% leaves room for event
 *    resolution and clock noise while still catching a lost or double-counted kernel (5%+).
 *
 * 3. The stream hold (ops stream_hold/release): events queued behind it do not time the host's
 *    sleep between them, and a graph replayed behind it is attributed as in 1.
 *
 * Without a GPU: exit 77 (skipped). When another tool holds CUPTI (compute-sanitizer, Nsight):
 * exit 77 too, saying so. */
#define _POSIX_C_SOURCE 200809L
#include <time.h>

#include "gpu_harness.h"
#include "profiler.h"

#define FILLS 3
#define NORMS 2
#define REPS 3
#define XCHECK_LAUNCHES 20

/* the small program's shapes */
#define P_ROWS 512
#define P_D 1024
#define P_M 256
#define P_N 1024
#define P_K 1024

typedef struct bufs {
    bf16_t *x, *y, *norm_w, *a, *d;
    dsa_weight w;
} bufs;

static void *dev_alloc(gpu_env *env, size_t bytes)
{
    void *p = NULL;
    if (env->gpu.alloc(env->gpu.ctx, &p, bytes)) gpu_die(env, "alloc");
    return p;
}

static void program(gpu_env *env, const bufs *b, dsa_prof *p)
{
    const dsa_ops *o = &env->gpu;
    void *c = o->ctx;
    int rc = 0;
    dsa_prof_begin(p, DSA_C_EMBED, -1);
    for (int i = 0; i < FILLS; i++) rc |= o->fill_bf16(c, b->x, (size_t)P_ROWS * P_D, 100 + i, 1.0f);
    dsa_prof_end(p);
    dsa_prof_begin(p, DSA_C_Q_PROJ, 0);
    rc |= o->gemm(c, b->a, P_K, P_M, &b->w, NULL, b->d, P_N);
    dsa_prof_end(p);
    dsa_prof_begin(p, DSA_C_ATTN_NORM, 0);
    for (int i = 0; i < NORMS; i++) rc |= o->rmsnorm(c, b->x, P_D, P_ROWS, P_D, b->norm_w, 1e-6f, b->y, P_D);
    dsa_prof_end(p);
    if (rc) gpu_die(env, "program");
}

static void sync_or_die(gpu_env *env)
{
    if (env->gpu.sync(env->gpu.ctx)) gpu_die(env, "sync");
}

static void trace_start(gpu_env *env, dsa_prof *p)
{
    dsa_err e = {{0}};
    (void)env;
    if (dsa_prof_trace_start(p, &e)) {
        fprintf(stderr, "trace start: %s\n", e.msg);
        exit(1);
    }
}

static void trace_stop(dsa_prof *p)
{
    dsa_err e = {{0}};
    if (dsa_prof_trace_stop(p, &e)) {
        fprintf(stderr, "trace stop: %s\n", e.msg);
        exit(1);
    }
}

/* Checks the records of REPS repetitions of the program; returns the GEMM's kernels per rep. */
static int check_program(const dsa_prof *p, const char *what, int graph)
{
    int count[REPS][DSA_NCOMP];
    int bad_layer = 0, bad_node = 0, bad_name = 0, bad_time = 0, bad_comp = 0, bad_rep = 0;
    memset(count, 0, sizeof count);
    for (size_t i = 0; i < p->n; i++) {
        const dsa_kernel_rec *k = &p->recs[i];
        if (k->rep < 0 || k->rep >= REPS) { bad_rep++; continue; }
        count[k->rep][k->component]++;
        if (k->component != DSA_C_EMBED && k->component != DSA_C_Q_PROJ && k->component != DSA_C_ATTN_NORM) bad_comp++;
        if (k->layer != (k->component == DSA_C_EMBED ? -1 : 0)) bad_layer++;
        if ((k->graph_node != 0) != graph) bad_node++;
        if (k->end_ns <= k->start_ns) bad_time++;
        if (k->component == DSA_C_EMBED && !strstr(k->name, "fill_uniform")) bad_name++;
        if (k->component == DSA_C_ATTN_NORM && !strstr(k->name, "norm_")) bad_name++;
    }
    int gemm = count[0][DSA_C_Q_PROJ];
    printf("%-44s %zu records: embed %d, q_proj %d, attn_norm %d per rep; unattributed %lld, dropped %lld\n", what,
           p->n, count[0][DSA_C_EMBED], gemm, count[0][DSA_C_ATTN_NORM], (long long)p->unattributed,
           (long long)p->dropped);
    for (int r = 0; r < REPS; r++) {
        CHECK_INT(count[r][DSA_C_EMBED], FILLS);
        CHECK_INT(count[r][DSA_C_ATTN_NORM], NORMS);
        CHECK(count[r][DSA_C_Q_PROJ] >= 1);
        CHECK_INT(count[r][DSA_C_Q_PROJ], gemm);
    }
    CHECK_INT(p->n, (size_t)REPS * (FILLS + NORMS + gemm));
    CHECK_INT(bad_rep, 0);
    CHECK_INT(bad_comp, 0);
    CHECK_INT(bad_layer, 0);
    CHECK_INT(bad_node, 0);
    CHECK_INT(bad_time, 0);
    CHECK_INT(bad_name, 0);
    CHECK_INT(p->unattributed, 0);
    CHECK_INT(p->dropped, 0);
    if (p->unattributed) fprintf(stderr, "  first unattributed: %s\n", p->first_unattributed);
    if (bad_name)
        for (size_t i = 0; i < p->n && i < 8; i++) fprintf(stderr, "  record %zu: %s\n", i, p->recs[i].name);
    return gemm;
}

/* A warm-up repetition (not counted), then REPS measured ones. graph: replay it, else run eagerly.
 * hold: each replay queued behind a stream hold, the hold launched outside every repetition's
 * window, as src/sweep.c times a decode graph (the hold kernel must not be counted anywhere). */
static void traced_reps(gpu_env *env, const bufs *b, dsa_prof *p, void *graph, int hold)
{
    p->n = 0;
    trace_start(env, p);
    for (int r = -1; r < REPS; r++) {
        if (hold) {
            dsa_prof_rep_begin(p, -1);
            if (env->gpu.stream_hold(env->gpu.ctx)) gpu_die(env, "stream hold");
        }
        dsa_prof_rep_begin(p, r);
        if (graph) {
            if (env->gpu.graph_launch(env->gpu.ctx, graph)) gpu_die(env, "graph launch");
        } else {
            program(env, b, p);
        }
        if (hold && env->gpu.stream_release(env->gpu.ctx)) gpu_die(env, "stream release");
        sync_or_die(env);
    }
    dsa_prof_rep_begin(p, -1);
    trace_stop(p);
}

static void *capture(gpu_env *env, const bufs *b, dsa_prof *p)
{
    void *g = NULL;
    if (env->gpu.graph_begin(env->gpu.ctx)) gpu_die(env, "graph capture");
    program(env, b, p);
    if (env->gpu.graph_end(env->gpu.ctx, &g)) gpu_die(env, "graph capture end");
    return g;
}

static void test_program(gpu_env *env, dsa_prof *p)
{
    bufs b;
    b.x = dev_alloc(env, (size_t)P_ROWS * P_D * 2);
    b.y = dev_alloc(env, (size_t)P_ROWS * P_D * 2);
    b.norm_w = dev_alloc(env, (size_t)P_D * 2);
    b.a = dev_alloc(env, (size_t)P_M * P_K * 2);
    b.d = dev_alloc(env, (size_t)P_M * P_N * 2);
    b.w = (dsa_weight){DSA_BF16, P_N, P_K, dev_alloc(env, (size_t)P_N * P_K * 2), NULL};
    if (env->gpu.fill_bf16(env->gpu.ctx, b.a, (size_t)P_M * P_K, 1, 1.0f) ||
        env->gpu.fill_bf16(env->gpu.ctx, b.w.data, (size_t)P_N * P_K, 2, 0.03f) ||
        env->gpu.fill_bf16(env->gpu.ctx, b.norm_w, P_D, 3, 1.0f))
        gpu_die(env, "fill");
    program(env, &b, p); /* untraced: cuBLASLt picks its plan before any capture */
    sync_or_die(env);

    traced_reps(env, &b, p, NULL, 0);
    int gemm_eager = check_program(p, "eager (external correlation)", 0);

    /* captured untraced, then traced: the order of `dsa-bench run` */
    void *g = capture(env, &b, p);
    static const struct { int lookup; const char *what; } modes[] = {
        {DSA_PROF_NODE_BY_ID | DSA_PROF_NODE_BY_INDEX, "graph (node ids and node index)"},
        {DSA_PROF_NODE_BY_ID, "graph (node ids: created + cloned)"},
        {DSA_PROF_NODE_BY_INDEX, "graph (node index only)"},
    };
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        p->node_lookup = modes[m].lookup;
        traced_reps(env, &b, p, g, 0);
        CHECK_INT(check_program(p, modes[m].what, 1), gemm_eager);
    }
    traced_reps(env, &b, p, g, 1);
    CHECK_INT(check_program(p, "graph behind a stream hold", 1), gemm_eager);
    p->node_lookup = DSA_PROF_NODE_BY_ID | DSA_PROF_NODE_BY_INDEX;
    env->gpu.graph_free(env->gpu.ctx, g);

    /* captured while tracing: the brackets push external ids during the capture too */
    p->n = 0;
    trace_start(env, p);
    g = capture(env, &b, p);
    for (int r = -1; r < REPS; r++) {
        dsa_prof_rep_begin(p, r);
        if (env->gpu.graph_launch(env->gpu.ctx, g)) gpu_die(env, "graph launch");
        sync_or_die(env);
    }
    dsa_prof_rep_begin(p, -1);
    trace_stop(p);
    CHECK_INT(check_program(p, "graph captured while tracing", 1), gemm_eager);
    env->gpu.graph_free(env->gpu.ctx, g);

    env->gpu.release(env->gpu.ctx, b.x);
    env->gpu.release(env->gpu.ctx, b.y);
    env->gpu.release(env->gpu.ctx, b.norm_w);
    env->gpu.release(env->gpu.ctx, b.a);
    env->gpu.release(env->gpu.ctx, b.d);
    env->gpu.release(env->gpu.ctx, b.w.data);
}

/* ---- stream hold: the events time the work, not the host's queueing ------------------------ */

/* With the stream held, the host sleeps HOLD_SLEEP_MS between the start event and the release:
 * the events must not see the sleep, and without the hold they must. */
#define HOLD_SLEEP_MS 30

static double held_span_ms(gpu_env *env, bf16_t *x, int hold)
{
    const dsa_ops *o = &env->gpu;
    double ms = -1;
    if (hold && o->stream_hold(o->ctx)) gpu_die(env, "stream hold");
    if (o->event_record(o->ctx, 0)) gpu_die(env, "event");
    struct timespec ts = {0, HOLD_SLEEP_MS * 1000000L};
    nanosleep(&ts, NULL);
    if (o->fill_bf16(o->ctx, x, 1 << 20, 7, 1.0f) || o->event_record(o->ctx, 1)) gpu_die(env, "fill");
    if (hold && o->stream_release(o->ctx)) gpu_die(env, "stream release");
    sync_or_die(env);
    if (o->event_elapsed_ms(o->ctx, 0, 1, &ms)) gpu_die(env, "event elapsed");
    return ms;
}

static void test_hold(gpu_env *env)
{
    bf16_t *x = dev_alloc(env, (size_t)2 << 20);
    double plain = held_span_ms(env, x, 0), held = held_span_ms(env, x, 1);
    printf("%-44s %.3f ms without the hold, %.3f ms with it (host sleeps %d ms)\n", "stream hold", plain, held,
           HOLD_SLEEP_MS);
    CHECK(plain >= HOLD_SLEEP_MS * 0.9);
    CHECK(held >= 0 && held < 1.0);
    env->gpu.release(env->gpu.ctx, x);
}

/* ---- cross-check: CUPTI against CUDA events ------------------------------------------------ */

enum { XC_GEMM, XC_NORM, XC_TOPK, XC_COUNT };

#define X_GEMM 4096       /* M = N = K: 137 GFLOP, about 0.2 ms */
#define X_NORM_ROWS 32768 /* x 4096 bf16: 256 MiB read and written, about 0.13 ms */
#define X_NORM_D 4096
#define X_TOPK_ROWS 128   /* x 131072 fp32 scores, top 2048 of each row */
#define X_TOPK_LEN 131072
#define X_TOPK_K 2048

typedef struct xbufs {
    bf16_t *a, *d, *x, *y, *norm_w;
    dsa_weight w;
    float *scores;
    int32_t *idx;
} xbufs;

static void xlaunch(gpu_env *env, const xbufs *b, int which)
{
    const dsa_ops *o = &env->gpu;
    void *c = o->ctx;
    int rc = 0;
    switch (which) {
    case XC_GEMM: rc = o->gemm(c, b->a, X_GEMM, X_GEMM, &b->w, NULL, b->d, X_GEMM); break;
    case XC_NORM: rc = o->rmsnorm(c, b->x, X_NORM_D, X_NORM_ROWS, X_NORM_D, b->norm_w, 1e-6f, b->y, X_NORM_D); break;
    case XC_TOPK: rc = o->topk(c, b->scores, X_TOPK_ROWS, X_TOPK_LEN, X_TOPK_LEN, 0, X_TOPK_K, b->idx); break;
    }
    if (rc) gpu_die(env, "cross-check launch");
}

static void test_cross_check(gpu_env *env, dsa_prof *p)
{
    static const struct { int which, comp; const char *what; } cases[XC_COUNT] = {
        {XC_GEMM, DSA_C_Q_PROJ, "q_proj: bf16 GEMM 4096^3 (cuBLASLt)"},
        {XC_NORM, DSA_C_ATTN_NORM, "attn_norm: RMSNorm 32768 x 4096"},
        {XC_TOPK, DSA_C_IDX_TOPK, "idx_topk: top-2048 of 128 x 131072"},
    };
    xbufs b;
    b.a = dev_alloc(env, (size_t)X_GEMM * X_GEMM * 2);
    b.d = dev_alloc(env, (size_t)X_GEMM * X_GEMM * 2);
    b.w = (dsa_weight){DSA_BF16, X_GEMM, X_GEMM, dev_alloc(env, (size_t)X_GEMM * X_GEMM * 2), NULL};
    b.x = dev_alloc(env, (size_t)X_NORM_ROWS * X_NORM_D * 2);
    b.y = dev_alloc(env, (size_t)X_NORM_ROWS * X_NORM_D * 2);
    b.norm_w = dev_alloc(env, (size_t)X_NORM_D * 2);
    b.scores = dev_alloc(env, (size_t)X_TOPK_ROWS * X_TOPK_LEN * 4);
    b.idx = dev_alloc(env, (size_t)X_TOPK_ROWS * X_TOPK_K * 4);
    const dsa_ops *o = &env->gpu;
    if (o->fill_bf16(o->ctx, b.a, (size_t)X_GEMM * X_GEMM, 11, 1.0f) ||
        o->fill_bf16(o->ctx, b.w.data, (size_t)X_GEMM * X_GEMM, 12, 0.015f) ||
        o->fill_bf16(o->ctx, b.x, (size_t)X_NORM_ROWS * X_NORM_D, 13, 1.0f) ||
        o->fill_bf16(o->ctx, b.norm_w, X_NORM_D, 14, 1.0f) ||
        o->fill_f32(o->ctx, b.scores, (size_t)X_TOPK_ROWS * X_TOPK_LEN, 15, 1.0f))
        gpu_die(env, "fill");

    for (int i = 0; i < XC_COUNT; i++) {
        int which = cases[i].which;
        /* untraced: warm-up, then the event span of XCHECK_LAUNCHES launches */
        for (int w = 0; w < 3; w++) xlaunch(env, &b, which);
        sync_or_die(env);
        double event_ms = 0;
        if (o->event_record(o->ctx, 0)) gpu_die(env, "event");
        for (int l = 0; l < XCHECK_LAUNCHES; l++) xlaunch(env, &b, which);
        if (o->event_record(o->ctx, 1) || o->event_elapsed_ms(o->ctx, 0, 1, &event_ms)) gpu_die(env, "event");
        sync_or_die(env);
        /* traced: the same launches in the component's bracket */
        p->n = 0;
        trace_start(env, p);
        dsa_prof_rep_begin(p, 0);
        dsa_prof_begin(p, cases[i].comp, 0);
        for (int l = 0; l < XCHECK_LAUNCHES; l++) xlaunch(env, &b, which);
        dsa_prof_end(p);
        sync_or_die(env);
        dsa_prof_rep_begin(p, -1);
        trace_stop(p);
        double cupti_ms = 0;
        size_t mine = 0;
        for (size_t k = 0; k < p->n; k++)
            if (p->recs[k].component == cases[i].comp && p->recs[k].rep == 0) {
                cupti_ms += (p->recs[k].end_ns - p->recs[k].start_ns) * 1e-6;
                mine++;
            }
        double diff = event_ms > 0 ? fabs(cupti_ms - event_ms) / event_ms : INFINITY;
        printf("cross-check %-40s CUPTI %9.4f ms (%zu records)  events %9.4f ms  diff %5.2f%% (tol 5%%) %s\n",
               cases[i].what, cupti_ms, mine, event_ms, 100 * diff, diff <= 0.05 ? "ok" : "FAIL");
        CHECK(diff <= 0.05);
        CHECK_INT(mine, p->n);
        CHECK(mine >= XCHECK_LAUNCHES && mine % XCHECK_LAUNCHES == 0);
        CHECK_INT(p->unattributed, 0);
        CHECK_INT(p->dropped, 0);
    }
    env->gpu.release(env->gpu.ctx, b.a);
    env->gpu.release(env->gpu.ctx, b.d);
    env->gpu.release(env->gpu.ctx, b.w.data);
    env->gpu.release(env->gpu.ctx, b.x);
    env->gpu.release(env->gpu.ctx, b.y);
    env->gpu.release(env->gpu.ctx, b.norm_w);
    env->gpu.release(env->gpu.ctx, b.scores);
    env->gpu.release(env->gpu.ctx, b.idx);
}

int main(void)
{
    gpu_env env;
    int rc = gpu_env_init(&env);
    if (rc) return rc;
    dsa_prof p;
    dsa_err e = {{0}};
    dsa_prof_init(&p);
    if (dsa_prof_cupti_attach(&p, &e)) {
        int held = p.cupti_held;
        printf("%s: %s\n", held ? "skipped" : "FAIL", e.msg);
        dsa_prof_free(&p);
        gpu_env_fini(&env);
        return held ? 77 : 1;
    }
    test_program(&env, &p);
    test_hold(&env);
    test_cross_check(&env, &p);
    dsa_prof_free(&p);
    gpu_env_fini(&env);
    return check_done("gpu_profiler");
}
