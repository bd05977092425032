/* tests/test_plot.c — `dsa-bench plot` (src/plot.c) on runs built here with known numbers: the
 * .dat files carry the expected series and values (speedup = full's wall / this wall, indexer
 * share, component medians), figures the data cannot support are skipped with a reason, images
 * are real PNG and SVG files when gnuplot is installed, and bad folders or a failing gnuplot
 * give one line and leave no file behind. Also results/kernels-h200.h5 (a real `kernels` file)
 * for kernels_roofline and compare. Works in a folder under the current directory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "check.h"
#include "h5report.h"
#include "plot.h"
#include "results.h"

/* ---- a .dat reader: data rows as whitespace tokens ("quoted strings" are one token), each
 * with its gnuplot index (blocks separated by two blank lines), and the last header's names. */
#define MAX_ROWS 128
#define MAX_TOK 32
typedef struct dat {
    int n;
    int block[MAX_ROWS];
    int ntok[MAX_ROWS];
    char tok[MAX_ROWS][MAX_TOK][64];
    int ncol;
    char col[MAX_TOK][64]; /* header of the first block */
    char text[16384];      /* the whole file */
} dat;

static int split(const char *line, char out[][64], int max)
{
    int n = 0;
    const char *p = line;
    while (*p && n < max) {
        while (*p == ' ' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        const char *end;
        if (*p == '"') {
            end = strchr(p + 1, '"');
            if (!end) end = p + strlen(p);
            snprintf(out[n++], 64, "%.*s", (int)(end - p - 1), p + 1);
            p = *end ? end + 1 : end;
        } else {
            end = p + strcspn(p, " \t\n");
            snprintf(out[n++], 64, "%.*s", (int)(end - p), p);
            p = end;
        }
    }
    return n;
}

static int dat_read(const char *path, dat *d)
{
    memset(d, 0, sizeof *d);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t len = fread(d->text, 1, sizeof d->text - 1, f);
    d->text[len] = 0;
    fclose(f);
    int block = 0, blanks = 0;
    char header[1024] = "";
    for (char *line = d->text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        char buf[1024];
        snprintf(buf, sizeof buf, "%.*s", next ? (int)(next - line) : (int)strlen(line), line);
        if (next) next++;
        if (!buf[0]) {
            blanks++;
            continue;
        }
        if (buf[0] == '#') {
            snprintf(header, sizeof header, "%s", buf + 1);
            continue;
        }
        if (blanks >= 2 && d->n) block++;
        blanks = 0;
        if (!d->n) d->ncol = split(header, d->col, MAX_TOK);
        if (d->n < MAX_ROWS) {
            d->block[d->n] = block;
            d->ntok[d->n] = split(buf, d->tok[d->n], MAX_TOK);
            d->n++;
        }
    }
    return 0;
}

static int col_of(const dat *d, const char *name)
{
    for (int i = 0; i < d->ncol; i++)
        if (!strcmp(d->col[i], name)) return i;
    return -1;
}

/* The value in column `name` of the row whose column `key` equals `want` (and block, if >= 0). */
static double dat_get(const dat *d, int block, const char *key, const char *want, const char *key2, const char *want2,
                      const char *name)
{
    int k = col_of(d, key), k2 = key2 ? col_of(d, key2) : -1, c = col_of(d, name);
    if (k < 0 || c < 0 || (key2 && k2 < 0)) return NAN;
    for (int i = 0; i < d->n; i++)
        if ((block < 0 || d->block[i] == block) && !strcmp(d->tok[i][k], want) && (!key2 || !strcmp(d->tok[i][k2], want2)))
            return atof(d->tok[i][c]);
    return NAN;
}

static int exists(const char *dir, const char *name)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

static int tmp_files_in(const char *dir)
{
    DIR *dd = opendir(dir);
    int n = 0;
    if (!dd) return 0;
    for (struct dirent *de; (de = readdir(dd));) n += strstr(de->d_name, ".tmp") != NULL;
    closedir(dd);
    return n;
}

static void rm_rf(const char *dir)
{
    DIR *dd = opendir(dir);
    if (!dd) return;
    for (struct dirent *de; (de = readdir(dd));) {
        if (de->d_name[0] == '.') continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(dd);
    rmdir(dir);
}

/* ---- a run with known numbers: 4 layers, prefill at 10K and 60K with full, 1/2, 1/4;
 * decode at 60K, batches 1 and 8, full and 1/4; and one failed point. */
typedef struct comp_ms { int c; double ms; } comp_ms;

static dsa_point *add(dsa_run *r, const char *phase, int64_t ctx, int batch, const char *cfg, int n_full, double wall,
                      const comp_ms *comps, int n_comps)
{
    dsa_point *p = dsa_run_add_point(r);
    if (!p) return NULL;
    snprintf(p->phase, sizeof p->phase, "%s", phase);
    p->context = ctx;
    p->batch = batch;
    p->chunk = 8192;
    snprintf(p->config, sizeof p->config, "%s", cfg);
    p->n_full = n_full;
    p->n_layers = 4;
    for (int l = 0; l < 4; l++) p->fs[l] = l < n_full ? 'F' : 'S';
    p->reps = 3;
    p->wall_median_ms = wall;
    p->wall_min_ms = wall * 0.99;
    p->wall_stdev_ms = wall * 0.005;
    p->tok_s = !strcmp(phase, "decode") ? batch / (wall * 1e-3) : ctx / (wall * 1e-3);
    p->samples = malloc(3 * sizeof *p->samples);
    if (p->samples) p->samples[0] = wall * 0.99, p->samples[1] = wall, p->samples[2] = wall * 1.01;
    p->comps = calloc((size_t)n_comps + 1, sizeof *p->comps);
    double idx = 0;
    for (int i = 0; i < n_comps && p->comps; i++) {
        p->comps[i] = (dsa_comp_stat){comps[i].c, comps[i].ms, comps[i].ms, 0, comps[i].ms / wall, 1};
        if (dsa_component_is_indexer(comps[i].c)) idx += comps[i].ms;
    }
    p->n_comps = p->comps ? n_comps : 0;
    p->indexer_ms = idx;
    p->indexer_share = idx / wall;
    p->status = DSA_POINT_OK;
    return p;
}

/* Components add up to the wall: q_proj 10%, idx_logits s, sparse_attn rest - 5%, idle 5%. */
static dsa_point *add_split(dsa_run *r, const char *phase, int64_t ctx, int batch, const char *cfg, int n_full, double wall,
                            double idx_share)
{
    comp_ms c[4] = {{DSA_C_Q_PROJ, 0.10 * wall}, {DSA_C_IDX_LOGITS, idx_share * wall},
                    {DSA_C_SPARSE_ATTN, (0.85 - idx_share) * wall}, {DSA_C_IDLE, 0.05 * wall}};
    return add(r, phase, ctx, batch, cfg, n_full, wall, c, 4);
}

static void base_run(dsa_run *r, const char *kind)
{
    memset(r, 0, sizeof *r);
    snprintf(r->schema, sizeof r->schema, "%s", DSA_SCHEMA);
    snprintf(r->dev.kind, sizeof r->dev.kind, "%s", kind);
    snprintf(r->dev.name, sizeof r->dev.name, "Test Device");
    snprintf(r->model.name, sizeof r->model.name, "tiny");
    r->model.n_layers = 4;
    r->layers_run = 4;
}

static void build_run(dsa_run *r)
{
    base_run(r, "cpu");
    add_split(r, "prefill", 10000, 1, "full", 4, 100, 0.30);
    add_split(r, "prefill", 10000, 1, "1/2", 3, 80, 0.24);
    add_split(r, "prefill", 10000, 1, "1/4", 2, 64, 0.20);
    add_split(r, "prefill", 60000, 1, "full", 4, 400, 0.60);
    add_split(r, "prefill", 60000, 1, "1/2", 3, 250, 0.48);
    add_split(r, "prefill", 60000, 1, "1/4", 2, 200, 0.30);
    add_split(r, "decode", 60000, 1, "full", 4, 10, 0.25);
    add_split(r, "decode", 60000, 1, "1/4", 2, 8, 0.125);
    add_split(r, "decode", 60000, 8, "full", 4, 40, 0.40);
    /* a GPU-style point: components from traced repetitions whose wall (30) exceeds the headline (25) */
    dsa_point *traced = add_split(r, "decode", 60000, 8, "1/4", 2, 30, 0.20);
    traced->wall_median_ms = 25;
    traced->tok_s = 8 / 25e-3;
    traced->traced_reps = 3;
    traced->wall_traced_median_ms = 30;
    dsa_point *bad = add_split(r, "decode", 120000, 8, "full", 4, 1, 0.5); /* must not appear */
    bad->status = DSA_POINT_FAILED;
    snprintf(bad->reason, sizeof bad->reason, "out of memory");
}

static char logbuf[16384];

static int plot(const dsa_run *runs, int n, const char *dir, int render, const char *gnuplot, dsa_err *e)
{
    const char *names[4] = {"base.h5", "new.h5", "third.h5", "fourth.h5"};
    FILE *log = fmemopen(logbuf, sizeof logbuf, "w");
    dsa_plot_opts o = {.out_dir = dir, .gnuplot = gnuplot, .render = render, .log = log};
    int rc = dsa_plot(runs, names, n, &o, e);
    if (log) fclose(log);
    if (rc) printf("test_plot: dsa_plot into %s: %s\n", dir, e->msg); /* expected or not, it helps */
    return rc;
}

static void test_run_figures(void)
{
    dsa_run r;
    build_run(&r);
    dsa_err e = {{0}};
    rm_rf("plot_dat");
    CHECK_INT(plot(&r, 1, "plot_dat", 0, NULL, &e), 0);
    static const char *const figs[] = {"speedup_prefill", "speedup_decode", "indexer_share", "breakdown_prefill",
                                       "breakdown_decode"};
    for (int i = 0; i < 5; i++) {
        char n[64];
        snprintf(n, sizeof n, "%s.dat", figs[i]);
        CHECK(exists("plot_dat", n));
        snprintf(n, sizeof n, "%s.gp", figs[i]);
        CHECK(exists("plot_dat", n));
        snprintf(n, sizeof n, "%s.png", figs[i]);
        CHECK(!exists("plot_dat", n)); /* render = 0 */
        char made[96];
        snprintf(made, sizeof made, "plot: made plot_dat/%s.", figs[i]);
        CHECK(strstr(logbuf, made) != NULL);
    }
    CHECK(strstr(logbuf, "skipped kernels_roofline: no kernels file") != NULL);
    CHECK(strstr(logbuf, "skipped compare: needs two files of the same kind") != NULL);
    CHECK(!exists("plot_dat", "kernels_roofline.dat"));
    CHECK_INT(tmp_files_in("plot_dat"), 0);

    dat d;
    /* speedup_prefill: one block per config in legend order: full, 1/2, 1/4; full = 100 everywhere */
    CHECK_INT(dat_read("plot_dat/speedup_prefill.dat", &d), 0);
    CHECK_INT(d.n, 6);
    CHECK(col_of(&d, "speedup_pct") >= 0 && col_of(&d, "time_s") >= 0);
    CHECK_NEAR(dat_get(&d, 0, "context", "10000", "config", "full", "speedup_pct"), 100, 1e-9);
    CHECK_NEAR(dat_get(&d, 0, "context", "60000", "config", "full", "speedup_pct"), 100, 1e-9);
    CHECK_NEAR(dat_get(&d, 1, "context", "10000", "config", "1/2", "speedup_pct"), 125, 1e-3);
    CHECK_NEAR(dat_get(&d, 1, "context", "60000", "config", "1/2", "speedup_pct"), 160, 1e-3);
    CHECK_NEAR(dat_get(&d, 2, "context", "10000", "config", "1/4", "speedup_pct"), 156.25, 1e-3);
    CHECK_NEAR(dat_get(&d, 2, "context", "60000", "config", "1/4", "speedup_pct"), 200, 1e-3);
    CHECK_NEAR(dat_get(&d, 2, "context", "60000", "config", "1/4", "time_s"), 0.2, 1e-9);
    /* bars of a cluster sit side by side around the context's slot */
    double x0 = dat_get(&d, 0, "context", "60000", NULL, NULL, "x"), x2 = dat_get(&d, 2, "context", "60000", NULL, NULL, "x");
    CHECK(x0 < 1 && x2 > 1 && x2 - x0 < 0.8);

    /* speedup_decode: blocks (batch 1: full, 1/4), (batch 8: full, 1/4); full throughput = B / step */
    CHECK_INT(dat_read("plot_dat/speedup_decode.dat", &d), 0);
    CHECK_INT(d.n, 4);
    CHECK_NEAR(dat_get(&d, 0, "batch", "1", "config", "full", "speedup_pct"), 100, 1e-9);
    CHECK_NEAR(dat_get(&d, 1, "batch", "1", "config", "1/4", "speedup_pct"), 125, 1e-3);
    CHECK_NEAR(dat_get(&d, 2, "batch", "8", "config", "full", "speedup_pct"), 100, 1e-9);
    CHECK_NEAR(dat_get(&d, 3, "batch", "8", "config", "1/4", "speedup_pct"), 160, 1e-3);
    CHECK_NEAR(dat_get(&d, 3, "batch", "8", "config", "1/4", "tok_s_all"), 8 / 0.025, 1e-2);
    CHECK_NEAR(dat_get(&d, 3, "batch", "8", "config", "1/4", "tok_s_req"), 1 / 0.025, 1e-2);
    CHECK(strstr(d.text, "120000") == NULL); /* the failed point */
    const char *gp = "plot_dat/speedup_decode.gp";
    FILE *f = fopen(gp, "r");
    char script[16384] = "";
    if (f) {
        script[fread(script, 1, sizeof script - 1, f)] = 0;
        fclose(f);
    }
    CHECK(strstr(script, "batch 1 (per-request throughput)") != NULL);
    CHECK(strstr(script, "batch 8 (full throughput)") != NULL);
    CHECK(strstr(script, "set multiplot layout 1,2") != NULL);
    CHECK(strstr(script, "out.\".\".fmt") != NULL);

    /* indexer_share: the full config only; prefill line, then decode per batch */
    CHECK_INT(dat_read("plot_dat/indexer_share.dat", &d), 0);
    CHECK_INT(d.n, 4);
    CHECK_NEAR(dat_get(&d, 0, "phase", "prefill", "context", "10000", "share_pct"), 30, 1e-3);
    CHECK_NEAR(dat_get(&d, 0, "phase", "prefill", "context", "60000", "share_pct"), 60, 1e-3);
    CHECK_NEAR(dat_get(&d, 1, "phase", "decode", "batch", "1", "share_pct"), 25, 1e-3);
    CHECK_NEAR(dat_get(&d, 2, "phase", "decode", "batch", "8", "share_pct"), 40, 1e-3);

    /* breakdown_prefill: one row per (context, config), components present in enum order */
    CHECK_INT(dat_read("plot_dat/breakdown_prefill.dat", &d), 0);
    CHECK_INT(d.n, 6);
    CHECK_INT(d.ncol, 10);
    if (d.ncol == 10) {
        CHECK_STR(d.col[5], "q_proj_ms");
        CHECK_STR(d.col[6], "idx_logits_ms");
        CHECK_STR(d.col[7], "sparse_attn_ms");
        CHECK_STR(d.col[8], "idle_ms");
        CHECK_STR(d.col[9], "headline_ms"); /* the bar's label; wall_ms (the components' reps) divides */
    }
    CHECK(col_of(&d, "embed_ms") < 0); /* never ran: not in the legend */
    CHECK_NEAR(dat_get(&d, -1, "context", "60000", "config", "1/2", "wall_ms"), 250, 1e-9);
    CHECK_NEAR(dat_get(&d, -1, "context", "60000", "config", "1/2", "idx_logits_ms"), 0.48 * 250, 1e-6);
    CHECK_NEAR(dat_get(&d, -1, "context", "10000", "config", "1/4", "idle_ms"), 0.05 * 64, 1e-6);
    /* groups: a gap between the two contexts */
    CHECK_NEAR(dat_get(&d, -1, "context", "60000", "config", "full", "x") - dat_get(&d, -1, "context", "10000", "config", "1/4", "x"), 2, 1e-9);
    f = fopen("plot_dat/breakdown_prefill.gp", "r");
    script[0] = 0;
    if (f) {
        script[fread(script, 1, sizeof script - 1, f)] = 0;
        fclose(f);
    }
    /* idle on top: drawn first (tallest cumulative box), with every column up to the last */
    char *idle = strstr(script, "title \"idle\""), *qp = strstr(script, "title \"q_proj\"");
    CHECK(idle && qp && idle < qp);
    CHECK(strstr(script, "sum [j=6:9] column(j)") != NULL);
    CHECK(strstr(script, "embed") == NULL);

    CHECK_INT(dat_read("plot_dat/breakdown_decode.dat", &d), 0);
    CHECK_INT(d.n, 4);
    CHECK_NEAR(dat_get(&d, -1, "batch", "8", "config", "1/4", "sparse_attn_ms"), (0.85 - 0.20) * 30, 1e-6);
    /* the stack divides by the traced wall (sums to 100%); the label is the untraced headline */
    CHECK_NEAR(dat_get(&d, -1, "batch", "8", "config", "1/4", "wall_ms"), 30, 1e-9);
    CHECK_NEAR(dat_get(&d, -1, "batch", "8", "config", "1/4", "headline_ms"), 25, 1e-9);
    rm_rf("plot_dat");
    dsa_run_free(&r);
}

/* A GPU file written before CUPTI attribution: every point's only component is idle. */
static void test_no_components(void)
{
    dsa_run r;
    base_run(&r, "cuda");
    comp_ms idle = {DSA_C_IDLE, 0};
    idle.ms = 100;
    dsa_point *p = add(&r, "prefill", 60000, 1, "full", 4, 100, &idle, 1);
    p->indexer_share = NAN;
    idle.ms = 70;
    p = add(&r, "prefill", 60000, 1, "1/4", 2, 70, &idle, 1);
    p->indexer_share = NAN;
    dsa_err e = {{0}};
    rm_rf("plot_gpu");
    CHECK_INT(plot(&r, 1, "plot_gpu", 0, NULL, &e), 0);
    CHECK(strstr(logbuf, "made plot_gpu/speedup_prefill") != NULL);
    CHECK(strstr(logbuf, "skipped speedup_decode: no decode points measured") != NULL);
    CHECK(strstr(logbuf, "skipped indexer_share: no component times") != NULL);
    CHECK(strstr(logbuf, "skipped breakdown_prefill: no component times") != NULL);
    CHECK(strstr(logbuf, "skipped breakdown_decode: no decode points measured") != NULL);
    CHECK(!exists("plot_gpu", "breakdown_prefill.dat"));
    dat d;
    CHECK_INT(dat_read("plot_gpu/speedup_prefill.dat", &d), 0);
    CHECK_NEAR(dat_get(&d, 1, "config", "1/4", NULL, NULL, "speedup_pct"), 100 * 100.0 / 70, 1e-3);
    rm_rf("plot_gpu");

    /* nothing to plot at all: an error, one line */
    dsa_run empty;
    base_run(&empty, "cuda");
    p = add(&empty, "prefill", 60000, 1, "1/4", 2, 70, &idle, 1);
    p->status = DSA_POINT_SKIPPED;
    CHECK_INT(plot(&empty, 1, "plot_gpu", 0, NULL, &e), DSA_EXIT_RUNTIME);
    CHECK(strstr(e.msg, "no figure") != NULL && !strchr(e.msg, '\n'));
    rm_rf("plot_gpu");
    dsa_run_free(&empty);
    dsa_run_free(&r);
}

/* results/kernels-h200.h5: a real `kernels` run, with the ceilings measured in the same run. */
static void test_kernels(const char *data)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/../../results/kernels-h200.h5", data);
    dsa_run k[2];
    dsa_err e = {{0}};
    memset(k, 0, sizeof k);
    if (dsa_h5_read(path, &k[0], &e) || dsa_h5_read(path, &k[1], &e)) {
        fprintf(stderr, "test_plot: cannot read %s: %s\n", path, e.msg);
        CHECK(0);
        return;
    }
    /* NEW: one case 1.5x slower (samples too, so its noise stays), one 2x faster */
    int slow = -1, fast = -1;
    for (int i = 0; i < k[1].n_points; i++) {
        dsa_point *p = &k[1].points[i];
        int which = !strcmp(p->config, "topk_prefill h=0") && p->context == 200000 ? 1
                  : !strcmp(p->config, "idx_prep h=64")                             ? 2 : 0;
        if (!which) continue;
        double f = which == 1 ? 1.5 : 0.5;
        p->wall_median_ms *= f, p->wall_min_ms *= f, p->wall_stdev_ms *= f;
        for (int s = 0; s < p->reps; s++) p->samples[s] *= f;
        if (which == 1) slow = i;
        else fast = i;
    }
    CHECK(slow >= 0 && fast >= 0);
    rm_rf("plot_k");
    CHECK_INT(plot(k, 2, "plot_k", 0, NULL, &e), 0);
    CHECK(strstr(logbuf, "plot: kernels_roofline shows the last kernels file, new.h5") != NULL);
    CHECK(strstr(logbuf, "made plot_k/kernels_roofline.") != NULL);
    CHECK(strstr(logbuf, "made plot_k/compare.") != NULL);
    CHECK(strstr(logbuf, "skipped speedup_*, indexer_share, breakdown_*: no run file") != NULL);
    dat d;
    CHECK_INT(dat_read("plot_k/kernels_roofline.dat", &d), 0);
    CHECK_INT(d.n, k[1].n_points);
    /* idx_logits_prefill h=32 at 8Ki: FP8 ceiling; % = achieved TFLOP/s / the measured fp8 peak */
    const dsa_point *p = NULL;
    for (int i = 0; i < k[1].n_points; i++)
        if (!strcmp(k[1].points[i].config, "idx_logits_prefill h=32") && k[1].points[i].context == 8192) p = &k[1].points[i];
    CHECK(p != NULL);
    if (p) {
        double tf = p->flops / (p->wall_median_ms * 1e-3) / 1e12, gbs = p->bytes / (p->wall_median_ms * 1e-3) / 1e9;
        CHECK_NEAR(dat_get(&d, -1, "label", "idx_logits_prefill h=32 8Ki", NULL, NULL, "compute_pct"),
                   100 * tf / k[1].dev.peak_fp8_tflops, 0.006);
        CHECK_NEAR(dat_get(&d, -1, "label", "idx_logits_prefill h=32 8Ki", NULL, NULL, "copy_pct"), 100 * gbs / k[1].dev.copy_gbs,
                   0.006);
    }
    int ceil_col = col_of(&d, "ceil"), cp = col_of(&d, "compute_pct");
    int topk_rows = 0, sparse_bf16 = 0;
    for (int i = 0; i < d.n && ceil_col >= 0 && cp >= 0; i++) {
        if (!strncmp(d.tok[i][1], "topk_", 5)) {
            topk_rows++;
            CHECK_STR(d.tok[i][cp], "-"); /* no FLOPs counted: bandwidth bar only */
        }
        if (!strncmp(d.tok[i][1], "sparse_mla", 10)) sparse_bf16 += !strcmp(d.tok[i][ceil_col], "bf16");
    }
    CHECK_INT(topk_rows, 10);
    CHECK_INT(sparse_bf16, 15);

    /* compare: sorted by ratio, the fast case first and the slow one last, the rest the same */
    CHECK_INT(dat_read("plot_k/compare.dat", &d), 0);
    CHECK_INT(d.n, k[0].n_points);
    int r = col_of(&d, "ratio_pct"), v = col_of(&d, "verdict");
    CHECK(r >= 0 && v >= 0);
    if (r >= 0 && v >= 0 && d.n > 2) {
        CHECK_STR(d.tok[0][1], "idx_prep h=64 200K");
        CHECK_NEAR(atof(d.tok[0][r]), 50, 1e-3);
        CHECK_STR(d.tok[0][v], "FASTER");
        CHECK_STR(d.tok[d.n - 1][1], "topk_prefill 200K");
        CHECK_NEAR(atof(d.tok[d.n - 1][r]), 150, 1e-3);
        CHECK_STR(d.tok[d.n - 1][v], "SLOWER");
        CHECK_NEAR(atof(d.tok[1][r]), 100, 1e-9);
        CHECK_STR(d.tok[1][v], "SAME");
        for (int i = 1; i < d.n; i++) CHECK(atof(d.tok[i][r]) >= atof(d.tok[i - 1][r]));
    }
    rm_rf("plot_k");
    dsa_run_free(&k[0]);
    dsa_run_free(&k[1]);
}

static int has_signature(const char *path, const char *sig, size_t n)
{
    char buf[16] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    return got == n && memcmp(buf, sig, n) == 0;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) ? -1 : (long)st.st_size;
}

/* With gnuplot: real images, nothing half-written. Without it (not in CI): said and skipped. */
static void test_render(void)
{
    char gp[4096];
    dsa_err e = {{0}};
    dsa_plot_opts probe = {0};
    if (dsa_plot_find_gnuplot(&probe, gp, sizeof gp, &e)) {
        printf("test_plot: %s: image checks skipped\n", e.msg);
        return;
    }
    dsa_run r;
    build_run(&r);
    rm_rf("plot_img");
    CHECK_INT(plot(&r, 1, "plot_img", 1, NULL, &e), 0);
    if (e.msg[0]) fprintf(stderr, "test_plot: %s\n", e.msg);
    CHECK(strstr(logbuf, "gnuplot:") == NULL); /* no warning from gnuplot */
    static const char *const figs[] = {"speedup_prefill", "speedup_decode", "indexer_share", "breakdown_prefill",
                                       "breakdown_decode"};
    for (int i = 0; i < 5; i++) {
        char png[256], svg[256];
        snprintf(png, sizeof png, "plot_img/%s.png", figs[i]);
        snprintf(svg, sizeof svg, "plot_img/%s.svg", figs[i]);
        CHECK(has_signature(png, "\x89PNG\r\n\x1a\n", 8));
        CHECK(has_signature(svg, "<?xml", 5) || has_signature(svg, "<svg", 4));
        CHECK(file_size(png) > 5000);
        CHECK(file_size(svg) > 2000);
    }
    CHECK_INT(tmp_files_in("plot_img"), 0);

    /* a gnuplot that fails: runtime error naming the script, no image and no temporary left */
    CHECK_INT(plot(&r, 1, "plot_img", 1, "/bin/false", &e), DSA_EXIT_RUNTIME);
    CHECK(strstr(e.msg, "gnuplot failed on plot_img/speedup_prefill.gp") != NULL);
    CHECK_INT(tmp_files_in("plot_img"), 0);
    rm_rf("plot_img");
    dsa_run_free(&r);
}

static void test_bad_input(void)
{
    dsa_run r;
    build_run(&r);
    dsa_err e = {{0}};
    /* -o names a file: usage error, the file untouched */
    FILE *f = fopen("plot_file", "w");
    if (f) {
        fputs("keep\n", f);
        fclose(f);
    }
    CHECK_INT(plot(&r, 1, "plot_file", 0, NULL, &e), DSA_EXIT_USAGE);
    CHECK(strstr(e.msg, "not a folder") != NULL);
    CHECK_INT(file_size("plot_file"), 5);
    unlink("plot_file");
    /* no folder */
    CHECK_INT(plot(&r, 1, "", 0, NULL, &e), DSA_EXIT_USAGE);
    /* gnuplot missing: runtime error before anything is created */
    rm_rf("plot_none");
    CHECK_INT(plot(&r, 1, "plot_none", 1, "/nonexistent/gnuplot", &e), DSA_EXIT_RUNTIME);
    CHECK(strstr(e.msg, "/nonexistent/gnuplot") != NULL && !strchr(e.msg, '\n'));
    struct stat st;
    CHECK(stat("plot_none", &st) != 0);
    /* a folder that cannot be created */
    CHECK_INT(plot(&r, 1, "no/such/parent", 0, NULL, &e), DSA_EXIT_RUNTIME);
    CHECK(strstr(e.msg, "cannot create the folder") != NULL);
    dsa_run_free(&r);
}

int main(void)
{
    const char *data = getenv("DSA_TEST_DATA");
    char here[1024];
    if (!data) { /* run by hand: the data beside this source file */
        snprintf(here, sizeof here, "%s", __FILE__);
        char *slash = strrchr(here, '/');
        snprintf(slash ? slash + 1 : here, sizeof here - (size_t)(slash ? slash + 1 - here : 0), "data");
        data = here;
    }
    test_run_figures();
    test_no_components();
    test_kernels(data);
    test_render();
    test_bad_input();
    return check_done("test_plot");
}
