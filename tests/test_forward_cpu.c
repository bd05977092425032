/* The forward path on the C reference (tiny model): S layers attend with their F layer's
 * indices (seen through the debug hook), chunked prefill equals one-chunk prefill row for row,
 * and decode requests are independent of each other. */
#include <stdlib.h>

#include "check.h"
#include "forward.h"
#include "plan.h"
#include "ref.h"
#include "schedule.h"

#define MAXL 8
typedef struct seen {
    int32_t *idx[MAXL]; /* copy of the last indices each layer used */
    int src[MAXL], rows, topk;
} seen;

static void on_indices(void *user, int layer, int src, int32_t *idx, int rows, int topk)
{
    seen *s = user;
    free(s->idx[layer]);
    s->idx[layer] = malloc((size_t)rows * topk * sizeof *idx);
    memcpy(s->idx[layer], idx, (size_t)rows * topk * sizeof *idx);
    s->src[layer] = src;
    s->rows = rows;
    s->topk = topk;
}

static int run_as(const dsa_ops *ops, const dsa_model *m, const char *fs, int phase, int ctx, int batch, int chunk,
                  int fp8, seen *s, bf16_t **hidden, int *rows)
{
    dsa_fwd_opts o = {.layers = m->n_layers, .seed = 7, .weight_fp8 = fp8, .on_indices = s ? on_indices : NULL, .user = s};
    dsa_fwd *f;
    dsa_err e = {{0}};
    int rc = dsa_fwd_create(m, ops, &o, fs, phase, ctx, batch, chunk, &f, &e);
    if (!rc) rc = dsa_fwd_step(f, NULL, &e);
    if (!rc) {
        *rows = dsa_fwd_rows(f);
        *hidden = malloc((size_t)*rows * m->hidden * sizeof(bf16_t));
        rc = dsa_fwd_download_hidden(f, *hidden, &e);
    }
    if (rc) fprintf(stderr, "forward failed: %s\n", e.msg);
    dsa_fwd_destroy(f);
    return rc;
}

static int run(const dsa_ops *ops, const dsa_model *m, const char *fs, int phase, int ctx, int batch, int chunk,
               seen *s, bf16_t **hidden, int *rows)
{
    return run_as(ops, m, fs, phase, ctx, batch, chunk, 0, s, hidden, rows);
}

static int all_finite(const bf16_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dsa_bf16_to_f32(h[i]))) return 0;
    return 1;
}

int main(void)
{
    dsa_ops ops;
    CHECK_INT(dsa_ref_ops_init(&ops), 0);
    dsa_model m = *dsa_model_preset_at(3); /* tiny */
    CHECK_STR(m.name, "tiny");
    char fs[DSA_MAX_LAYERS + 1];
    dsa_err e = {{0}};
    CHECK_INT(dsa_schedule_resolve("1/2", &m, m.n_layers, fs, &e), 0);
    CHECK_STR(fs, "FFSF");

    /* prefill of 200 tokens (t < topk for the first 64 rows, selection beyond) in chunks of 64 */
    seen s = {0};
    bf16_t *h64 = NULL, *h200 = NULL;
    int r64 = 0, r200 = 0;
    CHECK_INT(run(&ops, &m, fs, DSA_PREFILL, 200, 1, 64, &s, &h64, &r64), 0);
    CHECK_INT(r64, 200 - 3 * 64); /* the last chunk: rows 192..199 */
    CHECK_INT(s.src[2], 1);        /* S layer 2 reuses F layer 1 */
    CHECK_INT(s.src[3], 3);
    size_t n = (size_t)s.rows * s.topk;
    CHECK(s.idx[1] && s.idx[2] && s.idx[3]);
    if (s.idx[1] && s.idx[2] && s.idx[3]) {
        CHECK(memcmp(s.idx[2], s.idx[1], n * 4) == 0);     /* S uses its F layer's indices */
        CHECK(memcmp(s.idx[3], s.idx[1], n * 4) != 0);     /* an F layer selects its own */
        /* rows past topk select exactly topk keys, all causal and distinct */
        for (int r = 0; r < s.rows; r++) {
            int pos = 192 + r, valid = 0;
            for (int j = 0; j < s.topk; j++) {
                int32_t k = s.idx[1][(size_t)r * s.topk + j];
                if (k < 0) continue;
                valid++;
                CHECK(k <= pos);
            }
            CHECK_INT(valid, s.topk);
        }
    }
    /* the same prefill in one chunk: the last 8 rows are bit-identical */
    CHECK_INT(run(&ops, &m, fs, DSA_PREFILL, 200, 1, 8192, NULL, &h200, &r200), 0);
    CHECK_INT(r200, 200);
    if (h64 && h200 && r64 == 8 && r200 == 200)
        CHECK(memcmp(h64, h200 + (size_t)192 * m.hidden, (size_t)8 * m.hidden * 2) == 0);
    CHECK(h200 && all_finite(h200, (size_t)r200 * m.hidden));

    /* full indexer on every layer changes the S layers' attention, so the output */
    bf16_t *hfull = NULL;
    int rfull = 0;
    char full[DSA_MAX_LAYERS + 1];
    CHECK_INT(dsa_schedule_resolve("full", &m, m.n_layers, full, &e), 0);
    CHECK_INT(run(&ops, &m, full, DSA_PREFILL, 200, 1, 8192, NULL, &hfull, &rfull), 0);
    if (hfull && h200) CHECK(memcmp(hfull, h200, (size_t)200 * m.hidden * 2) != 0);

    /* FP8 weights (128x128 block scales): a finite forward with other weights (the GPU test
     * compares it with the CUDA kernels) */
    bf16_t *h8 = NULL, *hd8 = NULL;
    int r8 = 0, rd8 = 0;
    CHECK_INT(run_as(&ops, &m, fs, DSA_PREFILL, 200, 1, 8192, 1, NULL, &h8, &r8), 0);
    CHECK_INT(r8, 200);
    if (h8 && h200) {
        CHECK(all_finite(h8, (size_t)200 * m.hidden));
        CHECK(memcmp(h8, h200, (size_t)200 * m.hidden * 2) != 0);
    }
    CHECK_INT(run_as(&ops, &m, fs, DSA_DECODE, 300, 2, 8192, 1, NULL, &hd8, &rd8), 0);
    CHECK(hd8 && rd8 == 2 && all_finite(hd8, (size_t)2 * m.hidden));
    free(h8), free(hd8);

    /* decode: request 1 of a batch of 2 equals ... itself, and differs from request 0 */
    bf16_t *hd = NULL;
    int rd = 0;
    seen sd = {0};
    CHECK_INT(run(&ops, &m, fs, DSA_DECODE, 300, 2, 8192, &sd, &hd, &rd), 0);
    CHECK_INT(rd, 2);
    if (hd) {
        CHECK(all_finite(hd, (size_t)2 * m.hidden));
        CHECK(memcmp(hd, hd + m.hidden, (size_t)m.hidden * 2) != 0);
    }
    if (sd.idx[2] && sd.idx[1]) CHECK(memcmp(sd.idx[2], sd.idx[1], (size_t)sd.rows * sd.topk * 4) == 0);

    for (int l = 0; l < MAXL; l++) free(s.idx[l]), free(sd.idx[l]);
    free(h64), free(h200), free(hfull), free(hd);
    dsa_ref_ops_fini(&ops);
    return check_done("test_forward_cpu");
}
