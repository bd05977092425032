/* src/kbench.h — `dsa-bench kernels`: each hand-written kernel on the shapes of DESIGN.md §7,
 * its median time, TFLOP/s, GB/s and % of the ceiling measured at start (a bf16 and an FP8
 * cuBLASLt GEMM and a device copy). One struct of function pointers per kernel, as
 * nccl-tests has one per collective; the cases are the cartesian product of its axes. */
#ifndef DSA_KBENCH_H
#define DSA_KBENCH_H

#include <stdint.h>

#include "args.h"
#include "err.h"
#include "results.h"

typedef struct dsa_kbench_opts {
    const char *kernels[DSA_MAX_LIST]; /* names; none = all */
    int n_kernels;
    int64_t contexts[DSA_MAX_LIST]; /* overrides each kernel's default contexts */
    int n_contexts;
    int64_t heads[DSA_MAX_LIST];
    int n_heads;
    int64_t batches[DSA_MAX_LIST];
    int n_batches;
    double max_time_s; /* per case, after the minimum repetitions (default 2) */
    int no_hold;       /* 1: launch each op on a running stream, its host launch cost inside the events */
    const char *out_path;
    const char *argv;
} dsa_kbench_opts;

/* The kernel names `kernels -k` takes, NULL-terminated. */
const char *const *dsa_kbench_names(void);
int dsa_kbench_run(const dsa_kbench_opts *o, dsa_run *run, dsa_err *e);

#endif
