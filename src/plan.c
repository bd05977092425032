/* src/plan.c — memory and work of a sweep point, counted from the shapes alone. */
#include "plan.h"

#include <math.h>
#include <string.h>

#include "schedule.h"

#define GIB (1024.0 * 1024.0 * 1024.0)
/* Bytes one token occupies in each cache (kernels/ops.h layouts). */
#define MLA_BF16_TOKEN (576.0 * 2)
#define MLA_FP8_TOKEN 656.0
#define IDX_TOKEN 132.0
/* CUDA context, cuBLASLt workspaces (the main stream's and DSA_SIDE_STREAMS = 8 more, 64 MiB each)
 * and allocator slack, kept free on the device. */
#define RESERVE_BYTES (1.5 * GIB)

int64_t dsa_plan_request_slots(int64_t context) { return (context + 1 + 31) / 32 * 32; }

dsa_ceilings dsa_ceilings_default(void) { return (dsa_ceilings){800.0, 1470.0, 4000.0}; }

static double gemm_weight_bytes(double n, double k, int fp8)
{
    return fp8 ? n * k + 4.0 * ceil(n / 128) * ceil(k / 128) : 2.0 * n * k;
}

static int is_dense(const dsa_model *m, int layer) { return layer < m->first_dense; }

static double attn_weight_bytes(const dsa_model *m, int full, int fp8)
{
    double h = m->hidden, H = m->heads;
    double b = gemm_weight_bytes(m->q_lora, h, fp8) + gemm_weight_bytes(H * (m->nope + m->rope), m->q_lora, fp8) +
               gemm_weight_bytes(576, h, fp8) + gemm_weight_bytes(h, H * m->v, fp8) +
               2.0 * H * (m->nope + m->v) * 512 + /* W_kvb stays bf16: absorbed per head */
               2.0 * (m->q_lora + 512 + 2 * h);    /* norms */
    if (full) /* S layers never run their indexer, so its weights are not allocated */
        b += gemm_weight_bytes((double)m->idx_heads * 128, m->q_lora, fp8) + gemm_weight_bytes(128, h, fp8) +
             gemm_weight_bytes(m->idx_heads, h, 0) + 2.0 * 2 * 128; /* weights_proj stays bf16 */
    return b;
}

static double ffn_weight_bytes(const dsa_model *m, int dense, int fp8)
{
    double h = m->hidden;
    if (dense) return gemm_weight_bytes(2.0 * m->dense_inter, h, fp8) + gemm_weight_bytes(h, m->dense_inter, fp8);
    double si = (double)m->n_shared * m->moe_inter;
    return 2.0 * m->n_routed * h + 4.0 * m->n_routed +
           m->n_routed * (gemm_weight_bytes(2.0 * m->moe_inter, h, fp8) + gemm_weight_bytes(h, m->moe_inter, fp8)) +
           (si > 0 ? gemm_weight_bytes(2 * si, h, fp8) + gemm_weight_bytes(h, si, fp8) : 0);
}

double dsa_plan_layer_weight_bytes(const dsa_model *m, int layer, int full, int fp8)
{
    return attn_weight_bytes(m, full, fp8) + ffn_weight_bytes(m, is_dense(m, layer), fp8);
}

double dsa_plan_global_weight_bytes(const dsa_model *m, int fp8)
{
    (void)fp8; /* embed and lm_head stay bf16 under --weight-dtype fp8, as DeepSeek ships them */
    return 2.0 * m->vocab * m->hidden + gemm_weight_bytes(m->vocab, m->hidden, 0) + 2.0 * m->hidden; /* lm_head bf16 */
}

dsa_workspace_sizes dsa_plan_workspace(const dsa_model *m, int phase, int64_t context, int batch,
                                       int chunk, int fused_indexer)
{
    dsa_workspace_sizes w;
    double T = phase == DSA_PREFILL ? (double)(chunk < context ? chunk : context) : batch;
    double H = m->heads, iH = m->idx_heads, h = m->hidden;
    w.tokens = (int64_t)T;
    w.score_cols = phase == DSA_PREFILL ? context : context + 1;
    double ffn_inter = m->dense_inter > (double)m->n_shared * m->moe_inter ? m->dense_inter
                                                                           : (double)m->n_shared * m->moe_inter;
    double per_row = 2 * (2 * h)                      /* x, xn */
                     + 2 * (2.0 * m->q_lora)          /* c_q before and after its norm */
                     + 2 * H * (m->nope + m->rope)    /* q */
                     + 2 * 576.0                      /* [c_kv | k_pe] */
                     + iH * 128 * (2 + 1) + 2 * 128 + iH * (2 + 4) /* indexer q bf16+fp8, k, w */
                     /* indexer scores; the fused indexer's candidate lists instead hold up to every
                      * key as (score, index): 8 B, and 4096 sample scores, in the ops' scratch
                      * (kernels/idx_fused.cu) */
                     + (fused_indexer ? 8.0 * w.score_cols + 4.0 * 4096 : 4.0 * w.score_cols)
                     + 4.0 * m->topk                  /* indices */
                     + H * (2 * 576.0 + 2 * 512 + 4 + 2.0 * m->v) /* query, out_lat, lse, o */
                     + 2 * (3 * ffn_inter)            /* gate|up and SwiGLU output */
                     + m->n_active * (8.0 + 8)        /* routing; the grouped experts' row maps */
                     + 4 + 4 + 8;                     /* token, position, slot */
    /* The experts' rows (kernels/moe.cu): x gathered (bf16), gate|up (bf16), SwiGLU (bf16) and
     * the down output (fp32) per (token, expert) pair, padded by up to 6.25% + 16 rows per expert */
    double expert_row = 2 * h + 2 * (3.0 * m->moe_inter) + 4 * h;
    double expert_rows = m->n_routed > 0 ? 1.0625 * T * m->n_active + 16.0 * m->n_routed : 0;
    w.bytes = T * per_row + expert_rows * expert_row + 2.0 * m->vocab * (phase == DSA_PREFILL ? 1 : batch);
    return w;
}

static void add(dsa_plan_comp *c, double flops, double bytes)
{
    c->flops += flops;
    c->bytes += bytes;
    c->calls++;
}

static void add_gemm(dsa_plan_comp *c, double T, double n, double k, int fp8)
{
    add(c, 2 * T * n * k, gemm_weight_bytes(n, k, fp8) + 2 * T * (n + k));
    if (fp8) c->fp8 = 1;
}

/* One layer's work for T query rows whose positions are p0 .. p0+T-1 (prefill: one request;
 * decode: T requests each at position p0, p0 = context). */
static void layer_work(const dsa_model *m, const dsa_plan_opts *o, int layer, int full, int phase,
                       double T, double p0, dsa_plan_comp *c)
{
    int fp8 = o->weight_fp8;
    double h = m->hidden, H = m->heads, iH = m->idx_heads, K = m->topk;
    add(&c[DSA_C_ATTN_NORM], 4 * T * h, 4 * T * h);
    add_gemm(&c[DSA_C_Q_PROJ], T, m->q_lora, h, fp8);
    add_gemm(&c[DSA_C_Q_PROJ], T, H * (m->nope + m->rope), m->q_lora, fp8);
    add_gemm(&c[DSA_C_KV_PROJ], T, 576, h, fp8);
    /* cache writes: prefill keeps the bf16 and the FP8 caches, decode only the FP8 one */
    add(&c[DSA_C_KV_PROJ], 0, T * (phase == DSA_PREFILL ? MLA_BF16_TOKEN + MLA_FP8_TOKEN : MLA_FP8_TOKEN));
    double keys_sum, attn_keys; /* (query, key) pairs for the indexer and for attention */
    double score_bytes;
    if (phase == DSA_PREFILL) {
        keys_sum = T * p0 + T * (T + 1) / 2;
        /* sum over queries of min(topk, position + 1) */
        double first = p0 + 1, last = p0 + T;
        if (last <= K) attn_keys = (first + last) * T / 2;
        else if (first >= K) attn_keys = T * K;
        else attn_keys = (first + K) * (K - first + 1) / 2 + (last - K) * K;
        score_bytes = 4 * T * (p0 + T);
    } else {
        keys_sum = T * (p0 + 1);
        attn_keys = T * (p0 + 1 < K ? p0 + 1 : K);
        score_bytes = 4 * T * (p0 + 1);
    }
    if (full) {
        add_gemm(&c[DSA_C_IDX_PROJ], T, iH * 128, m->q_lora, fp8);
        add_gemm(&c[DSA_C_IDX_PROJ], T, 128, h, fp8);
        add_gemm(&c[DSA_C_IDX_PROJ], T, iH, h, fp8);
        add(&c[DSA_C_IDX_PROJ], 0, T * (IDX_TOKEN + iH * (128 + 4)));
        double keys_read = phase == DSA_PREFILL ? (p0 + T) * IDX_TOKEN : T * (p0 + 1) * IDX_TOKEN;
        if (o->fused_indexer) { /* no score matrix: survivors stay a small fraction of it */
            add(&c[DSA_C_IDX_FUSED], 2 * iH * 128 * keys_sum, keys_read + T * iH * (128 + 4) + 4 * T * K);
            c[DSA_C_IDX_FUSED].fp8 = 1;
        } else {
            add(&c[DSA_C_IDX_LOGITS], 2 * iH * 128 * keys_sum, keys_read + T * iH * (128 + 4) + score_bytes);
            c[DSA_C_IDX_LOGITS].fp8 = 1;
            add(&c[DSA_C_IDX_TOPK], 0, score_bytes + 4 * T * K);
        }
    }
    add(&c[DSA_C_MLA_ABSORB], 2 * T * H * m->nope * 512, 2 * H * m->nope * 512 + 2 * T * H * (m->nope + 576));
    /* Cache rows read from memory: decode gathers its own topk rows per request; a prefill
     * chunk's rows share one cache, and the union of thousands of queries' selections covers
     * nearly every key, so each key row is counted once per chunk (the rest hit L2). */
    double rows = phase == DSA_PREFILL ? fmin(attn_keys, p0 + T) : attn_keys;
    double row_bytes = phase == DSA_PREFILL ? MLA_BF16_TOKEN : MLA_FP8_TOKEN;
    add(&c[DSA_C_SPARSE_ATTN], 2 * H * (576 + 512) * attn_keys,
        rows * row_bytes + 4 * T * K + 2 * T * H * (576 + 512));
    add(&c[DSA_C_MLA_OUT], 2 * T * H * 512 * m->v, 2 * H * m->v * 512 + 2 * T * H * (512 + m->v));
    add_gemm(&c[DSA_C_O_PROJ], T, h, H * m->v, fp8);
    add(&c[DSA_C_FFN_NORM], 4 * T * h, 4 * T * h);
    if (is_dense(m, layer)) {
        add_gemm(&c[DSA_C_DENSE_FFN], T, 2.0 * m->dense_inter, h, fp8);
        add_gemm(&c[DSA_C_DENSE_FFN], T, h, m->dense_inter, fp8);
    } else {
        add(&c[DSA_C_MOE_ROUTER], 2 * T * h * m->n_routed, 2.0 * m->n_routed * h + 2 * T * h);
        /* experts touched by T rows of `active` picks each, routing taken as uniform */
        double E = m->n_routed, touched = E * (1 - pow(1 - (double)m->n_active / E, T));
        double per_expert = gemm_weight_bytes(2.0 * m->moe_inter, h, fp8) + gemm_weight_bytes(h, m->moe_inter, fp8);
        add(&c[DSA_C_MOE_EXPERTS], 2 * T * m->n_active * 3 * h * m->moe_inter,
            touched * per_expert + 2 * T * m->n_active * (2 * h + 3.0 * m->moe_inter));
        if (fp8) c[DSA_C_MOE_EXPERTS].fp8 = 1;
        if (m->n_shared > 0) {
            double si = (double)m->n_shared * m->moe_inter;
            add_gemm(&c[DSA_C_MOE_SHARED], T, 2 * si, h, fp8);
            add_gemm(&c[DSA_C_MOE_SHARED], T, h, si, fp8);
        }
    }
}

int dsa_plan_point(const dsa_model *m, const dsa_plan_opts *o, const char *fs, int phase,
                   int64_t context, int batch, int chunk, dsa_plan *p, dsa_err *e)
{
    memset(p, 0, sizeof *p);
    if ((int)strlen(fs) != o->layers)
        return dsa_fail(e, DSA_EXIT_USAGE, "schedule has %d layers, the run has %d", (int)strlen(fs), o->layers);
    if (context < 1 || batch < 1 || chunk < 1) return dsa_fail(e, DSA_EXIT_USAGE, "context, batch and chunk must be >= 1");
    p->phase = phase;
    p->context = context;
    p->batch = phase == DSA_PREFILL ? 1 : batch;
    p->chunk = chunk;
    p->layers = o->layers;
    p->n_full = dsa_schedule_count_full(fs);
    int fp8 = o->weight_fp8;

    /* memory */
    p->weights = dsa_plan_global_weight_bytes(m, fp8);
    if (o->shared_weights) {
        /* one attention block (with its indexer), one dense FFN and one MoE FFN at most */
        p->weights += attn_weight_bytes(m, 1, fp8);
        if (m->first_dense > 0) p->weights += ffn_weight_bytes(m, 1, fp8);
        if (o->layers > m->first_dense) p->weights += ffn_weight_bytes(m, 0, fp8);
    } else {
        for (int l = 0; l < o->layers; l++) p->weights += dsa_plan_layer_weight_bytes(m, l, fs[l] == 'F', fp8);
    }
    double slots = phase == DSA_PREFILL ? (double)context : (double)batch * (double)dsa_plan_request_slots(context);
    p->mla_cache = o->layers * slots * (phase == DSA_PREFILL ? MLA_BF16_TOKEN + MLA_FP8_TOKEN : MLA_FP8_TOKEN);
    p->idx_cache = p->n_full * slots * IDX_TOKEN;
    p->workspace = dsa_plan_workspace(m, phase, context, batch, chunk, o->fused_indexer).bytes;
    p->reserve = RESERVE_BYTES;
    p->total = p->weights + p->mla_cache + p->idx_cache + p->workspace + p->reserve;

    /* work */
    dsa_plan_comp *c = p->comp;
    if (phase == DSA_PREFILL) {
        p->n_chunks = (int)((context + chunk - 1) / chunk);
        for (int64_t p0 = 0; p0 < context; p0 += chunk) {
            double T = (double)(context - p0 < chunk ? context - p0 : chunk);
            add(&c[DSA_C_EMBED], 0, 4 * T * m->hidden);
            for (int l = 0; l < o->layers; l++) layer_work(m, o, l, fs[l] == 'F', phase, T, (double)p0, c);
            add(&c[DSA_C_FINAL_NORM], 4 * T * m->hidden, 4 * T * m->hidden);
        }
        add_gemm(&c[DSA_C_LM_HEAD], 1, m->vocab, m->hidden, 0);
    } else {
        p->n_chunks = 1;
        double T = batch;
        add(&c[DSA_C_EMBED], 0, 4 * T * m->hidden);
        for (int l = 0; l < o->layers; l++) layer_work(m, o, l, fs[l] == 'F', phase, T, (double)context, c);
        add(&c[DSA_C_FINAL_NORM], 4 * T * m->hidden, 4 * T * m->hidden);
        add_gemm(&c[DSA_C_LM_HEAD], T, m->vocab, m->hidden, 0);
    }
    for (int i = 0; i < DSA_NCOMP; i++) {
        double peak = c[i].fp8 ? o->ceil.fp8_tflops : o->ceil.bf16_tflops;
        double t_math = c[i].flops / (peak * 1e12), t_mem = c[i].bytes / (o->ceil.bw_gbs * 1e9);
        c[i].floor_ms = 1e3 * (t_math > t_mem ? t_math : t_mem);
        p->flops += c[i].flops;
        p->floor_ms += c[i].floor_ms;
    }
    return 0;
}

void dsa_plan_print(FILE *o, const dsa_model *m, const dsa_plan_opts *po, const char *config, const char *fs,
                    const dsa_plan *p, double mem_bytes)
{
    fprintf(o, "# %s  context %lld  batch %d  chunk %d  config %s  F layers %d of %d\n",
            p->phase == DSA_PREFILL ? "prefill" : "decode", (long long)p->context, p->batch, p->chunk, config,
            p->n_full, p->layers);
    fprintf(o, "# schedule %s\n", fs);
    fprintf(o, "# memory GiB: weights %.2f  mla_cache %.2f  idx_cache %.2f  workspace %.2f  reserve %.2f  "
               "total %.2f of %.1f: %s\n",
            p->weights / GIB, p->mla_cache / GIB, p->idx_cache / GIB, p->workspace / GIB, p->reserve / GIB,
            p->total / GIB, mem_bytes / GIB, p->total <= mem_bytes ? "fits" : "DOES NOT FIT");
    fprintf(o, "# work for %s; floor = max(FLOPs / peak, bytes / %.0f GB/s), peaks bf16 %.0f, fp8 %.0f TFLOP/s\n",
            p->phase == DSA_PREFILL ? "the whole prefill" : "one decode step", po->ceil.bw_gbs, po->ceil.bf16_tflops,
            po->ceil.fp8_tflops);
    fprintf(o, "#  %-12s %7s %14s %12s %12s %7s %6s\n", "component", "calls", "GFLOP", "GB", "floor_ms", "share%",
            "dtype");
    for (int c = 0; c < DSA_NCOMP; c++) {
        const dsa_plan_comp *k = &p->comp[c];
        if (!k->calls) continue;
        fprintf(o, "   %-12s %7lld %14.3f %12.4f %12.4f %7.1f %6s\n", dsa_component_name(c), (long long)k->calls,
                k->flops / 1e9, k->bytes / 1e9, k->floor_ms, p->floor_ms > 0 ? 100 * k->floor_ms / p->floor_ms : 0,
                k->fp8 ? "fp8" : "bf16");
    }
    double idx = p->comp[DSA_C_IDX_PROJ].floor_ms + p->comp[DSA_C_IDX_LOGITS].floor_ms + p->comp[DSA_C_IDX_TOPK].floor_ms;
    fprintf(o, "   %-12s %7s %14.3f %12s %12.4f %7.1f\n", "total", "", p->flops / 1e9, "", p->floor_ms, 100.0);
    fprintf(o, "#  indexer share of the floor: %.1f%%\n\n", p->floor_ms > 0 ? 100 * idx / p->floor_ms : 0);
    (void)m;
}
