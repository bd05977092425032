#include "report.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clocks.h"
#include "textout.h"

static int is_decode(const dsa_point *p) { return strcmp(p->phase, "decode") == 0; }
static int is_kernel(const dsa_point *p) { return strcmp(p->phase, "kernel") == 0; }

int dsa_report_rows(const dsa_run *runs, int n_runs, dsa_report_row **rows, int *n_rows)
{
    int n = 0;
    for (int r = 0; r < n_runs; r++) n += runs[r].n_points;
    dsa_report_row *out = calloc((size_t)(n ? n : 1), sizeof *out);
    if (!out) return -1;
    int k = 0;
    for (int r = 0; r < n_runs; r++)
        for (int i = 0; i < runs[r].n_points; i++) {
            const dsa_point *p = &runs[r].points[i];
            dsa_report_row *row = &out[k++];
            row->run = &runs[r];
            row->pt = p;
            row->speedup_pct = row->amdahl_pct = NAN;
            row->time = row->tok_s_req = row->tok_s_all = NAN;
            if (p->status != DSA_POINT_OK) continue;
            row->time = is_decode(p) ? p->wall_median_ms : p->wall_median_ms * 1e-3;
            row->tok_s_all = p->tok_s;
            row->tok_s_req = is_decode(p) ? 1e3 / p->wall_median_ms : p->tok_s;
            /* the full-indexer point of the same model, phase, context and batch, any file */
            for (int r2 = 0; r2 < n_runs && !row->full; r2++) {
                if (strcmp(runs[r2].model.name, runs[r].model.name) || runs[r2].layers_run != runs[r].layers_run) continue;
                for (int j = 0; j < runs[r2].n_points; j++) {
                    const dsa_point *q = &runs[r2].points[j];
                    if (q->status == DSA_POINT_OK && q->n_full == q->n_layers && !strcmp(q->phase, p->phase) &&
                        q->context == p->context && q->batch == p->batch && q->chunk == p->chunk) {
                        row->full = q;
                        break;
                    }
                }
            }
            if (row->full) {
                row->speedup_pct = 100.0 * row->full->wall_median_ms / p->wall_median_ms;
                double s = row->full->indexer_share, fr = (double)p->n_full / p->n_layers;
                row->amdahl_pct = 100.0 / ((1 - s) + s * fr);
            }
        }
    *rows = out;
    *n_rows = k;
    return 0;
}

static const char *status_name(int s) { return s == DSA_POINT_OK ? "ok" : s == DSA_POINT_SKIPPED ? "skipped" : "failed"; }

static void print_text(FILE *o, const dsa_report_row *rows, int n, int md)
{
    const char *sep = md ? " |" : "";
    for (int phase = 0; phase < 2; phase++) {
        int any = 0;
        for (int i = 0; i < n; i++) any |= !is_kernel(rows[i].pt) && is_decode(rows[i].pt) == phase;
        if (!any) continue;
        const char *tcol = phase ? "ms/step" : "time_s";
        if (md) {
            fprintf(o, "\n**%s**\n\n| model | context | batch | config | F | reps | %s | tok/s/req | tok/s | speedup %% | amdahl %% | "
                       "indexer %% | status |\n|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n",
                    phase ? "decode" : "prefill", tcol);
        } else {
            fprintf(o, "# %s\n", phase ? "decode (one step per repetition; graph or eager: see argv)" : "prefill (all chunks, all layers)");
            fprintf(o, "# %-18s %9s %5s %-12s %7s %4s %10s %11s %11s %8s %8s %8s  %s\n", "model", "context", "batch",
                    "config", "F", "reps", tcol, "tok/s/req", "tok/s", "speedup%", "amdahl%", "indexer%", "status");
        }
        for (int i = 0; i < n; i++) {
            const dsa_report_row *r = &rows[i];
            const dsa_point *p = r->pt;
            if (is_kernel(p) || is_decode(p) != phase) continue;
            char F[32];
            snprintf(F, sizeof F, "%d/%d", p->n_full, p->n_layers);
            if (md) fprintf(o, "| %s | %lld | %d | %s | %s | %d |", r->run->model.name, (long long)p->context, p->batch,
                            p->config, F, p->reps);
            else fprintf(o, "  %-18s %9lld %5d %-12s %7s %4d", r->run->model.name, (long long)p->context, p->batch,
                         p->config, F, p->reps);
            dsa_out_num(o, 10, phase ? 3 : 4, r->time); fputs(sep, o);
            dsa_out_num(o, 11, 1, r->tok_s_req); fputs(sep, o);
            dsa_out_num(o, 11, 1, r->tok_s_all); fputs(sep, o);
            dsa_out_num(o, 8, 1, r->speedup_pct); fputs(sep, o);
            dsa_out_num(o, 8, 1, r->amdahl_pct); fputs(sep, o);
            dsa_out_num(o, 8, 1, p->status == DSA_POINT_OK ? 100 * p->indexer_share : NAN); fputs(sep, o);
            if (p->status == DSA_POINT_OK) fprintf(o, "  ok");
            else fprintf(o, "  %s: %s", status_name(p->status), p->reason);
            fputs(md ? " |\n" : "\n", o);
        }
    }
}

/* `dsa-bench kernels` files: one row per kernel case, with the work counted per launch. */
static void print_kernels(FILE *o, const dsa_report_row *rows, int n, int md)
{
    int any = 0;
    for (int i = 0; i < n; i++) any |= is_kernel(rows[i].pt);
    if (!any) return;
    if (md)
        fprintf(o, "\n| kernel | context | batch | rows | reps | median us | TFLOP/s | GB/s | status |\n"
                   "|---|--:|--:|--:|--:|--:|--:|--:|---|\n");
    else
        fprintf(o, "# kernels (rows: queries of a prefill case, requests of a decode case)\n#  %-26s %9s %5s %6s %5s %11s %9s %9s  %s\n",
                "kernel", "context", "batch", "rows", "reps", "median_us", "TFLOP/s", "GB/s", "status");
    for (int i = 0; i < n; i++) {
        const dsa_point *p = rows[i].pt;
        if (!is_kernel(p)) continue;
        int ok = p->status == DSA_POINT_OK;
        double s = p->wall_median_ms * 1e-3;
        double us = ok ? 1e3 * p->wall_median_ms : NAN, tf = ok && p->flops > 0 ? p->flops / s / 1e12 : NAN,
               gb = ok && p->bytes > 0 ? p->bytes / s / 1e9 : NAN;
        if (md) fprintf(o, "| %s | %lld | %d | %d | %d |", p->config, (long long)p->context, p->batch, p->chunk, p->reps);
        else fprintf(o, "   %-26s %9lld %5d %6d %5d", p->config, (long long)p->context, p->batch, p->chunk, p->reps);
        dsa_out_num(o, 11, 1, us); fputs(md ? " |" : "", o);
        dsa_out_num(o, 9, 1, tf); fputs(md ? " |" : "", o);
        dsa_out_num(o, 9, 1, gb); fputs(md ? " |" : "", o);
        fprintf(o, "  %s%s%s%s\n", ok ? "ok" : status_name(p->status), ok ? "" : ": ", p->reason, md ? " |" : "");
    }
}

/* A point with component times: at least one besides idle (a point run without tracing has
 * none, or, in files of 37398cd, idle alone, the whole wall). */
static int has_components(const dsa_point *p)
{
    if (is_kernel(p) || p->status != DSA_POINT_OK || !p->comps) return 0;
    for (int c = 0; c < p->n_comps; c++)
        if (p->comps[c].component != DSA_C_IDLE) return 1;
    return 0;
}

/* Per point: one row per component (time, share of the wall, records per repetition), then the
 * coverage, the indexer share and the tracing counts. */
static void print_components(FILE *o, const dsa_report_row *rows, int n, int md)
{
    int any = 0;
    for (int i = 0; i < n; i++) any |= has_components(rows[i].pt);
    if (!any) return;
    const char *lead = md ? ">" : "#";
    fprintf(o, "%s%s components per point. time_ms: median per repetition of the summed durations of the component's\n"
               "%s   records (GPU: CUPTI kernels, memcpys and memsets of the traced repetitions; cpu: host timers);\n"
               "%s   share%%: of the wall of the same repetitions; idle = wall - busy; coverage = busy / wall\n",
            md ? "\n" : "", lead, lead, lead);
    for (int i = 0; i < n; i++) {
        const dsa_point *p = rows[i].pt;
        if (!has_components(p)) continue;
        fprintf(o, md ? "\n**%s %s context %lld batch %d config %s (%d/%d F)**: wall %.3f ms (%d reps)"
                      : "# %s %s context %lld batch %d config %s (%d/%d F): wall %.3f ms (%d reps)",
                rows[i].run->model.name, p->phase, (long long)p->context, p->batch, p->config, p->n_full, p->n_layers,
                p->wall_median_ms, p->reps);
        if (p->traced_reps > 0 && isnan(p->trace_overhead_pct)) /* --trace on: the traced pass is the wall */
            fprintf(o, ", traced (one pass: the wall includes tracing; overhead not measured)");
        else if (p->traced_reps > 0)
            fprintf(o, ", traced %.3f ms (%d reps), trace overhead %+.2f%%", p->wall_traced_median_ms, p->traced_reps,
                    p->trace_overhead_pct);
        if (md) fprintf(o, "\n\n| component | time ms | share %% | kernels/rep |\n|---|--:|--:|--:|\n");
        else fprintf(o, "\n#   %-12s %12s %8s %12s\n", "component", "time_ms", "share%", "kernels/rep");
        for (int c = 0; c < p->n_comps; c++) {
            const dsa_comp_stat *s = &p->comps[c];
            const char *name = dsa_component_name(s->component);
            if (md) fprintf(o, "| %s | %.4f | %.2f | %d |\n", name ? name : "?", s->median_ms, 100 * s->share, s->kernels);
            else fprintf(o, "    %-12s %12.4f %8.2f %12d\n", name ? name : "?", s->median_ms, 100 * s->share, s->kernels);
        }
        fprintf(o, "%scoverage %.2f%% (components / wall), idle %.2f%%; indexer %.2f%% (%.3f ms); dropped records %lld; "
                   "unattributed records %lld\n",
                md ? "\n" : "#   ", 100 * p->coverage, 100 * (1 - p->coverage), 100 * p->indexer_share, p->indexer_ms,
                (long long)p->dropped_records, (long long)p->unattributed);
        if (p->nonfinite >= 0)
            fprintf(o, "%sfinal hidden state: %lld NaN/Inf values%s\n", md ? "\n" : "#   ", (long long)p->nonfinite,
                    p->nonfinite ? " (WARNING)" : "");
    }
}

/* The SM clock of every point that has it (src/clocks.h): one row each, after the other tables. */
static void print_clocks(FILE *o, const dsa_report_row *rows, int n, int md)
{
    int any = 0;
    for (int i = 0; i < n; i++) any |= rows[i].pt->sm_clock_mean_mhz > 0;
    if (!any) return;
    if (md)
        fprintf(o, "\n> SM clock while each point ran (NVML, read every %d ms; throttled: share of readings with a "
                   "throttle reason)\n\n| model | phase | point | context | batch | begin MHz | end MHz | mean MHz | "
                   "min MHz | throttled %% | reasons |\n|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|\n",
                DSA_CLOCK_PERIOD_MS);
    else
        fprintf(o, "# SM clock while each point ran (NVML, read every %d ms; throttled%%: readings with a throttle "
                   "reason)\n#  %-20s %-7s %-26s %9s %5s %9s %8s %9s %8s %10s  %s\n",
                DSA_CLOCK_PERIOD_MS, "model", "phase", "point", "context", "batch", "begin_MHz", "end_MHz", "mean_MHz",
                "min_MHz", "throttled%", "reasons");
    for (int i = 0; i < n; i++) {
        const dsa_point *p = rows[i].pt;
        if (!(p->sm_clock_mean_mhz > 0)) continue;
        char why[96];
        dsa_clock_events_str((uint64_t)p->clock_events, why, (int)sizeof why);
        fprintf(o, md ? "| %s | %s | %s | %lld | %d | %.0f | %.0f | %.0f | %.0f | %.1f | %s |\n"
                      : "   %-20s %-7s %-26s %9lld %5d %9.0f %8.0f %9.0f %8.0f %10.1f  %s\n",
                rows[i].run->model.name, p->phase, p->config, (long long)p->context, p->batch, p->sm_clock_begin_mhz,
                p->sm_clock_end_mhz, p->sm_clock_mean_mhz, p->sm_clock_min_mhz, p->throttled_pct, why);
    }
}

/* The tracing figures and the component table of one point: json members (after the others),
 * or csv columns (one <component>_ms column per component, empty where it did not run). */
static void print_trace_fields(FILE *o, const dsa_point *p, int json)
{
    int ok = p->status == DSA_POINT_OK && !is_kernel(p), traced = ok && p->traced_reps > 0;
    int clk = p->sm_clock_mean_mhz > 0; /* kernel cases too */
    double v[] = {traced ? p->traced_reps : NAN, traced ? p->wall_traced_median_ms : NAN,
                  traced ? p->trace_overhead_pct : NAN, has_components(p) ? 100 * p->coverage : NAN,
                  ok ? p->indexer_ms : NAN, ok ? (double)p->dropped_records : NAN, ok ? (double)p->unattributed : NAN,
                  clk ? p->sm_clock_begin_mhz : NAN, clk ? p->sm_clock_end_mhz : NAN, clk ? p->sm_clock_mean_mhz : NAN,
                  clk ? p->sm_clock_min_mhz : NAN, clk ? p->throttled_pct : NAN, clk ? (double)p->clock_events : NAN};
    static const char *const names[] = {"traced_reps", "wall_traced_ms", "trace_overhead_pct", "coverage_pct",
                                        "indexer_ms", "dropped_records", "unattributed_records",
                                        "sm_clock_begin_mhz", "sm_clock_end_mhz", "sm_clock_mean_mhz",
                                        "sm_clock_min_mhz", "throttled_pct", "clock_events"};
    for (int c = 0; c < (int)(sizeof v / sizeof v[0]); c++) {
        if (json) {
            fprintf(o, ", \"%s\": ", names[c]);
            dsa_out_json_num(o, v[c], 6);
        } else {
            if (!isnan(v[c])) fprintf(o, "%.6g", v[c]);
            if (c + 1 < (int)(sizeof v / sizeof v[0])) fputc(',', o);
        }
    }
    if (json) {
        fputs(", \"components\": [", o);
        for (int c = 0; has_components(p) && c < p->n_comps; c++) {
            const dsa_comp_stat *s = &p->comps[c];
            const char *name = dsa_component_name(s->component);
            fprintf(o, "%s{\"component\": ", c ? ", " : "");
            dsa_out_json_str(o, name ? name : "?");
            fputs(", \"time_ms\": ", o);
            dsa_out_json_num(o, s->median_ms, 6);
            fputs(", \"min_ms\": ", o);
            dsa_out_json_num(o, s->min_ms, 6);
            fputs(", \"stdev_ms\": ", o);
            dsa_out_json_num(o, s->stdev_ms, 6);
            fputs(", \"share_pct\": ", o);
            dsa_out_json_num(o, 100 * s->share, 6);
            fprintf(o, ", \"kernels_per_rep\": %d}", s->kernels);
        }
        fputc(']', o);
        return;
    }
    for (int c = 0; c < DSA_NCOMP; c++) {
        fputc(',', o);
        for (int k = 0; has_components(p) && k < p->n_comps; k++)
            if (p->comps[k].component == c) fprintf(o, "%.6g", p->comps[k].median_ms);
    }
}

static void print_records(FILE *o, const dsa_report_row *rows, int n, int json)
{
    static const char *const cols[] = {"model", "phase", "context", "batch", "chunk", "config", "n_full", "n_layers",
                                       "reps", "time", "time_unit", "tok_s_per_request", "tok_s", "speedup_pct",
                                       "amdahl_pct", "indexer_share_pct", "status", "reason"};
    int nc = (int)(sizeof cols / sizeof cols[0]);
    if (json) fputs("[\n", o);
    else {
        for (int c = 0; c < nc; c++) fprintf(o, "%s,", cols[c]);
        fputs("traced_reps,wall_traced_ms,trace_overhead_pct,coverage_pct,indexer_ms,dropped_records,"
              "unattributed_records,sm_clock_begin_mhz,sm_clock_end_mhz,sm_clock_mean_mhz,sm_clock_min_mhz,"
              "throttled_pct,clock_events",
              o);
        for (int c = 0; c < DSA_NCOMP; c++) fprintf(o, ",%s_ms", dsa_component_name(c));
        fputc('\n', o);
    }
    for (int i = 0; i < n; i++) {
        const dsa_report_row *r = &rows[i];
        const dsa_point *p = r->pt;
        double v[] = {NAN, NAN, (double)p->context, p->batch, p->chunk, NAN, p->n_full, p->n_layers, p->reps, r->time,
                      NAN, r->tok_s_req, r->tok_s_all, r->speedup_pct, r->amdahl_pct,
                      p->status == DSA_POINT_OK ? 100 * p->indexer_share : NAN, NAN, NAN};
        const char *s[] = {r->run->model.name, p->phase, NULL, NULL, NULL, p->config, NULL, NULL, NULL, NULL,
                           is_decode(p) ? "ms" : "s", NULL, NULL, NULL, NULL, NULL, status_name(p->status), p->reason};
        if (json) fputs("  {", o);
        for (int c = 0; c < nc; c++) {
            if (json) {
                fprintf(o, "%s\"%s\": ", c ? ", " : "", cols[c]);
                if (s[c]) dsa_out_json_str(o, s[c]);
                else dsa_out_json_num(o, v[c], 6);
            } else {
                if (s[c]) {
                    /* csv: quote fields that could hold commas */
                    if (strpbrk(s[c], ",\"")) fprintf(o, "\"%s\"", s[c]);
                    else fputs(s[c], o);
                } else if (!isnan(v[c])) fprintf(o, "%.6g", v[c]);
                fputc(',', o);
            }
        }
        print_trace_fields(o, p, json);
        if (json) fprintf(o, "}%s\n", i + 1 < n ? "," : "");
        else fputc('\n', o);
    }
    if (json) fputs("]\n", o);
}

int dsa_report_print(FILE *o, const dsa_run *runs, int n_runs, int format)
{
    dsa_report_row *rows;
    int n;
    if (dsa_report_rows(runs, n_runs, &rows, &n)) return -1;
    if (format == DSA_FMT_TEXT || format == DSA_FMT_MD) {
        for (int r = 0; r < n_runs; r++) {
            const dsa_run *u = &runs[r];
            fprintf(o, "%s %s: %s, %d of %d layers, %s %s weights, %s indexer; device %s (%s); %s, git %s\n",
                    format == DSA_FMT_MD ? ">" : "#", u->utc, u->model.name, u->layers_run, u->model.n_layers,
                    u->shared_weights ? "shared" : "per-layer", u->weight_fp8 ? "fp8" : "bf16",
                    u->fused_indexer ? "fused" : "split", u->dev.name, u->dev.kind, u->schema, u->git_sha);
        }
        fprintf(o, "%s speedup%%: full-indexer time / this time; amdahl%%: 1/((1-s)+s*F/layers) from the full "
                   "point's indexer share s\n",
                format == DSA_FMT_MD ? ">" : "#");
        print_text(o, rows, n, format == DSA_FMT_MD);
        print_kernels(o, rows, n, format == DSA_FMT_MD);
        print_components(o, rows, n, format == DSA_FMT_MD);
        print_clocks(o, rows, n, format == DSA_FMT_MD);
    } else
        print_records(o, rows, n, format == DSA_FMT_JSON);
    free(rows);
    return 0;
}
