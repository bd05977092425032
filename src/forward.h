/* src/forward.h — the DSA forward path (DESIGN.md §1, §3), written once against the ops table
 * (kernels/ops.h): chunked prefill of one request, or one batched decode step. */
#ifndef DSA_FORWARD_H
#define DSA_FORWARD_H

#include <stdint.h>

#include "err.h"
#include "model.h"
#include "ops.h"
#include "profiler.h"

typedef struct dsa_fwd_opts {
    int layers;         /* layers run (<= model layers) */
    int shared_weights; /* all layers use one layer's weights */
    int weight_fp8;     /* FP8 weights with 128x128 block scales */
    uint64_t seed;      /* weights, tokens and decode caches derive from it */
    int use_graph;      /* decode: capture the step once as a CUDA graph and replay it */
    int fused_indexer;  /* F layers: idx_fused (scores never stored) instead of idx_logits + topk */
    /* Debug hook, called before each layer's sparse attention with the indices it will use
     * (device memory of the ops; rows x topk int32) and the F layer that produced them. A test
     * may overwrite them (teacher forcing: the GPU run attends with the reference's indices,
     * so one near-tie swap does not change every later layer's input). */
    void (*on_indices)(void *user, int layer, int src_layer, int32_t *idx, int rows, int topk);
    /* Debug hook, called before each layer with its input rows x [rows, ld] bf16 (device memory
     * of the ops), and once more with layer = layers before the final norm. A test may overwrite
     * them, to compare each layer with the reference on identical inputs. */
    void (*on_layer_input)(void *user, int layer, bf16_t *x, int rows, int ld);
    void *user;
} dsa_fwd_opts;

typedef struct dsa_fwd dsa_fwd;

/* Allocates and fills weights, caches (decode: random-filled, context tokens per request)
 * and workspace. fs: the F/S string of opts->layers chars. */
int dsa_fwd_create(const dsa_model *m, const dsa_ops *ops, const dsa_fwd_opts *opts,
                   const char *fs, int phase, int64_t context, int batch, int chunk,
                   dsa_fwd **out, dsa_err *e);
/* Prefill: every chunk of the context through every layer, then lm_head of the last token.
 * Decode: one token for each of the batch's requests at position `context`; with use_graph
 * (and an implementation that has graphs) the first call runs the step once eagerly (plans,
 * scratch), captures it, and every call replays the graph. A replayed step is not seen by
 * `prof` nor by the on_indices hook. */
int dsa_fwd_step(dsa_fwd *f, dsa_prof *prof, dsa_err *e);
/* dsa_fwd_step without its final wait: the step is queued (a prefill still waits inside, where
 * the MoE reads its routing counts) and dsa_fwd_wait waits for it. */
int dsa_fwd_enqueue(dsa_fwd *f, dsa_prof *prof, dsa_err *e);
int dsa_fwd_wait(dsa_fwd *f, dsa_err *e);
/* Non-zero when the next step is one graph launch (a decode whose graph is captured). */
int dsa_fwd_replays_graph(const dsa_fwd *f);
/* Rows of the last step's final hidden state (after final_norm): prefill the last chunk's,
 * decode one per request. */
int dsa_fwd_rows(const dsa_fwd *f);
int dsa_fwd_download_hidden(dsa_fwd *f, bf16_t *host, dsa_err *e); /* rows x hidden */
/* Counts the NaN and Inf values in the last step's final hidden state (after final_norm). */
int dsa_fwd_count_nonfinite(dsa_fwd *f, int64_t *count, dsa_err *e);
void dsa_fwd_destroy(dsa_fwd *f);

#endif
