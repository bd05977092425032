/* tests/test_h5_fuzz.c — corrupt copies of a realistic report must read back as a clean error
 * (or, where the damage hits bytes nothing checks, as a report), never as a crash or a hang.
 *
 * One report (three points, a few hundred kernel rows) is written, then copies are read:
 *   (a) 8 bytes inverted at every 64th offset, one copy each;
 *   (b) the file cut at several lengths;
 *   (c) each field of the first entry of every chunk index node (see below).
 * Each dsa_h5_read must return DSA_EXIT_OK or DSA_EXIT_RUNTIME with a one-line message, and leave
 * nothing open in HDF5. Running to the end is the proof that nothing crashed; a crash or a read
 * stuck for CASE_SECONDS prints the case that did it before the process dies. Copies reuse one
 * file name, in the current directory. No byte range is excluded: with fixed-length strings no
 * offset is known to crash HDF5 1.10.8 (every offset, several patterns, was tried by hand).
 *
 * "read ok" cases are damage to bytes that carry no checksum and that the reader does not use or
 * cannot judge: unused space in the v1 B-tree nodes of the chunk indexes (about 2 KiB a chunked
 * dataset, mostly empty), the raw doubles of /points/<id>/samples, free space in heaps.
 *
 * Under valgrind this is free of invalid reads and writes; the "definitely lost" blocks it reports
 * are HDF5's own (an object header that fails its checksum is never freed, 1.10.8).
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
#define SRC_BIG "h5_fuzz_big.h5"
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

/* One point whose 4200 kernel rows take 3 chunks (about 1680 rows a chunk). */
static int build_big_report(dsa_run *r)
{
    uint32_t seed = 7;
    dsa_point *p;
    memset(r, 0, sizeof *r);
    snprintf(r->argv, sizeof r->argv, "dsa-bench run -m deepseek-v3.2 --layers 4");
    r->model = *dsa_model_preset_at(0);
    r->layers_run = 4;
    return (p = dsa_run_add_point(r)) &&
                   fill_point(p, "prefill", 65536, 1, "full", "FFFF", 3, 350, &seed) == 0
               ? 0
               : -1;
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

/* Whether b holds what a holds: every point, its table row, and its arrays byte for byte. */
static int same_run(const dsa_run *a, const dsa_run *b)
{
    if (a->n_points != b->n_points || strcmp(a->argv, b->argv) != 0 ||
        strcmp(a->dev.name, b->dev.name) != 0 || a->layers_run != b->layers_run)
        return 0;
    for (int i = 0; i < a->n_points; i++) {
        const dsa_point *p = &a->points[i], *q = &b->points[i];
        if (p->id != q->id || strcmp(p->phase, q->phase) != 0 || p->context != q->context ||
            strcmp(p->config, q->config) != 0 || strcmp(p->fs, q->fs) != 0 ||
            p->reps != q->reps || p->status != q->status || strcmp(p->reason, q->reason) != 0 ||
            p->wall_median_ms != q->wall_median_ms || p->n_comps != q->n_comps ||
            p->n_kernels != q->n_kernels)
            return 0;
        if ((p->reps > 0 && memcmp(p->samples, q->samples, (size_t)p->reps * sizeof *p->samples)) ||
            (p->n_comps && memcmp(p->comps, q->comps, (size_t)p->n_comps * sizeof *p->comps)) ||
            (p->n_kernels && memcmp(p->kernels, q->kernels, p->n_kernels * sizeof *p->kernels)))
            return 0;
    }
    return 1;
}

/* Reads the case file and counts the outcome. With `expect`, a read that succeeds must also give
 * back exactly that run (damage that is harmless is fine; damage that changes data is not). */
static void read_case(tally *t, const dsa_run *expect)
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
        fprintf(stderr, "%s: %zd HDF5 object(s) left open (rc %d: %s)\n", current_case,
                open_ids, rc, e.msg);
    }
    if (rc == DSA_EXIT_OK) {
        t->ok++;
        if (expect && !same_run(expect, &run)) {
            fprintf(stderr, "%s: read without error, but not what was written\n", current_case);
            t->other++;
        }
        dsa_run_free(&run);
    } else if (rc == DSA_EXIT_RUNTIME) {
        t->runtime++;
        if (!one_line(e.msg) || !strstr(e.msg, CASE)) {
            fprintf(stderr, "%s: bad message: %s\n", current_case, e.msg);
            t->other++;
        }
        CHECK(run.points == NULL && run.n_points == 0);
    } else {
        t->other++;
        fprintf(stderr, "%s: exit %d: %s\n", current_case, rc, e.msg);
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
    printf("%-34s %5d cases: %5d read ok, %5d runtime error, %d other, %d left HDF5 objects open\n",
           what, t->cases, t->ok, t->runtime, t->other, t->leaks);
}

/* Writes run to path and loads the file's bytes into *buf (malloc'd); its size, 0 on failure. */
static size_t write_and_load(const char *path, const dsa_run *run, unsigned char **buf)
{
    dsa_err e = {{0}};
    size_t size = 0;
    FILE *f;
    *buf = NULL;
    CHECK_INT(dsa_h5_write(path, run, &e), DSA_EXIT_OK);
    if (!(f = fopen(path, "rb"))) return 0;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        size = n > 0 ? (size_t)n : 0;
    }
    if (size && (!(*buf = malloc(size)) || fseek(f, 0, SEEK_SET) != 0 ||
                 fread(*buf, 1, size, f) != size)) {
        free(*buf);
        *buf = NULL;
        size = 0;
    }
    fclose(f);
    return size;
}

/* (c) for one report: damages each field of the first entries of each leaf of its chunk indexes
 * (see main), and returns the number of leaves. */
static int chunk_index_cases(const unsigned char *good, size_t size, const dsa_run *run, tally *t)
{
    /* Byte offsets in a raw-data node of a 1-D dataset: a 24-byte header, then per entry a
     * 24-byte key (chunk size 4, filter mask 4, row offset 8, element offset 8) and a child
     * address (8). */
    static const struct {
        size_t at;
        unsigned char x;
        const char *what;
    } hits[] = {{0, 0xFF, "chunk size"},     {1, 0x01, "chunk size"}, {4, 0x03, "filter mask"},
                {4, 0x01, "filter mask"},    {9, 0xFF, "row offset"}, {18, 0xFF, "element offset"},
                {24, 0x08, "chunk address"}};
    unsigned char *buf = malloc(size);
    int nodes = 0;
    if (!buf) return 0;
    for (size_t off = 0; off + 24 <= size; off++) {
        unsigned entries;
        if (memcmp(good + off, "TREE", 4) != 0 || good[off + 4] != 1 || good[off + 5] != 0)
            continue; /* not a leaf of a chunk index */
        nodes++;
        entries = good[off + 6] | (unsigned)good[off + 7] << 8;
        for (unsigned k = 0; k < entries && k < 2; k++)
            for (size_t i = 0; i < sizeof hits / sizeof hits[0]; i++) {
                size_t at = off + 24 + 32 * (size_t)k + hits[i].at;
                if (at >= size) continue;
                memcpy(buf, good, size);
                buf[at] ^= hits[i].x;
                snprintf(current_case, sizeof current_case,
                         "the chunk index at %zu, entry %u, %s ^ 0x%02x", off, k, hits[i].what,
                         hits[i].x);
                CHECK_INT(write_bytes(CASE, buf, size), 0);
                read_case(t, run);
            }
    }
    free(buf);
    return nodes;
}

int main(void)
{
    dsa_run run, big;
    unsigned char *good = NULL, *big_bytes = NULL, *buf = NULL;
    size_t size, big_size;

    setvbuf(stdout, NULL, _IOLBF, 0);
    install_handlers();
    CHECK(build_report(&run) == 0);
    CHECK(build_big_report(&big) == 0);
    size = write_and_load(SRC, &run, &good);
    big_size = write_and_load(SRC_BIG, &big, &big_bytes);
    buf = size ? malloc(size) : NULL;
    CHECK(size > 0 && big_size > 0 && buf);
    if (!size || !big_size || !buf) return check_done("test_h5_fuzz");
    printf("report: %zu bytes; the one whose kernels take 3 chunks: %zu bytes\n", size, big_size);

    /* The untouched copy reads. */
    {
        tally t = {0};
        snprintf(current_case, sizeof current_case, "the intact copy");
        CHECK_INT(write_bytes(CASE, good, size), 0);
        read_case(&t, &run);
        CHECK_INT(t.ok, 1);
        CHECK_INT(t.other, 0);
    }

    /* (a) inverted bytes */
    {
        long step = env_long("DSA_H5_FUZZ_STEP", 64, 1);
        long width = env_long("DSA_H5_FUZZ_WIDTH", 8, 1);
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
            read_case(&t, NULL);
        }
        snprintf(what, sizeof what, "(a) %ld byte(s) inverted every %ld:", width, step);
        print_tally(what, &t);
        CHECK_INT(t.other, 0);
        CHECK_INT(t.leaks, 0);
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
            read_case(&t, NULL);
        }
        print_tally("(b) truncated:", &t);
        CHECK_INT(t.ok, 0);
        CHECK_INT(t.other, 0);
        CHECK_INT(t.leaks, 0);
    }

    /* (c) the chunk indexes. In the HDF5 1.8 format they are v1 B-trees ("TREE" nodes), which
     * carry no checksum, and HDF5 1.10.8 trusts them. Each field of the first two entries of every
     * leaf is damaged in turn, in this report and in one whose kernels take several chunks:
     * the chunk's stored size, its filter mask (HDF5 then takes the deflated chunk for a raw one
     * and reads past its buffer: SIGSEGV in H5VM_memcpyvv, seen on 256 KiB chunks), its offset in
     * both key dimensions (HDF5 then finds no chunk there and reads fill values), its address.
     * Each copy must be refused, or read back exactly as written (a larger stored size only makes
     * zlib ignore the bytes after its stream). */
    {
        tally t = {0};
        int nodes = chunk_index_cases(good, size, &run, &t);
        int big_nodes = chunk_index_cases(big_bytes, big_size, &big, &t);
        print_tally("(c) chunk index entries:", &t);
        CHECK(nodes >= 5);    /* the point table; components and kernels of two points */
        CHECK(big_nodes >= 3); /* the same with one point, whose kernels fill 3 chunks */
        CHECK_INT(t.other, 0);
        CHECK_INT(t.leaks, 0);
    }

    dsa_run_free(&run);
    dsa_run_free(&big);
    free(good);
    free(big_bytes);
    free(buf);
    remove(CASE);
    return check_done("test_h5_fuzz");
}
