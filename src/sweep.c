/* src/sweep.c — runs the points of `dsa-bench run`. */
#include "sweep.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* Per-component statistics from the kernel records of `reps` repetitions. */
static int summarise(dsa_point *pt, const dsa_prof *prof, dsa_err *e)
{
    int R = pt->reps;
    double *sum = calloc((size_t)DSA_NCOMP * R, sizeof *sum);
    int *count = calloc(DSA_NCOMP, sizeof *count);
    pt->comps = calloc(DSA_NCOMP, sizeof *pt->comps);
    pt->kernels = malloc((prof->n ? prof->n : 1) * sizeof *pt->kernels);
    if (!sum || !count || !pt->comps || !pt->kernels) {
        free(sum);
        free(count);
        return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    }
    memcpy(pt->kernels, prof->recs, prof->n * sizeof *pt->kernels);
    pt->n_kernels = prof->n;
    for (size_t i = 0; i < prof->n; i++) {
        const dsa_kernel_rec *k = &prof->recs[i];
        sum[k->component * R + k->rep] += (k->end_ns - k->start_ns) * 1e-6;
        count[k->component]++;
    }
    /* idle = wall - busy, so the components add up to the wall time */
    for (int r = 0; r < R; r++) {
        double busy = 0;
        for (int c = 0; c < DSA_NCOMP; c++)
            if (c != DSA_C_IDLE) busy += sum[c * R + r];
        sum[DSA_C_IDLE * R + r] = pt->samples[r] > busy ? pt->samples[r] - busy : 0;
    }
    count[DSA_C_IDLE] = R; /* one idle entry per repetition, no kernel */
    pt->indexer_ms = 0;
    for (int c = 0; c < DSA_NCOMP; c++) {
        if (!count[c]) continue;
        dsa_comp_stat *s = &pt->comps[pt->n_comps++];
        s->component = c;
        s->median_ms = dsa_median(&sum[c * R], R);
        s->min_ms = dsa_min(&sum[c * R], R);
        s->stdev_ms = dsa_stdev(&sum[c * R], R);
        s->share = pt->wall_median_ms > 0 ? s->median_ms / pt->wall_median_ms : 0;
        s->kernels = c == DSA_C_IDLE ? 0 : count[c] / R;
        if (dsa_component_is_indexer(c)) pt->indexer_ms += s->median_ms;
    }
    pt->indexer_share = pt->wall_median_ms > 0 ? pt->indexer_ms / pt->wall_median_ms : 0;
    free(sum);
    free(count);
    return 0;
}

static int run_point(const dsa_sweep_opts *o, const dsa_ops *ops, const point_spec *ps, int layers,
                     dsa_point *pt, dsa_err *e)
{
    dsa_fwd_opts fo = {.layers = layers, .shared_weights = o->shared_weights, .weight_fp8 = o->weight_fp8,
                       .seed = o->seed, .use_graph = !o->no_graph};
    dsa_fwd *f;
    int rc = dsa_fwd_create(&o->model, ops, &fo, ps->fs, ps->phase, ps->context, ps->batch, o->chunk, &f, e);
    if (rc) return rc;
    dsa_prof prof;
    dsa_prof_init(&prof);
    int cap = o->reps * MAX_REPS_FACTOR;
    pt->samples = malloc((size_t)cap * sizeof *pt->samples);
    if (!pt->samples) rc = dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    /* Host timers time the synchronous reference's components; on the GPU launches are
     * asynchronous, so component times wait for the CUPTI profiler and the wall time comes
     * from device events. */
    int gpu = ops->event_record != NULL;
    dsa_prof *pp = gpu ? NULL : &prof;
    prof.rep = -1;
    for (int w = 0; !rc && w < o->warmup; w++) rc = dsa_fwd_step(f, pp, e);
    int64_t t_start = dsa_now_ns();
    int n = 0;
    while (!rc && n < cap) {
        prof.rep = n;
        int64_t t0 = dsa_now_ns();
        if (gpu && ops->event_record(ops->ctx, 0)) { rc = dsa_fail(e, DSA_EXIT_RUNTIME, "%s", ops->last_error(ops->ctx)); break; }
        if ((rc = dsa_fwd_step(f, pp, e))) break;
        double ms = (dsa_now_ns() - t0) * 1e-6;
        if (gpu && (ops->event_record(ops->ctx, 1) || ops->event_elapsed_ms(ops->ctx, 0, 1, &ms))) {
            rc = dsa_fail(e, DSA_EXIT_RUNTIME, "%s", ops->last_error(ops->ctx));
            break;
        }
        pt->samples[n++] = ms;
        if (n < o->reps) continue;
        double med = dsa_median(pt->samples, n);
        if (dsa_stdev(pt->samples, n) <= o->target_rsd * med) break;
        double cap_s = o->max_time_s > 0 ? o->max_time_s : o->device_cpu ? 2.0 : 30.0;
        if ((dsa_now_ns() - t_start) * 1e-9 >= cap_s) break;
    }
    if (!rc && prof.oom) rc = dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory for kernel records");
    if (!rc) {
        pt->reps = n;
        pt->wall_median_ms = dsa_median(pt->samples, n);
        pt->wall_min_ms = dsa_min(pt->samples, n);
        pt->wall_stdev_ms = dsa_stdev(pt->samples, n);
        double s = pt->wall_median_ms * 1e-3;
        pt->tok_s = ps->phase == DSA_PREFILL ? ps->context / s : ps->batch / s;
        rc = summarise(pt, &prof, e);
        if (gpu) pt->indexer_ms = pt->indexer_share = NAN; /* not measured without CUPTI */
    }
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
    if (o->weight_fp8) return dsa_fail(e, DSA_EXIT_USAGE, "--weight-dtype fp8 is not implemented yet");

    /* the points: phase x context x batch x config; prefill runs one request */
    int max_points = o->n_phases * o->n_contexts * (o->n_batches ? o->n_batches : 1) * o->n_configs;
    point_spec *pts = calloc((size_t)(max_points ? max_points : 1), sizeof *pts);
    if (!pts) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    int np = 0;
    dsa_plan_opts po = {.layers = layers, .shared_weights = o->shared_weights, .weight_fp8 = o->weight_fp8,
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
    double mem = o->mem_gib > 0 ? o->mem_gib * GIB : free_bytes;

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
            int prc = run_point(o, &ops, ps, layers, pt, &pe);
            if (prc) {
                pt->status = DSA_POINT_FAILED;
                snprintf(pt->reason, sizeof pt->reason, "%.250s", pe.msg);
                fprintf(stderr, "failed: %s\n", pe.msg);
                rc = dsa_fail(e, prc, "%s context %lld: %s", pt->phase, (long long)pt->context, pe.msg);
            } else {
                double el = (dsa_now_ns() - t0) * 1e-9;
                fprintf(stderr, "%.3f ms median of %d reps; elapsed %.1f s, estimate %.1f s left\n", pt->wall_median_ms,
                        pt->reps, el, el / (i + 1) * (np - i - 1));
            }
        }
        /* rewrite the report after every point: an interrupted sweep keeps what it measured */
        if (o->out_path) {
            dsa_err we = {{0}};
            int wrc = dsa_h5_write(o->out_path, run, &we);
            if (wrc && !rc) rc = dsa_fail(e, wrc, "%s", we.msg);
        }
    }
    dsa_device_close(o->device_cpu, &ops);
out:
    free(pts);
    return rc;
}
