/* src/paper.c — the IndexCache paper's figures and the side-by-side table (see paper.h). */
#include "paper.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "schedule.h"

const dsa_paper_figures *dsa_paper_indexcache(void)
{
    /* Read off the bar and point labels of the two figures (reference/indexcache/figures/). */
    static const dsa_paper_figures f = {
        .title = "IndexCache (Bai et al., arXiv 2603.12201)",
        .source = "reference/indexcache: figure_method.png (a)-(c), figure_profiling.png",
        .setup = "30B DSA model (47 DSA layers), H100, SGLang + IndexCache patch; batch sizes not stated",
        .context_label = {"10K", "60K", "120K", "200K"},
        .context_k = {10, 60, 120, 200},
        .prefill_speedup_pct = {{121, 118, 130, 142}, {127, 131, 151, 182}},
        .decode_request_speedup_pct = {{115, 119, 122, 126}, {124, 133, 140, 148}},
        .decode_full_speedup_pct = {{114, 122, 126, 128}, {123, 137, 146, 151}},
        .indexer_share_prefill_pct = {27, 50, 68, 81},
        .indexer_share_decode_pct = {27, 31, 38, 41},
    };
    return &f;
}

int dsa_paper_context_index(const dsa_paper_figures *f, int64_t tokens)
{
    for (int i = 0; i < DSA_PAPER_NCTX; i++)
        if (tokens == (int64_t)f->context_k[i] * 1000 || tokens == (int64_t)f->context_k[i] * 1024) return i;
    return -1;
}

enum { CFG_FULL, CFG_HALF, CFG_QUARTER, CFG_OTHER };

/* Which of the paper's configs a point ran, from its F/S string (the config may be spelled
 * 1/4, freq:4 or as a pattern). */
static int config_class(const dsa_point *p)
{
    if (p->n_layers > 0 && p->n_full == p->n_layers) return CFG_FULL;
    char fs[DSA_MAX_LAYERS + 1];
    dsa_err e;
    for (int n = 2; n <= 4; n += 2)
        if (p->n_layers > 0 && !dsa_schedule_from_freq(n, p->n_layers, fs, &e) && !strcmp(fs, p->fs))
            return n == 2 ? CFG_HALF : CFG_QUARTER;
    return CFG_OTHER;
}

/* One line of the table: a figure, an indexer setting, measured and paper per context. */
typedef struct sbs_line {
    const char *figure; /* column-safe name */
    const char *indexer;
    int batch;          /* decode rows: the batch measured; 0 otherwise */
    double meas[DSA_PAPER_NCTX], paper[DSA_PAPER_NCTX];
} sbs_line;

#define N_LINES 8

static int is_phase(const dsa_point *p, const char *phase) { return strcmp(p->phase, phase) == 0; }

/* The first row of rows with this phase, context index, config class and (decode) batch. */
static const dsa_report_row *find(const dsa_report_row *rows, int n, const dsa_paper_figures *f, const char *phase,
                                  int ci, int cls, int batch)
{
    for (int i = 0; i < n; i++) {
        const dsa_point *p = rows[i].pt;
        if (p->status != DSA_POINT_OK || !is_phase(p, phase) || dsa_paper_context_index(f, p->context) != ci)
            continue;
        if (batch && p->batch != batch) continue;
        if (config_class(p) == cls) return &rows[i];
    }
    return NULL;
}

static double share_pct(const dsa_report_row *r)
{
    if (!r) return NAN;
    const dsa_point *p = r->pt;
    if (isnan(p->indexer_share) || (p->n_comps == 0 && p->indexer_share == 0)) return NAN;
    return 100 * p->indexer_share;
}

static double speedup_pct(const dsa_report_row *r) { return r ? r->speedup_pct : NAN; }

static void cell(FILE *o, int w, double v)
{
    if (isnan(v)) fprintf(o, " %*s", w, "-");
    else fprintf(o, " %*.1f", w, v);
}

int dsa_paper_side_by_side(FILE *o, const dsa_run *runs, int n_runs, int format)
{
    const dsa_paper_figures *f = dsa_paper_indexcache();
    dsa_report_row *rows;
    int n;
    if (dsa_report_rows(runs, n_runs, &rows, &n)) return -1;

    int present[DSA_PAPER_NCTX] = {0}, any = 0, bmin = 0, bmax = 0;
    for (int i = 0; i < n; i++) {
        const dsa_point *p = rows[i].pt;
        int ci = dsa_paper_context_index(f, p->context);
        if (ci < 0 || is_phase(p, "kernel")) continue;
        present[ci] = any = 1;
        if (is_phase(p, "decode") && p->status == DSA_POINT_OK) {
            if (!bmin || p->batch < bmin) bmin = p->batch;
            if (p->batch > bmax) bmax = p->batch;
        }
    }

    sbs_line lines[N_LINES] = {
        {"prefill_speedup%", "1/2", 0, {0}, {0}},       {"prefill_speedup%", "1/4", 0, {0}, {0}},
        {"decode_req_speedup%", "1/2", bmin, {0}, {0}}, {"decode_req_speedup%", "1/4", bmin, {0}, {0}},
        {"decode_full_speedup%", "1/2", bmax, {0}, {0}}, {"decode_full_speedup%", "1/4", bmax, {0}, {0}},
        {"indexer_share_prefill%", "full", 0, {0}, {0}}, {"indexer_share_decode%", "full", bmin, {0}, {0}},
    };
    for (int ci = 0; ci < DSA_PAPER_NCTX; ci++) {
        for (int h = 0; h < 2; h++) {
            int cls = h ? CFG_QUARTER : CFG_HALF;
            lines[0 + h].meas[ci] = speedup_pct(find(rows, n, f, "prefill", ci, cls, 0));
            lines[0 + h].paper[ci] = f->prefill_speedup_pct[h][ci];
            lines[2 + h].meas[ci] = bmin ? speedup_pct(find(rows, n, f, "decode", ci, cls, bmin)) : NAN;
            lines[2 + h].paper[ci] = f->decode_request_speedup_pct[h][ci];
            lines[4 + h].meas[ci] = bmax ? speedup_pct(find(rows, n, f, "decode", ci, cls, bmax)) : NAN;
            lines[4 + h].paper[ci] = f->decode_full_speedup_pct[h][ci];
        }
        lines[6].meas[ci] = share_pct(find(rows, n, f, "prefill", ci, CFG_FULL, 0));
        lines[6].paper[ci] = f->indexer_share_prefill_pct[ci];
        lines[7].meas[ci] = bmin ? share_pct(find(rows, n, f, "decode", ci, CFG_FULL, bmin)) : NAN;
        lines[7].paper[ci] = f->indexer_share_decode_pct[ci];
    }
    free(rows);

    if (format == DSA_FMT_CSV || format == DSA_FMT_JSON) {
        int json = format == DSA_FMT_JSON, first = 1;
        fputs(json ? "[\n" : "figure,indexer,batch,context,measured,paper\n", o);
        for (int l = 0; l < N_LINES; l++)
            for (int ci = 0; ci < DSA_PAPER_NCTX; ci++) {
                if (!present[ci]) continue;
                double m = lines[l].meas[ci];
                if (json) {
                    fprintf(o, "%s  {\"figure\": \"%s\", \"indexer\": \"%s\", \"batch\": %d, \"context\": \"%s\", "
                               "\"measured\": ",
                            first ? "" : ",\n", lines[l].figure, lines[l].indexer, lines[l].batch,
                            f->context_label[ci]);
                    if (isnan(m)) fputs("null", o);
                    else fprintf(o, "%.6g", m);
                    fprintf(o, ", \"paper\": %.6g}", lines[l].paper[ci]);
                } else {
                    fprintf(o, "%s,%s,%d,%s,", lines[l].figure, lines[l].indexer, lines[l].batch, f->context_label[ci]);
                    if (!isnan(m)) fprintf(o, "%.6g", m);
                    fprintf(o, ",%.6g\n", lines[l].paper[ci]);
                }
                first = 0;
            }
        fputs(json ? "\n]\n" : "", o);
        return 0;
    }

    int md = format == DSA_FMT_MD;
    const char *lead = md ? ">" : "#";
    fprintf(o, "%s side by side with %s: relative speedup over the full indexer and indexer share, in %%\n", lead,
            f->title);
    fprintf(o, "%s paper: %s (%s)\n", lead, f->setup, f->source);
    for (int r = 0; r < n_runs; r++)
        fprintf(o, "%s this run: %s, %d of %d layers, %s weights; %s (%s); %s\n", lead, runs[r].model.name,
                runs[r].layers_run, runs[r].model.n_layers, runs[r].shared_weights ? "shared" : "per-layer",
                runs[r].dev.name, runs[r].dev.kind, runs[r].utc);
    fprintf(o, "%s contexts: 10K is a point of 10000 or 10240 tokens (60K, 120K, 200K alike); 1/2 and 1/4 by the F/S "
               "string; shares of the full-indexer points\n",
            lead);
    if (bmin)
        fprintf(o, "%s decode: per-request speedup and indexer share at batch %d, full-throughput speedup at batch %d%s\n",
                lead, bmin, bmax, bmin == bmax ? " (one batch: both speedups are the same ratio of step times)" : "");
    if (!any) {
        fprintf(o, "%s no point at the paper's contexts (10K, 60K, 120K, 200K)\n", lead);
        return 0;
    }
    if (md) {
        fputs("\n| figure | indexer | batch |", o);
        for (int ci = 0; ci < DSA_PAPER_NCTX; ci++)
            if (present[ci]) fprintf(o, " %s measured | %s paper |", f->context_label[ci], f->context_label[ci]);
        fputs("\n|---|---|--:|", o);
        for (int ci = 0; ci < DSA_PAPER_NCTX; ci++)
            if (present[ci]) fputs("--:|--:|", o);
        fputc('\n', o);
    } else {
        fprintf(o, "#  %-22s %-7s %5s", "figure", "indexer", "batch");
        for (int ci = 0; ci < DSA_PAPER_NCTX; ci++) {
            if (!present[ci]) continue;
            char a[24], b[24];
            snprintf(a, sizeof a, "meas_%s", f->context_label[ci]);
            snprintf(b, sizeof b, "paper_%s", f->context_label[ci]);
            fprintf(o, " %10s %10s", a, b);
        }
        fputc('\n', o);
    }
    for (int l = 0; l < N_LINES; l++) {
        const sbs_line *s = &lines[l];
        char batch[16] = "-";
        if (s->batch) snprintf(batch, sizeof batch, "%d", s->batch);
        if (md) fprintf(o, "| %s | %s | %s |", s->figure, s->indexer, batch);
        else fprintf(o, "   %-22s %-7s %5s", s->figure, s->indexer, batch);
        for (int ci = 0; ci < DSA_PAPER_NCTX; ci++) {
            if (!present[ci]) continue;
            cell(o, md ? 0 : 10, s->meas[ci]);
            if (md) fputs(" |", o);
            cell(o, md ? 0 : 10, s->paper[ci]);
            if (md) fputs(" |", o);
        }
        fputc('\n', o);
    }
    return 0;
}
