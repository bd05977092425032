/* kernels/cuda_ops.c — the CUDA ops table: context, memory, and the launchers of kernels/. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_ops.h"

#define LT_WORKSPACE (64u << 20) /* cuBLASLt workspace: enough for its fastest Hopper kernels */

int dsa_cuda_fail(dsa_cuda_ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return DSA_EOP;
}

int dsa_cuda_status(dsa_cuda_ctx *c, cudaError_t st, const char *op)
{
    if (st == cudaSuccess) return DSA_OK;
    return dsa_cuda_fail(c, "%s: %s", op, cudaGetErrorString(st));
}

int dsa_cuda_check(dsa_cuda_ctx *c, const char *op) { return dsa_cuda_status(c, cudaGetLastError(), op); }

int dsa_cuda_scratch(dsa_cuda_ctx *c, size_t bytes, void **p)
{
    if (bytes > c->scratch_bytes) {
        if (c->scratch) cudaFree(c->scratch);
        c->scratch = NULL;
        c->scratch_bytes = 0;
        cudaError_t st = cudaMalloc(&c->scratch, bytes);
        if (st != cudaSuccess) return dsa_cuda_fail(c, "scratch of %zu bytes: %s", bytes, cudaGetErrorString(st));
        c->scratch_bytes = bytes;
    }
    *p = c->scratch;
    return DSA_OK;
}

static const char *last_error(void *ctx) { return ((dsa_cuda_ctx *)ctx)->err; }

static int cuda_alloc(void *ctx, void **p, size_t bytes)
{
    dsa_cuda_ctx *c = ctx;
    cudaError_t st = cudaMalloc(p, bytes);
    if (st != cudaSuccess) {
        *p = NULL;
        cudaGetLastError(); /* an out-of-memory is not sticky: clear it so the next launch check does not report it */
        return dsa_cuda_fail(c, "cudaMalloc(%zu): %s", bytes, cudaGetErrorString(st));
    }
    return dsa_cuda_status(c, cudaMemsetAsync(*p, 0, bytes, c->stream), "alloc: memset");
}

static void cuda_release(void *ctx, void *p)
{
    (void)ctx;
    cudaFree(p);
}

static int cuda_upload(void *ctx, void *dst, const void *src, size_t bytes)
{
    dsa_cuda_ctx *c = ctx;
    return dsa_cuda_status(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream), "upload");
}

static int cuda_download(void *ctx, void *dst, const void *src, size_t bytes)
{
    dsa_cuda_ctx *c = ctx;
    int rc = dsa_cuda_status(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), "download");
    return rc ? rc : dsa_cuda_status(c, cudaStreamSynchronize(c->stream), "download: sync");
}

static int cuda_sync(void *ctx)
{
    dsa_cuda_ctx *c = ctx;
    return dsa_cuda_status(c, cudaStreamSynchronize(c->stream), "sync");
}

static int cuda_event_record(void *ctx, int slot)
{
    dsa_cuda_ctx *c = ctx;
    if (slot < 0 || slot >= 8) return dsa_cuda_fail(c, "event_record: slot %d", slot);
    return dsa_cuda_status(c, cudaEventRecord(c->events[slot], c->stream), "event_record");
}

static int cuda_event_elapsed_ms(void *ctx, int from, int to, double *ms)
{
    dsa_cuda_ctx *c = ctx;
    float f = 0;
    int rc = dsa_cuda_status(c, cudaEventSynchronize(c->events[to]), "event sync");
    if (!rc) rc = dsa_cuda_status(c, cudaEventElapsedTime(&f, c->events[from], c->events[to]), "event elapsed");
    *ms = f;
    return rc;
}

/* Thread-local capture: other threads' CUDA calls are not part of the graph. */
static int cuda_graph_begin(void *ctx)
{
    dsa_cuda_ctx *c = ctx;
    return dsa_cuda_status(c, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), "graph capture");
}

static int cuda_graph_end(void *ctx, void **graph)
{
    dsa_cuda_ctx *c = ctx;
    cudaGraph_t g = NULL;
    cudaGraphExec_t exec = NULL;
    int rc = dsa_cuda_status(c, cudaStreamEndCapture(c->stream, &g), "graph capture end");
    if (!rc) rc = dsa_cuda_status(c, cudaGraphInstantiate(&exec, g, 0), "graph instantiate");
    if (g) cudaGraphDestroy(g);
    *graph = rc ? NULL : (void *)exec;
    return rc;
}

static int cuda_graph_launch(void *ctx, void *graph)
{
    dsa_cuda_ctx *c = ctx;
    return dsa_cuda_status(c, cudaGraphLaunch((cudaGraphExec_t)graph, c->stream), "graph launch");
}

/* The host waits until the hold kernel runs, so that nothing queued after it can have started
 * before (the profiler's repetition windows rely on it). */
static int cuda_stream_hold(void *ctx)
{
    dsa_cuda_ctx *c = ctx;
    if (!c->hold_flags) {
        void *h = NULL, *d = NULL;
        int rc = dsa_cuda_status(c, cudaHostAlloc(&h, 4 * sizeof(int), cudaHostAllocMapped), "stream hold");
        if (!rc) rc = dsa_cuda_status(c, cudaHostGetDevicePointer(&d, h, 0), "stream hold");
        if (rc) {
            if (h) cudaFreeHost(h);
            return rc;
        }
        c->hold_flags = h;
        c->hold_flags_dev = d;
    }
    c->hold_flags[0] = c->hold_flags[1] = c->hold_flags[2] = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    int rc = dsa_cuda_stream_hold_launch(c, c->hold_flags_dev);
    while (!rc && !c->hold_flags[0]) {
        cudaError_t st = cudaStreamQuery(c->stream); /* a failed launch must not spin forever */
        if (st != cudaErrorNotReady && st != cudaSuccess) rc = dsa_cuda_status(c, st, "stream hold");
        else if (st == cudaSuccess && !c->hold_flags[0]) rc = dsa_cuda_fail(c, "stream hold: the kernel ended without starting");
    }
    return rc;
}

static int cuda_stream_release(void *ctx)
{
    dsa_cuda_ctx *c = ctx;
    if (!c->hold_flags) return dsa_cuda_fail(c, "stream release: no hold");
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    c->hold_flags[1] = 1;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (c->hold_flags[2]) return dsa_cuda_fail(c, "stream release: the hold timed out before the host released it");
    return DSA_OK;
}

static void cuda_graph_free(void *ctx, void *graph)
{
    (void)ctx;
    if (graph) cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

static cudaError_t create_events(dsa_cuda_ctx *c)
{
    for (int i = 0; i < 8; i++) {
        cudaError_t st = cudaEventCreate(&c->events[i]);
        if (st != cudaSuccess) return st;
    }
    return cudaSuccess;
}

int dsa_cuda_side_streams(dsa_cuda_ctx *c)
{
    const char *op = "side streams";
    int rc = DSA_OK;
    if (!c->side_fork)
        rc = dsa_cuda_status(c, cudaEventCreateWithFlags(&c->side_fork, cudaEventDisableTiming), op);
    for (int i = 0; i < DSA_SIDE_STREAMS && !rc; i++) {
        if (!c->side[i]) rc = dsa_cuda_status(c, cudaStreamCreateWithFlags(&c->side[i], cudaStreamNonBlocking), op);
        if (!rc && !c->side_lt_ws[i]) rc = dsa_cuda_status(c, cudaMalloc(&c->side_lt_ws[i], c->lt_ws_bytes), op);
        if (!rc && !c->side_join[i])
            rc = dsa_cuda_status(c, cudaEventCreateWithFlags(&c->side_join[i], cudaEventDisableTiming), op);
    }
    return rc;
}

int dsa_cuda_side_fork(dsa_cuda_ctx *c)
{
    int rc = dsa_cuda_status(c, cudaEventRecord(c->side_fork, c->stream), "side fork");
    for (int i = 0; i < DSA_SIDE_STREAMS && !rc; i++)
        rc = dsa_cuda_status(c, cudaStreamWaitEvent(c->side[i], c->side_fork, 0), "side fork");
    return rc;
}

int dsa_cuda_side_join(dsa_cuda_ctx *c)
{
    int rc = DSA_OK;
    for (int i = 0; i < DSA_SIDE_STREAMS && !rc; i++) {
        rc = dsa_cuda_status(c, cudaEventRecord(c->side_join[i], c->side[i]), "side join");
        if (!rc) rc = dsa_cuda_status(c, cudaStreamWaitEvent(c->stream, c->side_join[i], 0), "side join");
    }
    return rc;
}

int dsa_cuda_ops_init(dsa_ops *ops, int device, char *err, size_t err_len)
{
    memset(ops, 0, sizeof *ops);
    int n = 0;
    cudaError_t st = cudaGetDeviceCount(&n);
    if (st != cudaSuccess || n <= device) {
        snprintf(err, err_len, "no CUDA GPU: %s", st != cudaSuccess ? cudaGetErrorString(st) : "none found");
        return DSA_EOP;
    }
    dsa_cuda_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, err_len, "out of host memory");
        return DSA_EOP;
    }
    c->device = device;
    struct cudaDeviceProp prop;
    cublasStatus_t bs = CUBLAS_STATUS_SUCCESS;
    if ((st = cudaSetDevice(device)) != cudaSuccess || (st = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (st = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (st = cudaMalloc(&c->lt_ws, LT_WORKSPACE)) != cudaSuccess ||
        (st = cudaMalloc(&c->topk_split_state, DSA_TOPK_SPLIT_STATE_BYTES + 8)) != cudaSuccess ||
        (st = cudaMemset(c->topk_split_state, 0, DSA_TOPK_SPLIT_STATE_BYTES + 8)) != cudaSuccess ||
        (st = create_events(c)) != cudaSuccess || (bs = cublasLtCreate(&c->lt)) != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, err_len, "CUDA set-up failed: %s",
                 st != cudaSuccess ? cudaGetErrorString(st) : cublasLtGetStatusString(bs));
        for (int i = 0; i < 8; i++)
            if (c->events[i]) cudaEventDestroy(c->events[i]);
        if (c->lt_ws) cudaFree(c->lt_ws);
        if (c->topk_split_state) cudaFree(c->topk_split_state);
        if (c->stream) cudaStreamDestroy(c->stream);
        free(c);
        return DSA_EOP;
    }
    c->idx_fused_fallback_rows = (char *)c->topk_split_state + DSA_TOPK_SPLIT_STATE_BYTES; /* one allocation */
    c->sms = prop.multiProcessorCount;
    c->smem_optin = prop.sharedMemPerBlockOptin;
    c->lt_ws_bytes = LT_WORKSPACE;
    ops->name = "cuda";
    ops->ctx = c;
    ops->last_error = last_error;
    ops->alloc = cuda_alloc;
    ops->release = cuda_release;
    ops->upload = cuda_upload;
    ops->download = cuda_download;
    ops->sync = cuda_sync;
    ops->fill_bf16 = dsa_cuda_fill_bf16;
    ops->fill_f32 = dsa_cuda_fill_f32;
    ops->fill_e4m3 = dsa_cuda_fill_e4m3;
    ops->embed = dsa_cuda_embed;
    ops->rmsnorm = dsa_cuda_rmsnorm;
    ops->layernorm = dsa_cuda_layernorm;
    ops->gemm = dsa_cuda_gemm;
    ops->rope = dsa_cuda_rope;
    ops->swiglu = dsa_cuda_swiglu;
    ops->mla_cache_write_bf16 = dsa_cuda_mla_cache_write_bf16;
    ops->mla_cache_write_fp8 = dsa_cuda_mla_cache_write_fp8;
    ops->idx_prep_q = dsa_cuda_idx_prep_q;
    ops->idx_prep_k = dsa_cuda_idx_prep_k;
    ops->idx_logits_prefill = dsa_cuda_idx_logits_prefill;
    ops->idx_logits_decode = dsa_cuda_idx_logits_decode;
    ops->topk = dsa_cuda_topk;
    ops->idx_fused_prefill = dsa_cuda_idx_fused_prefill;
    ops->idx_fused_decode = dsa_cuda_idx_fused_decode;
    ops->mla_absorb = dsa_cuda_mla_absorb;
    ops->sparse_attn_prefill = dsa_cuda_sparse_attn_prefill;
    ops->sparse_attn_decode = dsa_cuda_sparse_attn_decode;
    ops->mla_out = dsa_cuda_mla_out;
    ops->moe_router = dsa_cuda_moe_router;
    ops->moe_experts = dsa_cuda_moe_experts;
    ops->event_record = cuda_event_record;
    ops->event_elapsed_ms = cuda_event_elapsed_ms;
    ops->graph_begin = cuda_graph_begin;
    ops->graph_end = cuda_graph_end;
    ops->graph_launch = cuda_graph_launch;
    ops->graph_free = cuda_graph_free;
    ops->stream_hold = cuda_stream_hold;
    ops->stream_release = cuda_stream_release;
    return DSA_OK;
}

void dsa_cuda_ops_fini(dsa_ops *ops)
{
    dsa_cuda_ctx *c = ops->ctx;
    if (!c) return;
    cudaStreamSynchronize(c->stream);
    for (int i = 0; i < DSA_GEMM_CACHE; i++) {
        dsa_gemm_plan *p = &c->gemm_plans[i];
        if (!p->used) continue;
        cublasLtMatmulDescDestroy(p->desc);
        cublasLtMatrixLayoutDestroy(p->a);
        cublasLtMatrixLayoutDestroy(p->b);
        cublasLtMatrixLayoutDestroy(p->c);
    }
    for (int i = 0; i < 8; i++) cudaEventDestroy(c->events[i]);
    for (int i = 0; i < DSA_SIDE_STREAMS; i++) {
        if (c->side[i]) cudaStreamDestroy(c->side[i]);
        if (c->side_lt_ws[i]) cudaFree(c->side_lt_ws[i]);
        if (c->side_join[i]) cudaEventDestroy(c->side_join[i]);
    }
    if (c->side_fork) cudaEventDestroy(c->side_fork);
    if (c->hold_flags) cudaFreeHost((void *)c->hold_flags);
    cublasLtDestroy(c->lt);
    cudaFree(c->lt_ws);
    cudaFree(c->topk_split_state);
    if (c->scratch) cudaFree(c->scratch);
    cudaStreamDestroy(c->stream);
    free(c);
    memset(ops, 0, sizeof *ops);
}
