/* kernels/cuda_ctx.h — state shared by the CUDA implementation of the ops table: the stream
 * every launch goes to, the cuBLASLt handle and workspace, a scratch arena, and the last
 * error message. Included by the .cu files (C++) and the C files of kernels/. */
#ifndef DSA_KERNELS_CUDA_CTX_H
#define DSA_KERNELS_CUDA_CTX_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <stddef.h>

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Plans cached: the model's GEMMs (~12 shapes per token count) and the MoE experts' bucketed
 * row counts (kernels/moe_groups.c dsa_moe_bucket_rows: ~16 per octave, per matrix, and 47 layers' routers
 * spread them). 256 entries thrashed in a 200K prefill: a miss costs ~0.6 ms of heuristics. */
#define DSA_GEMM_CACHE 1024
/* Side streams for work that is many small independent launches (the MoE experts' GEMMs of
 * a prefill chunk): one expert GEMM fills a third of the SMs, several at once fill them. */
#define DSA_SIDE_STREAMS 8
/* topk's split path (kernels/topk.cu): rows it takes at most, and their hand-off counters. */
#define DSA_TOPK_SPLIT_ROWS 256
#define DSA_TOPK_SPLIT_STATE_BYTES (DSA_TOPK_SPLIT_ROWS * 8)

/* A cuBLASLt algorithm chosen once per shape (DESIGN: "chosen once per shape and cached"). */
typedef struct dsa_gemm_plan {
    int used;
    int m, n, k, lda, ldd, dtype, residual;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} dsa_gemm_plan;

typedef struct dsa_cuda_ctx {
    int device, sms;
    size_t smem_optin; /* largest dynamic shared memory a block may ask for */
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_ws;
    size_t lt_ws_bytes;
    void *scratch; /* grown by dsa_cuda_scratch; reserve it before a graph capture */
    size_t scratch_bytes;
    dsa_gemm_plan gemm_plans[DSA_GEMM_CACHE];
    cudaEvent_t events[8];
    /* Created on first use by dsa_cuda_side_streams; each stream has its own cuBLASLt
     * workspace, since GEMMs running at once must not share one. */
    cudaStream_t side[DSA_SIDE_STREAMS];
    void *side_lt_ws[DSA_SIDE_STREAMS];
    cudaEvent_t side_fork, side_join[DSA_SIDE_STREAMS];
    /* topk's split-path counters, DSA_TOPK_SPLIT_STATE_BYTES, zeroed at init; each row's last
     * block resets its pair, so they are zero between calls (ops on one stream at a time). */
    void *topk_split_state;
    /* idx_fused's running count of rows it recomputed densely (kernels/idx_fused.cu): 8 bytes
     * zeroed at init, right after topk_split_state in the same allocation. */
    void *idx_fused_fallback_rows;
    /* Mapped host flags of the stream hold (kernels/stream_hold.cu), allocated on first use. */
    volatile int *hold_flags, *hold_flags_dev;
    char err[512];
} dsa_cuda_ctx;

/* Fill *ops with the CUDA implementation on `device`. Non-zero with a message in *err when
 * there is no usable GPU. */
int dsa_cuda_ops_init(dsa_ops *ops, int device, char *err, size_t err_len);
void dsa_cuda_ops_fini(dsa_ops *ops);

/* Records "op: message" in the context and returns DSA_EOP. */
int dsa_cuda_fail(dsa_cuda_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* After a launch: DSA_OK, or the launch error recorded against `op`. */
int dsa_cuda_check(dsa_cuda_ctx *c, const char *op);
/* A CUDA runtime status: DSA_OK, or the error recorded against `op`. */
int dsa_cuda_status(dsa_cuda_ctx *c, cudaError_t st, const char *op);
/* Device scratch of at least `bytes` (contents undefined, shared by all ops: valid until the
 * next op). Allocation happens only when it grows, so size it once before capturing a graph. */
int dsa_cuda_scratch(dsa_cuda_ctx *c, size_t bytes, void **p);
/* Creates the side streams, their workspaces and events if they do not exist yet. */
int dsa_cuda_side_streams(dsa_cuda_ctx *c);
/* Fork: every side stream waits for the work queued on c->stream so far. Join: c->stream
 * waits for everything queued on the side streams. */
int dsa_cuda_side_fork(dsa_cuda_ctx *c);
int dsa_cuda_side_join(dsa_cuda_ctx *c);

#ifdef __cplusplus
}
#endif
#endif
