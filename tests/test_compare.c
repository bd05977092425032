/* tests/test_compare.c — `dsa-bench compare`'s verdicts on reports crafted in memory, written
 * with the HDF5 writer and read back: identical, 10% slower with 1% noise, 10% slower with 20%
 * noise (too noisy to tell), faster, missing and failed points, component rows, key matching,
 * files that cannot be compared; and a real `kernels` report with one case made 10% slower.
 * Files are made in the current directory and removed.
 *
 * With arguments it is the fixture maker of tests/cli_compare.sh (the CLI has no option to doctor
 * a report, on purpose):
 *   test_compare slower IN OUT ID PCT   copy IN with point ID's samples and times PCT% larger;
 *                                       prints the point's config (the kernel's name)
 *   test_compare model IN OUT NAME      copy IN with the model renamed
 *   test_compare schema IN OUT SCHEMA   copy IN with another schema attribute */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "compare.h"
#include "h5report.h"
#include "report.h"
#include "results.h"
#include "sweep.h"

/* Seven samples around median m whose robust noise (1.4826 MAD / median) is exactly `noise`. */
static int set_samples(dsa_point *p, double m, double noise)
{
    static const double u[] = {0, -1, 1, -0.5, 0.5, -1.5, 1.5};
    p->reps = 7;
    free(p->samples);
    p->samples = malloc(7 * sizeof *p->samples);
    if (!p->samples) return -1;
    for (int i = 0; i < 7; i++) p->samples[i] = m * (1 + noise / 1.4826 * u[i]);
    p->wall_median_ms = dsa_median(p->samples, 7);
    p->wall_min_ms = dsa_min(p->samples, 7);
    p->wall_stdev_ms = dsa_stdev(p->samples, 7);
    return 0;
}

static void stamp(dsa_run *r, const char *device, const char *model)
{
    snprintf(r->schema, sizeof r->schema, "%s", DSA_SCHEMA);
    snprintf(r->tool_version, sizeof r->tool_version, "0.1.0");
    snprintf(r->git_sha, sizeof r->git_sha, "0123456789ab");
    snprintf(r->utc, sizeof r->utc, "2026-11-29T10:00:00Z");
    snprintf(r->argv, sizeof r->argv, "dsa-bench test");
    snprintf(r->dev.kind, sizeof r->dev.kind, "cuda");
    snprintf(r->dev.name, sizeof r->dev.name, "%s", device);
    snprintf(r->model.name, sizeof r->model.name, "%s", model);
}

/* A `kernels` report: three cases, kbench's key layout ("<kernel> h=<heads>", rows in chunk). */
static const struct {
    const char *config;
    int64_t ctx;
    int batch, rows;
    int comp;
    double ms;
} cases[] = {
    {"idx_logits_prefill h=32", 65536, 0, 4096, DSA_C_IDX_LOGITS, 2.7},
    {"topk_decode h=0", 200000, 8, 8, DSA_C_IDX_TOPK, 0.040},
    {"sparse_mla_decode h=64", 200000, 32, 32, DSA_C_SPARSE_ATTN, 0.055},
};
#define N_CASES 3

/* scale[i] multiplies case i's median; noise[i] is its noise; skip >= 0 leaves that case out. */
static int build_kernels(dsa_run *r, const double *scale, const double *noise, int skip, const char *device)
{
    memset(r, 0, sizeof *r);
    stamp(r, device, "kernels");
    for (int i = 0; i < N_CASES; i++) {
        if (i == skip) continue;
        dsa_point *p = dsa_run_add_point(r);
        if (!p) return -1;
        snprintf(p->phase, sizeof p->phase, "kernel");
        snprintf(p->config, sizeof p->config, "%s", cases[i].config);
        p->context = cases[i].ctx;
        p->batch = cases[i].batch;
        p->chunk = cases[i].rows;
        if (set_samples(p, cases[i].ms * scale[i], noise[i])) return -1;
        p->comps = calloc(1, sizeof *p->comps);
        if (!p->comps) return -1;
        p->n_comps = 1;
        p->comps[0] = (dsa_comp_stat){cases[i].comp, p->wall_median_ms, p->wall_min_ms, p->wall_stdev_ms, 1.0, 1};
    }
    return 0;
}

/* A `run` report of the tiny model: prefill full and 1/2 at 256 tokens, each with two
 * components; comp_scale multiplies the sparse_attn component of the full point. */
static int build_sweep(dsa_run *r, const char *model, const char *half_config, double comp_scale, int skip_half)
{
    memset(r, 0, sizeof *r);
    dsa_err e = {{0}};
    if (dsa_model_load("tiny", &r->model, &e)) return -1;
    stamp(r, "cpu", model);
    r->layers_run = r->model.n_layers;
    for (int k = 0; k < 2; k++) {
        dsa_point *p = dsa_run_add_point(r);
        if (!p) return -1;
        snprintf(p->phase, sizeof p->phase, "prefill");
        snprintf(p->config, sizeof p->config, "%s", k ? half_config : "full");
        snprintf(p->fs, sizeof p->fs, "%s", k ? "FFSF" : "FFFF");
        p->n_full = k ? 3 : 4;
        p->n_layers = 4;
        p->context = 256;
        p->batch = 1;
        p->chunk = 8192;
        if (set_samples(p, k ? 8.0 : 10.0, 0.01)) return -1;
        if (k && skip_half) {
            p->status = DSA_POINT_SKIPPED;
            snprintf(p->reason, sizeof p->reason, "needs 9.0 GiB, 1.0 GiB free");
        }
        p->comps = calloc(2, sizeof *p->comps);
        if (!p->comps) return -1;
        p->n_comps = 2;
        double attn = (k ? 2.0 : 3.0) * (k ? 1 : comp_scale);
        p->comps[0] = (dsa_comp_stat){DSA_C_IDX_LOGITS, k ? 3.0 : 4.0, 0, 0.01, 0.4, 4};
        p->comps[1] = (dsa_comp_stat){DSA_C_SPARSE_ATTN, attn, 0, 0.01 * attn, 0.3, 4};
    }
    return 0;
}

/* Writes both runs, reads them back and compares: the round trip is part of what is tested. */
static int compare_files(dsa_run *base, dsa_run *cand, double threshold, dsa_compare *out, dsa_err *e)
{
    dsa_run rb, rn;
    memset(&rb, 0, sizeof rb);
    memset(&rn, 0, sizeof rn);
    int rc = dsa_h5_write("compare_base.h5", base, e);
    if (!rc) rc = dsa_h5_write("compare_new.h5", cand, e);
    if (!rc) rc = dsa_h5_read("compare_base.h5", &rb, e);
    if (!rc) rc = dsa_h5_read("compare_new.h5", &rn, e);
    unlink("compare_base.h5");
    unlink("compare_new.h5");
    dsa_run_free(base);
    dsa_run_free(cand);
    *base = rb; /* the rows point into these */
    *cand = rn;
    if (rc) {
        fprintf(stderr, "round trip failed: %s\n", e->msg);
        return -100;
    }
    return dsa_compare_runs(base, cand, threshold, out, e);
}

static const dsa_compare_row *find_row(const dsa_compare *c, const char *config, int component)
{
    for (int i = 0; i < c->n_rows; i++) {
        const dsa_point *p = c->rows[i].base ? c->rows[i].base : c->rows[i].cand;
        if (!strcmp(p->config, config) && c->rows[i].component == component) return &c->rows[i];
    }
    return NULL;
}

static int verdict_of(const dsa_compare *c, const char *config, int component)
{
    const dsa_compare_row *r = find_row(c, config, component);
    return r ? r->verdict : -1;
}

/* The printed table, for checks on what a user reads. */
static char *printed(const dsa_compare *c, const dsa_run *b, const dsa_run *n, int format)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&buf, &len);
    if (!o) return NULL;
    dsa_compare_print(o, c, b, "base.h5", n, "new.h5", format);
    fclose(o);
    return buf;
}

static void test_kernels_verdicts(void)
{
    const double one[N_CASES] = {1, 1, 1}, quiet[N_CASES] = {0.01, 0.01, 0.01};
    dsa_run b, n;
    dsa_compare c;
    dsa_err e = {{0}};

    /* identical: all SAME, exit 0 */
    CHECK_INT(build_kernels(&b, one, quiet, -1, "NVIDIA H200"), 0);
    CHECK_INT(build_kernels(&n, one, quiet, -1, "NVIDIA H200"), 0);
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), 0);
    CHECK_INT(c.kernels, 1);
    CHECK_INT(c.n_rows, N_CASES); /* kernel cases have no separate component rows */
    CHECK_INT(c.n_verdict[DSA_SAME], N_CASES);
    CHECK_INT(dsa_compare_status(&c), 0);
    CHECK_STR(c.warning, "");
    CHECK_NEAR(c.rows[0].ratio, 1.0, 1e-12);
    CHECK_NEAR(c.rows[0].noise, 0.01, 1e-9); /* the robust noise of set_samples is exact */
    dsa_compare_free(&c);
    dsa_run_free(&b);
    dsa_run_free(&n);

    /* one kernel 10% slower with 1% noise: SLOWER, named, exit 1 */
    const double slow1[N_CASES] = {1, 1.10, 1};
    CHECK_INT(build_kernels(&b, one, quiet, -1, "NVIDIA H200"), 0);
    CHECK_INT(build_kernels(&n, slow1, quiet, -1, "NVIDIA H200"), 0);
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), 0);
    CHECK_INT(verdict_of(&c, "topk_decode h=0", -1), DSA_SLOWER);
    CHECK_INT(verdict_of(&c, "idx_logits_prefill h=32", -1), DSA_SAME);
    CHECK_INT(verdict_of(&c, "sparse_mla_decode h=64", -1), DSA_SAME);
    CHECK_INT(c.n_verdict[DSA_SLOWER], 1);
    CHECK_INT(dsa_compare_status(&c), DSA_EXIT_SLOWER);
    const dsa_compare_row *r = find_row(&c, "topk_decode h=0", -1);
    CHECK(r && fabs(r->ratio - 1.10) < 1e-9);
    char *txt = printed(&c, &b, &n, DSA_FMT_TEXT);
    CHECK(txt && strstr(txt, "SLOWER: topk_decode h=0 context 200000 batch 8 rows 8 (x1.100)"));
    CHECK(txt && strstr(txt, "3 points: 2 SAME, 0 FASTER, 1 SLOWER, 0 MISSING; exit 1"));
    CHECK(txt && strstr(txt, "   kernel   topk_decode h=0"));
    free(txt);
    txt = printed(&c, &b, &n, DSA_FMT_JSON);
    CHECK(txt && strstr(txt, "\"SLOWER\": 1") && strstr(txt, "\"exit\": 1") && strstr(txt, "\"verdict\": \"SLOWER\""));
    free(txt);
    txt = printed(&c, &b, &n, DSA_FMT_MD);
    CHECK(txt && strstr(txt, "| kernel | topk_decode h=0 | 200000 | 8 | 8 | wall |") && strstr(txt, " SLOWER |"));
    free(txt);
    /* the same file with a threshold above 10%: SAME */
    dsa_compare c2;
    CHECK_INT(dsa_compare_runs(&b, &n, 0.15, &c2, &e), 0);
    CHECK_INT(c2.n_verdict[DSA_SLOWER], 0);
    CHECK_INT(dsa_compare_status(&c2), 0);
    dsa_compare_free(&c2);
    /* and swapped: FASTER, exit 0 */
    CHECK_INT(dsa_compare_runs(&n, &b, DSA_COMPARE_THRESHOLD, &c2, &e), 0);
    CHECK_INT(verdict_of(&c2, "topk_decode h=0", -1), DSA_FASTER);
    CHECK_INT(c2.n_verdict[DSA_FASTER], 1);
    CHECK_INT(dsa_compare_status(&c2), 0);
    dsa_compare_free(&c2);
    dsa_compare_free(&c);
    dsa_run_free(&b);
    dsa_run_free(&n);

    /* the SM clock, where both files have it: a move over 1% is noted on the point row (only) */
    CHECK_INT(build_kernels(&b, one, quiet, -1, "NVIDIA H200"), 0);
    CHECK_INT(build_kernels(&n, slow1, quiet, -1, "NVIDIA H200"), 0);
    for (int i = 0; i < N_CASES; i++) {
        b.points[i].sm_clock_mean_mhz = 1980;
        n.points[i].sm_clock_mean_mhz = i == 1 ? 1845 : 1975; /* topk_decode's clock dropped; others 0.25% */
    }
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), 0);
    r = find_row(&c, "topk_decode h=0", -1);
    CHECK(r && r->verdict == DSA_SLOWER && !strcmp(r->note, "SM clock 1980 -> 1845 MHz (mean)"));
    r = find_row(&c, "idx_logits_prefill h=32", -1);
    CHECK(r && r->note[0] == '\0');
    txt = printed(&c, &b, &n, DSA_FMT_TEXT);
    CHECK(txt && strstr(txt, "SLOWER: SM clock 1980 -> 1845 MHz (mean)\n"));
    free(txt);
    dsa_compare_free(&c);
    n.points[1].sm_clock_mean_mhz = 0; /* not measured in one file: no note */
    CHECK_INT(dsa_compare_runs(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), 0);
    r = find_row(&c, "topk_decode h=0", -1);
    CHECK(r && r->note[0] == '\0');
    dsa_compare_free(&c);
    dsa_run_free(&b);
    dsa_run_free(&n);

    /* 10% slower but 20% noise (in NEW only): too noisy to tell, SAME */
    const double noisy[N_CASES] = {0.01, 0.20, 0.01};
    CHECK_INT(build_kernels(&b, one, quiet, -1, "NVIDIA H200"), 0);
    CHECK_INT(build_kernels(&n, slow1, noisy, -1, "NVIDIA H200"), 0);
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), 0);
    CHECK_INT(verdict_of(&c, "topk_decode h=0", -1), DSA_SAME);
    r = find_row(&c, "topk_decode h=0", -1);
    CHECK(r && fabs(r->noise - 0.20) < 1e-9);
    CHECK_INT(dsa_compare_status(&c), 0);
    dsa_compare_free(&c);
    dsa_run_free(&b);
    dsa_run_free(&n);

    /* 4% slower with 1% noise: within the 5% threshold, SAME; 6%: SLOWER */
    const double slow4[N_CASES] = {1.04, 1, 1}, slow6[N_CASES] = {1.06, 1, 1};
    CHECK_INT(build_kernels(&b, one, quiet, -1, "NVIDIA H200"), 0);
    CHECK_INT(build_kernels(&n, slow4, quiet, -1, "NVIDIA H200"), 0);
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), 0);
    CHECK_INT(verdict_of(&c, "idx_logits_prefill h=32", -1), DSA_SAME);
    dsa_compare_free(&c);
    dsa_run_free(&b);
    dsa_run_free(&n);
    CHECK_INT(build_kernels(&b, one, quiet, -1, "NVIDIA H200"), 0);
    CHECK_INT(build_kernels(&n, slow6, quiet, -1, "NVIDIA H200"), 0);
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), 0);
    CHECK_INT(verdict_of(&c, "idx_logits_prefill h=32", -1), DSA_SLOWER);
    dsa_compare_free(&c);
    dsa_run_free(&b);
    dsa_run_free(&n);

    /* 10% faster with 1% noise: FASTER, exit 0 */
    const double fast[N_CASES] = {1, 1, 0.90};
    CHECK_INT(build_kernels(&b, one, quiet, -1, "NVIDIA H200"), 0);
    CHECK_INT(build_kernels(&n, fast, quiet, -1, "NVIDIA H200"), 0);
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), 0);
    CHECK_INT(verdict_of(&c, "sparse_mla_decode h=64", -1), DSA_FASTER);
    CHECK_INT(c.n_verdict[DSA_FASTER], 1);
    CHECK_INT(c.n_verdict[DSA_SAME], 2);
    CHECK_INT(dsa_compare_status(&c), 0);
    dsa_compare_free(&c);
    dsa_run_free(&b);
    dsa_run_free(&n);

    /* missing points, both ways: MISSING, not a failure; another device: a warning */
    CHECK_INT(build_kernels(&b, one, quiet, 0, "NVIDIA H200"), 0);
    CHECK_INT(build_kernels(&n, one, quiet, 2, "NVIDIA H100 80GB HBM3"), 0);
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), 0);
    CHECK_INT(c.n_rows, 3);
    CHECK_INT(verdict_of(&c, "topk_decode h=0", -1), DSA_SAME);
    CHECK_INT(verdict_of(&c, "sparse_mla_decode h=64", -1), DSA_MISSING);
    CHECK_INT(verdict_of(&c, "idx_logits_prefill h=32", -1), DSA_MISSING);
    r = find_row(&c, "sparse_mla_decode h=64", -1);
    CHECK(r && r->base && !r->cand && !strcmp(r->note, "not in new"));
    r = find_row(&c, "idx_logits_prefill h=32", -1);
    CHECK(r && !r->base && r->cand && !strcmp(r->note, "not in base"));
    CHECK_INT(c.n_verdict[DSA_MISSING], 2);
    CHECK_INT(dsa_compare_status(&c), 0);
    CHECK(strstr(c.warning, "other devices") && strstr(c.warning, "H100"));
    dsa_compare_free(&c);
    dsa_run_free(&b);
    dsa_run_free(&n);

    /* a case that failed in NEW: MISSING with the reason; shape differences are other keys */
    CHECK_INT(build_kernels(&b, one, quiet, -1, "NVIDIA H200"), 0);
    CHECK_INT(build_kernels(&n, one, quiet, -1, "NVIDIA H200"), 0);
    n.points[1].status = DSA_POINT_FAILED;
    snprintf(n.points[1].reason, sizeof n.points[1].reason, "out of device memory");
    n.points[2].batch = 64; /* another shape of the same kernel */
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), 0);
    r = find_row(&c, "topk_decode h=0", -1);
    CHECK(r && r->verdict == DSA_MISSING && strstr(r->note, "failed in new: out of device memory"));
    CHECK_INT(c.n_rows, 4); /* sparse_mla_decode batch 32 not in new, batch 64 not in base */
    CHECK_INT(c.n_verdict[DSA_MISSING], 3);
    CHECK_INT(dsa_compare_status(&c), 0);
    dsa_compare_free(&c);
    dsa_run_free(&b);
    dsa_run_free(&n);
}

static void test_run_reports(void)
{
    dsa_run b, n;
    dsa_compare c;
    dsa_err e = {{0}};

    /* "1/2" and "freq:2" resolve to one F/S string: the same key. A component 50% slower is
     * reported but does not fail the comparison while the point itself is SAME. */
    CHECK_INT(build_sweep(&b, "tiny", "1/2", 1.0, 0), 0);
    CHECK_INT(build_sweep(&n, "tiny", "freq:2", 1.5, 0), 0);
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), 0);
    CHECK_INT(c.kernels, 0);
    CHECK_INT(c.n_rows, 6); /* two points, each wall + two components */
    CHECK_INT(verdict_of(&c, "full", -1), DSA_SAME);
    CHECK_INT(verdict_of(&c, "1/2", -1), DSA_SAME);
    CHECK_INT(verdict_of(&c, "full", DSA_C_SPARSE_ATTN), DSA_SLOWER);
    CHECK_INT(verdict_of(&c, "full", DSA_C_IDX_LOGITS), DSA_SAME);
    const dsa_compare_row *r = find_row(&c, "full", DSA_C_SPARSE_ATTN);
    CHECK(r && r->counts == 0 && fabs(r->ratio - 1.5) < 1e-9 && fabs(r->noise - 0.01) < 1e-9);
    CHECK_INT(c.n_verdict[DSA_SAME], 2); /* counted rows are the two points */
    CHECK_INT(dsa_compare_status(&c), 0);
    char *txt = printed(&c, &b, &n, DSA_FMT_TEXT);
    CHECK(txt && strstr(txt, "component rows are informational"));
    CHECK(txt && strstr(txt, "sparse_attn") && strstr(txt, "2 points: 2 SAME, 0 FASTER, 0 SLOWER, 0 MISSING; exit 0"));
    free(txt);
    dsa_compare_free(&c);
    dsa_run_free(&b);
    dsa_run_free(&n);

    /* a skipped point: MISSING with the reason */
    CHECK_INT(build_sweep(&b, "tiny", "1/2", 1.0, 1), 0);
    CHECK_INT(build_sweep(&n, "tiny", "1/2", 1.0, 0), 0);
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), 0);
    r = find_row(&c, "1/2", -1);
    CHECK(r && r->verdict == DSA_MISSING && strstr(r->note, "skipped in base: needs 9.0 GiB"));
    CHECK_INT(dsa_compare_status(&c), 0);
    dsa_compare_free(&c);
    dsa_run_free(&b);
    dsa_run_free(&n);

    /* other model: usage error naming both */
    CHECK_INT(build_sweep(&b, "tiny", "1/2", 1.0, 0), 0);
    CHECK_INT(build_sweep(&n, "glm-4.7-flash-dsa", "1/2", 1.0, 0), 0);
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), DSA_EXIT_USAGE);
    CHECK(strstr(e.msg, "other model: base is 'tiny', new is 'glm-4.7-flash-dsa'") && !strchr(e.msg, '\n'));
    CHECK_INT(c.n_rows, 0);
    dsa_run_free(&b);
    dsa_run_free(&n);

    /* same name, other shapes (--set topk=32): usage error naming the field */
    CHECK_INT(build_sweep(&b, "tiny", "1/2", 1.0, 0), 0);
    CHECK_INT(build_sweep(&n, "tiny", "1/2", 1.0, 0), 0);
    n.model.topk = 32;
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), DSA_EXIT_USAGE);
    CHECK(strstr(e.msg, "other model shapes: tiny topk = 64, new = 32"));
    dsa_run_free(&b);
    dsa_run_free(&n);

    /* other layer count */
    CHECK_INT(build_sweep(&b, "tiny", "1/2", 1.0, 0), 0);
    CHECK_INT(build_sweep(&n, "tiny", "1/2", 1.0, 0), 0);
    n.layers_run = 2;
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), DSA_EXIT_USAGE);
    CHECK(strstr(e.msg, "base ran 4 layers, new 2"));
    dsa_run_free(&b);
    dsa_run_free(&n);

    /* a kernels report against a run report */
    const double one[N_CASES] = {1, 1, 1}, quiet[N_CASES] = {0.01, 0.01, 0.01};
    CHECK_INT(build_kernels(&b, one, quiet, -1, "cpu"), 0);
    CHECK_INT(build_sweep(&n, "tiny", "1/2", 1.0, 0), 0);
    CHECK_INT(compare_files(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), DSA_EXIT_USAGE);
    CHECK(strstr(e.msg, "base is a `kernels` report, new a `run` report"));
    dsa_run_free(&b);
    dsa_run_free(&n);
    CHECK_INT(dsa_compare_runs(&b, &b, -1, &c, &e), DSA_EXIT_USAGE);
}

/* Scales point id's samples and times by f: the fixture of "one kernel made slower". */
static void slow_down(dsa_point *p, double f)
{
    for (int i = 0; i < p->reps; i++) p->samples[i] *= f;
    p->wall_median_ms *= f;
    p->wall_min_ms *= f;
    p->wall_stdev_ms *= f;
    for (int i = 0; i < p->n_comps; i++) {
        p->comps[i].median_ms *= f;
        p->comps[i].min_ms *= f;
        p->comps[i].stdev_ms *= f;
    }
}

/* The acceptance flow on a real GPU report: itself is all SAME; one case 10% slower is the one
 * SLOWER row. results/baseline-h200.h5 when it exists, else results/kernels-h200.h5. */
static void test_real_report(void)
{
    const char *data = getenv("DSA_TEST_DATA");
    char path[1024];
    const char *names[] = {"baseline-h200.h5", "kernels-h200.h5"};
    int found = 0;
    for (int i = 0; i < 2 && !found; i++) {
        /* tests/data/../../results; without the variable, from build-x/tests */
        snprintf(path, sizeof path, "%s/../../results/%s", data ? data : "../../tests/data", names[i]);
        found = access(path, R_OK) == 0;
    }
    if (!found) {
        fprintf(stderr, "test_real_report: no results/*-h200.h5 found next to %s\n", data ? data : "(unset)");
        check_failures++;
        return;
    }
    dsa_run b, n;
    dsa_compare c;
    dsa_err e = {{0}};
    CHECK_INT(dsa_h5_read(path, &b, &e), 0);
    CHECK_INT(dsa_h5_read(path, &n, &e), 0);
    CHECK_INT(dsa_compare_runs(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), 0);
    CHECK_INT(c.kernels, 1);
    CHECK(c.n_rows == b.n_points && c.n_verdict[DSA_SAME] == b.n_points);
    CHECK_INT(dsa_compare_status(&c), 0);
    /* the victim: the first case quiet enough (noise < 4%) for 10% to be beyond its noise */
    int victim = -1;
    for (int i = 0; i < c.n_rows && victim < 0; i++)
        if (c.rows[i].verdict == DSA_SAME && c.rows[i].noise < 0.04) victim = i;
    dsa_compare_free(&c);
    CHECK(victim >= 0);
    if (victim < 0) victim = 0;
    slow_down(&n.points[victim], 1.10);
    CHECK_INT(dsa_h5_write("compare_slow.h5", &n, &e), 0);
    dsa_run_free(&n);
    CHECK_INT(dsa_h5_read("compare_slow.h5", &n, &e), 0);
    unlink("compare_slow.h5");
    CHECK_INT(dsa_compare_runs(&b, &n, DSA_COMPARE_THRESHOLD, &c, &e), 0);
    CHECK_INT(c.n_verdict[DSA_SLOWER], 1);
    CHECK_INT(c.n_verdict[DSA_SAME], b.n_points - 1);
    CHECK_INT(dsa_compare_status(&c), DSA_EXIT_SLOWER);
    CHECK(c.rows[victim].verdict == DSA_SLOWER && c.rows[victim].base == &b.points[victim]);
    dsa_compare_free(&c);
    dsa_run_free(&b);
    dsa_run_free(&n);
}

/* ---- fixture maker for tests/cli_compare.sh ---- */

static int set_schema(const char *path, const char *schema)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t st = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a = -1;
    int rc = (f < 0 || st < 0 || sp < 0 || H5Tset_size(st, strlen(schema) + 1) < 0 ||
              H5Adelete(f, "schema") < 0 || (a = H5Acreate2(f, "schema", st, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
              H5Awrite(a, st, schema) < 0)
                 ? -1
                 : 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (st >= 0) H5Tclose(st);
    if (f >= 0) H5Fclose(f);
    return rc;
}

static int make_fixture(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: test_compare slower IN OUT ID PCT | model IN OUT NAME | schema IN OUT SCHEMA\n");
        return 2;
    }
    dsa_run r;
    dsa_err e = {{0}};
    if (dsa_h5_read(argv[2], &r, &e)) {
        fprintf(stderr, "test_compare: %s\n", e.msg);
        return 3;
    }
    int rc = 0;
    if (!strcmp(argv[1], "slower") && argc == 6) {
        int id = atoi(argv[4]);
        if (id < 0 || id >= r.n_points) rc = 2;
        else {
            slow_down(&r.points[id], 1 + atof(argv[5]) / 100);
            printf("%s\n", r.points[id].config);
        }
    } else if (!strcmp(argv[1], "model"))
        snprintf(r.model.name, sizeof r.model.name, "%s", argv[4]);
    else if (strcmp(argv[1], "schema"))
        rc = 2;
    if (!rc && dsa_h5_write(argv[3], &r, &e)) rc = 3;
    if (!rc && !strcmp(argv[1], "schema") && set_schema(argv[3], argv[4])) rc = 3;
    if (rc) fprintf(stderr, "test_compare %s: failed (%s)\n", argv[1], e.msg);
    dsa_run_free(&r);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 1) return make_fixture(argc, argv);
    test_kernels_verdicts();
    test_run_reports();
    test_real_report();
    return check_done("test_compare");
}
