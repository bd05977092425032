/* tests/test_h5_fuzz.c — corrupt copies of a realistic report must read back as a clean error (or,
 * where the damage hits unchecked raw data, as a report), never as a crash or a hang.
 *
 * One report (three points, a few hundred kernel rows) is written, then copies are read:
 *   (a) 8 bytes inverted at every 64th offset, one copy each;
 *   (b) the file cut at several lengths.
 * Each dsa_h5_read must return DSA_EXIT_OK or DSA_EXIT_RUNTIME with a one-line message. Running to
 * the end is the proof that nothing crashed; a crash or a read stuck for 20 s prints the case that
 * did it before the process dies. Copies reuse one file name, in the current directory.
 *
 * By hand: DSA_H5_FUZZ_STEP=1 (every offset) and DSA_H5_FUZZ_WIDTH=N (bytes inverted per case)
 * widen the search; the counts are printed either way. */
#include <hdf5.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "h5report.h"
#include "results.h"

#define SRC "h5_fuzz_src.h5"
#define CASE "h5_fuzz_case.h5"
#define CASE_SECONDS 20

/* ---- the case being read, for the crash and hang handlers ------------------------------- */

static char current_case[160];

static void on_fatal(int sig)
{
    static const char pre[] = "\ntest_h5_fuzz: died while reading ";
    const char *what = sig == SIGALRM ? " (hung)\n" : " (crashed)\n";
    size_t n = strlen(current_case);
    ssize_t w;
    w = write(2, pre, sizeof pre - 1);
    w = write(2, current_case, n);
    w = write(2, what, strlen(what));
    (void)w;
    signal(SIGABRT, SIG_DFL); /* a hang ends as an abort, without this handler twice */
    signal(sig, SIG_DFL);
    raise(sig == SIGALRM ? SIGABRT : sig);
}

static void install_handlers(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGALRM};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND;
        sigaction(sigs[i], &sa, NULL);
    }
}

/* ---- the report ------------------------------------------------------------------------- */

static const char *const kernel_names[] = {
    "embed_kernel<__nv_bfloat16>",
    "rmsnorm_fwd_kernel<__nv_bfloat16, 7168>",
    "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute",
    "fp8_mqa_logits_kernel<64, 128, true>",
    "radix_topk_2048_kernel",
    "sparse_mla_fwd_kernel<576, 512, 64>",
    "moe_router_sigmoid_grouped_topk",
    "moe_grouped_gemm_fp8_kernel<ue8m0>",
    "",
};

static void add_kernels(dsa_point *p, int reps, int layers, int per_layer, uint32_t *seed)
{
    size_t n = 0, cap = (size_t)reps * (size_t)layers * (size_t)per_layer;
    p->kernels = calloc(cap, sizeof *p->kernels);
    if (!p->kernels) return;
    for (int r = 0; r < reps; r++) {
        int64_t t = 0;
        for (int l = 0; l < layers; l++)
            for (int k = 0; k < per_layer; k++) {
                dsa_kernel_rec *x = &p->kernels[n++];
                const int nn = (int)(sizeof kernel_names / sizeof kernel_names[0]);
                *seed = *seed * 1103515245u + 12345u;
                x->rep = r;
                x->layer = l == 0 && k == 0 ? -1 : l;
                x->component = (k * 3 + l) % DSA_NCOMP;
                snprintf(x->name, sizeof x->name, "%s", kernel_names[(k + l) % nn]);
                x->start_ns = t;
                t += 1000 + (*seed >> 20);
                x->end_ns = t;
                x->graph_node = (k % 4) ? ((uint64_t)l << 32 | (uint64_t)k) : 0;
                x->grid[0] = 132;
                x->grid[1] = 1 + k % 3;
                x->grid[2] = 1;
                x->block[0] = 128 * (1 + k % 3);
                x->block[1] = x->block[2] = 1;
            }
    }
    p->n_kernels = n;
}

static int fill_point(dsa_point *p, const char *phase, int64_t context, int batch,
                      const char *config, const char *fs, int reps, int per_layer,
                      uint32_t *seed)
{
    snprintf(p->phase, sizeof p->phase, "%s", phase);
    p->context = context;
    p->batch = batch;
    p->chunk = 8192;
    snprintf(p->config, sizeof p->config, "%s", config);
    snprintf(p->fs, sizeof p->fs, "%s", fs);
    p->n_layers = (int32_t)strlen(fs);
    for (const char *c = fs; *c; c++) p->n_full += *c == 'F';
    p->reps = reps;
    p->wall_median_ms = 12.5 + context * 1e-4;
    p->wall_min_ms = p->wall_median_ms * 0.98;
    p->wall_stdev_ms = p->wall_median_ms * 0.01;
    p->indexer_ms = p->wall_median_ms * 0.2;
    p->indexer_share = 0.2;
    p->tok_s = (double)context / (p->wall_median_ms * 1e-3);
    p->status = DSA_POINT_OK;
    if (!(p->samples = calloc((size_t)reps, sizeof *p->samples))) return -1;
    for (int r = 0; r < reps; r++) p->samples[r] = p->wall_median_ms + 0.01 * r;
    if (!(p->comps = calloc(DSA_NCOMP, sizeof *p->comps))) return -1;
    for (int c = 0; c < DSA_NCOMP; c++) {
        dsa_comp_stat *s = &p->comps[p->n_comps++];
        s->component = c;
        s->median_ms = 0.1 * (c + 1);
        s->min_ms = 0.09 * (c + 1);
        s->stdev_ms = 0.001 * c;
        s->share = s->median_ms / p->wall_median_ms;
        s->kernels = c % 5;
    }
    add_kernels(p, reps, p->n_layers, per_layer, seed);
    return p->kernels ? 0 : -1;
}

static int build_report(dsa_run *r)
{
    uint32_t seed = 42;
    dsa_point *p;
    memset(r, 0, sizeof *r);
    snprintf(r->tool_version, sizeof r->tool_version, "0.1.0");
    snprintf(r->git_sha, sizeof r->git_sha, "5e1e309abcde");
    snprintf(r->utc, sizeof r->utc, "2026-11-28T21:07:47Z");
    snprintf(r->argv, sizeof r->argv,
             "dsa-bench run -m deepseek-v3.2 --layers 4 --contexts 8192,200000 --configs "
             "full,1/4 -o run.h5");
    snprintf(r->dev.kind, sizeof r->dev.kind, "cuda");
    snprintf(r->dev.name, sizeof r->dev.name, "NVIDIA H200");
    r->dev.cc_major = 9;
    r->dev.sms = 132;
    r->dev.l2_bytes = 62914560;
    r->dev.mem_bytes = 150754820096LL;
    r->dev.driver_version = 13010;
    r->dev.sm_clock_mhz = 1980;
    r->dev.peak_bf16_tflops = 801.25;
    r->model = *dsa_model_preset_at(0);
    r->layers_run = 4;

    if (!(p = dsa_run_add_point(r)) ||
        fill_point(p, "prefill", 8192, 1, "full", "FFFF", 3, 12, &seed) != 0)
        return -1;
    if (!(p = dsa_run_add_point(r)) ||
        fill_point(p, "decode", 8192, 32, "1/4", "FSSS", 2, 10, &seed) != 0)
        return -1;
    if (!(p = dsa_run_add_point(r))) return -1;
    snprintf(p->phase, sizeof p->phase, "decode");
    p->context = 200000;
    p->batch = 64;
    snprintf(p->config, sizeof p->config, "full");
    snprintf(p->fs, sizeof p->fs, "FFFF");
    p->status = DSA_POINT_SKIPPED;
    snprintf(p->reason, sizeof p->reason, "needs 212.4 GiB, 139.8 GiB free");
    return 0;
}

/* ---- cases ------------------------------------------------------------------------------ */

typedef struct tally {
    int cases, ok, runtime, other, leaks;
} tally;

static int one_line(const char *s) { return s[0] != '\0' && strchr(s, '\n') == NULL; }

static int write_bytes(const char *path, const unsigned char *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    int rc = f && fwrite(buf, 1, n, f) == n ? 0 : -1;
    if (f && fclose(f) != 0) rc = -1;
    return rc;
}

static void read_case(tally *t)
{
    dsa_run run;
    dsa_err e = {{0}};
    alarm(CASE_SECONDS);
    int rc = dsa_h5_read(CASE, &run, &e);
    alarm(0);
    t->cases++;
    /* Whatever failed, nothing of the file may stay open in HDF5. */
    ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_ids != 0) {
        t->leaks++;
        fprintf(stderr, "%s: %zd HDF5 object(s) left open (rc %d: %s)\n", current_case, open_ids, rc, e.msg);
    }
    if (rc == DSA_EXIT_OK) {
        t->ok++;
        dsa_run_free(&run);
    } else if (rc == DSA_EXIT_RUNTIME) {
        t->runtime++;
        if (!one_line(e.msg) || !strstr(e.msg, CASE)) {
            fprintf(stderr, "%s: bad message: %s\n", current_case, e.msg);
            check_failures++;
        }
        CHECK(run.points == NULL && run.n_points == 0);
    } else {
        t->other++;
        fprintf(stderr, "%s: exit %d: %s\n", current_case, rc, e.msg);
        check_failures++;
    }
}

static long env_long(const char *name, long dflt, long lo)
{
    const char *s = getenv(name);
    long v = s && *s ? strtol(s, NULL, 0) : dflt;
    return v < lo ? dflt : v;
}

static void print_tally(const char *what, const tally *t)
{
    printf("%-34s %5d cases: %5d read ok, %5d runtime error, %d other, %d left files open\n", what,
           t->cases, t->ok, t->runtime, t->other, t->leaks);
}

int main(void)
{
    dsa_run run;
    dsa_err e = {{0}};
    unsigned char *good = NULL, *buf = NULL;
    size_t size = 0;
    FILE *f;

    setvbuf(stdout, NULL, _IOLBF, 0);
    install_handlers();
    CHECK(build_report(&run) == 0);
    CHECK_INT(dsa_h5_write(SRC, &run, &e), DSA_EXIT_OK);
    dsa_run_free(&run);
    if ((f = fopen(SRC, "rb"))) {
        if (fseek(f, 0, SEEK_END) == 0) {
            long n = ftell(f);
            size = n > 0 ? (size_t)n : 0;
        }
        good = size ? malloc(size) : NULL;
        buf = size ? malloc(size) : NULL;
        if (!good || !buf || fseek(f, 0, SEEK_SET) != 0 || fread(good, 1, size, f) != size)
            size = 0;
        fclose(f);
    }
    CHECK(size > 0);
    if (size == 0) return check_done("test_h5_fuzz");
    printf("report: %zu bytes\n", size);

    /* The untouched copy reads. */
    {
        tally t = {0};
        snprintf(current_case, sizeof current_case, "the intact copy");
        CHECK_INT(write_bytes(CASE, good, size), 0);
        read_case(&t);
        CHECK_INT(t.ok, 1);
    }

    /* (a) inverted bytes */
    {
        long step = env_long("DSA_H5_FUZZ_STEP", 64, 1), width = env_long("DSA_H5_FUZZ_WIDTH", 8, 1);
        char what[64];
        tally t = {0};
        for (size_t off = 0; off < size; off += (size_t)step) {
            size_t end = off + (size_t)width < size ? off + (size_t)width : size;
            memcpy(buf, good, size);
            for (size_t i = off; i < end; i++) buf[i] ^= 0xFF;
            snprintf(current_case, sizeof current_case, "bytes %zu..%zu inverted", off, end - 1);
            if (write_bytes(CASE, buf, size) != 0) {
                CHECK(!"cannot write the case file");
                break;
            }
            read_case(&t);
        }
        snprintf(what, sizeof what, "(a) %ld byte(s) inverted every %ld:", width, step);
        print_tally(what, &t);
        CHECK_INT(t.other, 0);
        CHECK(t.runtime > 0);
    }

    /* (b) truncated copies: none can be whole, so none may read. */
    {
        const size_t cuts[] = {0, 1, 8, 96, 512, 2048, size / 4, size / 2, size * 3 / 4,
                               size - 4096, size - 512, size - 64, size - 8, size - 1};
        tally t = {0};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            if (cuts[i] >= size) continue; /* size - 4096 on a small file */
            snprintf(current_case, sizeof current_case, "the first %zu bytes", cuts[i]);
            CHECK_INT(write_bytes(CASE, good, cuts[i]), 0);
            read_case(&t);
        }
        print_tally("(b) truncated:", &t);
        CHECK_INT(t.ok, 0);
        CHECK_INT(t.other, 0);
    }

    free(good);
    free(buf);
    remove(CASE);
    return check_done("test_h5_fuzz");
}
