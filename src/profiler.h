/* src/profiler.h — attribution of time to components (DESIGN.md §4).
 *
 * The forward path brackets each component's launches with dsa_prof_begin/end, which also emit
 * NVTX ranges of the same names for Nsight users (attribution never depends on them: CUPTI sees
 * NVTX only under NVTX injection). A NULL profiler is a no-op. Two backends:
 *
 * Host timers (`--device cpu`; host_timers = 1): the reference ops are synchronous, so a bracket's
 * host time is one record (named ref_<component>), kept when rep >= 0. GPU launches are
 * asynchronous: there host_timers = 0 and only CUPTI makes records.
 *
 * CUPTI (the GPU; after dsa_prof_cupti_attach): between dsa_prof_trace_start and _stop the
 * Activity API collects CONCURRENT_KERNEL, MEMCPY and MEMSET records in 8 MiB buffers, plus
 * EXTERNAL_CORRELATION and the RUNTIME and DRIVER API records those are emitted with (a kernel
 * carries the correlationId of the runtime or driver call that launched it: cuBLASLt launches
 * through the driver). A record's component comes from:
 *   - eager launches: while tracing, dsa_prof_begin pushes an external id (CUSTOM0) encoding
 *     (component, layer) and dsa_prof_end pops it; EXTERNAL_CORRELATION records map each API call's
 *     correlationId to the id, and a record takes the id of its correlationId. So cuBLASLt and CUB
 *     kernels launched inside a bracket take its component.
 *   - CUDA graph replays, where every record carries the correlationId of the cudaGraphLaunch:
 *     its graphNodeId. While a graph is captured (tracing or not) the resource callback
 *     GRAPHNODE_CREATED maps the new node's id to the bracket open at that moment;
 *     GRAPHNODE_CLONED (instantiation) maps the instantiated node's id to its original's. The
 *     node index (the low 32 bits: the same in the captured and the instantiated graph, whose
 *     ids differ in the high 32) maps too, while it is unambiguous. node_lookup picks which
 *     (both by default; the GPU test checks each alone).
 * CUPTI delivers correlation and activity records in no fixed order, so records are kept raw
 * and attributed when tracing stops. A record's repetition is the dsa_prof_rep_begin window its
 * start falls in (each step ends with a sync, so windows do not overlap); windows of rep < 0
 * (warm-ups) are dropped. Records CUPTI could not deliver are counted in `dropped`, records of
 * measured repetitions that no bracket claims in `unattributed`; neither is stored.
 *
 * CUPTI's buffer and resource callbacks have no user pointer worth trusting across threads, so
 * the attached profiler is the one global of the library (profiler.c), behind a mutex; one
 * profiler at a time is attached. */
#ifndef DSA_PROFILER_H
#define DSA_PROFILER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "results.h"

enum { DSA_PROF_NODE_BY_ID = 1, DSA_PROF_NODE_BY_INDEX = 2 };

typedef struct dsa_prof_tables dsa_prof_tables; /* profiler.c: maps and raw records */

typedef struct dsa_prof {
    int32_t rep;       /* repetition the records belong to; < 0 = warm-up, not recorded */
    int64_t origin_ns; /* host time the point started; host records are relative to it */
    int open_comp, open_layer;
    int open_pushed;   /* the open bracket pushed an external id (pop it at the end) */
    int64_t open_start_ns;
    dsa_kernel_rec *recs;
    size_t n, cap;
    int oom; /* a record could not be stored: the point fails rather than under-count */
    int host_timers; /* 1 (the default): brackets are host-timed; 0 on the GPU, where they are not */

    /* CUPTI backend */
    int cupti;             /* attached: records come from CUPTI, not from host timers */
    int cupti_held;        /* attach failed because another tool (Nsight, a sanitizer) holds CUPTI */
    int tracing;           /* activity collection is on */
    int node_lookup;       /* DSA_PROF_NODE_BY_ID | DSA_PROF_NODE_BY_INDEX */
    uint64_t trace_origin; /* CUPTI time tracing started; records are relative to it */
    int64_t dropped;       /* records CUPTI lost (no buffer space) or gave without timestamps */
    int64_t unattributed;  /* records of measured repetitions that no bracket claimed */
    char first_unattributed[160]; /* the first of them, for a diagnostic; "" when none */
    dsa_prof_tables *tab;
} dsa_prof;

int64_t dsa_now_ns(void); /* CLOCK_MONOTONIC */
void dsa_prof_init(dsa_prof *p);
void dsa_prof_free(dsa_prof *p); /* detaches it from CUPTI first */
void dsa_prof_begin(dsa_prof *p, int component, int layer);
void dsa_prof_end(dsa_prof *p);
/* Starts repetition `rep` (< 0: a warm-up, or the end of the last repetition). */
void dsa_prof_rep_begin(dsa_prof *p, int rep);

/* GPU only. attach: registers the buffer callbacks and subscribes to the graph-node resource
 * callbacks (once per process), and makes p the profiler they fill. Call it before the decode
 * graph is captured. A runtime error when CUPTI is unavailable; p->cupti_held says it is held
 * by another tool (one subscriber per process), which a caller may treat as "not measured". */
int dsa_prof_cupti_attach(dsa_prof *p, dsa_err *e);
void dsa_prof_cupti_detach(dsa_prof *p);
/* Enables the activity kinds (records of an earlier trace are discarded; graph-node maps are
 * kept) ... */
int dsa_prof_trace_start(dsa_prof *p, dsa_err *e);
/* ... and after the last repetition (synchronised): flushes (cuptiActivityFlushAll(1)),
 * disables them, counts dropped records, and appends the attributed records to p->recs. */
int dsa_prof_trace_stop(dsa_prof *p, dsa_err *e);

/* The attribution tables, which the CUPTI callbacks fill; public so that tests can feed them
 * crafted facts (tests/test_profiler.c). Each returns 0, or -1 when out of memory (p->oom). */
typedef struct dsa_prof_activity {
    uint64_t start, end;   /* CUPTI timestamps, ns; both 0: CUPTI could not time it */
    uint64_t graph_node;   /* graphNodeId; 0 outside a CUDA graph */
    uint32_t correlation;  /* correlationId of the API call that launched it */
    int32_t grid[3], block[3];
} dsa_prof_activity;

/* The external id of a bracket: nonzero, decodable by dsa_prof_external_decode. */
uint64_t dsa_prof_external_id(int component, int layer);
/* 0 and the bracket, or -1 when id is not one of ours. */
int dsa_prof_external_decode(uint64_t id, int *component, int *layer);
int dsa_prof_note_window(dsa_prof *p, int rep, uint64_t start);
int dsa_prof_note_correlation(dsa_prof *p, uint32_t correlation, uint64_t external_id);
int dsa_prof_note_graph_node(dsa_prof *p, uint64_t node_id, uint64_t external_id);
int dsa_prof_note_graph_clone(dsa_prof *p, uint64_t original_id, uint64_t clone_id);
int dsa_prof_note_activity(dsa_prof *p, const dsa_prof_activity *a, const char *name);
/* Attributes the noted activities (then forgets them and the correlations and windows) and
 * appends one dsa_kernel_rec per attributed record of a measured repetition to p->recs, start
 * and end relative to p->trace_origin. DSA_EXIT_RUNTIME when out of memory. */
int dsa_prof_attribute(dsa_prof *p, dsa_err *e);

#endif
