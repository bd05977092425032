/* src/compare.c — `dsa-bench compare` (see compare.h for the key, the noise and the verdicts). */
#include "compare.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "textout.h"

#include "component.h"
#include "model.h"
#include "report.h"

const char *dsa_verdict_name(int v)
{
    static const char *const names[] = {"SAME", "FASTER", "SLOWER", "MISSING"};
    return v >= 0 && v < DSA_NVERDICT ? names[v] : "?";
}

static int is_kernel_point(const dsa_point *p) { return strcmp(p->phase, "kernel") == 0; }

/* A report is a `kernels` one when it has points and all of them are kernel cases. */
static int is_kernels_run(const dsa_run *r)
{
    for (int i = 0; i < r->n_points; i++)
        if (!is_kernel_point(&r->points[i])) return 0;
    return r->n_points > 0;
}

static int same_key(const dsa_point *a, const dsa_point *b)
{
    if (strcmp(a->phase, b->phase) || a->context != b->context || a->batch != b->batch || a->chunk != b->chunk)
        return 0;
    return is_kernel_point(a) ? !strcmp(a->config, b->config) : !strcmp(a->fs, b->fs);
}

/* Relative stdev; NAN when there is no positive median to relate it to. */
static double rel_noise(double stdev, double median) { return median > 0 ? stdev / median : NAN; }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double sorted_median(const double *x, int n) { return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]); }

/* A point's noise: 1.4826 * MAD / median of its samples (equal to the relative stdev for normal
 * samples, but a few 3x launch-jitter outliers among 500 do not inflate it), or the stored
 * stdev / median when there are fewer than 3 samples or no memory to sort them. */
static double point_noise(const dsa_point *p)
{
    int n = p->reps;
    double *x = n >= 3 && p->samples ? malloc((size_t)n * sizeof *x) : NULL;
    if (!x) return rel_noise(p->wall_stdev_ms, p->wall_median_ms);
    memcpy(x, p->samples, (size_t)n * sizeof *x);
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    double med = sorted_median(x, n);
    for (int i = 0; i < n; i++) x[i] = fabs(x[i] - med);
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    double mad = sorted_median(x, n);
    free(x);
    return med > 0 ? 1.4826 * mad / med : NAN;
}

static void judge(dsa_compare_row *row, double base_noise, double new_noise, double threshold)
{
    row->ratio = row->new_ms / row->base_ms;
    /* a side without a usable stdev (one sample) adds no noise; the threshold still applies */
    double nb = isnan(base_noise) ? 0 : base_noise, nn = isnan(new_noise) ? 0 : new_noise;
    row->noise = nb > nn ? nb : nn;
    double tol = threshold > row->noise ? threshold : row->noise;
    if (!(row->base_ms > 0) || !(row->new_ms > 0) || isnan(row->ratio)) {
        row->verdict = DSA_MISSING;
        snprintf(row->note, sizeof row->note, "no positive median to compare");
        row->ratio = row->noise = NAN;
    } else if (row->ratio - 1 > tol)
        row->verdict = DSA_SLOWER;
    else if (1 - row->ratio > tol)
        row->verdict = DSA_FASTER;
    else
        row->verdict = DSA_SAME;
}

static dsa_compare_row *add_row(dsa_compare *c, int *cap)
{
    if (c->n_rows == *cap) {
        int ncap = *cap ? 2 * *cap : 64;
        dsa_compare_row *g = realloc(c->rows, (size_t)ncap * sizeof *g);
        if (!g) return NULL;
        c->rows = g;
        *cap = ncap;
    }
    dsa_compare_row *row = &c->rows[c->n_rows++];
    memset(row, 0, sizeof *row);
    row->component = -1;
    row->base_ms = row->new_ms = row->ratio = row->noise = NAN;
    return row;
}

static const dsa_comp_stat *find_comp(const dsa_point *p, int component)
{
    for (int i = 0; i < p->n_comps; i++)
        if (p->comps[i].component == component) return &p->comps[i];
    return NULL;
}

static const char *status_word(int s) { return s == DSA_POINT_SKIPPED ? "skipped" : "failed"; }

/* The point row of a matched pair, and for run points the component rows after it. */
static int add_pair(dsa_compare *c, int *cap, const dsa_point *b, const dsa_point *n, double threshold)
{
    dsa_compare_row *row = add_row(c, cap);
    if (!row) return -1;
    row->base = b;
    row->cand = n;
    row->counts = 1;
    if (b->status != DSA_POINT_OK || n->status != DSA_POINT_OK) {
        const dsa_point *bad = b->status != DSA_POINT_OK ? b : n;
        row->verdict = DSA_MISSING;
        snprintf(row->note, sizeof row->note, "%s in %s: %.90s", status_word(bad->status),
                 bad == b ? "base" : "new", bad->reason);
        if (b->status == DSA_POINT_OK) row->base_ms = b->wall_median_ms;
        if (n->status == DSA_POINT_OK) row->new_ms = n->wall_median_ms;
        return 0;
    }
    row->base_ms = b->wall_median_ms;
    row->new_ms = n->wall_median_ms;
    judge(row, point_noise(b), point_noise(n), threshold);
    /* When both files recorded the SM clock and it moved by more than 1%, say so: under the
     * H200's power cap a slower clock alone makes a long point a few % slower. Not a verdict. */
    if (b->sm_clock_mean_mhz > 0 && n->sm_clock_mean_mhz > 0 &&
        fabs(n->sm_clock_mean_mhz / b->sm_clock_mean_mhz - 1) > 0.01)
        snprintf(row->note, sizeof row->note, "SM clock %.0f -> %.0f MHz (mean)", b->sm_clock_mean_mhz,
                 n->sm_clock_mean_mhz);
    if (is_kernel_point(b)) return 0; /* a kernel case's one component is its wall time */
    for (int comp = 0; comp < DSA_NCOMP; comp++) {
        const dsa_comp_stat *cb = find_comp(b, comp), *cn = find_comp(n, comp);
        if (!cb && !cn) continue;
        dsa_compare_row *r = add_row(c, cap);
        if (!r) return -1;
        r->base = b;
        r->cand = n;
        r->component = comp;
        if (cb && cn) {
            r->base_ms = cb->median_ms;
            r->new_ms = cn->median_ms;
            judge(r, rel_noise(cb->stdev_ms, cb->median_ms), rel_noise(cn->stdev_ms, cn->median_ms), threshold);
        } else {
            r->verdict = DSA_MISSING;
            if (cb) r->base_ms = cb->median_ms;
            else r->new_ms = cn->median_ms;
            snprintf(r->note, sizeof r->note, "not timed in %s", cb ? "new" : "base");
        }
    }
    return 0;
}

/* Usage error when two run reports are not of the same model and layer set. */
static int check_same_model(const dsa_run *b, const dsa_run *n, dsa_err *e)
{
    if (strcmp(b->model.name, n->model.name))
        return dsa_fail(e, DSA_EXIT_USAGE, "other model: base is '%s', new is '%s' (compare reports of one model)",
                        b->model.name, n->model.name);
    for (int i = 0; i < dsa_model_field_count(); i++) {
        const char *key = dsa_model_field_at(i)->key;
        /* the model's own IndexCache setting is not a shape: the points' F/S strings are compared */
        if (!strcmp(key, "index_topk_freq") || !strcmp(key, "index_topk_pattern")) continue;
        char vb[600], vn[600];
        dsa_model_field_format(&b->model, i, vb, sizeof vb);
        dsa_model_field_format(&n->model, i, vn, sizeof vn);
        if (strcmp(vb, vn))
            return dsa_fail(e, DSA_EXIT_USAGE, "other model shapes: %s %s = %.60s, new = %.60s", b->model.name, key,
                            vb, vn);
    }
    if (b->layers_run != n->layers_run)
        return dsa_fail(e, DSA_EXIT_USAGE, "other layer set: base ran %d layers, new %d (--layers)", b->layers_run,
                        n->layers_run);
    if (b->shared_weights != n->shared_weights)
        return dsa_fail(e, DSA_EXIT_USAGE, "other weights: base %s, new %s (--weights)",
                        b->shared_weights ? "shared" : "per-layer", n->shared_weights ? "shared" : "per-layer");
    return 0;
}

int dsa_compare_runs(const dsa_run *base, const dsa_run *cand, double threshold, dsa_compare *out, dsa_err *e)
{
    memset(out, 0, sizeof *out);
    if (!(threshold >= 0)) return dsa_fail(e, DSA_EXIT_USAGE, "threshold must be >= 0");
    out->threshold = threshold;
    int kb = is_kernels_run(base), kn = is_kernels_run(cand);
    if (kb != kn)
        return dsa_fail(e, DSA_EXIT_USAGE, "base is a %s report, new a %s report (compare like with like)",
                        kb ? "`kernels`" : "`run`", kn ? "`kernels`" : "`run`");
    out->kernels = kb;
    int rc = kb ? 0 : check_same_model(base, cand, e);
    if (rc) return rc;
    if (strcmp(base->dev.name, cand->dev.name) || strcmp(base->dev.kind, cand->dev.kind))
        snprintf(out->warning, sizeof out->warning, "other devices: base ran on %.100s (%.7s), new on %.100s (%.7s)",
                 base->dev.name, base->dev.kind, cand->dev.name, cand->dev.kind);

    int cap = 0;
    /* which NEW points a BASE point already took, so duplicate keys pair in order */
    char *taken = calloc((size_t)(cand->n_points ? cand->n_points : 1), 1);
    if (!taken) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of memory");
    for (int i = 0; i < base->n_points && !rc; i++) {
        const dsa_point *b = &base->points[i], *n = NULL;
        for (int j = 0; j < cand->n_points && !n; j++)
            if (!taken[j] && same_key(b, &cand->points[j])) {
                taken[j] = 1;
                n = &cand->points[j];
            }
        if (n) {
            rc = add_pair(out, &cap, b, n, threshold);
            continue;
        }
        dsa_compare_row *row = add_row(out, &cap);
        if (!row) { rc = -1; break; }
        row->base = b;
        row->counts = 1;
        row->verdict = DSA_MISSING;
        if (b->status == DSA_POINT_OK) row->base_ms = b->wall_median_ms;
        snprintf(row->note, sizeof row->note, "not in new");
    }
    for (int j = 0; j < cand->n_points && !rc; j++) {
        if (taken[j]) continue;
        dsa_compare_row *row = add_row(out, &cap);
        if (!row) { rc = -1; break; }
        row->cand = &cand->points[j];
        row->counts = 1;
        row->verdict = DSA_MISSING;
        if (row->cand->status == DSA_POINT_OK) row->new_ms = row->cand->wall_median_ms;
        snprintf(row->note, sizeof row->note, "not in base");
    }
    free(taken);
    if (rc) {
        dsa_compare_free(out);
        return dsa_fail(e, DSA_EXIT_RUNTIME, "out of memory");
    }
    for (int i = 0; i < out->n_rows; i++)
        if (out->rows[i].counts) out->n_verdict[out->rows[i].verdict]++;
    return 0;
}

int dsa_compare_status(const dsa_compare *c) { return c->n_verdict[DSA_SLOWER] ? DSA_EXIT_SLOWER : DSA_EXIT_OK; }

void dsa_compare_free(dsa_compare *c)
{
    if (!c) return;
    free(c->rows);
    memset(c, 0, sizeof *c);
}

/* ---- printing ---- */

static const dsa_point *row_point(const dsa_compare_row *r) { return r->base ? r->base : r->cand; }

static const char *comp_label(const dsa_compare_row *r)
{
    return r->component < 0 ? "wall" : dsa_component_name(r->component);
}

/* "idx_logits_prefill h=32 context 8192 batch 0 rows 4096" / "prefill 1/4 context 200000 batch 1" */
static void point_name(char *buf, size_t len, const dsa_point *p)
{
    if (is_kernel_point(p))
        snprintf(buf, len, "%.60s context %lld batch %d rows %d", p->config, (long long)p->context, p->batch,
                 p->chunk);
    else
        snprintf(buf, len, "%s %.60s context %lld batch %d chunk %d", p->phase, p->config, (long long)p->context,
                 p->batch, p->chunk);
}

static void describe(FILE *o, const char *lead, const char *what, const dsa_run *r, const char *name)
{
    fprintf(o, "%s %-4s %s: %s%s%.200s, %s (%s), %s, git %s\n", lead, what, name, r->utc[0] ? r->utc : "(no time)",
            r->argv[0] ? ", " : "", r->argv, r->dev.name, r->dev.kind, r->model.name, r->git_sha);
}

static void print_summary(FILE *o, const dsa_compare *c, const char *lead)
{
    fprintf(o, "%s %d points: %d SAME, %d FASTER, %d SLOWER, %d MISSING; exit %d", lead,
            c->n_verdict[0] + c->n_verdict[1] + c->n_verdict[2] + c->n_verdict[3], c->n_verdict[DSA_SAME],
            c->n_verdict[DSA_FASTER], c->n_verdict[DSA_SLOWER], c->n_verdict[DSA_MISSING], dsa_compare_status(c));
    int shown = 0;
    for (int i = 0; i < c->n_rows; i++) {
        const dsa_compare_row *r = &c->rows[i];
        if (!r->counts || r->verdict != DSA_SLOWER) continue;
        if (shown == 10) {
            fprintf(o, "; and %d more", c->n_verdict[DSA_SLOWER] - shown);
            break;
        }
        char name[160];
        point_name(name, sizeof name, row_point(r));
        fprintf(o, "%s%s (x%.3f)", shown ? ", " : "; SLOWER: ", name, r->ratio);
        shown++;
    }
    fputc('\n', o);
}

static void print_table(FILE *o, const dsa_compare *c, const dsa_run *base, const char *base_name,
                        const dsa_run *cand, const char *cand_name, int md)
{
    const char *lead = md ? ">" : "#";
    describe(o, lead, "base", base, base_name);
    describe(o, lead, "new", cand, cand_name);
    fprintf(o, "%s ratio = new / base median; SLOWER or FASTER when |ratio - 1| > max(threshold %.1f%%, noise), "
               "noise = the larger of the two (1.4826 MAD / median of a point's samples)\n",
            lead, 100 * c->threshold);
    if (!c->kernels)
        fprintf(o, "%s component rows are informational; the exit status counts the point rows (component 'wall')\n",
                lead);
    if (c->warning[0]) fprintf(o, "%s warning: %s\n", lead, c->warning);
    if (md)
        fprintf(o, "\n| phase | config | context | batch | %s | component | base ms | new ms | ratio | noise %% | verdict | "
                   "note |\n|---|---|--:|--:|--:|---|--:|--:|--:|--:|---|---|\n",
                c->kernels ? "rows" : "chunk");
    else
        fprintf(o, "#  %-8s %-26s %9s %5s %6s %-12s %13s %13s %7s %7s  %s\n", "phase", "config", "context", "batch",
                c->kernels ? "rows" : "chunk", "component", "base_ms", "new_ms", "ratio", "noise%", "verdict");
    for (int i = 0; i < c->n_rows; i++) {
        const dsa_compare_row *r = &c->rows[i];
        const dsa_point *p = row_point(r);
        if (md)
            fprintf(o, "| %s | %s | %lld | %d | %d | %s |", p->phase, p->config, (long long)p->context, p->batch,
                    p->chunk, comp_label(r));
        else
            fprintf(o, "   %-8s %-26s %9lld %5d %6d %-12s", p->phase, p->config, (long long)p->context, p->batch,
                    p->chunk, comp_label(r));
        const char *sep = md ? " |" : "";
        dsa_out_num(o, 13, 6, r->base_ms); fputs(sep, o);
        dsa_out_num(o, 13, 6, r->new_ms); fputs(sep, o);
        dsa_out_num(o, 7, 3, r->ratio); fputs(sep, o);
        dsa_out_num(o, 7, 2, 100 * r->noise); fputs(sep, o);
        if (md) fprintf(o, " %s | %s |\n", dsa_verdict_name(r->verdict), r->note);
        else fprintf(o, "  %s%s%s\n", dsa_verdict_name(r->verdict), r->note[0] ? ": " : "", r->note);
    }
    if (md) fputc('\n', o);
    print_summary(o, c, lead);
}

static void json_side(FILE *o, const char *key, const dsa_run *r, const char *name)
{
    fprintf(o, "  \"%s\": {\"file\": ", key);
    dsa_out_json_str(o, name);
    fputs(", \"utc\": ", o);
    dsa_out_json_str(o, r->utc);
    fputs(", \"device\": ", o);
    dsa_out_json_str(o, r->dev.name);
    fputs(", \"model\": ", o);
    dsa_out_json_str(o, r->model.name);
    fputs(", \"git_sha\": ", o);
    dsa_out_json_str(o, r->git_sha);
    fputs("},\n", o);
}

static void print_json(FILE *o, const dsa_compare *c, const dsa_run *base, const char *base_name,
                       const dsa_run *cand, const char *cand_name)
{
    fputs("{\n", o);
    json_side(o, "base", base, base_name);
    json_side(o, "new", cand, cand_name);
    fputs("  \"threshold_pct\": ", o);
    dsa_out_json_num(o, 100 * c->threshold, 9);
    fputs(",\n  \"warning\": ", o);
    dsa_out_json_str(o, c->warning);
    fputs(",\n  \"rows\": [\n", o);
    for (int i = 0; i < c->n_rows; i++) {
        const dsa_compare_row *r = &c->rows[i];
        const dsa_point *p = row_point(r);
        fputs("    {\"phase\": ", o);
        dsa_out_json_str(o, p->phase);
        fputs(", \"config\": ", o);
        dsa_out_json_str(o, p->config);
        fprintf(o, ", \"context\": %lld, \"batch\": %d, \"chunk\": %d, \"component\": ", (long long)p->context,
                p->batch, p->chunk);
        dsa_out_json_str(o, comp_label(r));
        fputs(", \"base_ms\": ", o);
        dsa_out_json_num(o, r->base_ms, 9);
        fputs(", \"new_ms\": ", o);
        dsa_out_json_num(o, r->new_ms, 9);
        fputs(", \"ratio\": ", o);
        dsa_out_json_num(o, r->ratio, 9);
        fputs(", \"noise_pct\": ", o);
        dsa_out_json_num(o, 100 * r->noise, 9);
        fprintf(o, ", \"verdict\": \"%s\", \"counts\": %s, \"note\": ", dsa_verdict_name(r->verdict),
                r->counts ? "true" : "false");
        dsa_out_json_str(o, r->note);
        fprintf(o, "}%s\n", i + 1 < c->n_rows ? "," : "");
    }
    fprintf(o, "  ],\n  \"summary\": {\"SAME\": %d, \"FASTER\": %d, \"SLOWER\": %d, \"MISSING\": %d},\n  \"exit\": %d\n}\n",
            c->n_verdict[DSA_SAME], c->n_verdict[DSA_FASTER], c->n_verdict[DSA_SLOWER], c->n_verdict[DSA_MISSING],
            dsa_compare_status(c));
}

void dsa_compare_print(FILE *o, const dsa_compare *c, const dsa_run *base, const char *base_name,
                       const dsa_run *cand, const char *cand_name, int format)
{
    if (format == DSA_FMT_JSON) print_json(o, c, base, base_name, cand, cand_name);
    else print_table(o, c, base, base_name, cand, cand_name, format == DSA_FMT_MD);
}
