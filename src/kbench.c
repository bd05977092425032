/* src/kbench.c — `dsa-bench kernels`. */
#include "kbench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ceilings.h"
#include "clocks.h"
#include "cuda_ops.h"
#include "device.h"
#include "h5report.h"
#include "profiler.h"
#include "sweep.h"

#define Q_PREFILL 4096 /* queries of a prefill case: the last 4096 positions of the context */
#define TOPK 2048
#define MIN_REPS 10
#define MAX_REPS 500
#define MAX_BUFS 12

enum ceiling { CEIL_FP8, CEIL_BF16, CEIL_BW };

typedef struct kcase {
    int64_t ctx;
    int heads, batch, rows; /* rows: queries (prefill) or requests (decode) */
} kcase;

typedef struct kstate {
    const dsa_ops *ops;
    kcase c;
    void *buf[MAX_BUFS];
    int n_buf;
    dsa_weight *w_host; /* moe_experts: the experts' weight tables (gate_up then down), freed by k_free */
} kstate;

typedef struct kdef {
    const char *name;
    int component; /* enum dsa_component, for the report */
    int ceiling;
    int64_t ctx[4];
    int n_ctx;
    int heads[3];
    int n_heads; /* 0: no heads axis */
    int batch[3];
    int n_batch; /* 0: prefill (one request, Q_PREFILL queries) */
    int (*setup)(kstate *s, dsa_err *e);
    int (*run)(kstate *s);
    double (*flops)(const kcase *c);
    double (*bytes)(const kcase *c);
    int host_sync; /* the op waits for the GPU inside (moe_experts: its group counts): not timed behind a hold */
} kdef;

#define OPS(s) ((s)->ops)
#define CTX(s) ((s)->ops->ctx)

static int k_alloc(kstate *s, void **p, size_t bytes, dsa_err *e)
{
    if (s->n_buf == MAX_BUFS) return dsa_fail(e, DSA_EXIT_RUNTIME, "kernels: too many buffers");
    if (OPS(s)->alloc(CTX(s), p, bytes))
        return dsa_fail(e, DSA_EXIT_RUNTIME, "kernels: %s", OPS(s)->last_error(CTX(s)));
    s->buf[s->n_buf++] = *p;
    return 0;
}

static void k_free(kstate *s)
{
    for (int i = s->n_buf - 1; i >= 0; i--) OPS(s)->release(CTX(s), s->buf[i]);
    s->n_buf = 0;
    free(s->w_host);
    s->w_host = NULL;
}

static int op_err(kstate *s, dsa_err *e) { return dsa_fail(e, DSA_EXIT_RUNTIME, "kernels: %s", OPS(s)->last_error(CTX(s))); }

/* Sum over the queries of a prefill case of the keys each may see: positions L-Q .. L-1. */
static double causal_pairs(const kcase *c) { return (double)c->rows * (c->ctx - c->rows) + (double)c->rows * (c->rows + 1) / 2; }
static double selected(const kcase *c)
{
    if (!c->batch) { /* prefill: min(topk, position + 1) per query */
        double s = 0;
        for (int i = 0; i < c->rows; i++) {
            double p = (double)(c->ctx - c->rows + i) + 1;
            s += p < TOPK ? p : TOPK;
        }
        return s;
    }
    return (double)c->rows * (c->ctx < TOPK ? c->ctx : TOPK);
}

/* An indexer key cache of `rows` tokens written by the real key path (idx_prep_k) from random
 * inputs; position of row r = r % period. Uses two scratch buffers freed before returning. */
static int make_idx_cache(kstate *s, uint8_t *cache, int64_t rows, int64_t period, dsa_err *e)
{
    const int64_t chunk = 1 << 16;
    void *k, *ln_w, *ln_b, *pos, *slot;
    int rc;
    if ((rc = k_alloc(s, &k, chunk * 128 * 2, e)) || (rc = k_alloc(s, &ln_w, 256, e)) || (rc = k_alloc(s, &ln_b, 256, e)) ||
        (rc = k_alloc(s, &pos, chunk * 4, e)) || (rc = k_alloc(s, &slot, chunk * 8, e)))
        return rc;
    int32_t *hp = malloc(chunk * 4);
    int64_t *hs = malloc(chunk * 8);
    bf16_t ones[128];
    for (int i = 0; i < 128; i++) ones[i] = 0x3f80;
    rc = !hp || !hs ? dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory") : 0;
    if (!rc && OPS(s)->upload(CTX(s), ln_w, ones, sizeof ones)) rc = op_err(s, e);
    for (int64_t r0 = 0; !rc && r0 < rows; r0 += chunk) {
        int n = (int)(rows - r0 < chunk ? rows - r0 : chunk);
        for (int i = 0; i < n; i++) hp[i] = (int32_t)((r0 + i) % period), hs[i] = r0 + i;
        if (OPS(s)->upload(CTX(s), pos, hp, (size_t)n * 4) || OPS(s)->upload(CTX(s), slot, hs, (size_t)n * 8) ||
            OPS(s)->fill_bf16(CTX(s), k, (size_t)n * 128, 100 + (uint64_t)r0, 1.0f) ||
            OPS(s)->idx_prep_k(CTX(s), k, 128, n, ln_w, ln_b, pos, (dsa_rope){DSA_ROPE_INTERLEAVED, 1e6f}, DSA_SCALE_FP32,
                               slot, cache) ||
            OPS(s)->sync(CTX(s)))
            rc = op_err(s, e);
    }
    free(hp);
    free(hs);
    /* the five scratch buffers are the last allocated: release them now */
    for (int i = 0; i < 5; i++) OPS(s)->release(CTX(s), s->buf[--s->n_buf]);
    return rc;
}

/* FP8 MLA cache rows written by the real writer from random latent rows. */
static int make_mla_fp8_cache(kstate *s, uint8_t *cache, int64_t rows, dsa_err *e)
{
    const int64_t chunk = 1 << 16;
    void *kv, *slot;
    int rc;
    if ((rc = k_alloc(s, &kv, chunk * 576 * 2, e)) || (rc = k_alloc(s, &slot, chunk * 8, e))) return rc;
    int64_t *hs = malloc(chunk * 8);
    rc = hs ? 0 : dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    for (int64_t r0 = 0; !rc && r0 < rows; r0 += chunk) {
        int n = (int)(rows - r0 < chunk ? rows - r0 : chunk);
        for (int i = 0; i < n; i++) hs[i] = r0 + i;
        if (OPS(s)->upload(CTX(s), slot, hs, (size_t)n * 8) ||
            OPS(s)->fill_bf16(CTX(s), kv, (size_t)n * 576, 200 + (uint64_t)r0, 1.0f) ||
            OPS(s)->mla_cache_write_fp8(CTX(s), kv, 576, n, slot, cache, DSA_SCALE_FP32) || OPS(s)->sync(CTX(s)))
            rc = op_err(s, e);
    }
    free(hs);
    for (int i = 0; i < 2; i++) OPS(s)->release(CTX(s), s->buf[--s->n_buf]);
    return rc;
}

/* Distinct random keys per row, each within [0, limit_r], limit_r = first_limit + r*step;
 * fewer than topk available -> the rest -1. */
static int make_indices(kstate *s, int32_t **dev, int rows, int64_t first_limit, int step, dsa_err *e)
{
    int rc = k_alloc(s, (void **)dev, (size_t)rows * TOPK * 4, e);
    if (rc) return rc;
    int64_t max_limit = first_limit + (int64_t)(rows - 1) * step + 1;
    int32_t *h = malloc((size_t)rows * TOPK * 4);
    uint8_t *seen = calloc((size_t)max_limit, 1);
    if (!h || !seen) {
        free(h);
        free(seen);
        return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    }
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int r = 0; r < rows; r++) {
        int64_t n = first_limit + (int64_t)r * step + 1;
        int32_t *o = h + (size_t)r * TOPK;
        int take = n < TOPK ? (int)n : TOPK;
        if (take == n)
            for (int j = 0; j < take; j++) o[j] = j;
        else
            for (int j = 0; j < take;) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
                int32_t k = (int32_t)(x % (uint64_t)n);
                if (!seen[k]) seen[k] = 1, o[j++] = k;
            }
        for (int j = 0; j < take; j++) seen[o[j]] = 0;
        for (int j = take; j < TOPK; j++) o[j] = -1;
    }
    if (OPS(s)->upload(CTX(s), *dev, h, (size_t)rows * TOPK * 4)) rc = op_err(s, e);
    free(h);
    free(seen);
    return rc;
}

/* ---- idx_logits ---- */
enum { B_Q, B_W, B_CACHE, B_OUT, B_IDX };
static int setup_logits(kstate *s, dsa_err *e)
{
    const kcase *c = &s->c;
    int rows = c->rows;
    int64_t cache_rows = c->batch ? (int64_t)c->batch * c->ctx : c->ctx;
    void *p;
    int rc;
    if ((rc = k_alloc(s, &p, (size_t)rows * c->heads * 128, e)) ||
        dsa_cuda_fill_e4m3(CTX(s), p, (size_t)rows * c->heads * 128, 1))
        return rc ? rc : op_err(s, e);
    if ((rc = k_alloc(s, &p, (size_t)rows * c->heads * 4, e)) || OPS(s)->fill_f32(CTX(s), p, (size_t)rows * c->heads, 2, 0.1f))
        return rc ? rc : op_err(s, e);
    if ((rc = k_alloc(s, &p, (size_t)cache_rows * 132, e)) || (rc = make_idx_cache(s, p, cache_rows, c->ctx, e))) return rc;
    return k_alloc(s, &p, (size_t)rows * c->ctx * 4, e);
}
static int run_logits_prefill(kstate *s)
{
    const kcase *c = &s->c;
    return OPS(s)->idx_logits_prefill(CTX(s), s->buf[B_Q], s->buf[B_W], c->rows, c->heads, s->buf[B_CACHE], (int)c->ctx,
                                      (int)(c->ctx - c->rows), s->buf[B_OUT], (int)c->ctx);
}
static int run_logits_decode(kstate *s)
{
    const kcase *c = &s->c;
    return OPS(s)->idx_logits_decode(CTX(s), s->buf[B_Q], s->buf[B_W], c->batch, c->heads, s->buf[B_CACHE],
                                     (size_t)c->ctx * 132, (int)c->ctx, s->buf[B_OUT], (int)c->ctx);
}
/* The indexer's selection both ways on the same inputs: the pair (scores to memory, then topk)
 * and the fused op (no score matrix); `dsa-bench kernels` prints them side by side. */
static int setup_idx_select(kstate *s, dsa_err *e)
{
    void *p;
    int rc = setup_logits(s, e); /* B_Q, B_W, B_CACHE, B_OUT (scores) */
    return rc ? rc : k_alloc(s, &p, (size_t)s->c.rows * TOPK * 4, e); /* B_IDX */
}
static int run_pair_prefill(kstate *s)
{
    const kcase *c = &s->c;
    int rc = run_logits_prefill(s);
    return rc ? rc
              : OPS(s)->topk(CTX(s), s->buf[B_OUT], c->rows, (int)c->ctx, (int)(c->ctx - c->rows + 1), 1, TOPK,
                             s->buf[B_IDX]);
}
static int run_pair_decode(kstate *s)
{
    const kcase *c = &s->c;
    int rc = run_logits_decode(s);
    return rc ? rc : OPS(s)->topk(CTX(s), s->buf[B_OUT], c->batch, (int)c->ctx, (int)c->ctx, 0, TOPK, s->buf[B_IDX]);
}
static int run_fused_prefill(kstate *s)
{
    const kcase *c = &s->c;
    return OPS(s)->idx_fused_prefill(CTX(s), s->buf[B_Q], s->buf[B_W], c->rows, c->heads, s->buf[B_CACHE], (int)c->ctx,
                                     (int)(c->ctx - c->rows), TOPK, s->buf[B_IDX]);
}
static int run_fused_decode(kstate *s)
{
    const kcase *c = &s->c;
    return OPS(s)->idx_fused_decode(CTX(s), s->buf[B_Q], s->buf[B_W], c->batch, c->heads, s->buf[B_CACHE],
                                    (size_t)c->ctx * 132, (int)c->ctx, TOPK, s->buf[B_IDX]);
}
static double flops_logits(const kcase *c)
{
    return 2.0 * c->heads * 128 * (c->batch ? (double)c->batch * c->ctx : causal_pairs(c));
}
static double bytes_logits(const kcase *c)
{
    double keys = c->batch ? (double)c->batch * c->ctx : (double)c->ctx;
    return keys * 132 + (double)c->rows * c->heads * 132 + (double)c->rows * c->ctx * 4;
}

/* ---- topk ---- */
static int setup_topk(kstate *s, dsa_err *e)
{
    const kcase *c = &s->c;
    void *p;
    int rc;
    if ((rc = k_alloc(s, &p, (size_t)c->rows * c->ctx * 4, e)) ||
        OPS(s)->fill_f32(CTX(s), p, (size_t)c->rows * c->ctx, 3, 10.0f))
        return rc ? rc : op_err(s, e);
    return k_alloc(s, &p, (size_t)c->rows * TOPK * 4, e);
}
static int run_topk(kstate *s)
{
    const kcase *c = &s->c;
    int len0 = c->batch ? (int)c->ctx : (int)(c->ctx - c->rows + 1);
    return OPS(s)->topk(CTX(s), s->buf[0], c->rows, (int)c->ctx, len0, c->batch ? 0 : 1, TOPK, s->buf[1]);
}
static double bytes_topk(const kcase *c)
{
    double scores = c->batch ? (double)c->rows * c->ctx : causal_pairs(c);
    return 4 * scores + 4.0 * c->rows * TOPK;
}
static double no_flops(const kcase *c) { (void)c; return 0; }

/* ---- sparse MLA ---- */
static int setup_sparse(kstate *s, dsa_err *e)
{
    const kcase *c = &s->c;
    void *p;
    int rc;
    size_t qn = (size_t)c->rows * c->heads * 576;
    if ((rc = k_alloc(s, &p, qn * 2, e)) || OPS(s)->fill_bf16(CTX(s), p, qn, 4, 1.7f)) return rc ? rc : op_err(s, e);
    if (c->batch) {
        int64_t rows = (int64_t)c->batch * c->ctx;
        if ((rc = k_alloc(s, &p, (size_t)rows * 656, e)) || (rc = make_mla_fp8_cache(s, p, rows, e))) return rc;
    } else if ((rc = k_alloc(s, &p, (size_t)c->ctx * 576 * 2, e)) || OPS(s)->fill_bf16(CTX(s), p, (size_t)c->ctx * 576, 5, 1.0f))
        return rc ? rc : op_err(s, e);
    int32_t *idx;
    if (c->batch) rc = make_indices(s, &idx, c->rows, c->ctx - 1, 0, e);
    else rc = make_indices(s, &idx, c->rows, c->ctx - c->rows, 1, e);
    if (rc) return rc;
    if ((rc = k_alloc(s, &p, (size_t)c->rows * c->heads * 512 * 2, e))) return rc;
    return k_alloc(s, &p, (size_t)c->rows * c->heads * 4, e);
}
static int run_sparse_prefill(kstate *s)
{
    const kcase *c = &s->c;
    return OPS(s)->sparse_attn_prefill(CTX(s), s->buf[0], c->rows, c->heads, s->buf[1], s->buf[2], TOPK,
                                       1.0f / sqrtf(256.0f), s->buf[3], s->buf[4]);
}
static int run_sparse_decode(kstate *s)
{
    const kcase *c = &s->c;
    return OPS(s)->sparse_attn_decode(CTX(s), s->buf[0], c->batch, c->heads, s->buf[1], (size_t)c->ctx * 656, s->buf[2],
                                      TOPK, 1.0f / sqrtf(192.0f), s->buf[3], s->buf[4]);
}
static double flops_sparse(const kcase *c) { return 2.0 * c->heads * (576 + 512) * selected(c); }
/* Prefill counts every gathered row (1152 B) once per query: the L2 traffic the kernel must
 * sustain; the unique rows it reads from DRAM are far fewer. Decode gathers FP8 rows. */
static double bytes_sparse(const kcase *c)
{
    double row = c->batch ? 656 : 1152;
    return selected(c) * row + (double)c->rows * c->heads * (576 * 2 + 512 * 2 + 4) + (double)c->rows * TOPK * 4;
}

/* ---- idx_prep (q side and k side of one chunk) ---- */
static int setup_prep(kstate *s, dsa_err *e)
{
    const kcase *c = &s->c;
    int n = c->rows, rc;
    void *p;
    size_t sizes[] = {(size_t)n * c->heads * 128 * 2, (size_t)n * c->heads * 2, (size_t)n * 128 * 2, 256, 256,
                      (size_t)n * 4, (size_t)n * 8, (size_t)n * c->heads * 128, (size_t)n * c->heads * 4, (size_t)n * 132};
    for (int i = 0; i < 10; i++) {
        if ((rc = k_alloc(s, &p, sizes[i], e))) return rc;
        if (i < 3 && OPS(s)->fill_bf16(CTX(s), p, sizes[i] / 2, 6 + i, 1.0f)) return op_err(s, e);
    }
    int32_t *hp = malloc((size_t)n * 4);
    int64_t *hs = malloc((size_t)n * 8);
    if (!hp || !hs) rc = dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    for (int i = 0; !rc && i < n; i++) hp[i] = (int32_t)(c->ctx - n + i), hs[i] = i;
    if (!rc && (OPS(s)->upload(CTX(s), s->buf[5], hp, (size_t)n * 4) || OPS(s)->upload(CTX(s), s->buf[6], hs, (size_t)n * 8)))
        rc = op_err(s, e);
    free(hp);
    free(hs);
    return rc;
}
static int run_prep(kstate *s)
{
    const kcase *c = &s->c;
    dsa_rope r = {DSA_ROPE_INTERLEAVED, 1e6f};
    void **b = s->buf;
    int rc = OPS(s)->idx_prep_q(CTX(s), b[0], b[1], c->rows, c->heads, b[5], r, DSA_SCALE_FP32, b[7], b[8]);
    return rc ? rc : OPS(s)->idx_prep_k(CTX(s), b[2], 128, c->rows, b[3], b[4], b[5], r, DSA_SCALE_FP32, b[6], b[9]);
}
/* cache + queries + indices out; the pair also writes and re-reads the score matrix */
static double bytes_fused(const kcase *c)
{
    double keys = c->batch ? (double)c->batch * c->ctx : (double)c->ctx;
    return keys * 132 + (double)c->rows * c->heads * 132 + (double)c->rows * TOPK * 4;
}
static double bytes_pair(const kcase *c)
{
    double scores = c->batch ? (double)c->rows * c->ctx : causal_pairs(c);
    return bytes_fused(c) + 8 * scores;
}
static double bytes_prep(const kcase *c)
{
    double n = c->rows, h = c->heads;
    return n * (h * 128 * 2 + h * 2 + 128 * 2 + 4 + 8) + n * (h * 128 + h * 4 + 132);
}

/* ---- moe_experts: glm-4.7-flash-dsa's routed experts (64, top-4, hidden 2048, inter 1536) ----
 * Tokens routed by the real router (random x and router weights: the router's own imbalance, as
 * in the forward); a prefill case is one chunk of c->ctx tokens, a decode case c->batch tokens.
 * All experts' weights in one allocation each for gate_up and down. */
#define MOE_EXPERTS 64
#define MOE_TOPK 4
#define MOE_HIDDEN 2048
#define MOE_INTER 1536
enum { M_X, M_ROUTER, M_BIAS, M_IDS, M_WTS, M_GU, M_DN, M_OUT };
static int moe_tokens(const kcase *c) { return c->rows; } /* the chunk's tokens, or the batch */
static int setup_moe(kstate *s, dsa_err *e)
{
    const int n = moe_tokens(&s->c), E = MOE_EXPERTS, H = MOE_HIDDEN, I = MOE_INTER;
    const size_t gu = (size_t)2 * I * H, dn = (size_t)H * I;
    const size_t sizes[] = {(size_t)n * H * 2, (size_t)E * H * 2, (size_t)E * 4, (size_t)n * MOE_TOPK * 4,
                            (size_t)n * MOE_TOPK * 4, E * gu * 2, E * dn * 2, (size_t)n * H * 2};
    void *p;
    int rc;
    for (int i = 0; i < 8; i++)
        if ((rc = k_alloc(s, &p, sizes[i], e))) return rc;
    void **b = s->buf;
    if (OPS(s)->fill_bf16(CTX(s), b[M_X], (size_t)n * H, 11, 1.0f) ||
        OPS(s)->fill_bf16(CTX(s), b[M_ROUTER], (size_t)E * H, 12, 1.0f / sqrtf((float)H)) ||
        OPS(s)->fill_f32(CTX(s), b[M_BIAS], E, 13, 0.01f) ||
        OPS(s)->fill_bf16(CTX(s), b[M_GU], E * gu, 14, 1.0f / sqrtf((float)H)) ||
        OPS(s)->fill_bf16(CTX(s), b[M_DN], E * dn, 15, 1.0f / sqrtf((float)I)))
        return op_err(s, e);
    dsa_router_cfg cfg = {E, MOE_TOPK, 1, 1, 1, 1.8f}; /* glm-4.7-flash-dsa's routing */
    if (OPS(s)->moe_router(CTX(s), b[M_X], n, H, b[M_ROUTER], b[M_BIAS], cfg, b[M_IDS], b[M_WTS])) return op_err(s, e);
    if (!(s->w_host = calloc((size_t)2 * E, sizeof *s->w_host))) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    for (int x = 0; x < E; x++) {
        s->w_host[x] = (dsa_weight){DSA_BF16, 2 * I, H, (uint16_t *)b[M_GU] + x * gu, NULL};
        s->w_host[E + x] = (dsa_weight){DSA_BF16, H, I, (uint16_t *)b[M_DN] + x * dn, NULL};
    }
    return 0;
}
static int run_moe(kstate *s)
{
    void **b = s->buf;
    const int n = moe_tokens(&s->c), E = MOE_EXPERTS;
    return OPS(s)->moe_experts(CTX(s), b[M_X], n, MOE_HIDDEN, b[M_IDS], b[M_WTS], MOE_TOPK, E, MOE_INTER, s->w_host,
                               s->w_host + E, b[M_X], b[M_OUT]);
}
/* gate_up and down per (token, expert) pair */
static double flops_moe(const kcase *c) { return 6.0 * moe_tokens(c) * MOE_TOPK * MOE_HIDDEN * MOE_INTER; }
/* every expert's weights read once (at most: a decode step touches fewer) + x, residual, out */
static double bytes_moe(const kcase *c)
{
    const double n = moe_tokens(c), touched = 1 - pow(1 - (double)MOE_TOPK / MOE_EXPERTS, n);
    return touched * MOE_EXPERTS * 3.0 * MOE_HIDDEN * MOE_INTER * 2 + n * MOE_HIDDEN * 2 * 3;
}

static const kdef defs[] = {
    {"idx_logits_prefill", DSA_C_IDX_LOGITS, CEIL_FP8, {8192, 65536, 131072, 200000}, 4, {32, 64}, 2, {0}, 0,
     setup_logits, run_logits_prefill, flops_logits, bytes_logits, 0},
    {"idx_logits_decode", DSA_C_IDX_LOGITS, CEIL_BW, {65536, 200000}, 2, {32, 64}, 2, {1, 8, 32}, 3, setup_logits,
     run_logits_decode, flops_logits, bytes_logits, 0},
    {"idx_pair_prefill", DSA_C_IDX_FUSED, CEIL_FP8, {65536, 131072, 200000}, 3, {32, 64}, 2, {0}, 0,
     setup_idx_select, run_pair_prefill, flops_logits, bytes_pair, 0},
    {"idx_fused_prefill", DSA_C_IDX_FUSED, CEIL_FP8, {65536, 131072, 200000}, 3, {32, 64}, 2, {0}, 0,
     setup_idx_select, run_fused_prefill, flops_logits, bytes_fused, 0},
    {"idx_pair_decode", DSA_C_IDX_FUSED, CEIL_BW, {65536, 200000}, 2, {32, 64}, 2, {1, 8, 32}, 3, setup_idx_select,
     run_pair_decode, flops_logits, bytes_pair, 0},
    {"idx_fused_decode", DSA_C_IDX_FUSED, CEIL_BW, {65536, 200000}, 2, {32, 64}, 2, {1, 8, 32}, 3, setup_idx_select,
     run_fused_decode, flops_logits, bytes_fused, 0},
    {"topk_prefill", DSA_C_IDX_TOPK, CEIL_BW, {8192, 65536, 131072, 200000}, 4, {0}, 0, {0}, 0, setup_topk, run_topk,
     no_flops, bytes_topk, 0},
    {"topk_decode", DSA_C_IDX_TOPK, CEIL_BW, {65536, 200000}, 2, {0}, 0, {1, 8, 32}, 3, setup_topk, run_topk, no_flops,
     bytes_topk, 0},
    {"sparse_mla_prefill", DSA_C_SPARSE_ATTN, CEIL_BF16, {8192, 65536, 200000}, 3, {20, 64, 128}, 3, {0}, 0,
     setup_sparse, run_sparse_prefill, flops_sparse, bytes_sparse, 0},
    {"sparse_mla_decode", DSA_C_SPARSE_ATTN, CEIL_BF16, {200000}, 1, {64, 128}, 2, {1, 32, 64}, 3, setup_sparse,
     run_sparse_decode, flops_sparse, bytes_sparse, 0},
    {"idx_prep", DSA_C_IDX_PROJ, CEIL_BW, {200000}, 1, {32, 64}, 2, {0}, 0, setup_prep, run_prep, no_flops, bytes_prep, 0},
    /* context = tokens of the prefill chunk; batch = decode tokens */
    {"moe_experts_prefill", DSA_C_MOE_EXPERTS, CEIL_BF16, {8192}, 1, {0}, 0, {0}, 0, setup_moe, run_moe, flops_moe,
     bytes_moe, 1},
    {"moe_experts_decode", DSA_C_MOE_EXPERTS, CEIL_BW, {8192}, 1, {0}, 0, {1, 8, 32}, 3, setup_moe, run_moe, flops_moe,
     bytes_moe, 1},
};
#define N_DEFS ((int)(sizeof defs / sizeof defs[0]))

const char *const *dsa_kbench_names(void)
{
    static const char *names[N_DEFS + 1];
    for (int i = 0; i < N_DEFS; i++) names[i] = defs[i].name;
    return names;
}

static int selected_kernel(const dsa_kbench_opts *o, const char *name)
{
    if (!o->n_kernels) return 1;
    for (int i = 0; i < o->n_kernels; i++)
        if (!strcmp(o->kernels[i], name)) return 1;
    return 0;
}

static int time_case(const kdef *k, kstate *s, const dsa_kbench_opts *o, dsa_point *pt, dsa_err *e)
{
    dsa_cuda_ctx *c = CTX(s);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    pt->samples = malloc(MAX_REPS * sizeof *pt->samples);
    int rc = pt->samples ? 0 : dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    for (int w = 0; !rc && w < 2; w++) /* warm-up: module load, cuBLASLt plans, clocks */
        if (k->run(s)) rc = op_err(s, e);
    int n = 0;
    double cap = o->max_time_s > 0 ? o->max_time_s : 2.0;
    int64_t t0 = dsa_now_ns();
    /* nvbench's blocking kernel: the stream is held while the host queues the start event, the
     * op's launches and the end event, so the events time the GPU work alone, not the host's cost
     * of launching it (a few us per launch: a third of a 30 us decode top-k). Ops that wait for
     * the GPU inside cannot be queued behind a hold; their times include the host's part, as
     * every op's does with --no-hold. */
    const int hold = OPS(s)->stream_hold && !k->host_sync && !o->no_hold;
    while (!rc && n < MAX_REPS) {
        if (hold && OPS(s)->stream_hold(CTX(s))) { rc = op_err(s, e); break; }
        cudaEventRecord(e0, c->stream);
        int run_rc = k->run(s);
        cudaEventRecord(e1, c->stream);
        if (hold && OPS(s)->stream_release(CTX(s)) && !run_rc) { rc = op_err(s, e); break; }
        if (run_rc) { rc = op_err(s, e); break; }
        if (cudaEventSynchronize(e1) != cudaSuccess) { rc = dsa_fail(e, DSA_EXIT_RUNTIME, "kernels: %s", cudaGetErrorString(cudaGetLastError())); break; }
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        pt->samples[n++] = ms;
        if (n < MIN_REPS) continue;
        if (dsa_stdev(pt->samples, n) <= 0.01 * dsa_median(pt->samples, n)) break;
        if ((dsa_now_ns() - t0) * 1e-9 > cap) break;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    pt->reps = n;
    return rc;
}

int dsa_kbench_run(const dsa_kbench_opts *o, dsa_run *run, dsa_err *e)
{
    memset(run, 0, sizeof *run);
    for (int i = 0; i < o->n_kernels; i++) {
        int ok = 0;
        for (int d = 0; d < N_DEFS; d++) ok |= !strcmp(o->kernels[i], defs[d].name);
        if (!ok) return dsa_fail(e, DSA_EXIT_USAGE, "-k: unknown kernel '%s' (dsa-bench kernels --help lists them)", o->kernels[i]);
    }
    dsa_ops ops;
    double free_b;
    int rc = dsa_device_open(0, &ops, &run->dev, &free_b, e);
    if (rc) return rc;
    dsa_ceiling_meas ceil;
    fprintf(stderr, "kernels: measuring the ceilings (bf16 and FP8 GEMM 8192^3, 2 GiB device copy)\n");
    if (dsa_cuda_measure_ceilings(ops.ctx, &ceil)) {
        rc = dsa_fail(e, DSA_EXIT_RUNTIME, "kernels: %s", ops.last_error(ops.ctx));
        dsa_device_close(0, &ops);
        return rc;
    }
    run->dev.peak_bf16_tflops = ceil.bf16_tflops;
    run->dev.peak_fp8_tflops = ceil.fp8_tflops;
    run->dev.copy_gbs = ceil.copy_gbs;
    dsa_run_stamp(run, o->argv);
    snprintf(run->model.name, sizeof run->model.name, "kernels");
    /* count the cases first, for progress */
    int total = 0;
    for (int d = 0; d < N_DEFS; d++) {
        if (!selected_kernel(o, defs[d].name)) continue;
        int nc = o->n_contexts ? o->n_contexts : defs[d].n_ctx;
        int nh = defs[d].n_heads ? (o->n_heads ? o->n_heads : defs[d].n_heads) : 1;
        int nb = defs[d].n_batch ? (o->n_batches ? o->n_batches : defs[d].n_batch) : 1;
        total += nc * nh * nb;
    }
    printf("# kernels on %s (%d SMs); ceilings measured now: bf16 %.0f TFLOP/s, fp8 %.0f TFLOP/s, copy %.0f GB/s\n",
           run->dev.name, run->dev.sms, ceil.bf16_tflops, ceil.fp8_tflops, ceil.copy_gbs);
    printf("#  %-20s %5s %5s %7s %8s %5s %11s %9s %9s %8s %5s\n", "kernel", "heads", "batch", "rows", "context", "reps",
           "median_us", "TFLOP/s", "GB/s", "%ceil", "of");
    int done = 0;
    dsa_clocks *clk = dsa_clocks_open(0); /* NULL without NVML: clocks not recorded */
    int64_t t_start = dsa_now_ns();
    for (int d = 0; d < N_DEFS && !rc; d++) {
        const kdef *k = &defs[d];
        if (!selected_kernel(o, k->name)) continue;
        int nc = o->n_contexts ? o->n_contexts : k->n_ctx;
        int nh = k->n_heads ? (o->n_heads ? o->n_heads : k->n_heads) : 1;
        int nb = k->n_batch ? (o->n_batches ? o->n_batches : k->n_batch) : 1;
        for (int ic = 0; ic < nc && !rc; ic++)
            for (int ih = 0; ih < nh && !rc; ih++)
                for (int ib = 0; ib < nb && !rc; ib++) {
                    kstate s = {.ops = &ops};
                    s.c.ctx = o->n_contexts ? o->contexts[ic] : k->ctx[ic];
                    s.c.heads = k->n_heads ? (int)(o->n_heads ? o->heads[ih] : k->heads[ih]) : 0;
                    s.c.batch = k->n_batch ? (int)(o->n_batches ? o->batches[ib] : k->batch[ib]) : 0;
                    s.c.rows = s.c.batch ? s.c.batch : (int)(s.c.ctx < Q_PREFILL ? s.c.ctx : Q_PREFILL);
                    if (!strcmp(k->name, "idx_prep")) s.c.rows = 8192; /* one prefill chunk */
                    if (k->setup == setup_moe && !s.c.batch) s.c.rows = (int)s.c.ctx; /* the chunk's tokens */
                    dsa_point *pt = dsa_run_add_point(run);
                    if (!pt) { rc = dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory"); break; }
                    snprintf(pt->phase, sizeof pt->phase, "kernel");
                    snprintf(pt->config, sizeof pt->config, "%s h=%d", k->name, s.c.heads);
                    pt->context = s.c.ctx;
                    pt->batch = s.c.batch;
                    pt->chunk = s.c.rows;
                    done++;
                    fprintf(stderr, "[case %d/%d] %s heads %d batch %d rows %d context %lld: ", done, total, k->name,
                            s.c.heads, s.c.batch, s.c.rows, (long long)s.c.ctx);
                    dsa_err ce = {{0}};
                    int crc = k->setup(&s, &ce);
                    if (!crc) {
                        dsa_clocks_begin(clk);
                        crc = time_case(k, &s, o, pt, &ce);
                        dsa_clocks_end(clk, pt);
                    }
                    k_free(&s);
                    if (crc) {
                        pt->status = DSA_POINT_FAILED;
                        snprintf(pt->reason, sizeof pt->reason, "%.250s", ce.msg);
                        fprintf(stderr, "failed: %s\n", ce.msg);
                        printf("   %-20s %5d %5d %7d %8lld  failed: %s\n", k->name, s.c.heads, s.c.batch, s.c.rows,
                               (long long)s.c.ctx, ce.msg);
                        /* a sticky CUDA error poisons the context: stop; others: go on */
                        if (cudaGetLastError() != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) {
                            rc = dsa_fail(e, DSA_EXIT_RUNTIME, "%s: %s", k->name, ce.msg);
                            break;
                        }
                        continue;
                    }
                    pt->wall_median_ms = dsa_median(pt->samples, pt->reps);
                    pt->wall_min_ms = dsa_min(pt->samples, pt->reps);
                    pt->wall_stdev_ms = dsa_stdev(pt->samples, pt->reps);
                    pt->flops = k->flops(&s.c);
                    pt->bytes = k->bytes(&s.c);
                    double sec = pt->wall_median_ms * 1e-3, tf = pt->flops / sec / 1e12, gbs = pt->bytes / sec / 1e9;
                    double ceil_v = k->ceiling == CEIL_FP8 ? ceil.fp8_tflops : k->ceiling == CEIL_BF16 ? ceil.bf16_tflops : ceil.copy_gbs;
                    double pct = 100 * (k->ceiling == CEIL_BW ? gbs : tf) / ceil_v;
                    pt->comps = calloc(1, sizeof *pt->comps);
                    if (pt->comps) {
                        pt->n_comps = 1;
                        pt->comps[0] = (dsa_comp_stat){k->component, pt->wall_median_ms, pt->wall_min_ms, pt->wall_stdev_ms, 1.0, 1};
                    }
                    printf("   %-20s %5d %5d %7d %8lld %5d %11.1f %9.1f %9.1f %8.1f %5s\n", k->name, s.c.heads, s.c.batch,
                           s.c.rows, (long long)s.c.ctx, pt->reps, 1e3 * pt->wall_median_ms, tf, gbs, pct,
                           k->ceiling == CEIL_FP8 ? "fp8" : k->ceiling == CEIL_BF16 ? "bf16" : "copy");
                    fflush(stdout);
                    double el = (dsa_now_ns() - t_start) * 1e-9;
                    fprintf(stderr, "%.1f us", 1e3 * pt->wall_median_ms);
                    dsa_clocks_progress(stderr, pt);
                    fprintf(stderr, "; elapsed %.0f s, estimate %.0f s left\n", el, el / done * (total - done));
                }
    }
    if (o->out_path) {
        dsa_err we = {{0}};
        int wrc = dsa_h5_write(o->out_path, run, &we);
        if (wrc && !rc) rc = dsa_fail(e, wrc, "%s", we.msg);
    }
    dsa_clocks_close(clk);
    dsa_device_close(0, &ops);
    return rc;
}
