/* src/plot.c — `dsa-bench plot`: the figures of DESIGN.md §5, drawn by gnuplot (see plot.h).
 *
 * Every figure is a pair of files written here, NAME.dat (the numbers) and NAME.gp (a script
 * that reads only NAME.dat and draws it to out.png and out.svg), then one gnuplot run with the
 * folder as working directory. The C side decides everything data-dependent (bar positions,
 * which series exist, axis ranges); the scripts stay plain enough to edit by hand. */
#include "plot.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#include "compare.h"
#include "report.h"

enum { FIG_MADE = 0, FIG_SKIPPED = -1 }; /* a figure function's result; > 0 is an exit code */

typedef struct plot_ctx {
    const dsa_plot_opts *o;
    char gnuplot[PATH_MAX];
    char skip[sizeof ((dsa_err *)0)->msg]; /* why the figure just tried was skipped */
    int made, skipped;
    dsa_err *e;
} plot_ctx;

static int skip(plot_ctx *c, const char *why)
{
    snprintf(c->skip, sizeof c->skip, "%s", why);
    return FIG_SKIPPED;
}

/* ---------------------------------------------------------------- files and gnuplot */

/* A file written to DIR/NAME.tmp and renamed to DIR/NAME when complete. */
typedef struct outfile {
    FILE *f;
    char tmp[PATH_MAX], final[PATH_MAX];
} outfile;

static int of_open(outfile *of, const char *dir, const char *name, dsa_err *e)
{
    of->f = NULL;
    if ((size_t)snprintf(of->final, sizeof of->final, "%s/%s", dir, name) >= sizeof of->final ||
        (size_t)snprintf(of->tmp, sizeof of->tmp, "%s.tmp", of->final) >= sizeof of->tmp)
        return dsa_fail(e, DSA_EXIT_USAGE, "output path too long: '%s/%s'", dir, name);
    of->f = fopen(of->tmp, "w");
    if (!of->f) return dsa_fail(e, DSA_EXIT_RUNTIME, "cannot write '%s': %s", of->tmp, strerror(errno));
    return 0;
}

static int of_commit(outfile *of, dsa_err *e)
{
    int bad = ferror(of->f);
    int closed = fclose(of->f);
    of->f = NULL;
    if (closed || bad) {
        unlink(of->tmp);
        return dsa_fail(e, DSA_EXIT_RUNTIME, "cannot write '%s' (disk full?)", of->tmp);
    }
    if (rename(of->tmp, of->final)) {
        int err = errno;
        unlink(of->tmp);
        return dsa_fail(e, DSA_EXIT_RUNTIME, "cannot rename '%s' to '%s': %s", of->tmp, of->final, strerror(err));
    }
    return 0;
}

static void of_abort(outfile *of)
{
    if (of->f) fclose(of->f);
    of->f = NULL;
    unlink(of->tmp);
}

static int executable(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

int dsa_plot_find_gnuplot(const dsa_plot_opts *o, char *path, size_t size, dsa_err *e)
{
    const char *want = o && o->gnuplot ? o->gnuplot : getenv("GNUPLOT");
    const char *from = o && o->gnuplot ? "given" : "$GNUPLOT";
    if (!want || !*want) want = "gnuplot", from = NULL;
    char found[PATH_MAX] = "";
    if (strchr(want, '/')) {
        if (executable(want)) snprintf(found, sizeof found, "%s", want);
    } else {
        const char *env = getenv("PATH");
        for (const char *p = env ? env : ""; *p && !*found;) {
            size_t len = strcspn(p, ":");
            char cand[PATH_MAX];
            snprintf(cand, sizeof cand, "%.*s/%s", (int)(len ? len : 1), len ? p : ".", want);
            if (executable(cand)) snprintf(found, sizeof found, "%s", cand);
            p += len + (p[len] == ':');
        }
    }
    if (!*found) {
        if (from) return dsa_fail(e, DSA_EXIT_RUNTIME, "gnuplot program '%s' (%s) is not an executable file", want, from);
        return dsa_fail(e, DSA_EXIT_RUNTIME, "gnuplot not found on $PATH (install gnuplot, or set $GNUPLOT to its path)");
    }
    /* gnuplot runs inside the output folder: a relative path must not depend on our cwd */
    if (!realpath(found, path) || strlen(path) >= size)
        return dsa_fail(e, DSA_EXIT_RUNTIME, "cannot resolve the gnuplot path '%s'", found);
    return 0;
}

static void unlink_in(const char *dir, const char *name)
{
    char p[PATH_MAX];
    if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, name) < sizeof p) unlink(p);
}

/* Runs `gnuplot -e "out='NAME.tmp'" NAME.gp` in the output folder, then renames the images it
 * wrote (NAME.tmp.png, NAME.tmp.svg) to their final names. Its output is logged, not hidden. */
static int run_gnuplot(plot_ctx *c, const char *name)
{
    if (!c->o->render) return 0;
    const char *dir = c->o->out_dir;
    char outarg[PATH_MAX + 16], script[PATH_MAX], tmp_png[PATH_MAX], tmp_svg[PATH_MAX];
    snprintf(outarg, sizeof outarg, "out='%s.tmp'", name);
    snprintf(script, sizeof script, "%s.gp", name);
    snprintf(tmp_png, sizeof tmp_png, "%s.tmp.png", name);
    snprintf(tmp_svg, sizeof tmp_svg, "%s.tmp.svg", name);
    int pfd[2];
    if (pipe(pfd)) return dsa_fail(c->e, DSA_EXIT_RUNTIME, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return dsa_fail(c->e, DSA_EXIT_RUNTIME, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        if (chdir(dir)) _exit(126);
        execl(c->gnuplot, "gnuplot", "-e", outarg, script, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char out[4096] = "";
    size_t len = 0;
    char chunk[4096];
    ssize_t r;
    while ((r = read(pfd[0], chunk, sizeof chunk)) > 0 || (r < 0 && errno == EINTR))
        if (r > 0 && len + 1 < sizeof out) {
            size_t k = (size_t)r < sizeof out - 1 - len ? (size_t)r : sizeof out - 1 - len;
            memcpy(out + len, chunk, k);
            len += k;
            out[len] = 0;
        }
    close(pfd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    /* gnuplot's messages: the line that names the problem is the last non-empty one */
    char last[400] = "";
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        while (*line == ' ' || *line == '\t' || *line == '^') line++;
        if (!*line) continue;
        snprintf(last, sizeof last, "%s", line);
        if (ok && c->o->log) fprintf(c->o->log, "plot: %s: gnuplot: %s\n", name, line);
    }
    if (!ok) {
        unlink_in(dir, tmp_png);
        unlink_in(dir, tmp_svg);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 126)
            return dsa_fail(c->e, DSA_EXIT_RUNTIME, "cannot enter the folder '%s'", dir);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
            return dsa_fail(c->e, DSA_EXIT_RUNTIME, "cannot run gnuplot '%s'", c->gnuplot);
        return dsa_fail(c->e, DSA_EXIT_RUNTIME, "gnuplot failed on %s/%s (%s %d)%s%s", dir, script,
                        WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                        *last ? ": " : "", last);
    }
    const char *tmps[2] = {tmp_png, tmp_svg}, *exts[2] = {"png", "svg"};
    for (int i = 0; i < 2; i++) {
        char from[PATH_MAX], to[PATH_MAX + 8];
        struct stat st;
        snprintf(from, sizeof from, "%s/%s", dir, tmps[i]);
        snprintf(to, sizeof to, "%s/%s.%s", dir, name, exts[i]);
        if (stat(from, &st) || st.st_size == 0) {
            unlink_in(dir, tmp_png);
            unlink_in(dir, tmp_svg);
            return dsa_fail(c->e, DSA_EXIT_RUNTIME, "gnuplot wrote no %s image for %s/%s", exts[i], dir, script);
        }
        if (rename(from, to)) {
            int err = errno;
            unlink_in(dir, tmp_png);
            unlink_in(dir, tmp_svg);
            return dsa_fail(c->e, DSA_EXIT_RUNTIME, "cannot rename '%s' to '%s': %s", from, to, strerror(err));
        }
    }
    return 0;
}

/* The head of every figure: open NAME.dat and NAME.gp (written under .tmp names until
 * figure_end commits them). */
static int figure_begin(plot_ctx *c, const char *name, outfile *dat, outfile *gp)
{
    char fname[64];
    snprintf(fname, sizeof fname, "%s.dat", name);
    int rc = of_open(dat, c->o->out_dir, fname, c->e);
    snprintf(fname, sizeof fname, "%s.gp", name);
    return rc ? rc : of_open(gp, c->o->out_dir, fname, c->e);
}

/* The tail of every figure: commit its .dat and .gp files and render them; or, when rc is set
 * or a commit fails, remove what was written. */
static int figure_end(plot_ctx *c, const char *name, outfile *dat, outfile *gp, int rc)
{
    if (!rc && !(rc = of_commit(dat, c->e)) && !(rc = of_commit(gp, c->e))) return run_gnuplot(c, name);
    of_abort(dat);
    of_abort(gp);
    return rc;
}

/* ---------------------------------------------------------------- labels */

/* Context in tokens as the paper writes it: 200000 -> 200K, 65536 -> 64Ki, 512 -> 512. */
static void tokens_label(int64_t t, char *out, size_t n)
{
    if (t >= 1024 && t % 1024 == 0) snprintf(out, n, "%lldKi", (long long)(t / 1024));
    else if (t >= 1000 && t % 1000 == 0) snprintf(out, n, "%lldK", (long long)(t / 1000));
    else snprintf(out, n, "%lld", (long long)t);
}

/* A config as a legend entry: pattern strings are one character per layer, too long for a
 * legend, so they show as their F-layer count. */
static void config_label(const dsa_point *p, char *out, size_t n)
{
    if (strlen(p->config) > 20) snprintf(out, n, "%.8s... (%d/%d F)", p->config, p->n_full, p->n_layers);
    else snprintf(out, n, "%s", p->config);
}

/* Quoted for a gnuplot script or data file: neither escapes '"' reliably, so it becomes '. */
static void put_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) fputc(*s == '"' ? '\'' : *s == '\n' ? ' ' : *s, f);
    fputc('"', f);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* What the figure shows, for its title: the model, layers and device of the runs behind it. */
static void runs_desc(const dsa_report_row *const *rows, int n, char *out, size_t size)
{
    const dsa_run *first = n ? rows[0]->run : NULL;
    int files = 0, models = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = rows[j]->run == rows[i]->run;
        if (seen) continue;
        files++;
        int same_model = 0;
        for (int j = 0; j < i && !same_model; j++)
            same_model = !strcmp(rows[j]->run->model.name, rows[i]->run->model.name) &&
                         rows[j]->run->layers_run == rows[i]->run->layers_run;
        models += !same_model;
    }
    if (!first) snprintf(out, size, "no data");
    else if (models > 1) snprintf(out, size, "%d models, %d files", models, files);
    else
        snprintf(out, size, "%s, %d of %d layers%s; %s (%s)", first->model.name, first->layers_run, first->model.n_layers,
                 first->shared_weights ? ", shared weights" : "", first->dev.name,
                 strcmp(first->dev.kind, "cpu") ? "GPU" : "CPU reference");
}

/* ---------------------------------------------------------------- the points of a figure */

/* A series is one config of one model: the bars of a colour, or a line. */
typedef struct series {
    const dsa_report_row *first;
    char label[160];
} series;

/* The ok rows of one phase, with their distinct series, contexts and batches, sorted. */
typedef struct view {
    const dsa_report_row **rows;
    int n;
    series *ser;
    int n_ser;
    int64_t *ctx;
    int n_ctx;
    int32_t *batch;
    int n_batch;
} view;

static int same_model(const dsa_report_row *a, const dsa_report_row *b)
{
    return !strcmp(a->run->model.name, b->run->model.name) && a->run->layers_run == b->run->layers_run;
}

static int same_series(const dsa_report_row *a, const dsa_report_row *b)
{
    return same_model(a, b) && !strcmp(a->pt->config, b->pt->config);
}

static double full_fraction(const dsa_report_row *r) { return (double)r->pt->n_full / (r->pt->n_layers ? r->pt->n_layers : 1); }

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}
static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void view_free(view *v)
{
    free(v->rows);
    free(v->ser);
    free(v->ctx);
    free(v->batch);
    memset(v, 0, sizeof *v);
}

/* keep(row) says which ok rows of `phase` belong to the figure. Series: full-indexer configs
 * first, then fewer F layers (full, 1/2, 1/4, as the paper), ties in file order. */
static int view_make(view *v, const dsa_report_row *rows, int n, const char *phase,
                     int (*keep)(const dsa_report_row *), dsa_err *e)
{
    memset(v, 0, sizeof *v);
    size_t m = (size_t)(n ? n : 1);
    v->rows = calloc(m, sizeof *v->rows);
    v->ser = calloc(m, sizeof *v->ser);
    v->ctx = calloc(m, sizeof *v->ctx);
    v->batch = calloc(m, sizeof *v->batch);
    if (!v->rows || !v->ser || !v->ctx || !v->batch) {
        view_free(v);
        return dsa_fail(e, DSA_EXIT_RUNTIME, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        const dsa_report_row *r = &rows[i];
        if (r->pt->status != DSA_POINT_OK || strcmp(r->pt->phase, phase) || (keep && !keep(r))) continue;
        v->rows[v->n++] = r;
        int s = 0, k = 0;
        while (s < v->n_ser && !same_series(v->ser[s].first, r)) s++;
        if (s == v->n_ser) v->ser[v->n_ser++].first = r;
        while (k < v->n_ctx && v->ctx[k] != r->pt->context) k++;
        if (k == v->n_ctx) v->ctx[v->n_ctx++] = r->pt->context;
        k = 0;
        while (k < v->n_batch && v->batch[k] != r->pt->batch) k++;
        if (k == v->n_batch) v->batch[v->n_batch++] = r->pt->batch;
    }
    qsort(v->ctx, (size_t)v->n_ctx, sizeof *v->ctx, cmp_i64);
    qsort(v->batch, (size_t)v->n_batch, sizeof *v->batch, cmp_i32);
    for (int i = 1; i < v->n_ser; i++) /* insertion sort: stable, and there are a handful */
        for (int j = i; j > 0 && full_fraction(v->ser[j].first) > full_fraction(v->ser[j - 1].first); j--) {
            series t = v->ser[j];
            v->ser[j] = v->ser[j - 1];
            v->ser[j - 1] = t;
        }
    int multi = 0;
    for (int s = 1; s < v->n_ser; s++) multi |= !same_model(v->ser[s].first, v->ser[0].first);
    for (int s = 0; s < v->n_ser; s++) {
        char cfg[64];
        config_label(v->ser[s].first->pt, cfg, sizeof cfg);
        if (multi) snprintf(v->ser[s].label, sizeof v->ser[s].label, "%s %s", v->ser[s].first->run->model.name, cfg);
        else snprintf(v->ser[s].label, sizeof v->ser[s].label, "%s", cfg);
    }
    return 0;
}

static const dsa_report_row *view_find(const view *v, int s, int64_t ctx, int32_t batch)
{
    for (int i = 0; i < v->n; i++)
        if (same_series(v->rows[i], v->ser[s].first) && v->rows[i]->pt->context == ctx && v->rows[i]->pt->batch == batch)
            return v->rows[i];
    return NULL;
}

/* Config colours: the baseline grey as in the paper, then blue, red and onwards. */
static const char *series_colour(const view *v, int s)
{
    static const char *const palette[] = {"#3b7dd8", "#d9472b", "#2ca25f", "#8e5bb5", "#e69f00", "#17becf", "#8c564b"};
    int k = 0;
    for (int i = 0; i < s; i++) k += v->ser[i].first->pt->n_full != v->ser[i].first->pt->n_layers;
    if (v->ser[s].first->pt->n_full == v->ser[s].first->pt->n_layers) return "#c8c8c8";
    return palette[k % (int)(sizeof palette / sizeof palette[0])];
}

/* One fixed colour per component, the legend's vocabulary (component.h order): the indexer in
 * oranges and reds, attention in blues and purples, the FFN in greens, idle a pale grey. */
static const char *const comp_colour[DSA_NCOMP] = {
    "#8c8c8c", "#c7e9c0", "#6baed6", "#2171b5", "#fdae6b", "#e6550d", "#a63603", "#d94801", "#9e9ac8", "#54278f",
    "#bcbddc", "#08306b", "#a1d99b", "#74c476", "#238b45", "#00441b", "#b8860b", "#969696", "#525252", "#f768a1",
    "#eeeeee"};

/* ---------------------------------------------------------------- script pieces */

static void gp_begin(FILE *g, const char *name, int width, int height, const char *what)
{
    fprintf(g, "# %s.gp: %s\n", name, what);
    fprintf(g, "# written by dsa-bench plot; reads %s.dat. Redraw by hand: gnuplot %s.gp (writes %s.png, %s.svg)\n", name,
            name, name, name);
    fprintf(g, "if (!exists(\"out\")) out = \"%s\"\n", name);
    fprintf(g, "do for [fmt in \"png svg\"] {\n");
    fprintf(g, "if (fmt eq \"png\") {\n  set terminal pngcairo size %d,%d noenhanced font \"sans,11\"\n} else {\n"
               "  set terminal svg size %d,%d dynamic noenhanced font \"sans,11\" background rgb \"white\"\n}\n",
            width, height, width, height);
    fprintf(g, "set output out.\".\".fmt\n");
    fprintf(g, "reset\nset datafile missing \"-\"\n");
    fprintf(g, "set style fill solid 1.0 border lc rgb \"#404040\"\nset border 3\nset tics nomirror\n"
               "set grid ytics lc rgb \"#e4e4e4\" lt 1\n");
}

static void gp_end(FILE *g) { fprintf(g, "unset multiplot\nset output\n}\n"); }

/* ---------------------------------------------------------------- speedup_prefill, speedup_decode */

/* Clustered bars as figure_method.png: one cluster per context, one bar per config, value labels;
 * one panel per batch (prefill has one: batch 1). Speedup = full's wall / this wall, from
 * dsa_report_rows, so it is the number `report` prints. */
static int fig_speedup(plot_ctx *c, const dsa_report_row *rows, int n, int decode)
{
    const char *name = decode ? "speedup_decode" : "speedup_prefill";
    const char *phase = decode ? "decode" : "prefill";
    view v;
    int rc = view_make(&v, rows, n, phase, NULL, c->e);
    if (rc) return rc;
    int any = 0;
    double ymax = 100;
    for (int i = 0; i < v.n; i++)
        if (!isnan(v.rows[i]->speedup_pct)) {
            any = 1;
            if (v.rows[i]->speedup_pct > ymax) ymax = v.rows[i]->speedup_pct;
        }
    if (!v.n || !any) {
        view_free(&v);
        return skip(c, !v.n ? (decode ? "no decode points measured" : "no prefill points measured")
                            : "no full-indexer point to compare with at any context");
    }
    char desc[320];
    runs_desc(v.rows, v.n, desc, sizeof desc);
    outfile dat = {0}, gp = {0};
    if ((rc = figure_begin(c, name, &dat, &gp))) goto out;

    FILE *d = dat.f, *g = gp.f;
    fprintf(d, "# %s: %s time of the full-indexer point / time of this point, same model, context, batch and chunk\n", name, phase);
    fprintf(d, "# %s\n", desc);
    fprintf(d, "# throughput: per request = 1 / step time, full = batch / step time (decode); context / time (prefill)\n");
    fprintf(d, "# one block per (batch, config) with a full point to compare with (gnuplot index 0, 1, ...)\n");
    double w = 0.8 / v.n_ser;
    int block = 0;
    int *block_of = malloc((size_t)(v.n_batch * v.n_ser) * sizeof *block_of);
    if (!block_of) {
        rc = dsa_fail(c->e, DSA_EXIT_RUNTIME, "out of memory");
        goto out;
    }
    for (int b = 0; b < v.n_batch; b++)
        for (int s = 0; s < v.n_ser; s++) {
            block_of[b * v.n_ser + s] = -1;
            int header = 0;
            for (int k = 0; k < v.n_ctx; k++) {
                const dsa_report_row *r = view_find(&v, s, v.ctx[k], v.batch[b]);
                if (!r || isnan(r->speedup_pct)) continue;
                if (!header) {
                    if (block) fprintf(d, "\n\n");
                    fprintf(d, "# index %d: batch %d, config %s\n", block, v.batch[b], v.ser[s].label);
                    fprintf(d, "#%8s %9s %5s %-22s %12s %12s %12s %12s\n", "x", "context", "batch", "config",
                            "speedup_pct", decode ? "step_ms" : "time_s", "tok_s_req", "tok_s_all");
                    block_of[b * v.n_ser + s] = block++;
                    header = 1;
                }
                fprintf(d, " %8.4f %9lld %5d ", k - 0.4 + w * (s + 0.5), (long long)v.ctx[k], v.batch[b]);
                put_quoted(d, v.ser[s].label);
                fprintf(d, "%*s %12.3f %12.6g %12.6g %12.6g\n", (int)(strlen(v.ser[s].label) < 20 ? 20 - strlen(v.ser[s].label) : 0), "",
                        r->speedup_pct, r->time, r->tok_s_req, r->tok_s_all);
            }
        }

    int panels = 0;
    for (int b = 0; b < v.n_batch; b++) {
        int has = 0;
        for (int s = 0; s < v.n_ser; s++) has |= block_of[b * v.n_ser + s] >= 0;
        panels += has;
    }
    int pw = 200 + 90 * v.n_ctx * (v.n_ser > 2 ? v.n_ser : 2) / 2;
    if (pw < 620) pw = 620;
    gp_begin(g, name, pw * panels, 540, decode ? "decode speedup over the full-indexer config, one panel per batch"
                                             : "prefill speedup over the full-indexer config");
    if (panels > 1) fprintf(g, "set multiplot layout 1,%d\n", panels);
    int panel = 0;
    for (int b = 0; b < v.n_batch; b++) {
        int has = 0;
        for (int s = 0; s < v.n_ser; s++) has |= block_of[b * v.n_ser + s] >= 0;
        if (!has) continue;
        char title[200];
        char letter = (char)((decode ? 'b' : 'a') + panel);
        if (!decode) snprintf(title, sizeof title, "(%c) Prefill (time)", letter);
        else if (v.batch[b] == 1) snprintf(title, sizeof title, "(%c) Decode, batch 1 (per-request throughput)", letter);
        else if (b == v.n_batch - 1) snprintf(title, sizeof title, "(%c) Decode, batch %d (full throughput)", letter, v.batch[b]);
        else snprintf(title, sizeof title, "(%c) Decode, batch %d", letter, v.batch[b]);
        panel++;
        fprintf(g, "set title \"%s\\n%s\"\n", title, desc);
        fprintf(g, "set xlabel \"context length (tokens)\"\nset ylabel \"relative speedup (%%)\"\n");
        fprintf(g, "set xrange [-0.5:%d.5]\nset yrange [0:%.0f]\nset xtics (", v.n_ctx - 1, ymax * 1.15 + 5);
        for (int k = 0; k < v.n_ctx; k++) {
            char t[32];
            tokens_label(v.ctx[k], t, sizeof t);
            fprintf(g, "%s\"%s\" %d", k ? ", " : "", t, k);
        }
        fprintf(g, ")\nset format y \"%%g%%%%\"\nset boxwidth %.4f absolute\n", w);
        fprintf(g, "set key outside bottom center horizontal samplen 2\n");
        fprintf(g, "set arrow 1 from graph 0, first 100 to graph 1, first 100 nohead dt 2 lc rgb \"#808080\" back\n");
        fprintf(g, "plot \\\n");
        int first = 1;
        for (int s = 0; s < v.n_ser; s++) {
            int idx = block_of[b * v.n_ser + s];
            if (idx < 0) continue;
            fprintf(g, "%s  \"%s.dat\" index %d using 1:5 with boxes lc rgb \"%s\" title ", first ? "" : ", \\\n", name, idx,
                    series_colour(&v, s));
            put_quoted(g, v.ser[s].label);
            fprintf(g, ", \\\n  \"%s.dat\" index %d using 1:5:(sprintf(\"%%.0f%%%%\", $5)) with labels offset 0,0.6 font \",9\" notitle",
                    name, idx);
            first = 0;
        }
        fprintf(g, "\n");
    }
    gp_end(g);
    free(block_of);
out:
    rc = figure_end(c, name, &dat, &gp, rc);
    view_free(&v);
    return rc;
}

/* ---------------------------------------------------------------- indexer_share */

static int keep_with_comps(const dsa_report_row *r);
static int keep_full_with_share(const dsa_report_row *r)
{
    return r->pt->n_full == r->pt->n_layers && keep_with_comps(r) && isfinite(r->pt->indexer_share);
}

/* Where a point's value label goes, in data units, so that the labels of lines meeting at one
 * context stay apart: the highest point's above it, the lowest's below, any between beside it.
 * Alone at its context, prefill's goes above and decode's below, as in figure_profiling.png. */
static void share_label_at(const dsa_report_row *const *all, int n, int me, double xmax, double xspan, double *lx, double *ly)
{
    const dsa_point *p = all[me]->pt;
    double x = (double)p->context, y = 100 * p->indexer_share;
    int higher = 0, lower = 0;
    for (int i = 0; i < n; i++) {
        if (i == me || all[i]->pt->context != p->context) continue;
        double v = 100 * all[i]->pt->indexer_share;
        if (v > y || (v == y && i < me)) higher++;
        else lower++;
    }
    *lx = x;
    if (!higher && !lower) *ly = strcmp(p->phase, "decode") ? y + 5 : y - 6;
    else if (!higher) *ly = y + 5;
    else if (!lower) *ly = y - 6;
    else {
        *lx = x + (x >= xmax ? -0.07 : 0.07) * xspan;
        *ly = y;
    }
}

/* Lines as figure_profiling.png: the full-indexer config's indexer share (idx_proj + idx_logits +
 * idx_topk + idx_fused over the wall) against context, prefill and decode (one line per batch). */
static int fig_indexer_share(plot_ctx *c, const dsa_report_row *rows, int n)
{
    const char *name = "indexer_share";
    view vp, vd;
    int rc = view_make(&vp, rows, n, "prefill", keep_full_with_share, c->e);
    if (rc) return rc;
    if ((rc = view_make(&vd, rows, n, "decode", keep_full_with_share, c->e))) {
        view_free(&vp);
        return rc;
    }
    if (!vp.n && !vd.n) {
        int any_full = 0;
        for (int i = 0; i < n; i++)
            any_full |= rows[i].pt->status == DSA_POINT_OK && rows[i].pt->n_full == rows[i].pt->n_layers &&
                        (!strcmp(rows[i].pt->phase, "prefill") || !strcmp(rows[i].pt->phase, "decode"));
        view_free(&vp);
        view_free(&vd);
        return skip(c, any_full ? "no component times (idle only) in the full-indexer points; GPU runs get them from CUPTI"
                                : "no full-indexer points measured");
    }
    const view *vs[2] = {&vp, &vd};
    const dsa_report_row **all = calloc((size_t)(vp.n + vd.n + 1), sizeof *all);
    if (!all) {
        view_free(&vp);
        view_free(&vd);
        return dsa_fail(c->e, DSA_EXIT_RUNTIME, "out of memory");
    }
    memcpy(all, vp.rows, (size_t)vp.n * sizeof *all);
    memcpy(all + vp.n, vd.rows, (size_t)vd.n * sizeof *all);
    char desc[320];
    runs_desc(all, vp.n + vd.n, desc, sizeof desc);
    int64_t xmin = INT64_MAX, xmax = 0;
    for (int i = 0; i < vp.n + vd.n; i++) {
        if (all[i]->pt->context < xmin) xmin = all[i]->pt->context;
        if (all[i]->pt->context > xmax) xmax = all[i]->pt->context;
    }
    double span = (double)(xmax - xmin), pad = span > 0 ? 0.08 * span : 0.5 * (double)xmax;
    outfile dat = {0}, gp = {0};
    if ((rc = figure_begin(c, name, &dat, &gp))) goto out;
    FILE *d = dat.f, *g = gp.f;
    fprintf(d, "# indexer_share: indexer time (idx_proj + idx_logits + idx_topk + idx_fused medians) / wall median, "
               "full-indexer config\n# %s\n# one block per (phase, series, batch) (gnuplot index 0, 1, ...)\n", desc);
    typedef struct line { const view *v; int s, b; int idx; } line;
    line lines[128];
    int n_lines = 0;
    for (int p = 0; p < 2; p++)
        for (int s = 0; s < vs[p]->n_ser; s++)
            for (int b = 0; b < vs[p]->n_batch && n_lines < 128; b++) {
                int header = 0;
                for (int k = 0; k < vs[p]->n_ctx; k++) {
                    const dsa_report_row *r = view_find(vs[p], s, vs[p]->ctx[k], vs[p]->batch[b]);
                    if (!r) continue;
                    if (!header) {
                        if (n_lines) fprintf(d, "\n\n");
                        fprintf(d, "# index %d: %s, batch %d, config %s\n", n_lines, p ? "decode" : "prefill", vs[p]->batch[b],
                                vs[p]->ser[s].label);
                        fprintf(d, "#%9s %5s %-8s %10s %12s %12s %10s %8s\n", "context", "batch", "phase", "share_pct", "indexer_ms",
                                "wall_ms", "label_x", "label_y");
                        lines[n_lines] = (line){vs[p], s, b, n_lines};
                        n_lines++;
                        header = 1;
                    }
                    int me = 0;
                    while (all[me] != r) me++;
                    double lx, ly;
                    share_label_at(all, vp.n + vd.n, me, (double)xmax, (double)(xmax - xmin) + 2 * pad, &lx, &ly);
                    fprintf(d, " %9lld %5d %-8s %10.3f %12.6g %12.6g %10.0f %8.2f\n", (long long)r->pt->context, r->pt->batch,
                            p ? "decode" : "prefill", 100 * r->pt->indexer_share, r->pt->indexer_ms, r->pt->wall_median_ms, lx, ly);
                }
            }
    gp_begin(g, name, 860, 600, "indexer share of the full-indexer config against context");
    fprintf(g, "set title \"Indexer share of the time (full-indexer config)\\n%s\"\n", desc);
    fprintf(g, "set xlabel \"context length (tokens)\"\nset ylabel \"indexer time proportion (%%)\"\n");
    fprintf(g, "set xrange [%.0f:%.0f]\nset yrange [0:100]\nset grid xtics ytics lc rgb \"#e4e4e4\" lt 1 dt 2\nset xtics (", xmin - pad, xmax + pad);
    int first = 1;
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < vs[p]->n_ctx; k++) {
            int dup = 0;
            for (int q = 0; q <= p && !dup; q++)
                for (int j = 0; j < (q < p ? vs[q]->n_ctx : k) && !dup; j++) dup = vs[q]->ctx[j] == vs[p]->ctx[k];
            if (dup) continue;
            char t[32];
            tokens_label(vs[p]->ctx[k], t, sizeof t);
            fprintf(g, "%s\"%s\" %lld", first ? "" : ", ", t, (long long)vs[p]->ctx[k]);
            first = 0;
        }
    fprintf(g, ")\nset key outside bottom center horizontal samplen 4\n");
    fprintf(g, "set style textbox opaque noborder margins 1,1\n"); /* value labels stay readable over a line */
    fprintf(g, "plot \\\n");
    static const char *const decode_colours[] = {"#d43d2f", "#e69f00", "#8e5bb5", "#8c564b", "#17becf"};
    int nd = 0;
    for (int i = 0; i < n_lines; i++) {
        const line *l = &lines[i];
        int dec = l->v == &vd;
        const char *col = dec ? decode_colours[nd++ % 5] : "#3b65e0";
        char title[320];
        int multi_batch = l->v->n_batch > 1;
        snprintf(title, sizeof title, "%s%s%.0d%s%s", dec ? "Decode" : "Prefill", multi_batch ? ", batch " : "",
                 multi_batch ? l->v->batch[l->b] : 0, l->v->n_ser > 1 ? " " : "", l->v->n_ser > 1 ? l->v->ser[l->s].label : "");
        fprintf(g, "%s  \"%s.dat\" index %d using 1:4 with linespoints lw 2.5 %s pt %d ps 1.6 lc rgb \"%s\" title ",
                i ? ", \\\n" : "", name, l->idx, dec ? "dt 2" : "dt 1", dec ? 5 : 7, col);
        put_quoted(g, title);
        fprintf(g, ", \\\n  \"%s.dat\" index %d using 7:8:(sprintf(\"%%.0f%%%%\", $4)) with labels boxed tc rgb \"%s\" notitle",
                name, l->idx, col);
    }
    fprintf(g, "\n");
    gp_end(g);
out:
    rc = figure_end(c, name, &dat, &gp, rc);
    free(all);
    view_free(&vp);
    view_free(&vd);
    return rc;
}

/* ---------------------------------------------------------------- breakdown_<phase> */

/* A point whose only component is idle (GPU files written before CUPTI attribution) has nothing
 * to break down. */
static int keep_with_comps(const dsa_report_row *r)
{
    for (int i = 0; i < r->pt->n_comps; i++)
        if (r->pt->comps[i].component != DSA_C_IDLE && r->pt->comps[i].median_ms > 0) return 1;
    return 0;
}

static double comp_ms(const dsa_point *p, int comp)
{
    for (int i = 0; i < p->n_comps; i++)
        if (p->comps[i].component == comp) return p->comps[i].median_ms;
    return 0;
}

/* The wall of the repetitions a point's component table comes from: on the GPU the traced ones
 * (their idle includes CUPTI's gaps, so the stack sums to 100%), else the only ones. */
static double table_wall_ms(const dsa_point *p)
{
    return p->traced_reps > 0 && p->wall_traced_median_ms > 0 ? p->wall_traced_median_ms : p->wall_median_ms;
}

/* Stacked bars: one per (context, batch, config), each component's median as % of the wall
 * median of the same repetitions (so contexts 30x apart share one axis); the headline wall
 * time (untraced on the GPU) is printed on each bar. */
static int fig_breakdown(plot_ctx *c, const dsa_report_row *rows, int n, int decode)
{
    const char *phase = decode ? "decode" : "prefill";
    char name[32];
    snprintf(name, sizeof name, "breakdown_%s", phase);
    view v;
    int rc = view_make(&v, rows, n, phase, keep_with_comps, c->e);
    if (rc) return rc;
    if (!v.n) {
        int any = 0;
        for (int i = 0; i < n; i++) any |= rows[i].pt->status == DSA_POINT_OK && !strcmp(rows[i].pt->phase, phase);
        view_free(&v);
        snprintf(c->skip, sizeof c->skip, any ? "no component times (idle only) in the %s points; GPU runs get them from CUPTI"
                                              : "no %s points measured", phase);
        return FIG_SKIPPED;
    }
    int present[DSA_NCOMP] = {0}, n_present = 0;
    for (int i = 0; i < v.n; i++)
        for (int k = 0; k < v.rows[i]->pt->n_comps; k++) {
            const dsa_comp_stat *cs = &v.rows[i]->pt->comps[k];
            if (cs->component >= 0 && cs->component < DSA_NCOMP && cs->median_ms > 0) present[cs->component] = 1;
        }
    for (int k = 0; k < DSA_NCOMP; k++) n_present += present[k];
    char desc[320];
    runs_desc(v.rows, v.n, desc, sizeof desc);
    const char *how = strcmp(v.rows[0]->run->dev.kind, "cpu") ? "GPU kernel time (CUPTI)" : "host-timed reference kernels";
    outfile dat = {0}, gp = {0};
    if ((rc = figure_begin(c, name, &dat, &gp))) goto out;
    FILE *d = dat.f, *g = gp.f;
    fprintf(d, "# %s: per-component median time (ms) of each point, %s; idle = wall - busy\n# %s\n", name, how, desc);
    fprintf(d, "# wall_ms: the wall of the repetitions the components come from (GPU: the traced ones); "
               "headline_ms (last column): the point's wall time (GPU: untraced)\n");
    fprintf(d, "# one row per bar, grouped by context%s; components that never ran are left out\n", decode ? " and batch" : "");
    fprintf(d, "#%7s %9s %5s %-22s %12s", "x", "context", "batch", "config", "wall_ms");
    for (int k = 0; k < DSA_NCOMP; k++)
        if (present[k]) fprintf(d, " %*s_ms", (int)(strlen(dsa_component_name(k)) > 10 ? strlen(dsa_component_name(k)) : 10), dsa_component_name(k));
    fprintf(d, " %12s\n", "headline_ms");
    /* bars: groups (context, batch) in order, configs in series order, one empty slot between groups */
    typedef struct group { double x0, x1; int64_t ctx; int32_t batch; } group;
    group *groups = calloc((size_t)(v.n_ctx * v.n_batch + 1), sizeof *groups);
    if (!groups) {
        rc = dsa_fail(c->e, DSA_EXIT_RUNTIME, "out of memory");
        goto out;
    }
    int n_groups = 0, bars = 0;
    double x = 0;
    for (int k = 0; k < v.n_ctx; k++)
        for (int b = 0; b < v.n_batch; b++) {
            int in_group = 0;
            for (int s = 0; s < v.n_ser; s++) {
                const dsa_report_row *r = view_find(&v, s, v.ctx[k], v.batch[b]);
                if (!r) continue;
                if (!in_group) groups[n_groups] = (group){x, x, v.ctx[k], v.batch[b]};
                in_group = 1;
                groups[n_groups].x1 = x;
                fprintf(d, " %7.1f %9lld %5d ", x, (long long)v.ctx[k], v.batch[b]);
                put_quoted(d, v.ser[s].label);
                fprintf(d, "%*s %12.6g", (int)(strlen(v.ser[s].label) < 20 ? 20 - strlen(v.ser[s].label) : 0), "", table_wall_ms(r->pt));
                for (int cc = 0; cc < DSA_NCOMP; cc++)
                    if (present[cc]) fprintf(d, " %*.6g", (int)(strlen(dsa_component_name(cc)) > 10 ? strlen(dsa_component_name(cc)) : 10) + 3,
                                             comp_ms(r->pt, cc));
                fprintf(d, " %12.6g\n", r->pt->wall_median_ms);
                x += 1;
                bars++;
            }
            if (in_group) {
                n_groups++;
                x += 1;
            }
        }
    int width = 330 + 46 * bars + 18 * n_groups;
    if (width < 840) width = 840;
    double top_pct = 100; /* component medians need not add up to exactly the wall median */
    for (int i = 0; i < v.n; i++) {
        double sum = 0;
        for (int k = 0; k < DSA_NCOMP; k++)
            if (present[k]) sum += comp_ms(v.rows[i]->pt, k);
        if (100 * sum / table_wall_ms(v.rows[i]->pt) > top_pct) top_pct = 100 * sum / table_wall_ms(v.rows[i]->pt);
    }
    gp_begin(g, name, width, 600, "stacked per-component medians as % of the wall median, one bar per point");
    fprintf(g, "set title \"%s: component medians as %% of the wall median (bar label: wall %s)\\n%s; %s\"\n",
            decode ? "Decode step" : "Prefill", decode ? "ms/step" : "s", how, desc);
    fprintf(g, "set ylabel \"share of the wall time (%%)\"\nset xlabel \"config, grouped by context%s\" offset 0,-1.6\n",
            decode ? " and batch" : "");
    fprintf(g, "set bmargin 6.5\nset xrange [-0.7:%.1f]\nset yrange [0:%.0f]\nset format y \"%%g%%%%\"\nset boxwidth 0.8 absolute\n", x - 1.3,
            1.12 * top_pct);
    fprintf(g, "set xtics scale 0 font \",9\"\nset key outside right top vertical reverse Left samplen 1.5 title \"component\"\n");
    for (int i = 0; i < n_groups; i++) {
        char t[32], lab[64];
        tokens_label(groups[i].ctx, t, sizeof t);
        if (decode) snprintf(lab, sizeof lab, "%s, B=%d", t, groups[i].batch);
        else snprintf(lab, sizeof lab, "%s", t);
        fprintf(g, "set label %d \"%s\" at first %.2f, graph 0 center offset 0,-2.4\n", i + 1, lab, 0.5 * (groups[i].x0 + groups[i].x1));
    }
    /* column of component k: 6 + its rank among the present ones. Tallest (cumulative) first, so
     * each lower component's box covers the one above it up to its own top. */
    int first = 1, col_last = 5 + n_present;
    for (int k = DSA_NCOMP - 1, col = col_last; k >= 0; k--) {
        if (!present[k]) continue;
        fprintf(g, "%s  \"%s.dat\" using 1:(100 * sum [j=6:%d] column(j) / $5)%s with boxes lc rgb \"%s\" title \"%s\"",
                first ? "plot \\\n" : ", \\\n", name, col, first ? ":xtic(4)" : "", comp_colour[k], dsa_component_name(k));
        first = 0;
        col--;
    }
    fprintf(g, ", \\\n  \"%s.dat\" using 1:(100 * sum [j=6:%d] column(j) / $5):(sprintf(\"%s\", column(%d)%s)) "
               "with labels offset 0,0.7 font \",8\" notitle\n",
            name, col_last, "%.3g", col_last + 1, decode ? "" : " / 1000");
    gp_end(g);
    free(groups);
out:
    rc = figure_end(c, name, &dat, &gp, rc);
    view_free(&v);
    return rc;
}

/* ---------------------------------------------------------------- kernels_roofline */

/* "idx_logits_prefill h=32" -> "idx_logits_prefill" */
static void kernel_name(const dsa_point *p, char *out, size_t n)
{
    snprintf(out, n, "%s", p->config);
    char *h = strstr(out, " h=");
    if (h) *h = 0;
}

/* The compute ceiling a kernel's FLOPs count against: the indexer's logits run in FP8, every
 * other counted kernel (sparse MLA) in bf16 (src/kbench.c). */
static int kernel_is_fp8(const dsa_point *p)
{
    int comp = p->n_comps ? p->comps[0].component : -1;
    return comp == DSA_C_IDX_LOGITS || comp == DSA_C_IDX_FUSED;
}

/* Two bars per kernel case: achieved TFLOP/s as % of its compute ceiling, achieved GB/s as % of
 * the measured copy bandwidth; the one near 100% is what bounds it. Cases without counted
 * FLOPs (top-k, prep) have the bandwidth bar only. */
static int fig_kernels(plot_ctx *c, const dsa_run *run, const char *file)
{
    const char *name = "kernels_roofline";
    const dsa_device_info *dev = &run->dev;
    int n_ok = 0;
    for (int i = 0; i < run->n_points; i++) n_ok += run->points[i].status == DSA_POINT_OK && !strcmp(run->points[i].phase, "kernel");
    if (!n_ok) return skip(c, "no kernel case measured ok");
    if (!(dev->copy_gbs > 0) || !(dev->peak_bf16_tflops > 0) || !(dev->peak_fp8_tflops > 0))
        return skip(c, "the kernels file has no measured ceilings in /device");
    outfile dat = {0}, gp = {0};
    int rc;
    if ((rc = figure_begin(c, name, &dat, &gp))) goto out;
    FILE *d = dat.f, *g = gp.f;
    fprintf(d, "# kernels_roofline: each kernel case against the ceilings measured in the same run (%s)\n", base_name(file));
    fprintf(d, "# %s: bf16 %.1f TFLOP/s, fp8 %.1f TFLOP/s, copy %.1f GB/s\n", dev->name, dev->peak_bf16_tflops,
            dev->peak_fp8_tflops, dev->copy_gbs);
    fprintf(d, "# compute_pct = TFLOP/s / ceiling (fp8 for indexer logits, bf16 otherwise); copy_pct = GB/s / copy; - = not counted\n");
    fprintf(d, "#%6s %-34s %-22s %9s %5s %6s %11s %9s %9s %4s %11s %8s\n", "x", "label", "kernel", "context", "batch", "rows",
            "median_us", "TFLOP/s", "GB/s", "ceil", "compute_pct", "copy_pct");
    double x = 0, ymax = 100;
    char prev[sizeof run->points[0].config] = "";
    int cases = 0;
    for (int i = 0; i < run->n_points; i++) {
        const dsa_point *p = &run->points[i];
        if (p->status != DSA_POINT_OK || strcmp(p->phase, "kernel") || !(p->wall_median_ms > 0)) continue;
        char kname[sizeof p->config], t[32], label[160];
        kernel_name(p, kname, sizeof kname);
        if (*prev && strcmp(prev, kname)) x += 1; /* a gap between kernels */
        snprintf(prev, sizeof prev, "%s", kname);
        tokens_label(p->context, t, sizeof t);
        const char *h = strstr(p->config, " h=");
        int heads = h ? atoi(h + 3) : 0;
        int len = snprintf(label, sizeof label, "%s", kname);
        if (heads > 0) len += snprintf(label + len, sizeof label - (size_t)len, " h=%d", heads);
        len += snprintf(label + len, sizeof label - (size_t)len, " %s", t);
        if (p->batch > 0) snprintf(label + len, sizeof label - (size_t)len, " B=%d", p->batch);
        double sec = p->wall_median_ms * 1e-3;
        double tf = p->flops > 0 ? p->flops / sec / 1e12 : NAN, gbs = p->bytes > 0 ? p->bytes / sec / 1e9 : NAN;
        int fp8 = kernel_is_fp8(p);
        double cp = isnan(tf) ? NAN : 100 * tf / (fp8 ? dev->peak_fp8_tflops : dev->peak_bf16_tflops);
        double bp = isnan(gbs) ? NAN : 100 * gbs / dev->copy_gbs;
        if (cp > ymax) ymax = cp;
        if (bp > ymax) ymax = bp;
        fprintf(d, " %6.1f ", x);
        put_quoted(d, label);
        fprintf(d, "%*s %-22s %9lld %5d %6d %11.2f", (int)(strlen(label) < 32 ? 32 - strlen(label) : 0), "", kname,
                (long long)p->context, p->batch, p->chunk, 1e3 * p->wall_median_ms);
        if (isnan(tf)) fprintf(d, " %9s", "-");
        else fprintf(d, " %9.2f", tf);
        if (isnan(gbs)) fprintf(d, " %9s", "-");
        else fprintf(d, " %9.1f", gbs);
        fprintf(d, " %4s", isnan(tf) ? "-" : fp8 ? "fp8" : "bf16");
        if (isnan(cp)) fprintf(d, " %11s", "-");
        else fprintf(d, " %11.2f", cp);
        if (isnan(bp)) fprintf(d, " %8s\n", "-");
        else fprintf(d, " %8.2f\n", bp);
        x += 1;
        cases++;
    }
    int width = 260 + 24 * (int)x;
    if (width < 900) width = 900;
    gp_begin(g, name, width, 720, "kernel cases against the measured ceilings");
    fprintf(g, "set key outside bottom center vertical Left reverse samplen 2\n");
    fprintf(g, "set title \"Kernels: achieved rate as %% of the ceiling measured in the same run (%d cases)\\n"
               "%s: bf16 %.0f TFLOP/s, fp8 %.0f TFLOP/s, copy %.0f GB/s; %s\"\n",
            cases, dev->name, dev->peak_bf16_tflops, dev->peak_fp8_tflops, dev->copy_gbs, base_name(file));
    fprintf(g, "set ylabel \"%% of the measured ceiling\"\nset xrange [-0.8:%.1f]\nset yrange [0:%.0f]\nset format y \"%%g%%%%\"\n",
            x - 0.2, ymax * 1.08 + 2);
    fprintf(g, "set xtics rotate by 90 right scale 0 font \",9\"\nset boxwidth 0.4 absolute\n");
    fprintf(g, "set xlabel \"kernel case: name, heads h=, context (tokens), decode batch B=\"\n");
    fprintf(g, "set arrow 1 from graph 0, first 100 to graph 1, first 100 nohead dt 2 lc rgb \"#808080\" back\n");
    fprintf(g, "plot \\\n  \"%s.dat\" using ($1 - 0.2):11:xtic(2) with boxes lc rgb \"#3b7dd8\" "
               "title \"TFLOP/s, %% of the compute ceiling (fp8: indexer logits; bf16: sparse MLA)\", \\\n"
               "  \"%s.dat\" using ($1 + 0.2):12 with boxes lc rgb \"#e69f00\" "
               "title \"GB/s, %% of the copy bandwidth (bytes as counted; sparse_mla_prefill: gathered rows, mostly L2)\"\n",
            name, name);
    gp_end(g);
out:
    rc = figure_end(c, name, &dat, &gp, rc);
    return rc;
}

/* ---------------------------------------------------------------- compare */

/* Two points are the same measurement when every sweep key matches (the model too). */
static int same_key(const dsa_run *ra, const dsa_point *a, const dsa_run *rb, const dsa_point *b)
{
    return !strcmp(a->phase, b->phase) && a->context == b->context && a->batch == b->batch && a->chunk == b->chunk &&
           !strcmp(a->config, b->config) && !strcmp(ra->model.name, rb->model.name) && ra->layers_run == rb->layers_run;
}

typedef struct cmp_point {
    const dsa_compare_row *row;
    double ratio_pct, tol_pct;
} cmp_point;

static int cmp_ratio(const void *a, const void *b)
{
    double x = ((const cmp_point *)a)->ratio_pct, y = ((const cmp_point *)b)->ratio_pct;
    return (x > y) - (x < y);
}

/* NEW's median over BASE's for every point (or kernel case) both files measured, sorted, with
 * the verdicts of `dsa-bench compare` (src/compare.c: the same matching, noise and threshold);
 * the grey band is each point's tolerance, max(threshold, noise), around 100%. */
static int fig_compare(plot_ctx *c, const char *name, const dsa_run *base, const char *base_file, const dsa_run *cur,
                       const char *cur_file)
{
    dsa_compare cmp;
    dsa_err ce = {{0}};
    int rc = dsa_compare_runs(base, cur, DSA_COMPARE_THRESHOLD, &cmp, &ce);
    if (rc == DSA_EXIT_USAGE) return skip(c, ce.msg); /* files that cannot be compared: not this figure */
    if (rc) return dsa_fail(c->e, rc, "%s", ce.msg);
    cmp_point *m = calloc((size_t)(cmp.n_rows + 1), sizeof *m);
    if (!m) {
        dsa_compare_free(&cmp);
        return dsa_fail(c->e, DSA_EXIT_RUNTIME, "out of memory");
    }
    int n = 0, seen[DSA_NVERDICT] = {0};
    for (int i = 0; i < cmp.n_rows; i++) {
        const dsa_compare_row *r = &cmp.rows[i];
        if (r->component != -1 || r->verdict == DSA_MISSING || !r->base || isnan(r->ratio)) continue;
        double noise = isnan(r->noise) ? 0 : r->noise;
        m[n++] = (cmp_point){r, 100 * r->ratio, 100 * (noise > cmp.threshold ? noise : cmp.threshold)};
        if (r->verdict >= 0 && r->verdict < DSA_NVERDICT) seen[r->verdict] = 1;
    }
    if (!n) {
        free(m);
        dsa_compare_free(&cmp);
        return skip(c, "the two files have no point measured ok in both");
    }
    qsort(m, (size_t)n, sizeof *m, cmp_ratio);
    double ymin = 100, ymax = 100;
    for (int i = 0; i < n; i++) {
        double lo = fmin(m[i].ratio_pct, 100 - m[i].tol_pct), hi = fmax(m[i].ratio_pct, 100 + m[i].tol_pct);
        if (lo < ymin) ymin = lo;
        if (hi > ymax) ymax = hi;
    }
    double pad = 0.08 * (ymax - ymin) + 1;
    int kernels = !strcmp(m[0].row->base->phase, "kernel");
    outfile dat = {0}, gp = {0};
    if ((rc = figure_begin(c, name, &dat, &gp))) goto out;
    FILE *d = dat.f, *g = gp.f;
    fprintf(d, "# %s: NEW %s against BASE %s, median time per matched %s, sorted by ratio (dsa-bench compare's rows)\n", name,
            base_name(cur_file), base_name(base_file), kernels ? "kernel case (per launch)" : "point (per repetition)");
    fprintf(d, "# ratio_pct = 100 * new / base; noise_pct = 100 * max of the two noises (robust: 1.4826 MAD / median);\n"
               "# tolerance_pct = max(threshold %.1f%%, noise); verdict SLOWER/FASTER outside 100 +- tolerance\n",
            100 * cmp.threshold);
    fprintf(d, "#%5s %-40s %12s %12s %10s %9s %13s  %s\n", "x", "point", "base_ms", "new_ms", "ratio_pct", "noise_pct",
            "tolerance_pct", "verdict");
    for (int i = 0; i < n; i++) {
        const dsa_compare_row *r = m[i].row;
        const dsa_point *p = r->base;
        char label[200], t[32];
        tokens_label(p->context, t, sizeof t);
        if (kernels) {
            char kname[sizeof p->config];
            kernel_name(p, kname, sizeof kname);
            const char *h = strstr(p->config, " h=");
            int heads = h ? atoi(h + 3) : 0, len = snprintf(label, sizeof label, "%s", kname);
            if (heads > 0) len += snprintf(label + len, sizeof label - (size_t)len, " h=%d", heads);
            len += snprintf(label + len, sizeof label - (size_t)len, " %s", t);
            if (p->batch > 0) snprintf(label + len, sizeof label - (size_t)len, " B=%d", p->batch);
        } else {
            char cfg[64];
            config_label(p, cfg, sizeof cfg);
            if (!strcmp(p->phase, "decode")) snprintf(label, sizeof label, "decode %s B=%d %s", t, p->batch, cfg);
            else snprintf(label, sizeof label, "%s %s %s", p->phase, t, cfg);
        }
        fprintf(d, " %5d ", i);
        put_quoted(d, label);
        fprintf(d, "%*s %12.6g %12.6g %10.3f %9.3f %13.3f  %s\n", (int)(strlen(label) < 38 ? 38 - strlen(label) : 0), "",
                r->base_ms, r->new_ms, m[i].ratio_pct, 100 * (isnan(r->noise) ? 0 : r->noise), m[i].tol_pct,
                dsa_verdict_name(r->verdict));
    }
    int width = 300 + 26 * n;
    if (width < 900) width = 900;
    gp_begin(g, name, width, 660, "NEW / BASE median time per matched point, with the tolerance band");
    fprintf(g, "set key outside bottom center horizontal samplen 1.5\n");
    fprintf(g, "set title \"NEW %s / BASE %s\\nmedian time ratio per %s (%d matched), sorted\\n"
               "grey: the tolerance, max(threshold %.0f%%, noise), as dsa-bench compare judges\"\n",
            base_name(cur_file), base_name(base_file), kernels ? "kernel case" : "point", n, 100 * cmp.threshold);
    fprintf(g, "set ylabel \"time NEW / BASE (%%)\"\nset xrange [-0.8:%d.8]\nset yrange [%.1f:%.1f]\nset format y \"%%g%%%%\"\n",
            n - 1, ymin - pad, ymax + pad);
    fprintf(g, "set xtics rotate by 90 right scale 0 font \",9\"\nset xlabel \"%s\"\n",
            kernels ? "kernel case: name, heads h=, context (tokens), decode batch B=" : "point: phase, context (tokens), batch B=, config");
    fprintf(g, "set arrow 1 from graph 0, first 100 to graph 1, first 100 nohead lc rgb \"#606060\" front\n");
    fprintf(g, "set style fill solid 1.0 noborder\n");
    fprintf(g, "plot \\\n  \"%s.dat\" using 1:(100):(0.4):7:xtic(2) with boxxyerror lc rgb \"#d8d8d8\" title \"tolerance\"", name);
    static const int verdicts[3] = {DSA_FASTER, DSA_SAME, DSA_SLOWER};
    static const char *const colours[3] = {"#2ca25f", "#606060", "#d43d2f"};
    for (int k = 0; k < 3; k++)
        if (seen[verdicts[k]])
            fprintf(g, ", \\\n  \"%s.dat\" using 1:(strcol(8) eq \"%s\" ? $5 : NaN) with points pt 7 ps 1.3 lc rgb \"%s\" title \"%s\"",
                    name, dsa_verdict_name(verdicts[k]), colours[k], dsa_verdict_name(verdicts[k]));
    fprintf(g, "\n");
    gp_end(g);
out:
    rc = figure_end(c, name, &dat, &gp, rc);
    free(m);
    dsa_compare_free(&cmp);
    return rc;
}

/* ---------------------------------------------------------------- driver */

static int has_phase(const dsa_run *r, int kernel)
{
    for (int i = 0; i < r->n_points; i++) {
        int k = !strcmp(r->points[i].phase, "kernel");
        if (k == kernel) return 1;
    }
    return 0;
}

/* Whether two run files measured the same point: then their figures cannot share one plot. */
static int runs_overlap(const dsa_run *runs, const int *idx, int n)
{
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++)
            for (int i = 0; i < runs[idx[a]].n_points; i++)
                for (int j = 0; j < runs[idx[b]].n_points; j++)
                    if (same_key(&runs[idx[a]], &runs[idx[a]].points[i], &runs[idx[b]], &runs[idx[b]].points[j])) return 1;
    return 0;
}

static int note(plot_ctx *c, const char *name, int rc)
{
    if (rc > 0) return rc;
    if (rc == FIG_MADE) {
        c->made++;
        if (c->o->log)
            fprintf(c->o->log, "plot: made %s/%s.%s\n", c->o->out_dir, name,
                    c->o->render ? "{png,svg,dat,gp}" : "{dat,gp} (not rendered)");
    } else {
        c->skipped++;
        if (c->o->log) fprintf(c->o->log, "plot: skipped %s: %s\n", name, c->skip);
    }
    return 0;
}

int dsa_plot(const dsa_run *runs, const char *const *names, int n_runs, const dsa_plot_opts *o, dsa_err *e)
{
    plot_ctx c = {.o = o, .e = e};
    if (!o->out_dir || !*o->out_dir) return dsa_fail(e, DSA_EXIT_USAGE, "no output folder given (-o DIR)");
    if (n_runs < 1) return dsa_fail(e, DSA_EXIT_USAGE, "no report file given");
    int rc;
    if (o->render && (rc = dsa_plot_find_gnuplot(o, c.gnuplot, sizeof c.gnuplot, e))) return rc;
    struct stat st;
    if (stat(o->out_dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return dsa_fail(e, DSA_EXIT_USAGE, "-o %s: exists and is not a folder", o->out_dir);
    } else if (mkdir(o->out_dir, 0777))
        return dsa_fail(e, DSA_EXIT_RUNTIME, "cannot create the folder '%s': %s", o->out_dir, strerror(errno));

    int *run_idx = calloc((size_t)n_runs, sizeof *run_idx), *kern_idx = calloc((size_t)n_runs, sizeof *kern_idx);
    if (!run_idx || !kern_idx) {
        free(run_idx);
        free(kern_idx);
        return dsa_fail(e, DSA_EXIT_RUNTIME, "out of memory");
    }
    int n_run = 0, n_kern = 0;
    for (int i = 0; i < n_runs; i++) {
        if (has_phase(&runs[i], 0)) run_idx[n_run++] = i;
        if (has_phase(&runs[i], 1)) kern_idx[n_kern++] = i;
        if (!runs[i].n_points && o->log) fprintf(o->log, "plot: %s has no points\n", names[i]);
    }

    static const char *const run_figs[] = {"speedup_prefill", "speedup_decode", "indexer_share", "breakdown_prefill",
                                           "breakdown_decode"};
    dsa_report_row *rows = NULL;
    int n_rows = 0;
    rc = 0;
    if (n_run) {
        /* Files that measured the same points (BASE and NEW of a comparison) cannot share a bar:
         * the per-run figures then show the last of them. */
        int overlap = runs_overlap(runs, run_idx, n_run);
        const dsa_run *set = overlap ? &runs[run_idx[n_run - 1]] : runs;
        if (overlap && o->log)
            fprintf(o->log, "plot: the run files measured the same points; speedup, indexer and breakdown figures show %s only\n",
                    names[run_idx[n_run - 1]]);
        if (dsa_report_rows(set, overlap ? 1 : n_runs, &rows, &n_rows)) rc = dsa_fail(e, DSA_EXIT_RUNTIME, "out of memory");
        if (!rc) rc = note(&c, run_figs[0], fig_speedup(&c, rows, n_rows, 0));
        if (!rc) rc = note(&c, run_figs[1], fig_speedup(&c, rows, n_rows, 1));
        if (!rc) rc = note(&c, run_figs[2], fig_indexer_share(&c, rows, n_rows));
        if (!rc) rc = note(&c, run_figs[3], fig_breakdown(&c, rows, n_rows, 0));
        if (!rc) rc = note(&c, run_figs[4], fig_breakdown(&c, rows, n_rows, 1));
        free(rows);
    } else if (o->log)
        fprintf(o->log, "plot: skipped speedup_*, indexer_share, breakdown_*: no run file (phases prefill/decode) given\n");
    if (!rc && n_kern) {
        if (n_kern > 1 && o->log) fprintf(o->log, "plot: kernels_roofline shows the last kernels file, %s\n", names[kern_idx[n_kern - 1]]);
        rc = note(&c, "kernels_roofline", fig_kernels(&c, &runs[kern_idx[n_kern - 1]], names[kern_idx[n_kern - 1]]));
    } else if (!rc && o->log)
        fprintf(o->log, "plot: skipped kernels_roofline: no kernels file (dsa-bench kernels -o) given\n");
    /* compare: a pair of files of one kind; runs name it compare, kernels too unless both pairs exist */
    if (!rc && n_run == 2)
        rc = note(&c, "compare", fig_compare(&c, "compare", &runs[run_idx[0]], names[run_idx[0]], &runs[run_idx[1]], names[run_idx[1]]));
    if (!rc && n_kern == 2) {
        const char *nm = n_run == 2 ? "compare_kernels" : "compare";
        rc = note(&c, nm, fig_compare(&c, nm, &runs[kern_idx[0]], names[kern_idx[0]], &runs[kern_idx[1]], names[kern_idx[1]]));
    }
    if (!rc && n_run != 2 && n_kern != 2 && o->log)
        fprintf(o->log, "plot: skipped compare: needs two files of the same kind (got %d run, %d kernels)\n", n_run, n_kern);
    free(run_idx);
    free(kern_idx);
    if (!rc && !c.made) rc = dsa_fail(e, DSA_EXIT_RUNTIME, "no figure could be made from the given file(s) (reasons above)");
    return rc;
}
