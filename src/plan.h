/* src/plan.h — what a sweep point needs before anything is allocated: memory (weights, MLA
 * cache, indexer cache, workspace) and the FLOPs and bytes of every component, with a roofline
 * lower bound from the ceilings of DESIGN.md §7. `run` skips a point that does not fit. */
#ifndef DSA_PLAN_H
#define DSA_PLAN_H

#include <stdint.h>

#include "component.h"
#include "err.h"
#include "model.h"

enum dsa_phase { DSA_PREFILL = 0, DSA_DECODE = 1 };

typedef struct dsa_ceilings {
    double bf16_tflops, fp8_tflops, bw_gbs; /* defaults: 800, 1470, 4000 (DESIGN.md §7) */
} dsa_ceilings;

typedef struct dsa_plan_opts {
    int layers;         /* layers run (<= model layers) */
    int shared_weights; /* one layer's weights for every layer */
    int weight_fp8;     /* FP8 weights with 128x128 block scales */
    int fused_indexer;  /* idx_fused instead of idx_logits + idx_topk */
    dsa_ceilings ceil;
} dsa_plan_opts;

typedef struct dsa_plan_comp {
    double flops, bytes, floor_ms;
    int fp8;     /* runs on FP8 tensor cores */
    int64_t calls; /* component invocations (layers x chunks) */
} dsa_plan_comp;

typedef struct dsa_plan {
    int phase;
    int64_t context;
    int batch, chunk, n_chunks, n_full, layers;
    /* bytes */
    double weights, mla_cache, idx_cache, workspace, reserve, total;
    dsa_plan_comp comp[DSA_NCOMP];
    double flops, floor_ms; /* totals */
} dsa_plan;

dsa_ceilings dsa_ceilings_default(void);

/* fs: the resolved F/S string of opts->layers chars. */
int dsa_plan_point(const dsa_model *m, const dsa_plan_opts *o, const char *fs, int phase,
                   int64_t context, int batch, int chunk, dsa_plan *p, dsa_err *e);

/* Sizes the forward path allocates, shared with the plan so the two agree. */
typedef struct dsa_workspace_sizes {
    int64_t tokens;       /* rows per step: chunk (prefill) or batch (decode) */
    int64_t score_cols;   /* keys per score row */
    double bytes;         /* all activation buffers together */
} dsa_workspace_sizes;
dsa_workspace_sizes dsa_plan_workspace(const dsa_model *m, int phase, int64_t context, int batch,
                                       int chunk, int fused_indexer);
/* Decode: cache slots per request, context + 1 rounded up to 32, so that every request's
 * indexer cache (132 B/token) starts 128-byte aligned: the indexer kernels copy a request's
 * keys with 16-byte bulk copies only from a 16-byte aligned start (else 4-byte loads, ~6x
 * slower at B = 8). src/forward.c lays its decode caches out so. */
int64_t dsa_plan_request_slots(int64_t context);
double dsa_plan_layer_weight_bytes(const dsa_model *m, int layer, int full, int weight_fp8);
double dsa_plan_global_weight_bytes(const dsa_model *m, int weight_fp8);



#include <stdio.h>
/* The plan of one point as a fixed-width table with '#' headers. mem_bytes: the budget. */
void dsa_plan_print(FILE *o, const dsa_model *m, const dsa_plan_opts *po, const char *config,
                    const char *fs, const dsa_plan *p, double mem_bytes);
#endif
