/* src/compare.h — `dsa-bench compare BASE.h5 NEW.h5` (DESIGN.md §5): matches the points of two
 * reports by their keys and judges each median ratio against the noise, as nvbench's compare
 * does. The CLI uses the exit status to gate a CI job: 1 when anything counted is SLOWER.
 *
 * Key of a point: (phase, context, batch, chunk, schedule), where the schedule is
 *   - for `dsa-bench run` points: the resolved F/S string `fs`, so "1/4" and "freq:4" match;
 *   - for `dsa-bench kernels` points (phase "kernel"): `config`, which kbench writes as
 *     "<kernel> h=<heads>"; with context, batch (0 for a prefill case) and chunk (= rows:
 *     queries of a prefill case, requests of a decode case) it names the kernel and its shape.
 * A key that occurs twice in a file (two runs concatenated) matches first with first.
 *
 * Rows and verdicts. One row per matched point (its wall median: a kernel case's time per
 * launch, a run point's time per repetition), and for run points one row per component that
 * either side timed (comps[] medians). For each row:
 *   ratio = new median / base median
 *   noise = max(base noise, new noise). A point's noise is robust: 1.4826 * MAD / median of
 *           its samples (the median absolute deviation, scaled to equal the relative stdev of
 *           normal samples), because CUDA-event timings of microsecond kernels carry a few 2-3x
 *           outliers that triple the plain stdev (15% instead of 7% for idx_logits_decode B=1
 *           in results/kernels-h200.h5) and would hide a 10% regression. With fewer than 3
 *           samples it is stdev / median. A component's noise is stdev / median of its
 *           per-repetition sums (results.h keeps no component samples).
 *   tolerance = max(threshold, noise); threshold defaults to 5% (DSA_COMPARE_THRESHOLD).
 *   SAME    |ratio - 1| <= tolerance (also "too noisy to tell");
 *   SLOWER  ratio - 1 > tolerance;  FASTER  1 - ratio > tolerance;
 *   MISSING the key is in one file only, or the point is not "ok" (skipped, failed) on a side.
 * Exit status (dsa_compare_status): 1 when a counted row is SLOWER, else 0. Counted rows are the
 * points' own rows. Component rows of run points are informational: a kernel that moves from
 * one component to another (idx_logits + idx_topk fused into idx_fused) makes components
 * appear, vanish or shift while the step is no slower; the kernels-file comparison is the
 * per-kernel gate. MISSING never fails (nvbench treats it as a warning): comparing a subset
 * (`kernels -k topk_decode`) against a full baseline is a normal use; the summary counts them.
 *
 * Files that cannot be compared are a usage error (2) with one line: a `kernels` report
 * against a `run` report, or two run reports of different models (name, any shape field, the
 * layers run, shared weights). Run reports of other devices, or kernels reports of other
 * devices, are compared with a warning (dsa_compare.warning). Unreadable files, foreign HDF5
 * and other schemas fail in dsa_h5_read (3) before this is reached. */
#ifndef DSA_COMPARE_H
#define DSA_COMPARE_H

#include <stdio.h>

#include "err.h"
#include "results.h"

#define DSA_COMPARE_THRESHOLD 0.05

enum dsa_verdict { DSA_SAME = 0, DSA_FASTER, DSA_SLOWER, DSA_MISSING, DSA_NVERDICT };

typedef struct dsa_compare_row {
    const dsa_point *base, *cand; /* either NULL when the key is in one file only */
    int component;   /* enum dsa_component; -1 for the point's own (wall) row */
    double base_ms, new_ms; /* medians; NAN where absent */
    double ratio;    /* new / base; NAN for MISSING */
    double noise;    /* max of the two relative stdevs (fraction); NAN for MISSING */
    int verdict;     /* enum dsa_verdict */
    int counts;      /* 1: this row decides the exit status (see above) */
    char note[128];  /* why MISSING; a point whose mean SM clock moved > 1%: the two clocks; else "" */
} dsa_compare_row;

typedef struct dsa_compare {
    dsa_compare_row *rows; /* base order, then points found in NEW only */
    int n_rows;
    int n_verdict[DSA_NVERDICT]; /* counted rows per verdict */
    int kernels;       /* 1 when both are `dsa-bench kernels` reports */
    double threshold;  /* fraction */
    char warning[320]; /* "" or one line: other devices */
} dsa_compare;

const char *dsa_verdict_name(int v); /* "SAME", ...; "?" when out of range */

/* Compares two reports read by dsa_h5_read. threshold is a fraction (0.05 = 5%), >= 0.
 * Returns 0 and fills out (release with dsa_compare_free), or DSA_EXIT_USAGE with one line in e
 * when the files cannot be compared, or DSA_EXIT_RUNTIME when out of memory. The rows point
 * into base and cand, which must outlive out. */
int dsa_compare_runs(const dsa_run *base, const dsa_run *cand, double threshold, dsa_compare *out,
                     dsa_err *e);
/* DSA_EXIT_SLOWER (1) when a counted row is SLOWER, else 0. */
int dsa_compare_status(const dsa_compare *c);
/* The table (format: report.h's DSA_FMT_TEXT, DSA_FMT_MD or DSA_FMT_JSON) and a summary line.
 * The names are printed as given (the files' paths). */
void dsa_compare_print(FILE *o, const dsa_compare *c, const dsa_run *base, const char *base_name,
                       const dsa_run *cand, const char *cand_name, int format);
void dsa_compare_free(dsa_compare *c);

#endif
