/* src/results.h — what one `dsa-bench run` (or `kernels`) measured, in memory. The HDF5 file
 * (src/h5report.c, schema "dsa-bench/1", DESIGN.md §5) is this struct written out; the reader
 * fills the same struct back, and report/plot/compare work only on it. */
#ifndef DSA_RESULTS_H
#define DSA_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#include "component.h"
#include "model.h"

#define DSA_SCHEMA "dsa-bench/1"

/* One timed kernel (GPU: a CUPTI kernel, memcpy or memset record, named as CUPTI names it,
 * demangled, cut to 95 characters; CPU: one bracket of reference calls, host clock). */
typedef struct dsa_kernel_rec {
    int32_t rep;       /* repetition, 0-based; warm-ups are not stored */
    int32_t layer;     /* -1 outside the layers (embed, final_norm, lm_head) */
    int32_t component; /* enum dsa_component */
    char name[96];
    int64_t start_ns, end_ns; /* relative to the start of the point (GPU: of its traced reps) */
    uint64_t graph_node;      /* 0 outside a CUDA graph */
    int32_t grid[3], block[3];
} dsa_kernel_rec;

/* Per-component summary of a point: per-rep sums of its kernels, then statistics. */
typedef struct dsa_comp_stat {
    int32_t component;
    double median_ms, min_ms, stdev_ms;
    double share;    /* median_ms / wall median */
    int32_t kernels; /* records (kernels, memcpys, memsets) per repetition */
} dsa_comp_stat;

enum dsa_point_status { DSA_POINT_OK = 0, DSA_POINT_SKIPPED = 1, DSA_POINT_FAILED = 2 };

typedef struct dsa_point {
    int32_t id;
    char phase[16];  /* "prefill" | "decode" | "kernel" */
    int64_t context; /* tokens */
    int32_t batch, chunk;
    char config[640]; /* as given on the command line: "full", "1/4", "pattern:FFS..." */
    char fs[DSA_MAX_LAYERS + 1]; /* resolved F/S string, one char per layer run */
    int32_t n_full, n_layers;
    int32_t reps;
    double wall_median_ms, wall_min_ms, wall_stdev_ms;
    double indexer_ms, indexer_share; /* sum of the indexer group's medians; / wall median */
    double tok_s;                     /* prefill: context / wall; decode: batch / wall */
    double flops, bytes;              /* work of one repetition as counted (kernels), else 0 */
    int32_t status;                   /* enum dsa_point_status */
    char reason[256];                 /* why skipped or failed; "" when ok */
    double *samples;                  /* wall ms per repetition, reps of them */
    dsa_comp_stat *comps;             /* one per component that ran */
    int n_comps;
    dsa_kernel_rec *kernels;
    size_t n_kernels;
    /* Tracing. On the GPU a point runs twice: `reps` untraced repetitions give the wall above
     * (and tok_s); then, with CUPTI on, `traced_reps` more (same stopping rule) give the component
     * table, the kernel records, indexer_ms/_share and coverage, all relative to the traced wall.
     * trace_overhead_pct = 100 * (wall_traced_median_ms / wall_median_ms - 1). The C reference is
     * timed once, with host timers: traced_reps = 0, and the table comes from the `reps`
     * repetitions. In files written before these fields, traced_reps reads 0. */
    int32_t traced_reps;
    double wall_traced_median_ms; /* NaN when not traced */
    double trace_overhead_pct;    /* NaN when not traced */
    double coverage;              /* sum of components / wall: median over the table's reps of busy/wall */
    int64_t records_total;        /* kernel records of all repetitions; `kernels` keeps the first rep's, capped */
    int64_t nonfinite;            /* NaN/Inf values in the final hidden state after the last rep (-1: not checked) */
    int64_t dropped_records;      /* CUPTI records lost (must be 0) */
    int64_t unattributed;         /* records no component claimed (expected 0); their time is idle */
    double *samples_traced;       /* wall ms per traced repetition, traced_reps of them */
    /* The SM clock while the point ran (warm-up and every repetition), from NVML (src/clocks.h):
     * the first and last readings, the mean and least of all (one every 50 ms), the share of
     * readings with a throttle reason (power cap, thermal, hardware slowdown), and every NVML
     * clock-event reason seen (a mask). All 0 when not measured: the C reference, no NVML, files
     * written before these fields. */
    double sm_clock_begin_mhz, sm_clock_end_mhz, sm_clock_mean_mhz, sm_clock_min_mhz;
    double throttled_pct;
    int64_t clock_events;
} dsa_point;

typedef struct dsa_device_info {
    char kind[8]; /* "cpu" | "cuda" */
    char name[128];
    int32_t cc_major, cc_minor, sms;
    int64_t l2_bytes, mem_bytes;
    int32_t driver_version, runtime_version, cupti_version;
    double sm_clock_mhz, mem_clock_mhz;
    double peak_bf16_tflops, peak_fp8_tflops, copy_gbs; /* measured; 0 when not measured */
} dsa_device_info;

typedef struct dsa_run {
    char schema[32];
    char tool_version[32];
    char git_sha[48];
    char utc[32];   /* ISO 8601, e.g. 2026-11-28T21:07:47Z */
    char argv[2048]; /* the command line, space-joined */
    dsa_device_info dev;
    dsa_model model;
    int32_t layers_run;   /* --layers (= model.n_layers when not given) */
    int32_t shared_weights; /* --weights shared */
    int32_t weight_fp8;     /* --weight-dtype fp8 */
    int32_t fused_indexer;  /* --indexer fused: idx_fused instead of idx_logits + idx_topk */
    dsa_point *points;
    int n_points;
} dsa_run;

/* Frees the points' arrays and the points themselves; leaves the struct zeroed. */
void dsa_run_free(dsa_run *r);
/* Appends a zeroed point with id = n_points; NULL when out of memory. */
dsa_point *dsa_run_add_point(dsa_run *r);

#endif
