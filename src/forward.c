/* src/forward.c — one implementation of the model for both the C reference and the GPU. */
#include "forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "schedule.h"

typedef struct layer_w {
    bf16_t *attn_norm, *q_norm, *kv_norm, *ffn_norm;
    dsa_weight qa, qb, kva, o;
    bf16_t *kvb; /* [heads, nope + v, 512]: W_UK then W_UV per head */
    /* indexer (F layers; NULL data on S layers) */
    dsa_weight iq, ik, iw;
    bf16_t *ik_ln_w, *ik_ln_b;
    /* FFN */
    int dense;
    dsa_weight gate_up, down;           /* dense FFN, or the shared experts */
    bf16_t *router;
    float *router_bias;
    dsa_weight *exp_gate_up, *exp_down; /* n_routed each, views into one buffer */
} layer_w;

struct dsa_fwd {
    dsa_model m;
    const dsa_ops *ops;
    dsa_fwd_opts o;
    char fs[DSA_MAX_LAYERS + 1];
    int phase, batch, chunk;
    int64_t context;
    int T;          /* rows per step: chunk (capped at context) or batch */
    int64_t slots;  /* cache slots per layer: context (prefill) or batch * req_slots */
    int64_t req_slots; /* decode: one request's slots (dsa_plan_request_slots: aligned caches) */
    int last_rows;  /* rows of the last step */
    float attn_scale;

    void **allocs; /* everything alloc'ed, released in reverse */
    int n_allocs, cap_allocs;

    bf16_t *embed, *final_norm;
    dsa_weight lm_head;
    layer_w *L;
    bf16_t **mla_bf16; /* prefill: [slots, 576] per layer */
    uint8_t **mla_fp8; /* [slots, 656] per layer */
    uint8_t **idx;     /* [slots, 132] per F layer, NULL on S layers */

    /* workspace, T rows */
    int32_t *tokens, *pos;
    int64_t *slot;
    bf16_t *x, *xn, *cq_raw, *cq, *q, *kv, *qi, *ik, *iw, *query, *out_lat, *ov, *gu, *act,
        *logits;
    uint8_t *q_fp8;
    float *w, *scores, *lse, *route_w;
    int32_t *indices, *route_ids;
    int64_t score_ld;

    int32_t *h_tokens, *h_pos; /* host staging */
    int64_t *h_slot;
    void *graph; /* the captured decode step */
    int capturing;
};

#define OP(call, what)                                                                        \
    do {                                                                                      \
        if ((call) != 0)                                                                      \
            return dsa_fail(e, DSA_EXIT_RUNTIME, "%s (%s): %s", what, f->ops->name,          \
                            f->ops->last_error(f->ops->ctx));                                 \
    } while (0)

static int falloc(dsa_fwd *f, void **p, size_t bytes, dsa_err *e)
{
    if (f->n_allocs == f->cap_allocs) {
        int cap = f->cap_allocs ? 2 * f->cap_allocs : 256;
        void **a = realloc(f->allocs, (size_t)cap * sizeof *a);
        if (!a) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
        f->allocs = a;
        f->cap_allocs = cap;
    }
    if (f->ops->alloc(f->ops->ctx, p, bytes ? bytes : 1))
        return dsa_fail(e, DSA_EXIT_RUNTIME, "cannot allocate %.3f GiB on %s: %s",
                        bytes / 1073741824.0, f->ops->name, f->ops->last_error(f->ops->ctx));
    f->allocs[f->n_allocs++] = *p;
    return 0;
}

/* Seed of tensor `what` of layer `layer`: distinct streams, reproducible across devices. */
static uint64_t tensor_seed(const dsa_fwd *f, int what, int layer)
{
    return f->o.seed * 1000003ULL + (uint64_t)what * 4099ULL + (uint64_t)(layer + 1) * 7919ULL * 131ULL;
}

static int rand_bf16(dsa_fwd *f, bf16_t **p, size_t n, float scale, uint64_t seed, dsa_err *e)
{
    int rc = falloc(f, (void **)p, n * sizeof(bf16_t), e);
    if (rc) return rc;
    OP(f->ops->fill_bf16(f->ops->ctx, *p, n, seed, scale), "fill");
    return 0;
}

/* Norm weights are ones: the tests compare devices, not models, and ones keep 47+ layers tame. */
static int ones_bf16(dsa_fwd *f, bf16_t **p, size_t n, dsa_err *e)
{
    int rc = falloc(f, (void **)p, n * sizeof(bf16_t), e);
    if (rc) return rc;
    bf16_t *h = malloc(n * sizeof *h);
    if (!h) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    for (size_t i = 0; i < n; i++) h[i] = 0x3f80; /* 1.0 */
    rc = f->ops->upload(f->ops->ctx, *p, h, n * sizeof *h);
    free(h);
    OP(rc, "upload");
    return 0;
}

/* Mean square of the values fill_e4m3 produces (its 127 magnitude codes, equally likely). */
static double e4m3_fill_mean_square(void)
{
    double s = 0;
    for (int code = 0; code < 0x7f; code++) {
        int ex = code >> 3, man = code & 7;
        double v = ex ? (1.0 + man / 8.0) * ldexp(1.0, ex - 7) : man * ldexp(1.0, -9);
        s += v * v;
    }
    return s / 0x7f;
}

/* `count` FP8 matrices [n, k] back to back (e4m3 codes, then one fp32 scale per 128x128 block,
 * as DeepSeek-V3.2 and GLM-5 ship them). Every block gets the scale that gives the weights an
 * RMS of 1/sqrt(k), as the bf16 weights have: the random codes are log-spread, so this keeps
 * activations in range through 47+ layers. */
static int fp8_tensor(dsa_fwd *f, uint8_t **data, float **scale, int count, int n, int k, uint64_t seed, dsa_err *e)
{
    size_t blocks = (size_t)((n + 127) / 128) * ((k + 127) / 128) * count, bytes = (size_t)n * k * count;
    int rc;
    if ((rc = falloc(f, (void **)data, bytes, e)) || (rc = falloc(f, (void **)scale, blocks * sizeof(float), e)))
        return rc;
    OP(f->ops->fill_e4m3(f->ops->ctx, *data, bytes, seed), "fill");
    float *h = malloc(blocks * sizeof *h);
    if (!h) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    float s = (float)(1.0 / sqrt(e4m3_fill_mean_square() * k));
    for (size_t i = 0; i < blocks; i++) h[i] = s;
    rc = f->ops->upload(f->ops->ctx, *scale, h, blocks * sizeof *h);
    free(h);
    OP(rc, "upload");
    return 0;
}

/* A linear layer's weight [n, k], uniform in +-1/sqrt(k) (fan-in scaling); FP8 with block
 * scales under --weight-dtype fp8 (fp8_ok: the layers DeepSeek ships in FP8; the indexer's
 * weights_proj and lm_head stay bf16 there, as in DeepSeek-V3.2's checkpoint). */
static int linear_as(dsa_fwd *f, dsa_weight *w, int n, int k, uint64_t seed, int fp8_ok, dsa_err *e)
{
    w->n = n;
    w->k = k;
    w->scale = NULL;
    if (f->o.weight_fp8 && fp8_ok) {
        w->dtype = DSA_FP8_E4M3;
        return fp8_tensor(f, (uint8_t **)&w->data, &w->scale, 1, n, k, seed, e);
    }
    w->dtype = DSA_BF16;
    return rand_bf16(f, (bf16_t **)&w->data, (size_t)n * k, 1.0f / sqrtf((float)k), seed, e);
}
static int linear(dsa_fwd *f, dsa_weight *w, int n, int k, uint64_t seed, dsa_err *e)
{
    return linear_as(f, w, n, k, seed, 1, e);
}

enum { W_ATTN_NORM = 1, W_Q_NORM, W_KV_NORM, W_FFN_NORM, W_QA, W_QB, W_KVA, W_O, W_KVB, W_IQ,
       W_IK, W_IW, W_IK_LN, W_GATE_UP, W_DOWN, W_ROUTER, W_ROUTER_BIAS, W_EXP_GU, W_EXP_DOWN,
       W_EMBED, W_LM_HEAD, S_TOKENS, S_MLA_CACHE, S_IDX_CACHE };

static int make_layer(dsa_fwd *f, layer_w *L, int l, int with_indexer, dsa_err *e)
{
    const dsa_model *m = &f->m;
    int rc, h = m->hidden, H = m->heads;
    L->dense = l < m->first_dense;
    if ((rc = ones_bf16(f, &L->attn_norm, h, e)) || (rc = ones_bf16(f, &L->q_norm, m->q_lora, e)) ||
        (rc = ones_bf16(f, &L->kv_norm, 512, e)) || (rc = ones_bf16(f, &L->ffn_norm, h, e)) ||
        (rc = linear(f, &L->qa, m->q_lora, h, tensor_seed(f, W_QA, l), e)) ||
        (rc = linear(f, &L->qb, H * (m->nope + 64), m->q_lora, tensor_seed(f, W_QB, l), e)) ||
        (rc = linear(f, &L->kva, 576, h, tensor_seed(f, W_KVA, l), e)) ||
        (rc = linear(f, &L->o, h, H * m->v, tensor_seed(f, W_O, l), e)) ||
        (rc = rand_bf16(f, &L->kvb, (size_t)H * (m->nope + m->v) * 512, 1.0f / sqrtf(512.0f),
                        tensor_seed(f, W_KVB, l), e)))
        return rc;
    if (with_indexer) {
        if ((rc = linear(f, &L->iq, m->idx_heads * 128, m->q_lora, tensor_seed(f, W_IQ, l), e)) ||
            (rc = linear(f, &L->ik, 128, h, tensor_seed(f, W_IK, l), e)) ||
            (rc = linear_as(f, &L->iw, m->idx_heads, h, tensor_seed(f, W_IW, l), 0, e)) ||
            (rc = ones_bf16(f, &L->ik_ln_w, 128, e)) ||
            (rc = falloc(f, (void **)&L->ik_ln_b, 128 * sizeof(bf16_t), e)))
            return rc;
    }
    if (L->dense) {
        if ((rc = linear(f, &L->gate_up, 2 * m->dense_inter, h, tensor_seed(f, W_GATE_UP, l), e)) ||
            (rc = linear(f, &L->down, h, m->dense_inter, tensor_seed(f, W_DOWN, l), e)))
            return rc;
        return 0;
    }
    int E = m->n_routed, I = m->moe_inter, si = m->n_shared * I;
    if (si > 0 && ((rc = linear(f, &L->gate_up, 2 * si, h, tensor_seed(f, W_GATE_UP, l), e)) ||
                   (rc = linear(f, &L->down, h, si, tensor_seed(f, W_DOWN, l), e))))
        return rc;
    if ((rc = rand_bf16(f, &L->router, (size_t)E * h, 1.0f / sqrtf((float)h), tensor_seed(f, W_ROUTER, l), e)) ||
        (rc = falloc(f, (void **)&L->router_bias, (size_t)E * sizeof(float), e)))
        return rc;
    /* a small random correction bias, as DeepSeek's e_score_correction_bias */
    OP(f->ops->fill_f32(f->ops->ctx, L->router_bias, E, tensor_seed(f, W_ROUTER_BIAS, l), 0.01f), "fill");
    L->exp_gate_up = calloc((size_t)E, sizeof(dsa_weight));
    L->exp_down = calloc((size_t)E, sizeof(dsa_weight));
    if (!L->exp_gate_up || !L->exp_down) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    /* all experts in two buffers, so a grouped GEMM sees them as one tensor */
    size_t gu_n = (size_t)2 * I * h, dn_n = (size_t)h * I;
    if (f->o.weight_fp8) {
        uint8_t *gu, *dn;
        float *gus, *dns;
        size_t gu_b = (size_t)((2 * I + 127) / 128) * ((h + 127) / 128), dn_b = (size_t)((h + 127) / 128) * ((I + 127) / 128);
        if ((rc = fp8_tensor(f, &gu, &gus, E, 2 * I, h, tensor_seed(f, W_EXP_GU, l), e)) ||
            (rc = fp8_tensor(f, &dn, &dns, E, h, I, tensor_seed(f, W_EXP_DOWN, l), e)))
            return rc;
        for (int x = 0; x < E; x++) {
            L->exp_gate_up[x] = (dsa_weight){DSA_FP8_E4M3, 2 * I, h, gu + gu_n * x, gus + gu_b * x};
            L->exp_down[x] = (dsa_weight){DSA_FP8_E4M3, h, I, dn + dn_n * x, dns + dn_b * x};
        }
        return 0;
    }
    bf16_t *gu, *dn;
    if ((rc = rand_bf16(f, &gu, gu_n * E, 1.0f / sqrtf((float)h), tensor_seed(f, W_EXP_GU, l), e)) ||
        (rc = rand_bf16(f, &dn, dn_n * E, 1.0f / sqrtf((float)I), tensor_seed(f, W_EXP_DOWN, l), e)))
        return rc;
    for (int x = 0; x < E; x++) {
        L->exp_gate_up[x] = (dsa_weight){DSA_BF16, 2 * I, h, gu + gu_n * x, NULL};
        L->exp_down[x] = (dsa_weight){DSA_BF16, h, I, dn + dn_n * x, NULL};
    }
    return 0;
}

static int make_weights(dsa_fwd *f, dsa_err *e)
{
    const dsa_model *m = &f->m;
    int rc, n = f->o.layers;
    if ((rc = rand_bf16(f, &f->embed, (size_t)m->vocab * m->hidden, 1.0f, tensor_seed(f, W_EMBED, -1), e)) ||
        (rc = ones_bf16(f, &f->final_norm, m->hidden, e)) ||
        (rc = linear_as(f, &f->lm_head, m->vocab, m->hidden, tensor_seed(f, W_LM_HEAD, -1), 0, e)))
        return rc;
    f->L = calloc((size_t)n, sizeof *f->L);
    if (!f->L) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    for (int l = 0; l < n; l++) {
        int donor = -1; /* --weights shared: the first layer of the same FFN kind lends its set */
        if (f->o.shared_weights)
            for (int d = 0; d < l; d++)
                if ((d < m->first_dense) == (l < m->first_dense)) { donor = d; break; }
        if (donor >= 0) {
            f->L[l] = f->L[donor];
            /* the expert views are per layer so each layer frees its own arrays */
            f->L[l].exp_gate_up = f->L[l].exp_down = NULL;
            if (!f->L[l].dense) {
                size_t E = (size_t)m->n_routed;
                f->L[l].exp_gate_up = malloc(E * sizeof(dsa_weight));
                f->L[l].exp_down = malloc(E * sizeof(dsa_weight));
                if (!f->L[l].exp_gate_up || !f->L[l].exp_down) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
                memcpy(f->L[l].exp_gate_up, f->L[donor].exp_gate_up, E * sizeof(dsa_weight));
                memcpy(f->L[l].exp_down, f->L[donor].exp_down, E * sizeof(dsa_weight));
            }
            continue;
        }
        /* a donor always has an indexer: any layer that borrows its weights may be F */
        if ((rc = make_layer(f, &f->L[l], l, f->fs[l] == 'F' || f->o.shared_weights, e))) return rc;
    }
    return 0;
}

static int make_workspace(dsa_fwd *f, dsa_err *e)
{
    const dsa_model *m = &f->m;
    size_t T = (size_t)f->T, H = (size_t)m->heads, iH = (size_t)m->idx_heads, h = (size_t)m->hidden;
    size_t ffn_inter = (size_t)(m->dense_inter > m->n_shared * m->moe_inter ? m->dense_inter : m->n_shared * m->moe_inter);
    size_t lm_rows = f->phase == DSA_PREFILL ? 1 : T;
    f->score_ld = f->phase == DSA_PREFILL ? f->context : f->context + 1;
    struct { void **p; size_t bytes; } bufs[] = {
        {(void **)&f->tokens, T * 4}, {(void **)&f->pos, T * 4}, {(void **)&f->slot, T * 8},
        {(void **)&f->x, T * h * 2}, {(void **)&f->xn, T * h * 2},
        {(void **)&f->cq_raw, T * m->q_lora * 2}, {(void **)&f->cq, T * m->q_lora * 2},
        {(void **)&f->q, T * H * (m->nope + 64) * 2}, {(void **)&f->kv, T * 576 * 2},
        {(void **)&f->qi, T * iH * 128 * 2}, {(void **)&f->ik, T * 128 * 2}, {(void **)&f->iw, T * iH * 2},
        {(void **)&f->q_fp8, T * iH * 128}, {(void **)&f->w, T * iH * 4},
        /* the fused indexer never writes scores (it keeps its candidates in the ops' scratch) */
        {(void **)&f->scores, f->o.fused_indexer ? 4 : T * (size_t)f->score_ld * 4}, {(void **)&f->indices, T * m->topk * 4},
        {(void **)&f->query, T * H * 576 * 2}, {(void **)&f->out_lat, T * H * 512 * 2},
        {(void **)&f->lse, T * H * 4}, {(void **)&f->ov, T * H * m->v * 2},
        {(void **)&f->gu, T * 2 * ffn_inter * 2}, {(void **)&f->act, T * ffn_inter * 2},
        {(void **)&f->route_ids, T * m->n_active * 4}, {(void **)&f->route_w, T * m->n_active * 4},
        {(void **)&f->logits, lm_rows * m->vocab * 2},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        int rc = falloc(f, bufs[i].p, bufs[i].bytes, e);
        if (rc) return rc;
    }
    f->h_tokens = malloc(T * sizeof *f->h_tokens);
    f->h_pos = malloc(T * sizeof *f->h_pos);
    f->h_slot = malloc(T * sizeof *f->h_slot);
    if (!f->h_tokens || !f->h_pos || !f->h_slot) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    return 0;
}

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static dsa_rope mla_rope(const dsa_fwd *f) { return (dsa_rope){DSA_ROPE_INTERLEAVED, (float)f->m.rope_theta}; }
static dsa_rope idx_rope(const dsa_fwd *f)
{
    return (dsa_rope){f->m.idx_rope_half ? DSA_ROPE_HALF : DSA_ROPE_INTERLEAVED, (float)f->m.rope_theta};
}
static int scale_mode(const dsa_fwd *f) { return f->m.fp8_ue8m0 ? DSA_SCALE_UE8M0 : DSA_SCALE_FP32; }

/* Decode caches hold `context` random tokens per request: random latent rows quantised by the
 * same cache writers the step uses, so they have the real layout and value range. Written in
 * blocks of FILL_ROWS rows through buffers of their own (the step's workspace has only
 * `batch` rows: filling 200K positions through it took minutes). */
#define FILL_ROWS 16384
static int fill_decode_caches(dsa_fwd *f, dsa_err *e)
{
    const dsa_ops *ops = f->ops;
    int64_t L = f->context;
    const int R = (int)(L < FILL_ROWS ? L : FILL_ROWS);
    bf16_t *kv = NULL, *k = NULL;
    int32_t *pos = NULL, *h_pos = malloc((size_t)R * sizeof *h_pos);
    int64_t *slot = NULL, *h_slot = malloc((size_t)R * sizeof *h_slot);
    int rc = 0;
    if (!h_pos || !h_slot) rc = dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    if (!rc && (ops->alloc(ops->ctx, (void **)&kv, (size_t)R * 576 * 2) || ops->alloc(ops->ctx, (void **)&k, (size_t)R * 128 * 2) ||
                ops->alloc(ops->ctx, (void **)&pos, (size_t)R * 4) || ops->alloc(ops->ctx, (void **)&slot, (size_t)R * 8)))
        rc = dsa_fail(e, DSA_EXIT_RUNTIME, "decode cache fill: %s", ops->last_error(ops->ctx));
    for (int l = 0; !rc && l < f->o.layers; l++)
        for (int b = 0; !rc && b < f->batch; b++)
            for (int64_t p0 = 0; !rc && p0 < L; p0 += R) {
                int n = (int)(L - p0 < R ? L - p0 : R);
                for (int i = 0; i < n; i++) {
                    h_pos[i] = (int32_t)(p0 + i);
                    h_slot[i] = (int64_t)b * f->req_slots + p0 + i;
                }
                uint64_t s = tensor_seed(f, S_MLA_CACHE, l) ^ mix64((uint64_t)b << 32 ^ (uint64_t)p0);
                if (ops->upload(ops->ctx, pos, h_pos, (size_t)n * 4) || ops->upload(ops->ctx, slot, h_slot, (size_t)n * 8) ||
                    ops->fill_bf16(ops->ctx, kv, (size_t)n * 576, s, 1.0f) ||
                    ops->mla_cache_write_fp8(ops->ctx, kv, 576, n, slot, f->mla_fp8[l], scale_mode(f)) ||
                    (f->idx[l] && (ops->fill_bf16(ops->ctx, k, (size_t)n * 128, s ^ 0x5bd1e995, 1.0f) ||
                                   ops->idx_prep_k(ops->ctx, k, 128, n, f->L[l].ik_ln_w, f->L[l].ik_ln_b, pos, idx_rope(f),
                                                   scale_mode(f), slot, f->idx[l]))) ||
                    ops->sync(ops->ctx)) /* the host staging is reused by the next block */
                    rc = dsa_fail(e, DSA_EXIT_RUNTIME, "decode cache fill: %s", ops->last_error(ops->ctx));
            }
    if (kv) ops->release(ops->ctx, kv);
    if (k) ops->release(ops->ctx, k);
    if (pos) ops->release(ops->ctx, pos);
    if (slot) ops->release(ops->ctx, slot);
    free(h_pos);
    free(h_slot);
    return rc;
}

static int make_caches(dsa_fwd *f, dsa_err *e)
{
    int n = f->o.layers, rc;
    f->mla_bf16 = calloc((size_t)n, sizeof *f->mla_bf16);
    f->mla_fp8 = calloc((size_t)n, sizeof *f->mla_fp8);
    f->idx = calloc((size_t)n, sizeof *f->idx);
    if (!f->mla_bf16 || !f->mla_fp8 || !f->idx) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    size_t S = (size_t)f->slots;
    for (int l = 0; l < n; l++) {
        if (f->phase == DSA_PREFILL && (rc = falloc(f, (void **)&f->mla_bf16[l], S * 576 * 2, e))) return rc;
        if ((rc = falloc(f, (void **)&f->mla_fp8[l], S * DSA_MLA_FP8_TOKEN_BYTES, e))) return rc;
        if (f->fs[l] == 'F' && (rc = falloc(f, (void **)&f->idx[l], S * DSA_IDX_TOKEN_BYTES, e))) return rc;
    }
    return f->phase == DSA_DECODE ? fill_decode_caches(f, e) : 0;
}

/* Copies the staged tokens, positions and slots of n rows to the device. */
static int upload_rows(dsa_fwd *f, int n, dsa_err *e)
{
    const dsa_ops *ops = f->ops;
    OP(ops->upload(ops->ctx, f->tokens, f->h_tokens, (size_t)n * 4), "upload tokens");
    OP(ops->upload(ops->ctx, f->pos, f->h_pos, (size_t)n * 4), "upload positions");
    OP(ops->upload(ops->ctx, f->slot, f->h_slot, (size_t)n * 8), "upload slots");
    return 0;
}

/* Decode: request b's new token at position `context`, its KV written to its own slot. */
static int stage_decode_inputs(dsa_fwd *f, dsa_err *e)
{
    uint64_t ts = tensor_seed(f, S_TOKENS, -1);
    for (int b = 0; b < f->batch; b++) {
        f->h_tokens[b] = (int32_t)(mix64(ts ^ mix64((uint64_t)b)) % (uint64_t)f->m.vocab);
        f->h_pos[b] = (int32_t)f->context;
        f->h_slot[b] = (int64_t)b * f->req_slots + f->context;
    }
    return upload_rows(f, f->batch, e);
}

int dsa_fwd_create(const dsa_model *m, const dsa_ops *ops, const dsa_fwd_opts *opts, const char *fs,
                   int phase, int64_t context, int batch, int chunk, dsa_fwd **out, dsa_err *e)
{
    *out = NULL;
    if (opts->layers < 1 || opts->layers > m->n_layers || (int)strlen(fs) != opts->layers)
        return dsa_fail(e, DSA_EXIT_USAGE, "layers %d and schedule of %d layers do not match the model's %d",
                        opts->layers, (int)strlen(fs), m->n_layers);
    if (fs[0] != 'F') return dsa_fail(e, DSA_EXIT_USAGE, "schedule starts with S");
    if (context < 1 || context > INT32_MAX - 1 || batch < 1 || chunk < 1)
        return dsa_fail(e, DSA_EXIT_USAGE, "context, batch and chunk must be positive");
    dsa_fwd *f = calloc(1, sizeof *f);
    if (!f) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    f->m = *m;
    f->ops = ops;
    f->o = *opts;
    memcpy(f->fs, fs, strlen(fs) + 1);
    f->phase = phase;
    f->context = context;
    f->batch = phase == DSA_PREFILL ? 1 : batch;
    f->chunk = chunk;
    f->T = phase == DSA_PREFILL ? (int)(chunk < context ? chunk : context) : batch;
    f->req_slots = dsa_plan_request_slots(context);
    f->slots = phase == DSA_PREFILL ? context : (int64_t)batch * f->req_slots;
    f->attn_scale = 1.0f / sqrtf((float)(m->nope + m->rope));
    int rc;
    if ((rc = make_weights(f, e)) || (rc = make_workspace(f, e)) || (rc = make_caches(f, e)) ||
        (rc = phase == DSA_DECODE ? stage_decode_inputs(f, e) : 0) ||
        (rc = ops->sync(ops->ctx) ? dsa_fail(e, DSA_EXIT_RUNTIME, "sync: %s", ops->last_error(ops->ctx)) : 0)) {
        dsa_fwd_destroy(f);
        return rc;
    }
    *out = f;
    return 0;
}

#define BEGIN(c, l) dsa_prof_begin(prof, c, l)
#define END() dsa_prof_end(prof)

/* One layer over the f->T (or fewer: n) rows in f->x whose positions/slots are uploaded.
 * q_pos0: prefill position of row 0 (keys 0 .. q_pos0 + n - 1); decode: the context. */
static int layer_forward(dsa_fwd *f, int l, int n, int64_t q_pos0, dsa_prof *prof, dsa_err *e)
{
    const dsa_model *m = &f->m;
    const dsa_ops *ops = f->ops;
    void *c = ops->ctx;
    layer_w *L = &f->L[l];
    int h = m->hidden, H = m->heads, qd = m->nope + 64, iH = m->idx_heads;
    int decode = f->phase == DSA_DECODE;

    BEGIN(DSA_C_ATTN_NORM, l);
    OP(ops->rmsnorm(c, f->x, h, n, h, L->attn_norm, (float)m->rms_eps, f->xn, h), "attn_norm");
    END();

    BEGIN(DSA_C_Q_PROJ, l);
    OP(ops->gemm(c, f->xn, h, n, &L->qa, NULL, f->cq_raw, m->q_lora), "q_proj: W_qa");
    OP(ops->rmsnorm(c, f->cq_raw, m->q_lora, n, m->q_lora, L->q_norm, (float)m->rms_eps, f->cq, m->q_lora), "q_proj: norm");
    OP(ops->gemm(c, f->cq, m->q_lora, n, &L->qb, NULL, f->q, H * qd), "q_proj: W_qb");
    OP(ops->rope(c, f->q, n, H, H * qd, qd, m->nope, f->pos, mla_rope(f)), "q_proj: rope");
    END();

    BEGIN(DSA_C_KV_PROJ, l);
    OP(ops->gemm(c, f->xn, h, n, &L->kva, NULL, f->kv, 576), "kv_proj: W_kva");
    OP(ops->rmsnorm(c, f->kv, 576, n, 512, L->kv_norm, (float)m->rms_eps, f->kv, 576), "kv_proj: norm");
    OP(ops->rope(c, f->kv, n, 1, 576, 576, 512, f->pos, mla_rope(f)), "kv_proj: rope");
    if (!decode) OP(ops->mla_cache_write_bf16(c, f->kv, 576, n, f->slot, f->mla_bf16[l]), "kv_proj: bf16 cache");
    OP(ops->mla_cache_write_fp8(c, f->kv, 576, n, f->slot, f->mla_fp8[l], scale_mode(f)), "kv_proj: fp8 cache");
    END();

    if (f->fs[l] == 'F') {
        BEGIN(DSA_C_IDX_PROJ, l);
        OP(ops->gemm(c, f->cq, m->q_lora, n, &L->iq, NULL, f->qi, iH * 128), "idx_proj: W_iq");
        OP(ops->gemm(c, f->xn, h, n, &L->ik, NULL, f->ik, 128), "idx_proj: W_ik");
        OP(ops->gemm(c, f->xn, h, n, &L->iw, NULL, f->iw, iH), "idx_proj: W_iw");
        OP(ops->idx_prep_q(c, f->qi, f->iw, n, iH, f->pos, idx_rope(f), scale_mode(f), f->q_fp8, f->w), "idx_proj: q");
        OP(ops->idx_prep_k(c, f->ik, 128, n, L->ik_ln_w, L->ik_ln_b, f->pos, idx_rope(f), scale_mode(f), f->slot,
                           f->idx[l]),
           "idx_proj: k");
        END();
        if (f->o.fused_indexer) {
            BEGIN(DSA_C_IDX_FUSED, l);
            if (decode)
                OP(ops->idx_fused_decode(c, f->q_fp8, f->w, n, iH, f->idx[l], (size_t)f->req_slots * DSA_IDX_TOKEN_BYTES,
                                         (int)(f->context + 1), m->topk, f->indices),
                   "idx_fused");
            else
                OP(ops->idx_fused_prefill(c, f->q_fp8, f->w, n, iH, f->idx[l], (int)(q_pos0 + n), (int)q_pos0, m->topk,
                                          f->indices),
                   "idx_fused");
            END();
        } else {
            BEGIN(DSA_C_IDX_LOGITS, l);
            if (decode)
                OP(ops->idx_logits_decode(c, f->q_fp8, f->w, n, iH, f->idx[l], (size_t)f->req_slots * DSA_IDX_TOKEN_BYTES,
                                          (int)(f->context + 1), f->scores, (int)f->score_ld),
                   "idx_logits");
            else
                OP(ops->idx_logits_prefill(c, f->q_fp8, f->w, n, iH, f->idx[l], (int)(q_pos0 + n), (int)q_pos0, f->scores,
                                           (int)(q_pos0 + n)),
                   "idx_logits");
            END();
            BEGIN(DSA_C_IDX_TOPK, l);
            if (decode)
                OP(ops->topk(c, f->scores, n, (int)f->score_ld, (int)(f->context + 1), 0, m->topk, f->indices), "idx_topk");
            else
                OP(ops->topk(c, f->scores, n, (int)(q_pos0 + n), (int)q_pos0 + 1, 1, m->topk, f->indices), "idx_topk");
            END();
        }
    } /* an S layer keeps f->indices from the nearest F layer before it */

    /* debug hook: sees (and may overwrite) the indices this layer's attention is about to use */
    if (f->o.on_indices && !f->capturing) f->o.on_indices(f->o.user, l, dsa_schedule_source_layer(f->fs, l), f->indices, n, m->topk);

    BEGIN(DSA_C_MLA_ABSORB, l);
    OP(ops->mla_absorb(c, f->q, n, H, m->nope, m->v, L->kvb, f->query), "mla_absorb");
    END();

    BEGIN(DSA_C_SPARSE_ATTN, l);
    if (decode)
        OP(ops->sparse_attn_decode(c, f->query, n, H, f->mla_fp8[l], (size_t)f->req_slots * DSA_MLA_FP8_TOKEN_BYTES,
                                   f->indices, m->topk, f->attn_scale, f->out_lat, f->lse),
           "sparse_attn");
    else
        OP(ops->sparse_attn_prefill(c, f->query, n, H, f->mla_bf16[l], f->indices, m->topk, f->attn_scale, f->out_lat,
                                    f->lse),
           "sparse_attn");
    END();

    BEGIN(DSA_C_MLA_OUT, l);
    OP(ops->mla_out(c, f->out_lat, n, H, m->nope, m->v, L->kvb, f->ov), "mla_out");
    END();

    BEGIN(DSA_C_O_PROJ, l);
    OP(ops->gemm(c, f->ov, H * m->v, n, &L->o, f->x, f->x, h), "o_proj");
    END();

    BEGIN(DSA_C_FFN_NORM, l);
    OP(ops->rmsnorm(c, f->x, h, n, h, L->ffn_norm, (float)m->rms_eps, f->xn, h), "ffn_norm");
    END();

    if (L->dense) {
        BEGIN(DSA_C_DENSE_FFN, l);
        OP(ops->gemm(c, f->xn, h, n, &L->gate_up, NULL, f->gu, 2 * m->dense_inter), "dense_ffn: gate_up");
        OP(ops->swiglu(c, f->gu, n, m->dense_inter, f->act), "dense_ffn: swiglu");
        OP(ops->gemm(c, f->act, m->dense_inter, n, &L->down, f->x, f->x, h), "dense_ffn: down");
        END();
        return 0;
    }
    dsa_router_cfg rc = {m->n_routed, m->n_active, m->n_group, m->topk_group, m->norm_topk, (float)m->routed_scale};
    BEGIN(DSA_C_MOE_ROUTER, l);
    OP(ops->moe_router(c, f->xn, n, h, L->router, L->router_bias, rc, f->route_ids, f->route_w), "moe_router");
    END();
    BEGIN(DSA_C_MOE_EXPERTS, l);
    OP(ops->moe_experts(c, f->xn, n, h, f->route_ids, f->route_w, m->n_active, m->n_routed, m->moe_inter,
                        L->exp_gate_up, L->exp_down, f->x, f->x),
       "moe_experts");
    END();
    if (m->n_shared > 0) {
        int si = m->n_shared * m->moe_inter;
        BEGIN(DSA_C_MOE_SHARED, l);
        OP(ops->gemm(c, f->xn, h, n, &L->gate_up, NULL, f->gu, 2 * si), "moe_shared: gate_up");
        OP(ops->swiglu(c, f->gu, n, si, f->act), "moe_shared: swiglu");
        OP(ops->gemm(c, f->act, si, n, &L->down, f->x, f->x, h), "moe_shared: down");
        END();
    }
    return 0;
}

/* Embed n uploaded rows, run all layers, final norm; lm_head on rows [lm_row0, n). */
static int rows_forward(dsa_fwd *f, int n, int64_t q_pos0, int lm_row0, int do_lm, dsa_prof *prof, dsa_err *e)
{
    const dsa_model *m = &f->m;
    const dsa_ops *ops = f->ops;
    void *c = ops->ctx;
    int rc;
    BEGIN(DSA_C_EMBED, -1);
    OP(ops->embed(c, f->tokens, n, f->embed, m->hidden, f->x), "embed");
    END();
    for (int l = 0; l <= f->o.layers; l++) {
        if (f->o.on_layer_input && !f->capturing) f->o.on_layer_input(f->o.user, l, f->x, n, m->hidden);
        if (l < f->o.layers && (rc = layer_forward(f, l, n, q_pos0, prof, e))) return rc;
    }
    BEGIN(DSA_C_FINAL_NORM, -1);
    OP(ops->rmsnorm(c, f->x, m->hidden, n, m->hidden, f->final_norm, (float)m->rms_eps, f->xn, m->hidden), "final_norm");
    END();
    if (do_lm) {
        BEGIN(DSA_C_LM_HEAD, -1);
        OP(ops->gemm(c, f->xn + (size_t)lm_row0 * m->hidden, m->hidden, n - lm_row0, &f->lm_head, NULL, f->logits,
                     m->vocab),
           "lm_head");
        END();
    }
    f->last_rows = n;
    return 0;
}

/* The decode step as a graph: one eager run first, so cuBLASLt plans and scratch exist before
 * the capture (nothing may allocate inside it), then the capture. */
static int capture_decode(dsa_fwd *f, dsa_prof *prof, dsa_err *e)
{
    const dsa_ops *ops = f->ops;
    int rc = rows_forward(f, f->batch, f->context, 0, 1, NULL, e);
    if (rc) return rc;
    OP(ops->sync(ops->ctx), "sync");
    OP(ops->graph_begin(ops->ctx), "graph capture");
    f->capturing = 1;
    rc = rows_forward(f, f->batch, f->context, 0, 1, prof, e); /* brackets name the graph's nodes (profiler.h) */
    f->capturing = 0;
    void *g = NULL;
    int end = ops->graph_end(ops->ctx, &g); /* always end the capture, even after a failure */
    if (rc) {
        if (g) ops->graph_free(ops->ctx, g);
        return rc;
    }
    OP(end, "graph capture");
    f->graph = g;
    return 0;
}

int dsa_fwd_enqueue(dsa_fwd *f, dsa_prof *prof, dsa_err *e)
{
    int rc;
    if (f->phase == DSA_DECODE) {
        /* the step's inputs are uploaded once, at create: a replayed graph reads them in place */
        if (f->o.use_graph && f->ops->graph_begin) {
            if (!f->graph && (rc = capture_decode(f, prof, e))) return rc;
            OP(f->ops->graph_launch(f->ops->ctx, f->graph), "graph launch");
        } else if ((rc = rows_forward(f, f->batch, f->context, 0, 1, prof, e)))
            return rc;
    } else {
        uint64_t ts = tensor_seed(f, S_TOKENS, -1);
        for (int64_t p0 = 0; p0 < f->context; p0 += f->chunk) {
            int n = (int)(f->context - p0 < f->chunk ? f->context - p0 : f->chunk);
            for (int i = 0; i < n; i++) {
                f->h_tokens[i] = (int32_t)(mix64(ts ^ mix64((uint64_t)(p0 + i))) % (uint64_t)f->m.vocab);
                f->h_pos[i] = (int32_t)(p0 + i);
                f->h_slot[i] = p0 + i;
            }
            int last = p0 + n >= f->context;
            /* the chunk's token ids, positions and slots: the embedding's input, so its component */
            BEGIN(DSA_C_EMBED, -1);
            if ((rc = upload_rows(f, n, e))) return rc;
            END();
            if ((rc = rows_forward(f, n, p0, n - 1, last, prof, e))) return rc;
        }
    }
    return 0;
}

int dsa_fwd_wait(dsa_fwd *f, dsa_err *e)
{
    if (f->ops->sync(f->ops->ctx)) return dsa_fail(e, DSA_EXIT_RUNTIME, "sync: %s", f->ops->last_error(f->ops->ctx));
    return 0;
}

int dsa_fwd_step(dsa_fwd *f, dsa_prof *prof, dsa_err *e)
{
    int rc = dsa_fwd_enqueue(f, prof, e);
    return rc ? rc : dsa_fwd_wait(f, e);
}

int dsa_fwd_replays_graph(const dsa_fwd *f) { return f->phase == DSA_DECODE && f->graph != NULL; }

int dsa_fwd_rows(const dsa_fwd *f) { return f->last_rows; }

int dsa_fwd_download_hidden(dsa_fwd *f, bf16_t *host, dsa_err *e)
{
    OP(f->ops->download(f->ops->ctx, host, f->xn, (size_t)f->last_rows * f->m.hidden * 2), "download");
    return 0;
}

int dsa_fwd_count_nonfinite(dsa_fwd *f, int64_t *count, dsa_err *e)
{
    size_t n = (size_t)f->last_rows * f->m.hidden;
    bf16_t *h = malloc((n ? n : 1) * sizeof *h);
    if (!h) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    int rc = dsa_fwd_download_hidden(f, h, e);
    int64_t bad = 0;
    for (size_t i = 0; !rc && i < n; i++) bad += (h[i] & 0x7f80) == 0x7f80; /* exponent all ones: inf or NaN */
    free(h);
    *count = bad;
    return rc;
}

void dsa_fwd_destroy(dsa_fwd *f)
{
    if (!f) return;
    if (f->graph) f->ops->graph_free(f->ops->ctx, f->graph);
    for (int i = f->n_allocs - 1; i >= 0; i--) f->ops->release(f->ops->ctx, f->allocs[i]);
    free(f->allocs);
    if (f->L)
        for (int l = 0; l < f->o.layers; l++) {
            free(f->L[l].exp_gate_up);
            free(f->L[l].exp_down);
        }
    free(f->L);
    free(f->mla_bf16);
    free(f->mla_fp8);
    free(f->idx);
    free(f->h_tokens);
    free(f->h_pos);
    free(f->h_slot);
    free(f);
}
