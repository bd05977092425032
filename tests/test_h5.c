/* tests/test_h5.c — the HDF5 report: a full round trip, the model field table through /model,
 * and every way a read or a write can fail (one clear line, nothing left behind). Files are made
 * in the current directory. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "h5report.h"
#include "results.h"

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int one_line(const char *s) { return s[0] != '\0' && strchr(s, '\n') == NULL; }

static void *copy_of(const void *src, size_t n)
{
    void *p = malloc(n);
    if (p) memcpy(p, src, n);
    return p;
}

/* Three points: ok with kernels and components, skipped with a reason, ok with no kernels. */
static int build_run(dsa_run *r, const dsa_model *m)
{
    memset(r, 0, sizeof *r);
    snprintf(r->schema, sizeof r->schema, "%s", DSA_SCHEMA);
    snprintf(r->tool_version, sizeof r->tool_version, "0.1.0");
    snprintf(r->git_sha, sizeof r->git_sha, "5e1e309abcde");
    snprintf(r->utc, sizeof r->utc, "2026-11-28T21:07:47Z");
    snprintf(r->argv, sizeof r->argv, "dsa-bench run -m %s --contexts 256,200000 --configs full,1/4",
             m->name);
    snprintf(r->dev.kind, sizeof r->dev.kind, "cuda");
    snprintf(r->dev.name, sizeof r->dev.name, "NVIDIA H200");
    r->dev.cc_major = 9;
    r->dev.cc_minor = 0;
    r->dev.sms = 132;
    r->dev.l2_bytes = 62914560;
    r->dev.mem_bytes = 150754820096LL;
    r->dev.driver_version = 13010;
    r->dev.runtime_version = 13000;
    r->dev.cupti_version = 26;
    r->dev.sm_clock_mhz = 1980.5;
    r->dev.mem_clock_mhz = 3201.0;
    r->dev.peak_bf16_tflops = 801.25;
    r->dev.peak_fp8_tflops = 1470.125;
    r->dev.copy_gbs = 4123.0625;
    r->model = *m;
    r->layers_run = m->n_layers;
    r->shared_weights = 1;

    dsa_point *p = dsa_run_add_point(r);
    if (!p) return -1;
    snprintf(p->phase, sizeof p->phase, "prefill");
    p->context = 256;
    p->batch = 1;
    p->chunk = 8192;
    snprintf(p->config, sizeof p->config, "full");
    snprintf(p->fs, sizeof p->fs, "FFFF");
    p->n_full = 4;
    p->n_layers = 4;
    p->reps = 3;
    p->wall_median_ms = 1.5;
    p->wall_min_ms = 1.25;
    p->wall_stdev_ms = 0.1 / 3;
    p->indexer_ms = 0.375;
    p->indexer_share = 0.25;
    p->tok_s = 256 / 1.5e-3;
    p->flops = 3.25e12;
    p->bytes = 1.5e9;
    p->status = DSA_POINT_OK;
    static const double s0[] = {1.5, 1.25, 1.75};
    p->samples = copy_of(s0, sizeof s0);
    static const dsa_comp_stat c0[] = {
        {DSA_C_IDX_LOGITS, 0.25, 0.2, 0.01, 1.0 / 6, 4},
        {DSA_C_SPARSE_ATTN, 0.5, 0.45, 0.02, 1.0 / 3, 4},
        {DSA_C_IDLE, 0.125, 0.1, 0.001, 0.125 / 1.5, 0},
    };
    p->comps = copy_of(c0, sizeof c0);
    p->n_comps = 3;
    static const dsa_kernel_rec k0[] = {
        {0, -1, DSA_C_EMBED, "embed_kernel<bf16>", 0, 1500, 0, {1, 1, 1}, {256, 1, 1}},
        {0, 0, DSA_C_IDX_LOGITS, "fp8_mqa_logits", 2000, 9000, 0, {132, 1, 1}, {128, 1, 1}},
        {1, 3, DSA_C_SPARSE_ATTN, "sparse_mla_fwd", 100, 200, (7ULL << 32) | 42, {64, 2, 1},
         {384, 1, 1}},
        {2, 3, DSA_C_LM_HEAD, "", -5, 1LL << 40, UINT64_MAX, {2147483647, 65535, 65535},
         {1024, 1, 1}},
    };
    p->kernels = copy_of(k0, sizeof k0);
    p->n_kernels = 4;
    /* traced as on the GPU: the component table came from 4 more repetitions with CUPTI on */
    p->traced_reps = 4;
    p->wall_traced_median_ms = 1.5625;
    p->trace_overhead_pct = 4.1666666666666667;
    p->sm_clock_begin_mhz = 1980, p->sm_clock_end_mhz = 1845, p->sm_clock_mean_mhz = 1874.25;
    p->sm_clock_min_mhz = 1530, p->throttled_pct = 97.5, p->clock_events = 0x4 | (1LL << 40);
    p->coverage = 0.9166015625;
    p->dropped_records = 0;
    p->unattributed = 3;
    static const double t0[] = {1.5625, 1.5, 1.625, 1.5625};
    p->samples_traced = copy_of(t0, sizeof t0);

    p = dsa_run_add_point(r);
    if (!p) return -1;
    snprintf(p->phase, sizeof p->phase, "decode");
    p->context = 200000;
    p->batch = 64;
    p->chunk = 8192;
    snprintf(p->config, sizeof p->config, "1/4");
    snprintf(p->fs, sizeof p->fs, "FFSS");
    p->n_full = 2;
    p->n_layers = 4;
    p->status = DSA_POINT_SKIPPED;
    snprintf(p->reason, sizeof p->reason, "needs 212.4 GiB, 139.8 GiB free");

    p = dsa_run_add_point(r);
    if (!p) return -1;
    snprintf(p->phase, sizeof p->phase, "decode");
    p->context = 8192;
    p->batch = 32;
    p->chunk = 8192;
    snprintf(p->config, sizeof p->config, "pattern:FSFS");
    snprintf(p->fs, sizeof p->fs, "FSFS");
    p->n_full = 2;
    p->n_layers = 4;
    p->reps = 2;
    p->wall_median_ms = 0.0625;
    p->wall_min_ms = 0.0625;
    p->wall_stdev_ms = 0;
    p->tok_s = 32 / 0.0625e-3;
    p->status = DSA_POINT_OK;
    p->wall_traced_median_ms = p->trace_overhead_pct = NAN; /* not traced (the C reference) */
    p->coverage = 0.25;
    p->dropped_records = (int64_t)1 << 40; /* a count beyond 32 bits survives */
    static const double s2[] = {0.0625, 0.0625};
    p->samples = copy_of(s2, sizeof s2);
    static const dsa_comp_stat c2[] = {{DSA_C_IDLE, 0.0625, 0.0625, 0, 1.0, 0}};
    p->comps = copy_of(c2, sizeof c2);
    p->n_comps = 1;
    return r->points[0].samples && r->points[0].comps && r->points[0].kernels &&
                   r->points[0].samples_traced && r->points[2].samples && r->points[2].comps
               ? 0
               : -1;
}

static void check_model(const dsa_model *a, const dsa_model *b)
{
    char va[1024], vb[1024];
    CHECK_STR(a->name, b->name);
    CHECK_STR(a->assumptions, b->assumptions);
    CHECK_INT(a->n_layers, b->n_layers);
    for (int i = 0; i < dsa_model_field_count(); i++) {
        dsa_model_field_format(a, i, va, sizeof va);
        dsa_model_field_format(b, i, vb, sizeof vb);
        if (strcmp(va, vb) != 0)
            fprintf(stderr, "model field %s differs\n", dsa_model_field_at(i)->key);
        CHECK_STR(va, vb);
    }
}

static void check_run(const dsa_run *a, const dsa_run *b)
{
    CHECK_STR(a->schema, DSA_SCHEMA);
    CHECK_STR(a->tool_version, b->tool_version);
    CHECK_STR(a->git_sha, b->git_sha);
    CHECK_STR(a->utc, b->utc);
    CHECK_STR(a->argv, b->argv);
    CHECK_INT(a->layers_run, b->layers_run);
    CHECK_INT(a->shared_weights, b->shared_weights);

    CHECK_STR(a->dev.kind, b->dev.kind);
    CHECK_STR(a->dev.name, b->dev.name);
    CHECK_INT(a->dev.cc_major, b->dev.cc_major);
    CHECK_INT(a->dev.cc_minor, b->dev.cc_minor);
    CHECK_INT(a->dev.sms, b->dev.sms);
    CHECK_INT(a->dev.l2_bytes, b->dev.l2_bytes);
    CHECK_INT(a->dev.mem_bytes, b->dev.mem_bytes);
    CHECK_INT(a->dev.driver_version, b->dev.driver_version);
    CHECK_INT(a->dev.runtime_version, b->dev.runtime_version);
    CHECK_INT(a->dev.cupti_version, b->dev.cupti_version);
    CHECK_NEAR(a->dev.sm_clock_mhz, b->dev.sm_clock_mhz, 0);
    CHECK_NEAR(a->dev.mem_clock_mhz, b->dev.mem_clock_mhz, 0);
    CHECK_NEAR(a->dev.peak_bf16_tflops, b->dev.peak_bf16_tflops, 0);
    CHECK_NEAR(a->dev.peak_fp8_tflops, b->dev.peak_fp8_tflops, 0);
    CHECK_NEAR(a->dev.copy_gbs, b->dev.copy_gbs, 0);

    check_model(&a->model, &b->model);

    CHECK_INT(a->n_points, b->n_points);
    for (int i = 0; i < a->n_points && i < b->n_points; i++) {
        const dsa_point *p = &a->points[i], *q = &b->points[i];
        CHECK_INT(p->id, q->id);
        CHECK_STR(p->phase, q->phase);
        CHECK_INT(p->context, q->context);
        CHECK_INT(p->batch, q->batch);
        CHECK_INT(p->chunk, q->chunk);
        CHECK_STR(p->config, q->config);
        CHECK_STR(p->fs, q->fs);
        CHECK_INT(p->n_full, q->n_full);
        CHECK_INT(p->n_layers, q->n_layers);
        CHECK_INT(p->reps, q->reps);
        CHECK_NEAR(p->wall_median_ms, q->wall_median_ms, 0);
        CHECK_NEAR(p->wall_min_ms, q->wall_min_ms, 0);
        CHECK_NEAR(p->wall_stdev_ms, q->wall_stdev_ms, 0);
        CHECK_NEAR(p->indexer_ms, q->indexer_ms, 0);
        CHECK_NEAR(p->indexer_share, q->indexer_share, 0);
        CHECK_NEAR(p->tok_s, q->tok_s, 0);
        CHECK_NEAR(p->flops, q->flops, 0);
        CHECK_NEAR(p->bytes, q->bytes, 0);
        CHECK_INT(p->status, q->status);
        CHECK_STR(p->reason, q->reason);
        CHECK_INT(p->traced_reps, q->traced_reps);
        CHECK(p->wall_traced_median_ms == q->wall_traced_median_ms ||
              (isnan(p->wall_traced_median_ms) && isnan(q->wall_traced_median_ms)));
        CHECK(p->trace_overhead_pct == q->trace_overhead_pct ||
              (isnan(p->trace_overhead_pct) && isnan(q->trace_overhead_pct)));
        CHECK_NEAR(p->coverage, q->coverage, 0);
        CHECK_NEAR(p->sm_clock_begin_mhz, q->sm_clock_begin_mhz, 0);
        CHECK_NEAR(p->sm_clock_end_mhz, q->sm_clock_end_mhz, 0);
        CHECK_NEAR(p->sm_clock_mean_mhz, q->sm_clock_mean_mhz, 0);
        CHECK_NEAR(p->sm_clock_min_mhz, q->sm_clock_min_mhz, 0);
        CHECK_NEAR(p->throttled_pct, q->throttled_pct, 0);
        CHECK_INT(p->clock_events, q->clock_events);
        CHECK_INT(p->dropped_records, q->dropped_records);
        CHECK_INT(p->unattributed, q->unattributed);
        CHECK_INT(p->samples_traced != NULL, q->samples_traced != NULL);
        for (int k = 0; p->samples_traced && q->samples_traced && k < q->traced_reps; k++)
            CHECK_NEAR(p->samples_traced[k], q->samples_traced[k], 0);

        CHECK_INT(p->samples != NULL, q->samples != NULL);
        for (int k = 0; p->samples && q->samples && k < q->reps; k++)
            CHECK_NEAR(p->samples[k], q->samples[k], 0);

        CHECK_INT(p->n_comps, q->n_comps);
        CHECK_INT(p->comps != NULL, q->comps != NULL);
        for (int k = 0; k < p->n_comps && k < q->n_comps; k++) {
            const dsa_comp_stat *c = &p->comps[k], *d = &q->comps[k];
            CHECK_INT(c->component, d->component);
            CHECK_NEAR(c->median_ms, d->median_ms, 0);
            CHECK_NEAR(c->min_ms, d->min_ms, 0);
            CHECK_NEAR(c->stdev_ms, d->stdev_ms, 0);
            CHECK_NEAR(c->share, d->share, 0);
            CHECK_INT(c->kernels, d->kernels);
        }

        CHECK_INT(p->n_kernels, q->n_kernels);
        CHECK_INT(p->kernels != NULL, q->kernels != NULL);
        for (size_t k = 0; k < p->n_kernels && k < q->n_kernels; k++) {
            const dsa_kernel_rec *x = &p->kernels[k], *y = &q->kernels[k];
            CHECK_INT(x->rep, y->rep);
            CHECK_INT(x->layer, y->layer);
            CHECK_INT(x->component, y->component);
            CHECK_STR(x->name, y->name);
            CHECK_INT(x->start_ns, y->start_ns);
            CHECK_INT(x->end_ns, y->end_ns);
            CHECK(x->graph_node == y->graph_node);
            for (int d = 0; d < 3; d++) {
                CHECK_INT(x->grid[d], y->grid[d]);
                CHECK_INT(x->block[d], y->block[d]);
            }
        }
    }
}

static void test_round_trip(void)
{
    dsa_run run, back;
    dsa_err e = {{0}};
    CHECK(build_run(&run, dsa_model_preset_at(0)) == 0);
    remove("h5_round.h5");
    CHECK_INT(dsa_h5_write("h5_round.h5", &run, &e), DSA_EXIT_OK);
    CHECK(exists("h5_round.h5"));
    CHECK(!exists("h5_round.h5.tmp"));
    int rc = dsa_h5_read("h5_round.h5", &back, &e);
    CHECK_INT(rc, DSA_EXIT_OK);
    if (rc) fprintf(stderr, "read: %s\n", e.msg);
    if (rc == 0) check_run(&back, &run);
    /* The skipped point and the kernel-less one come back with empty arrays. */
    if (rc == 0 && back.n_points == 3) {
        CHECK(back.points[1].samples == NULL && back.points[1].comps == NULL &&
              back.points[1].kernels == NULL);
        CHECK(back.points[2].kernels == NULL);
    }
    dsa_run_free(&back);
    CHECK(back.points == NULL && back.n_points == 0);

    /* Writing over an existing report replaces it. */
    run.points[0].wall_median_ms = 2.5;
    CHECK_INT(dsa_h5_write("h5_round.h5", &run, &e), DSA_EXIT_OK);
    CHECK_INT(dsa_h5_read("h5_round.h5", &back, &e), DSA_EXIT_OK);
    CHECK_NEAR(back.n_points ? back.points[0].wall_median_ms : 0, 2.5, 0);
    dsa_run_free(&back);
    dsa_run_free(&run);
    CHECK(run.points == NULL && run.n_points == 0);
}

/* Every preset's fields through /model, and a --set pattern and ue8m0. */
static void test_models(void)
{
    for (int i = 0; i < dsa_model_preset_count(); i++) {
        dsa_run run, back;
        dsa_err e = {{0}};
        dsa_model m = *dsa_model_preset_at(i);
        if (i == 0) {
            char pat[DSA_MAX_LAYERS + 1];
            for (int l = 0; l < m.n_layers; l++) pat[l] = (l < 2 || l % 4 == 1) ? 'F' : 'S';
            pat[m.n_layers] = '\0';
            CHECK_INT(dsa_model_set(&m, "index_topk_pattern", pat, &e), 0);
            CHECK_INT(dsa_model_set(&m, "fp8_scale", "ue8m0", &e), 0);
            CHECK_INT(dsa_model_set(&m, "rope_theta", "12345.678901234567", &e), 0);
        }
        CHECK(build_run(&run, &m) == 0);
        CHECK_INT(dsa_h5_write("h5_model.h5", &run, &e), DSA_EXIT_OK);
        int rc = dsa_h5_read("h5_model.h5", &back, &e);
        CHECK_INT(rc, DSA_EXIT_OK);
        if (rc) fprintf(stderr, "read %s: %s\n", m.name, e.msg);
        if (rc == 0) check_model(&back.model, &m);
        dsa_run_free(&back);
        dsa_run_free(&run);
    }
}

static void expect_read_error(const char *path, const char *part)
{
    dsa_run run;
    dsa_err e = {{0}};
    CHECK_INT(dsa_h5_read(path, &run, &e), DSA_EXIT_RUNTIME);
    printf("read %s: %s\n", path, e.msg);
    CHECK(strstr(e.msg, part) != NULL);
    CHECK(strstr(e.msg, path) != NULL);
    CHECK(one_line(e.msg));
    CHECK(run.points == NULL && run.n_points == 0);
}

static int copy_prefix(const char *from, const char *to, int half)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char *buf = NULL;
    long n = -1;
    int rc = -1;
    if (in && out && fseek(in, 0, SEEK_END) == 0 && (n = ftell(in)) > 0 && fseek(in, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n)) && fread(buf, 1, (size_t)n, in) == (size_t)n) {
        size_t keep = half ? (size_t)n / 2 : (size_t)n;
        rc = fwrite(buf, 1, keep, out) == keep ? 0 : -1;
    }
    free(buf);
    if (in) fclose(in);
    if (out && fclose(out) != 0) rc = -1;
    return rc;
}

/* A valid HDF5 file that is not ours: one dataset, no schema. */
static int make_foreign(const char *path)
{
    hsize_t n = 4;
    int v[4] = {1, 2, 3, 4};
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(f, "foo", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (f < 0 || sp < 0 || ds < 0 ||
              H5Dwrite(ds, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
                 ? -1
                 : 0;
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    if (f >= 0) H5Fclose(f);
    return rc;
}

/* Rewrites the schema attribute of a report: a fixed-length string as we write it, or (vl) a
 * variable-length one, which the reader must refuse without reading it. */
static int set_schema(const char *path, const char *schema, int vl)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t st = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a = -1;
    int rc = (f < 0 || st < 0 || sp < 0 ||
              H5Tset_size(st, vl ? H5T_VARIABLE : strlen(schema) + 1) < 0 ||
              H5Adelete(f, "schema") < 0 ||
              (a = H5Acreate2(f, "schema", st, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
              H5Awrite(a, st, vl ? (const void *)&schema : (const void *)schema) < 0)
                 ? -1
                 : 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (st >= 0) H5Tclose(st);
    if (f >= 0) H5Fclose(f);
    return rc;
}

/* Replaces dataset `dset` of a report with one row of {id int32, <member> of type mt}. */
static int replace_dataset(const char *path, const char *dset, const char *member, hid_t mt,
                           const void *value)
{
    hsize_t n = 1;
    size_t vsize = H5Tget_size(mt);
    unsigned char row[256] = {0};
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t ct = H5Tcreate(H5T_COMPOUND, 8 + vsize), sp = H5Screate_simple(1, &n, NULL), ds = -1;
    int rc;
    memcpy(row + 8, value, vsize);
    rc = (f < 0 || ct < 0 || sp < 0 || vsize > sizeof row - 8 ||
          H5Tinsert(ct, "id", 0, H5T_NATIVE_INT32) < 0 || H5Tinsert(ct, member, 8, mt) < 0 ||
          H5Ldelete(f, dset, H5P_DEFAULT) < 0 ||
          (ds = H5Dcreate2(f, dset, ct, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
          H5Dwrite(ds, ct, H5S_ALL, H5S_ALL, H5P_DEFAULT, row) < 0)
             ? -1
             : 0;
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    if (ct >= 0) H5Tclose(ct);
    if (f >= 0) H5Fclose(f);
    return rc;
}

/* /points/table whose `phase` is a variable-length string (how this schema stored strings at
 * first): refused, by name, before any of it is read. */
static int set_vl_phase(const char *path)
{
    const char *phase = "prefill";
    hid_t st = H5Tcopy(H5T_C_S1);
    int rc = st < 0 || H5Tset_size(st, H5T_VARIABLE) < 0
                 ? -1
                 : replace_dataset(path, "/points/table", "phase", st, &phase);
    if (st >= 0) H5Tclose(st);
    return rc;
}

/* /points/0/kernels whose component holds a value that is no member of its enum (raw data is not
 * checksummed); HDF5 1.10 passes it through, and the reader must refuse it. */
static int set_alien_component(const char *path)
{
    int32_t zero = 0, v = 99;
    hid_t et = H5Tenum_create(H5T_NATIVE_INT32);
    int rc = et < 0 || H5Tenum_insert(et, "embed", &zero) < 0
                 ? -1
                 : replace_dataset(path, "/points/0/kernels", "component", et, &v);
    if (et >= 0) H5Tclose(et);
    return rc;
}

/* /points/0/kernels whose `layer` is a double. */
static int set_float_layer(const char *path)
{
    double v = 1.5;
    return replace_dataset(path, "/points/0/kernels", "layer", H5T_NATIVE_DOUBLE, &v);
}

/* Replaces /device/sms with a 4-element array: the reader must refuse it, not overrun the int. */
static int set_sms_array(const char *path)
{
    hsize_t n = 4;
    int v[4] = {1, 2, 3, 4};
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = f >= 0 ? H5Gopen2(f, "device", H5P_DEFAULT) : -1;
    hid_t sp = H5Screate_simple(1, &n, NULL), a = -1;
    int rc = (g < 0 || sp < 0 || H5Adelete(g, "sms") < 0 ||
              (a = H5Acreate2(g, "sms", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
              H5Awrite(a, H5T_NATIVE_INT, v) < 0)
                 ? -1
                 : 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (g >= 0) H5Gclose(g);
    if (f >= 0) H5Fclose(f);
    return rc;
}

/* Deletes link `path` of a report (a dataset a later build added, for an "older" file). */
static int delete_link(const char *file, const char *path)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    int rc = f < 0 || H5Ldelete(f, path, H5P_DEFAULT) < 0 ? -1 : 0;
    if (f >= 0) H5Fclose(f);
    return rc;
}

/* The tracing fields: columns of /points/table with units, /points/<id>/samples_traced (empty
 * when untraced); a file from before them (no samples_traced, no columns) reads as untraced; a
 * samples_traced of the wrong length is refused. */
static void test_trace_layout(void)
{
    dsa_run run, back;
    dsa_err e = {{0}};
    CHECK(build_run(&run, dsa_model_preset_at(0)) == 0);
    CHECK_INT(dsa_h5_write("h5_trace.h5", &run, &e), DSA_EXIT_OK);
    hid_t f = H5Fopen("h5_trace.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0);
    hid_t ds = H5Dopen2(f, "/points/table", H5P_DEFAULT), t = ds >= 0 ? H5Dget_type(ds) : -1;
    static const char *const cols[] = {"traced_reps", "wall_traced_median_ms", "trace_overhead_pct",
                                       "coverage", "dropped_records", "unattributed", "sm_clock_begin_mhz",
                                       "sm_clock_end_mhz", "sm_clock_mean_mhz", "sm_clock_min_mhz",
                                       "throttled_pct", "clock_events"};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) CHECK(t >= 0 && H5Tget_member_index(t, cols[i]) >= 0);
    if (t >= 0) H5Tclose(t);
    if (ds >= 0) H5Dclose(ds);
    static const char *const sets[] = {"/points/0/samples_traced", "/points/1/samples_traced",
                                       "/points/2/samples_traced"};
    static const hssize_t lens[] = {4, 0, 0};
    for (int i = 0; i < 3; i++) {
        ds = H5Dopen2(f, sets[i], H5P_DEFAULT);
        hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
        CHECK(sp >= 0 && H5Sget_simple_extent_npoints(sp) == lens[i]);
        CHECK(ds >= 0 && H5Aexists(ds, "units") > 0);
        if (sp >= 0) H5Sclose(sp);
        if (ds >= 0) H5Dclose(ds);
    }
    if (f >= 0) H5Fclose(f);

    CHECK_INT(copy_prefix("h5_trace.h5", "h5_trace_old.h5", 0), 0);
    CHECK_INT(delete_link("h5_trace_old.h5", "/points/0/samples_traced"), 0);
    CHECK_INT(delete_link("h5_trace_old.h5", "/points/2/samples_traced"), 0);
    int rc = dsa_h5_read("h5_trace_old.h5", &back, &e);
    CHECK_INT(rc, DSA_EXIT_OK);
    if (rc) fprintf(stderr, "read: %s\n", e.msg);
    if (rc == 0 && back.n_points == 3) {
        CHECK(back.points[0].samples_traced == NULL);
        CHECK_INT(back.points[0].traced_reps, 4); /* the column is still there */
    }
    dsa_run_free(&back);

    run.points[0].traced_reps = 3; /* the table says 3, the dataset holds 4 */
    CHECK_INT(dsa_h5_write("h5_trace_bad.h5", &run, &e), DSA_EXIT_OK);
    dsa_run_free(&run);
    CHECK(build_run(&run, dsa_model_preset_at(0)) == 0);
    f = H5Fopen("h5_trace_bad.h5", H5F_ACC_RDWR, H5P_DEFAULT);
    hsize_t four = 4;
    hid_t sp = H5Screate_simple(1, &four, NULL);
    CHECK(f >= 0 && H5Ldelete(f, "/points/0/samples_traced", H5P_DEFAULT) >= 0);
    ds = f >= 0 ? H5Dcreate2(f, "/points/0/samples_traced", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT)
                : -1;
    CHECK(ds >= 0 && H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, run.points[0].samples_traced) >= 0);
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    if (f >= 0) H5Fclose(f);
    dsa_run_free(&run);
    expect_read_error("h5_trace_bad.h5", "/points/0/samples_traced has 4 values but traced_reps = 3");
}

static void test_read_errors(void)
{
    dsa_run run;
    dsa_err e = {{0}};
    CHECK(build_run(&run, dsa_model_preset_at(dsa_model_preset_count() - 1)) == 0);
    CHECK_INT(dsa_h5_write("h5_good.h5", &run, &e), DSA_EXIT_OK);
    dsa_run_free(&run);

    CHECK_INT(copy_prefix("h5_good.h5", "h5_truncated.h5", 1), 0);
    expect_read_error("h5_truncated.h5", "not a readable HDF5 file (truncated or corrupt)");

    FILE *f = fopen("h5_text.h5", "w");
    if (f) {
        fputs("phase context\nprefill 8192\n", f);
        fclose(f);
    }
    expect_read_error("h5_text.h5", "not a readable HDF5 file");
    f = fopen("h5_empty.h5", "w");
    if (f) fclose(f);
    expect_read_error("h5_empty.h5", "not a readable HDF5 file");

    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    CHECK_INT(make_foreign("h5_foreign.h5"), 0);
    expect_read_error("h5_foreign.h5", "not a dsa-bench report (no 'schema' attribute)");

    CHECK_INT(copy_prefix("h5_good.h5", "h5_schema2.h5", 0), 0);
    CHECK_INT(set_schema("h5_schema2.h5", "dsa-bench/2", 0), 0);
    expect_read_error("h5_schema2.h5",
                      "schema 'dsa-bench/2' is not supported (this build reads dsa-bench/1)");

    CHECK_INT(copy_prefix("h5_good.h5", "h5_schema_vl.h5", 0), 0);
    CHECK_INT(set_schema("h5_schema_vl.h5", DSA_SCHEMA, 1), 0);
    expect_read_error("h5_schema_vl.h5",
                      "/schema is a variable-length string (this build reads fixed-length "
                      "strings only)");

    CHECK_INT(copy_prefix("h5_good.h5", "h5_vl_column.h5", 0), 0);
    CHECK_INT(set_vl_phase("h5_vl_column.h5"), 0);
    expect_read_error("h5_vl_column.h5",
                      "/points/table: column 'phase' is a variable-length string (this build "
                      "reads fixed-length strings only)");

    CHECK_INT(copy_prefix("h5_good.h5", "h5_alien_comp.h5", 0), 0);
    CHECK_INT(set_alien_component("h5_alien_comp.h5"), 0);
    expect_read_error("h5_alien_comp.h5", "/points/0/kernels row 0: component is out of range");

    CHECK_INT(copy_prefix("h5_good.h5", "h5_float_layer.h5", 0), 0);
    CHECK_INT(set_float_layer("h5_float_layer.h5"), 0);
    expect_read_error("h5_float_layer.h5", "/points/0/kernels: column 'layer' has the wrong type");

    CHECK_INT(copy_prefix("h5_good.h5", "h5_sms_array.h5", 0), 0);
    CHECK_INT(set_sms_array("h5_sms_array.h5"), 0);
    expect_read_error("h5_sms_array.h5", "/device/sms is not a single value");

    remove("h5_missing.h5");
    expect_read_error("h5_missing.h5", "cannot open h5_missing.h5: No such file or directory");
    expect_read_error(".", "is a directory");
}

static void test_write_errors(void)
{
    dsa_run run, back;
    dsa_err e = {{0}};
    CHECK(build_run(&run, dsa_model_preset_at(0)) == 0);

    /* A directory that does not exist: the OS's reason, no file anywhere. */
    CHECK_INT(dsa_h5_write("h5_no_such_dir/x.h5", &run, &e), DSA_EXIT_RUNTIME);
    CHECK_STR(e.msg, "cannot create h5_no_such_dir/x.h5.tmp: No such file or directory");
    CHECK(!exists("h5_no_such_dir/x.h5.tmp"));
    CHECK(!exists("h5_no_such_dir/x.h5"));
    CHECK(!exists("h5_no_such_dir"));

    /* A failure halfway through (two points with one id): the .tmp is removed and the report
     * already at the path is left as it was. */
    CHECK_INT(dsa_h5_write("h5_keep.h5", &run, &e), DSA_EXIT_OK);
    run.points[2].id = run.points[1].id;
    run.points[0].wall_median_ms = 99;
    e.msg[0] = '\0';
    CHECK_INT(dsa_h5_write("h5_keep.h5", &run, &e), DSA_EXIT_RUNTIME);
    printf("write h5_keep.h5: %s\n", e.msg);
    CHECK(strstr(e.msg, "h5_keep.h5.tmp: cannot write /points/1") != NULL);
    CHECK(one_line(e.msg));
    CHECK(!exists("h5_keep.h5.tmp"));
    CHECK_INT(dsa_h5_read("h5_keep.h5", &back, &e), DSA_EXIT_OK);
    CHECK_NEAR(back.n_points ? back.points[0].wall_median_ms : 0, 1.5, 0);
    dsa_run_free(&back);

    /* A new path that fails halfway leaves nothing at all. */
    remove("h5_never.h5");
    CHECK_INT(dsa_h5_write("h5_never.h5", &run, &e), DSA_EXIT_RUNTIME);
    CHECK(!exists("h5_never.h5"));
    CHECK(!exists("h5_never.h5.tmp"));
    dsa_run_free(&run);
}

static void fill_max(char *s, size_t size, char c)
{
    for (size_t i = 0; i + 1 < size; i++) s[i] = (char)(c + i % 26);
    s[size - 1] = '\0';
}

/* The width of string member `member` of dataset `dset`; 0 when it is not a fixed string. */
static size_t member_width(hid_t f, const char *dset, const char *member)
{
    hid_t ds = H5Dopen2(f, dset, H5P_DEFAULT), t = ds >= 0 ? H5Dget_type(ds) : -1, m = -1;
    int i = t >= 0 ? H5Tget_member_index(t, member) : -1;
    size_t w = 0;
    if (i >= 0 && (m = H5Tget_member_type(t, (unsigned)i)) >= 0 && H5Tget_class(m) == H5T_STRING &&
        H5Tis_variable_str(m) == 0)
        w = H5Tget_size(m);
    if (m >= 0) H5Tclose(m);
    if (t >= 0) H5Tclose(t);
    if (ds >= 0) H5Dclose(ds);
    return w;
}

/* Whether dataset `dset` is chunked and deflated. */
static int deflated(hid_t f, const char *dset)
{
    hid_t ds = H5Dopen2(f, dset, H5P_DEFAULT), dcpl = ds >= 0 ? H5Dget_create_plist(ds) : -1;
    int yes = 0;
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED)
        for (int i = 0; i < H5Pget_nfilters(dcpl); i++) {
            unsigned flags, conf;
            size_t nv = 0;
            if (H5Pget_filter2(dcpl, (unsigned)i, &flags, &nv, NULL, 0, NULL, &conf) ==
                H5Z_FILTER_DEFLATE)
                yes = 1;
        }
    if (dcpl >= 0) H5Pclose(dcpl);
    if (ds >= 0) H5Dclose(ds);
    return yes;
}

/* Every string at its longest (its array's size - 1) comes back whole, the columns are as wide
 * as the arrays, and tables with rows are deflated (when this HDF5 can). */
static void test_long_strings(void)
{
    dsa_run run, back;
    dsa_err e = {{0}};
    CHECK(build_run(&run, dsa_model_preset_at(0)) == 0);
    fill_max(run.argv, sizeof run.argv, 'a');
    fill_max(run.git_sha, sizeof run.git_sha, 'b');
    fill_max(run.dev.name, sizeof run.dev.name, 'c');
    fill_max(run.model.assumptions, sizeof run.model.assumptions, 'd');
    fill_max(run.points[0].config, sizeof run.points[0].config, 'e');
    fill_max(run.points[0].fs, sizeof run.points[0].fs, 'f');
    fill_max(run.points[1].reason, sizeof run.points[1].reason, 'g');
    fill_max(run.points[0].kernels[1].name, sizeof run.points[0].kernels[1].name, 'h');
    CHECK_INT(dsa_h5_write("h5_long.h5", &run, &e), DSA_EXIT_OK);
    int rc = dsa_h5_read("h5_long.h5", &back, &e);
    CHECK_INT(rc, DSA_EXIT_OK);
    if (rc) fprintf(stderr, "read: %s\n", e.msg);
    if (rc == 0) check_run(&back, &run);
    dsa_run_free(&back);
    dsa_run_free(&run);

    hid_t f = H5Fopen("h5_long.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0);
    CHECK_INT(member_width(f, "/points/0/kernels", "name"), sizeof run.points[0].kernels[0].name);
    CHECK_INT(member_width(f, "/points/table", "config"), sizeof run.points[0].config);
    CHECK_INT(member_width(f, "/points/table", "fs"), sizeof run.points[0].fs);
    CHECK_INT(member_width(f, "/points/table", "reason"), sizeof run.points[0].reason);
    CHECK_INT(member_width(f, "/points/table", "status_name"), sizeof "skipped");
    unsigned info = 0;
    if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0 &&
        H5Zget_filter_info(H5Z_FILTER_DEFLATE, &info) >= 0 &&
        (info & H5Z_FILTER_CONFIG_ENCODE_ENABLED)) {
        CHECK(deflated(f, "/points/table"));
        CHECK(deflated(f, "/points/0/kernels"));
        CHECK(deflated(f, "/points/0/components"));
        CHECK(!deflated(f, "/points/1/kernels")); /* zero rows: contiguous */
    }
    if (f >= 0) H5Fclose(f);
}

/* Writes string attribute group/name as a fixed ASCII string of its length + 1. */
static int set_ascii_attr(const char *path, const char *group, const char *name, const char *v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = f >= 0 ? H5Gopen2(f, group, H5P_DEFAULT) : -1;
    hid_t st = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a = -1;
    int rc = (g < 0 || st < 0 || sp < 0 || H5Tset_size(st, strlen(v) + 1) < 0 ||
              H5Tset_cset(st, H5T_CSET_ASCII) < 0 || H5Adelete(g, name) < 0 ||
              (a = H5Acreate2(g, name, st, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
              H5Awrite(a, st, v) < 0)
                 ? -1
                 : 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (st >= 0) H5Tclose(st);
    if (g >= 0) H5Gclose(g);
    if (f >= 0) H5Fclose(f);
    return rc;
}

/* Strings from another writer (h5py's numpy bytes: ASCII, wider than our arrays) are read, cut
 * to fit. */
static void test_foreign_strings(void)
{
    dsa_run run, back;
    dsa_err e = {{0}};
    char longer[300], name[200];
    CHECK(build_run(&run, dsa_model_preset_at(0)) == 0);
    CHECK_INT(dsa_h5_write("h5_ascii.h5", &run, &e), DSA_EXIT_OK);
    dsa_run_free(&run);
    fill_max(longer, sizeof longer, 'A');
    fill_max(name, sizeof name, 'a');
    CHECK_INT(set_ascii_attr("h5_ascii.h5", "/device", "name", longer), 0);
    CHECK_INT(set_ascii_attr("h5_ascii.h5", "/", "utc", "2026-11-28T21:07:47Z"), 0);
    hid_t st = H5Tcopy(H5T_C_S1);
    CHECK(st >= 0 && H5Tset_size(st, sizeof name) >= 0 && H5Tset_cset(st, H5T_CSET_ASCII) >= 0);
    CHECK_INT(replace_dataset("h5_ascii.h5", "/points/0/kernels", "name", st, name), 0);
    H5Tclose(st);
    int rc = dsa_h5_read("h5_ascii.h5", &back, &e);
    CHECK_INT(rc, DSA_EXIT_OK);
    if (rc) fprintf(stderr, "read: %s\n", e.msg);
    if (rc == 0) {
        CHECK_INT(strlen(back.dev.name), sizeof back.dev.name - 1);
        CHECK(strncmp(back.dev.name, longer, sizeof back.dev.name - 1) == 0);
        CHECK_STR(back.utc, "2026-11-28T21:07:47Z");
        CHECK_INT(back.points[0].n_kernels, 1);
        if (back.points[0].n_kernels == 1) {
            const char *got = back.points[0].kernels[0].name;
            CHECK_INT(strlen(got), sizeof back.points[0].kernels[0].name - 1);
            CHECK(strncmp(got, name, strlen(got)) == 0);
        }
    }
    dsa_run_free(&back);
}

static void test_empty_run(void)
{
    dsa_run run, back;
    dsa_err e = {{0}};
    memset(&run, 0, sizeof run);
    run.model = *dsa_model_preset_at(0);
    CHECK_INT(dsa_h5_write("h5_empty_run.h5", &run, &e), DSA_EXIT_OK);
    CHECK_INT(dsa_h5_read("h5_empty_run.h5", &back, &e), DSA_EXIT_OK);
    CHECK_INT(back.n_points, 0);
    CHECK(back.points == NULL);
    CHECK_STR(back.schema, DSA_SCHEMA);
    dsa_run_free(&back);
}

int main(void)
{
    test_round_trip();
    test_models();
    test_read_errors();
    test_trace_layout();
    test_write_errors();
    test_empty_run();
    test_long_strings();
    test_foreign_strings();
    return check_done("test_h5");
}
