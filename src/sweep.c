/* src/sweep.c — runs the points of `dsa-bench run`. */
#include "sweep.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clocks.h"
#include "device.h"
#include "forward.h"
#include "h5report.h"
#include "plan.h"
#include "profiler.h"
#include "schedule.h"

#define GIB (1024.0 * 1024.0 * 1024.0)
/* --device cpu runs the reference in plain C loops: refuse points that would take hours. */
#define CPU_MAX_GFLOP 200.0
#define MAX_REPS_FACTOR 20 /* never more than 20x the minimum repetitions */

#ifndef DSA_VERSION
#define DSA_VERSION "0.0.0"
#endif
#ifndef DSA_GIT_SHA
#define DSA_GIT_SHA "unknown"
#endif

void dsa_sweep_defaults(dsa_sweep_opts *o)
{
    memset(o, 0, sizeof *o);
    o->chunk = 8192;
    o->reps = 5;
    o->warmup = 1;
    o->max_time_s = 0; /* auto: 30 s on the GPU, 2 s for the C reference */
    o->target_rsd = 0.01;
    o->seed = 1;
    o->max_records = 20000; /* ~1 MB per point in the file: a 200K prefill launches ~400K kernels a rep */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double dsa_median(const double *x, int n)
{
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return NAN;
    memcpy(s, x, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

double dsa_stdev(const double *x, int n)
{
    if (n < 2) return 0;
    double mean = 0, ss = 0;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);
    return sqrt(ss / (n - 1));
}

double dsa_min(const double *x, int n)
{
    double m = x[0];
    for (int i = 1; i < n; i++) m = x[i] < m ? x[i] : m;
    return m;
}

static const char *phase_name(int phase) { return phase == DSA_PREFILL ? "prefill" : "decode"; }

typedef struct point_spec {
    int phase, cfg;
    int64_t context;
    int batch;
    char fs[DSA_MAX_LAYERS + 1];
} point_spec;

/* One kernel's interval, sorted by repetition then start time. */
typedef struct interval {
    int64_t start, end;
    int rep, component;
} interval;

static int cmp_rep_start(const void *a, const void *b)
{
    const interval *x = a, *y = b;
    if (x->rep != y->rep) return x->rep < y->rep ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* An open run of overlapping intervals; close() adds its length (ms) to *sum. */
typedef struct span {
    int64_t start, end;
} span;

static void span_add(span *s, const interval *k, double *sum)
{
    if (s->end > s->start && k->start <= s->end) {
        if (k->end > s->end) s->end = k->end;
        return;
    }
    if (s->end > s->start) *sum += (s->end - s->start) * 1e-6;
    s->start = k->start, s->end = k->end;
}

static void span_close(span *s, double *sum)
{
    if (s->end > s->start) *sum += (s->end - s->start) * 1e-6;
    s->start = s->end = 0;
}

int dsa_point_summarise(dsa_point *pt, const dsa_kernel_rec *recs, size_t n, const double *wall_ms, int reps,
                        dsa_err *e)
{
    int R = reps > 0 ? reps : 1;
    double *sum = calloc((size_t)DSA_NCOMP * R, sizeof *sum), *cover = calloc((size_t)R, sizeof *cover);
    double *busy = calloc((size_t)R, sizeof *busy);
    int64_t *count = calloc(DSA_NCOMP, sizeof *count);
    interval *iv = malloc((n ? n : 1) * sizeof *iv);
    free(pt->comps);
    free(pt->kernels);
    pt->comps = calloc(DSA_NCOMP, sizeof *pt->comps);
    pt->kernels = malloc((n ? n : 1) * sizeof *pt->kernels);
    pt->n_comps = 0;
    pt->n_kernels = 0;
    if (!sum || !cover || !busy || !count || !iv || !pt->comps || !pt->kernels) {
        free(sum);
        free(cover);
        free(busy);
        free(count);
        free(iv);
        return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    }
    if (n) memcpy(pt->kernels, recs, n * sizeof *pt->kernels);
    pt->n_kernels = n;
    /* A component's time is the union of its kernels' intervals, and busy the union of all:
     * with one stream that is the sum of durations (DESIGN §4); where kernels overlap (the
     * MoE experts' GEMMs on side streams) nothing is counted twice, so idle stays >= 0. The
     * side streams join before the next component starts, so components never overlap each
     * other and still add up to the wall time. */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const dsa_kernel_rec *k = &recs[i];
        if (k->rep < 0 || k->rep >= reps || k->component < 0 || k->component >= DSA_NCOMP) continue;
        if (k->end_ns < k->start_ns) continue;
        iv[m++] = (interval){k->start_ns, k->end_ns, k->rep, k->component};
        count[k->component]++;
    }
    qsort(iv, m, sizeof *iv, cmp_rep_start);
    span open[DSA_NCOMP], all = {0, 0};
    memset(open, 0, sizeof open);
    for (size_t j = 0; j < m; j++) {
        const interval *k = &iv[j];
        const int r = k->rep;
        span_add(&open[k->component], k, &sum[k->component * R + r]);
        span_add(&all, k, &busy[r]);
        if (j + 1 == m || iv[j + 1].rep != r) { /* the repetition's last record: close its spans */
            for (int c = 0; c < DSA_NCOMP; c++) span_close(&open[c], &sum[c * R + r]);
            span_close(&all, &busy[r]);
        }
    }
    free(iv);
    /* idle = wall - busy, so the components add up to the wall time */
    for (int r = 0; r < reps; r++) {
        sum[DSA_C_IDLE * R + r] = wall_ms[r] > busy[r] ? wall_ms[r] - busy[r] : 0;
        cover[r] = wall_ms[r] > 0 ? busy[r] / wall_ms[r] : 0;
    }
    free(busy);
    double wall = reps > 0 ? dsa_median(wall_ms, reps) : 0;
    if (reps > 0) count[DSA_C_IDLE] = reps; /* one idle entry per repetition, no kernel */
    pt->indexer_ms = 0;
    for (int c = 0; c < DSA_NCOMP; c++) {
        if (!count[c]) continue;
        dsa_comp_stat *s = &pt->comps[pt->n_comps++];
        s->component = c;
        s->median_ms = dsa_median(&sum[c * R], reps);
        s->min_ms = dsa_min(&sum[c * R], reps);
        s->stdev_ms = dsa_stdev(&sum[c * R], reps);
        s->share = wall > 0 ? s->median_ms / wall : 0;
        s->kernels = c == DSA_C_IDLE ? 0 : (int32_t)(count[c] / reps);
        if (dsa_component_is_indexer(c)) pt->indexer_ms += s->median_ms;
    }
    pt->indexer_share = wall > 0 ? pt->indexer_ms / wall : 0;
    pt->coverage = reps > 0 ? dsa_median(cover, reps) : 0;
    free(sum);
    free(cover);
    free(count);
    return 0;
}

/* Repetitions of one phase: at least o->reps, until the relative stdev is at most
 * o->target_rsd or the time cap has passed, at most `cap`. Wall per repetition from device
 * events on the GPU, the host clock for the reference. The end event is queued before the host
 * waits, so the wait's return is not timed. A replayed decode graph is timed as nvbench does:
 * the stream is held while the start event, the launch and the end event are queued, so the
 * events time the replay on the GPU and not the host's cost of launching it (CUPTI makes that
 * cost ~1.5 ms for the 1550-node step, more than the kernels' whole gap). Eager steps are not
 * held: their host launch cost is what the graph removes, and a held stream could not take a
 * thousand launches. The hold kernel runs outside any repetition's window, so the profiler
 * leaves it out. */
static int timed_reps(const dsa_sweep_opts *o, const dsa_ops *ops, dsa_fwd *f, dsa_prof *prof, double *samples,
                      int cap, int *n_out, dsa_err *e)
{
    int gpu = ops->event_record != NULL, n = 0, rc = 0, held = 0;
    double cap_s = o->max_time_s > 0 ? o->max_time_s : o->device_cpu ? 2.0 : 30.0;
    int64_t t_start = dsa_now_ns();
#define GPU_OK(call) ((call) ? dsa_fail(e, DSA_EXIT_RUNTIME, "%s", ops->last_error(ops->ctx)) : 0)
    while (n < cap) {
        int hold = gpu && ops->stream_hold && dsa_fwd_replays_graph(f);
        if (hold && (rc = GPU_OK(ops->stream_hold(ops->ctx)))) break;
        held = hold;
        dsa_prof_rep_begin(prof, n);
        int64_t t0 = dsa_now_ns();
        if (gpu && (rc = GPU_OK(ops->event_record(ops->ctx, 0)))) break;
        if ((rc = dsa_fwd_enqueue(f, prof, e))) break;
        if (gpu && (rc = GPU_OK(ops->event_record(ops->ctx, 1)))) break;
        held = 0;
        if (hold && (rc = GPU_OK(ops->stream_release(ops->ctx)))) break;
        if ((rc = dsa_fwd_wait(f, e))) break;
        double ms = (dsa_now_ns() - t0) * 1e-6;
        if (gpu && (rc = GPU_OK(ops->event_elapsed_ms(ops->ctx, 0, 1, &ms)))) break;
        if (hold) dsa_prof_rep_begin(prof, -1); /* the next hold falls outside every window */
        samples[n++] = ms;
        if (n < o->reps) continue;
        double med = dsa_median(samples, n);
        if (dsa_stdev(samples, n) <= o->target_rsd * med) break;
        if ((dsa_now_ns() - t_start) * 1e-9 >= cap_s) break;
    }
#undef GPU_OK
    if (held) ops->stream_release(ops->ctx); /* after a failure: do not leave the stream blocked */
    dsa_prof_rep_begin(prof, -1); /* ends the last repetition's window */
    *n_out = n;
    return rc;
}

/* The GPU's second pass: the same repetitions with CUPTI collecting, after a warm-up of its own
 * (the first traced launch pays CUPTI's set-up). Tracing always stops, even after a failure. */
static int traced_reps(const dsa_sweep_opts *o, const dsa_ops *ops, dsa_fwd *f, dsa_prof *prof, dsa_point *pt,
                       int cap, dsa_err *e)
{
    int n = 0, rc = dsa_prof_trace_start(prof, e);
    if (rc) return rc;
    dsa_prof_rep_begin(prof, -1);
    for (int w = 0; !rc && w < o->warmup; w++) rc = dsa_fwd_step(f, prof, e);
    if (!rc) rc = timed_reps(o, ops, f, prof, pt->samples_traced, cap, &n, e);
    dsa_err se = {{0}};
    int src = dsa_prof_trace_stop(prof, &se);
    if (!rc && src) rc = dsa_fail(e, src, "%s", se.msg);
    pt->traced_reps = n;
    return rc;
}

static int run_point(const dsa_sweep_opts *o, const dsa_ops *ops, const point_spec *ps, int layers,
                     dsa_point *pt, dsa_err *e)
{
    dsa_fwd_opts fo = {.layers = layers, .shared_weights = o->shared_weights, .weight_fp8 = o->weight_fp8,
                       .seed = o->seed, .use_graph = !o->no_graph, .fused_indexer = o->fused_indexer};
    dsa_fwd *f;
    int rc = dsa_fwd_create(&o->model, ops, &fo, ps->fs, ps->phase, ps->context, ps->batch, o->chunk, &f, e);
    if (rc) return rc;
    dsa_prof prof;
    dsa_prof_init(&prof);
    /* The reference is synchronous: host timers time its components in the same repetitions as
     * the wall. On the GPU the untraced repetitions give the wall, and as many again with CUPTI
     * on give the components (and the tracing overhead, from the two walls). CUPTI attaches
     * before the warm-up, where the decode graph is captured, to map its nodes. */
    int gpu = ops->event_record != NULL;
    int cap = o->reps * MAX_REPS_FACTOR, n = 0;
    prof.host_timers = !gpu;
    pt->samples = malloc((size_t)cap * sizeof *pt->samples);
    if (gpu) pt->samples_traced = malloc((size_t)cap * sizeof *pt->samples_traced);
    if (!pt->samples || (gpu && !pt->samples_traced)) rc = dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    int traced = gpu && o->trace != DSA_TRACE_OFF;
    if (!rc && traced) {
        dsa_err ae = {{0}};
        int arc = dsa_prof_cupti_attach(&prof, &ae);
        if (arc && prof.cupti_held) { /* profiling dsa-bench itself: time the wall, say what is missing */
            fprintf(stderr, "(%s; no component times) ", ae.msg);
            traced = 0;
        } else if (arc) {
            rc = dsa_fail(e, arc, "%s", ae.msg);
        }
    }
    dsa_prof_rep_begin(&prof, -1);
    int one_pass = traced && o->trace == DSA_TRACE_ON; /* traced_reps does the warm-up */
    for (int w = 0; !rc && !one_pass && w < o->warmup; w++) rc = dsa_fwd_step(f, &prof, e);
    if (!rc && !one_pass) rc = timed_reps(o, ops, f, &prof, pt->samples, cap, &n, e);
    if (!rc && traced) rc = traced_reps(o, ops, f, &prof, pt, cap, e);
    if (!rc && one_pass) { /* the traced pass is the only one: its wall is the wall */
        n = pt->traced_reps;
        memcpy(pt->samples, pt->samples_traced, (size_t)n * sizeof *pt->samples);
    }
    if (!rc && prof.oom) rc = dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory for kernel records");
    if (!rc) {
        pt->reps = n;
        pt->wall_median_ms = dsa_median(pt->samples, n);
        pt->wall_min_ms = dsa_min(pt->samples, n);
        pt->wall_stdev_ms = dsa_stdev(pt->samples, n);
        double s = pt->wall_median_ms * 1e-3;
        pt->tok_s = ps->phase == DSA_PREFILL ? ps->context / s : ps->batch / s;
        pt->wall_traced_median_ms = pt->trace_overhead_pct = NAN;
        if (traced) {
            pt->wall_traced_median_ms = dsa_median(pt->samples_traced, pt->traced_reps);
            if (o->trace == DSA_TRACE_BOTH)
                pt->trace_overhead_pct = 100.0 * (pt->wall_traced_median_ms / pt->wall_median_ms - 1.0);
            pt->dropped_records = prof.dropped;
            pt->unattributed = prof.unattributed;
        }
        if (traced || !gpu)
            rc = dsa_point_summarise(pt, prof.recs, prof.n, gpu ? pt->samples_traced : pt->samples,
                                     gpu ? pt->traced_reps : n, e);
        else
            pt->indexer_ms = pt->indexer_share = pt->coverage = NAN; /* not measured */
        /* The file keeps the raw records of the first repetition, at most max_records of them in
         * launch order (the component table above used every record of every repetition). */
        pt->records_total = (int64_t)pt->n_kernels;
        if (!rc) {
            size_t keep = 0;
            for (size_t i = 0; i < pt->n_kernels; i++)
                if (pt->kernels[i].rep == 0 && (o->max_records < 0 || (int64_t)keep < o->max_records))
                    pt->kernels[keep++] = pt->kernels[i];
            pt->n_kernels = keep;
        }
    }
    /* the numbers must mean something: count NaN/Inf in the last repetition's final hidden state */
    pt->nonfinite = -1;
    if (!rc && (rc = dsa_fwd_count_nonfinite(f, &pt->nonfinite, e)) == 0 && pt->nonfinite > 0)
        fprintf(stderr, "warning: %lld NaN/Inf values in the final hidden state\n", (long long)pt->nonfinite);
    dsa_prof_free(&prof);
    dsa_fwd_destroy(f);
    return rc;
}

void dsa_run_stamp(dsa_run *run, const char *argv)
{
    snprintf(run->schema, sizeof run->schema, "%s", DSA_SCHEMA);
    snprintf(run->tool_version, sizeof run->tool_version, "%s", DSA_VERSION);
    snprintf(run->git_sha, sizeof run->git_sha, "%s", DSA_GIT_SHA);
    snprintf(run->argv, sizeof run->argv, "%s", argv ? argv : "");
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(run->utc, sizeof run->utc, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int dsa_sweep_run(const dsa_sweep_opts *o, dsa_run *run, dsa_err *e)
{
    int rc = dsa_model_validate(&o->model, e);
    if (rc) return rc;
    int layers = o->layers ? o->layers : o->model.n_layers;
    if (layers < 1 || layers > o->model.n_layers)
        return dsa_fail(e, DSA_EXIT_USAGE, "--layers %d: the model has %d layers", layers, o->model.n_layers);
    if (o->reps < 3) return dsa_fail(e, DSA_EXIT_USAGE, "-r %d: at least 3 repetitions", o->reps);
    if (o->warmup < 1) return dsa_fail(e, DSA_EXIT_USAGE, "--warmup %d: at least 1", o->warmup);
    if (o->chunk < 1) return dsa_fail(e, DSA_EXIT_USAGE, "--chunk must be >= 1");

    /* the points: phase x context x batch x config; prefill runs one request */
    int max_points = o->n_phases * o->n_contexts * (o->n_batches ? o->n_batches : 1) * o->n_configs;
    point_spec *pts = calloc((size_t)(max_points ? max_points : 1), sizeof *pts);
    if (!pts) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    int np = 0;
    dsa_plan_opts po = {.layers = layers, .shared_weights = o->shared_weights, .weight_fp8 = o->weight_fp8,
                        .fused_indexer = o->fused_indexer,
                        .ceil = dsa_ceilings_default()};
    for (int ph = 0; ph < o->n_phases; ph++)
        for (int c = 0; c < o->n_contexts; c++) {
            int nb = o->phases[ph] == DSA_PREFILL ? 1 : o->n_batches;
            for (int b = 0; b < nb; b++)
                for (int g = 0; g < o->n_configs; g++) {
                    point_spec *p = &pts[np++];
                    p->phase = o->phases[ph];
                    p->context = o->contexts[c];
                    p->batch = o->phases[ph] == DSA_PREFILL ? 1 : (int)o->batches[b];
                    p->cfg = g;
                    if ((rc = dsa_schedule_resolve(o->configs[g], &o->model, layers, p->fs, e))) goto out;
                    if (o->device_cpu) {
                        dsa_plan pl;
                        if ((rc = dsa_plan_point(&o->model, &po, p->fs, p->phase, p->context, p->batch, o->chunk, &pl, e)))
                            goto out;
                        if (pl.flops > CPU_MAX_GFLOP * 1e9) {
                            rc = dsa_fail(e, DSA_EXIT_USAGE,
                                          "--device cpu runs small shapes only: %s context %lld batch %d of %s needs "
                                          "%.0f GFLOP (limit %.0f); use -m tiny",
                                          phase_name(p->phase), (long long)p->context, p->batch, o->model.name,
                                          pl.flops / 1e9, CPU_MAX_GFLOP);
                            goto out;
                        }
                    }
                }
        }

    if (o->out_path) { /* fail before the first point, not after it */
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", o->out_path);
        FILE *fp = fopen(tmp, "wb");
        if (!fp) {
            rc = dsa_fail(e, DSA_EXIT_RUNTIME, "cannot create %s: %s", tmp, strerror(errno));
            goto out;
        }
        fclose(fp);
        remove(tmp);
    }
    dsa_ops ops;
    memset(&ops, 0, sizeof ops);
    double free_bytes = 0;
    memset(run, 0, sizeof *run);
    if ((rc = dsa_device_open(o->device_cpu, &ops, &run->dev, &free_bytes, e))) goto out;
    dsa_run_stamp(run, o->argv);
    run->model = o->model;
    run->layers_run = layers;
    run->shared_weights = o->shared_weights;
    run->weight_fp8 = o->weight_fp8;
    run->fused_indexer = o->fused_indexer;
    double mem = o->mem_gib > 0 ? o->mem_gib * GIB : free_bytes;
    dsa_clocks *clk = o->device_cpu ? NULL : dsa_clocks_open(0); /* NULL without NVML: not recorded */

    int64_t t0 = dsa_now_ns();
    for (int i = 0; i < np && !rc; i++) {
        const point_spec *ps = &pts[i];
        dsa_point *pt = dsa_run_add_point(run);
        if (!pt) { rc = dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory"); break; }
        snprintf(pt->phase, sizeof pt->phase, "%s", phase_name(ps->phase));
        pt->context = ps->context;
        pt->batch = ps->batch;
        pt->chunk = o->chunk;
        snprintf(pt->config, sizeof pt->config, "%s", o->configs[ps->cfg]);
        snprintf(pt->fs, sizeof pt->fs, "%s", ps->fs);
        pt->n_full = dsa_schedule_count_full(ps->fs);
        pt->n_layers = layers;
        dsa_plan pl;
        if ((rc = dsa_plan_point(&o->model, &po, ps->fs, ps->phase, ps->context, ps->batch, o->chunk, &pl, e))) break;
        fprintf(stderr, "[point %d/%d] %s context %lld batch %d config %s (%d F layers): ", i + 1, np, pt->phase,
                (long long)pt->context, pt->batch, pt->config, pt->n_full);
        if (pl.total > mem) {
            pt->status = DSA_POINT_SKIPPED;
            snprintf(pt->reason, sizeof pt->reason, "needs %.1f GiB, %.1f GiB free", pl.total / GIB, mem / GIB);
            fprintf(stderr, "skipped: %s\n", pt->reason);
        } else {
            dsa_err pe = {{0}};
            dsa_clocks_begin(clk);
            int prc = run_point(o, &ops, ps, layers, pt, &pe);
            dsa_clocks_end(clk, pt);
            if (prc) {
                pt->status = DSA_POINT_FAILED;
                snprintf(pt->reason, sizeof pt->reason, "%.250s", pe.msg);
                fprintf(stderr, "failed: %s\n", pe.msg);
                rc = dsa_fail(e, prc, "%s context %lld: %s", pt->phase, (long long)pt->context, pe.msg);
            } else {
                double el = (dsa_now_ns() - t0) * 1e-9;
                fprintf(stderr, "%.3f ms median of %d reps", pt->wall_median_ms, pt->reps);
                if (pt->traced_reps > 0) {
                    fprintf(stderr, " (traced: %d reps, ", pt->traced_reps);
                    if (isnan(pt->trace_overhead_pct)) fprintf(stderr, "overhead not measured");
                    else fprintf(stderr, "overhead %+.2f%%", pt->trace_overhead_pct);
                    fprintf(stderr, ", coverage %.1f%%, %lld dropped, %lld unattributed)", 100 * pt->coverage,
                            (long long)pt->dropped_records, (long long)pt->unattributed);
                }
                dsa_clocks_progress(stderr, pt);
                fprintf(stderr, "; elapsed %.1f s, estimate %.1f s left\n", el, el / (i + 1) * (np - i - 1));
            }
        }
        /* rewrite the report after every point: an interrupted sweep keeps what it measured */
        if (o->out_path) {
            dsa_err we = {{0}};
            int wrc = dsa_h5_write(o->out_path, run, &we);
            if (wrc && !rc) rc = dsa_fail(e, wrc, "%s", we.msg);
        }
    }
    dsa_clocks_close(clk);
    dsa_device_close(o->device_cpu, &ops);
out:
    free(pts);
    return rc;
}
