/* src/sweep.h — `dsa-bench run`: the cartesian product of phases x contexts x batches x
 * configs (nvbench-style axes), each point planned, run with warm-up and a noise-based
 * stopping rule, every sample kept, and the HDF5 report rewritten after every point. */
#ifndef DSA_SWEEP_H
#define DSA_SWEEP_H

#include <stdint.h>

#include "args.h"
#include "err.h"
#include "model.h"
#include "results.h"

enum { DSA_TRACE_BOTH = 0, DSA_TRACE_ON = 1, DSA_TRACE_OFF = 2 };

typedef struct dsa_sweep_opts {
    dsa_model model;
    int layers;         /* 0 = all of the model's */
    int shared_weights;
    int weight_fp8;
    int fused_indexer;  /* --indexer fused: idx_fused (no score matrix) instead of idx_logits + topk */
    int device_cpu;     /* --device cpu: the C reference and host timers */
    int no_graph;       /* --graph off: decode steps run eagerly instead of replaying a graph */
    int trace;          /* GPU: DSA_TRACE_BOTH (untraced wall, then traced reps for the components and
                         * the overhead), DSA_TRACE_ON (one traced pass: half the time, no overhead
                         * figure) or DSA_TRACE_OFF (wall only) */
    int64_t max_records; /* raw kernel records stored per point (first traced repetition); -1: all */
    int64_t contexts[DSA_MAX_LIST];
    int n_contexts;
    const char *configs[DSA_MAX_LIST];
    int n_configs;
    int phases[2];      /* enum dsa_phase, in order */
    int n_phases;
    int64_t batches[DSA_MAX_LIST];
    int n_batches;
    int chunk;
    int reps;           /* at least this many measured repetitions (>= 3) */
    int warmup;         /* >= 1 */
    double max_time_s;  /* stop adding repetitions after this long (per point) */
    double target_rsd;  /* ... or once stdev / median is at most this */
    uint64_t seed;
    double mem_gib;     /* 0: what the device has free */
    const char *out_path; /* NULL: no file */
    const char *argv;
} dsa_sweep_opts;

void dsa_sweep_defaults(dsa_sweep_opts *o);
/* Validates every axis value first (usage errors, exit 2, before anything runs), then runs.
 * Points that do not fit are recorded as skipped; a failing point stops the sweep (exit 3)
 * with the file written up to the last good point. */
int dsa_sweep_run(const dsa_sweep_opts *o, dsa_run *run, dsa_err *e);

/* Schema, tool version, git sha, UTC time and the command line of a new report. */
void dsa_run_stamp(dsa_run *run, const char *argv);

/* A point's component table from its kernel records (any backend): per component and
 * repetition the sum of its records' end - start; idle = wall - busy per repetition (clamped at
 * 0), so the components add up to the wall; then median, min and stdev over the `reps`
 * repetitions, share = median / median wall, kernels = records per repetition (an integer
 * division). Sets comps, kernels (a copy of recs), indexer_ms and _share, and coverage = the
 * median over repetitions of busy / wall. wall_ms: the wall of those same repetitions (on the
 * GPU the traced ones). Records of another repetition or component are copied but not summed. */
int dsa_point_summarise(dsa_point *pt, const dsa_kernel_rec *recs, size_t n, const double *wall_ms, int reps,
                        dsa_err *e);

/* Summary statistics of n samples (n >= 1). */
double dsa_median(const double *x, int n);
double dsa_stdev(const double *x, int n);
double dsa_min(const double *x, int n);

#endif
