/* src/profiler.h — attribution of time to components (DESIGN.md §4).
 *
 * The forward path brackets each component's launches with dsa_prof_begin/end. This first
 * version times on the host (right for the synchronous C reference: `--device cpu`) and emits
 * NVTX ranges of the same names for Nsight users; the CUPTI backend ([4/5]) plugs in behind
 * the same two calls. A NULL profiler is a no-op. */
#ifndef DSA_PROFILER_H
#define DSA_PROFILER_H

#include <stddef.h>
#include <stdint.h>

#include "results.h"

typedef struct dsa_prof {
    int32_t rep;       /* repetition the records belong to; < 0 = warm-up, not recorded */
    int64_t origin_ns; /* host time the point started; records are relative to it */
    int open_comp, open_layer;
    int64_t open_start_ns;
    dsa_kernel_rec *recs;
    size_t n, cap;
    int oom; /* a record could not be stored: the point fails rather than under-count */
} dsa_prof;

int64_t dsa_now_ns(void); /* CLOCK_MONOTONIC */
void dsa_prof_init(dsa_prof *p);
void dsa_prof_free(dsa_prof *p);
void dsa_prof_begin(dsa_prof *p, int component, int layer);
void dsa_prof_end(dsa_prof *p);

#endif
