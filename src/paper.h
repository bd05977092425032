/* src/paper.h — the IndexCache paper's figures, and `dsa-bench report --side-by-side paper`,
 * which prints them beside the measured ones.
 *
 * Source: "IndexCache: Accelerating Sparse Attention via Cross-Layer Index Reuse" (Bai et al.,
 * arXiv 2603.12201), as kept in reference/indexcache/ (DESIGN.md): README.md and
 *   figures/figure_method.png     (a) prefill time, (b) decode per-request throughput,
 *                                 (c) decode full throughput: relative speedup over DSA in %,
 *                                 1/2 and 1/4 indexer, contexts 10K, 60K, 120K, 200K;
 *   figures/figure_profiling.png  indexer share of prefill and decode time in %, same contexts.
 * Setup, per the README ("30B DSA Model — Speedup (H100)"): a 30B DSA model with 47 DSA layers
 * (glm-4.7-flash-dsa here), H100 GPUs, SGLang with the IndexCache patch (commit b638b25b). The
 * README gives neither batch sizes nor whether the profiling figure is of that model (assumed).
 *
 * Matching, documented in the table's header lines:
 *   - context: the paper's "10K" matches a point of 10000 or 10240 tokens (K = 1000 or 1024,
 *     as -c 10k and -c 10Ki give); likewise 60K, 120K, 200K. Other contexts are not shown.
 *   - config: "1/2" and "1/4" are the points whose F/S string is freq:2 / freq:4's for their
 *     layer count (however the config was spelled); the speedup is report.h's: the
 *     full-indexer point's time / this time, same model, phase, context, batch, chunk.
 *   - decode per-request speedup at the smallest batch of the files (1 in the default sweep),
 *     full-throughput speedup at the largest (8): at one batch both are the same ratio of step
 *     times, so the paper's two panels can only differ by batch. Named in a header line.
 *   - indexer share: the full-indexer point's (the paper profiles DSA without IndexCache);
 *     decode at the per-request batch. '-' where the point is missing or has no component
 *     times (indexer share 0 with no components timed). */
#ifndef DSA_PAPER_H
#define DSA_PAPER_H

#include <stdint.h>
#include <stdio.h>

#include "results.h"

#define DSA_PAPER_NCTX 4

typedef struct dsa_paper_figures {
    const char *title;  /* the paper */
    const char *source; /* where the numbers are */
    const char *setup;  /* model, GPU, framework */
    const char *context_label[DSA_PAPER_NCTX]; /* "10K", ... */
    int context_k[DSA_PAPER_NCTX];              /* 10, 60, 120, 200 */
    /* [0]: 1/2 indexer, [1]: 1/4 indexer; relative speedup over DSA, % */
    double prefill_speedup_pct[2][DSA_PAPER_NCTX];
    double decode_request_speedup_pct[2][DSA_PAPER_NCTX];
    double decode_full_speedup_pct[2][DSA_PAPER_NCTX];
    double indexer_share_prefill_pct[DSA_PAPER_NCTX];
    double indexer_share_decode_pct[DSA_PAPER_NCTX];
} dsa_paper_figures;

const dsa_paper_figures *dsa_paper_indexcache(void);

/* Index of the paper context a token count matches (k*1000 or k*1024), or -1. */
int dsa_paper_context_index(const dsa_paper_figures *f, int64_t tokens);

/* The side-by-side table of the points of runs (one or more report files; points of all of
 * them are pooled, first match wins). format: report.h's DSA_FMT_TEXT, MD, CSV or JSON.
 * Returns 0, or -1 when out of memory. */
int dsa_paper_side_by_side(FILE *o, const dsa_run *runs, int n_runs, int format);

#endif
