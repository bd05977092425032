/* kernels/ceilings.c — measured peaks, the denominators of every "% of ceiling". */
#include "ceilings.h"

#include <stdlib.h>

#include "cuda_ops.h"

#define GEMM_N 8192
#define REPS 10

/* Median-free but honest: the mean of REPS back-to-back launches after 3 warm-ups, timed
 * with events, on random data (zeros run faster on tensor cores). */
static int time_gemm(dsa_cuda_ctx *c, int fp8, double *tflops)
{
    const int n = GEMM_N;
    size_t elt = fp8 ? 1 : 2;
    void *a = NULL, *b = NULL, *d = NULL;
    float *scales = NULL;
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    int rc = DSA_EOP;
    if (cudaMalloc(&a, (size_t)n * n * elt) || cudaMalloc(&b, (size_t)n * n * elt) ||
        cudaMalloc(&d, (size_t)n * n * 2) || cudaMalloc((void **)&scales, 4 * sizeof(float))) {
        dsa_cuda_fail(c, "ceilings: cannot allocate the GEMM operands");
        goto out;
    }
    /* random bits as bf16 would include NaN/Inf; fill with uniform values instead. For FP8,
     * a bf16 fill of half the bytes gives random-looking e4m3 codes; NaN codes (0x7f/0xff)
     * occur but do not change tensor-core throughput. */
    if (dsa_cuda_fill_bf16(c, a, (size_t)n * n * elt / 2, 11, 1.0f) || dsa_cuda_fill_bf16(c, b, (size_t)n * n * elt / 2, 12, 1.0f))
        goto out;
    float ones[4] = {1, 1, 1, 1};
    cudaMemcpy(scales, ones, sizeof ones, cudaMemcpyHostToDevice);
    cudaDataType_t in = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
    float alpha = 1, beta = 0;
    cublasOperation_t T = CUBLAS_OP_T, N = CUBLAS_OP_N;
    if (cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) ||
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &T, sizeof T) ||
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &N, sizeof N) ||
        cublasLtMatrixLayoutCreate(&la, in, n, n, n) || cublasLtMatrixLayoutCreate(&lb, in, n, n, n) ||
        cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, n, n, n) || cublasLtMatmulPreferenceCreate(&pref) ||
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c->lt_ws_bytes,
                                             sizeof c->lt_ws_bytes)) {
        dsa_cuda_fail(c, "ceilings: cuBLASLt descriptors");
        goto out;
    }
    if (fp8) {
        void *sp = scales;
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sp, sizeof sp);
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sp, sizeof sp);
    }
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    if (cublasLtMatmulAlgoGetHeuristic(c->lt, desc, la, lb, ld, ld, pref, 1, &heur, &found) || !found) {
        dsa_cuda_fail(c, "ceilings: no cuBLASLt algorithm for the %s GEMM", fp8 ? "FP8" : "bf16");
        goto out;
    }
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    for (int i = 0; i < 3 + REPS; i++) {
        if (i == 3) cudaEventRecord(e0, c->stream);
        if (cublasLtMatmul(c->lt, desc, &alpha, a, la, b, lb, &beta, d, ld, d, ld, &heur.algo, c->lt_ws,
                           c->lt_ws_bytes, c->stream)) {
            dsa_cuda_fail(c, "ceilings: cublasLtMatmul failed");
            goto out;
        }
    }
    cudaEventRecord(e1, c->stream);
    if (cudaEventSynchronize(e1) != cudaSuccess) {
        dsa_cuda_fail(c, "ceilings: GEMM did not complete");
        goto out;
    }
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    *tflops = 2.0 * n * n * (double)n * REPS / (ms * 1e-3) / 1e12;
    rc = DSA_OK;
out:
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (desc) cublasLtMatmulDescDestroy(desc);
    cudaFree(a);
    cudaFree(b);
    cudaFree(d);
    cudaFree(scales);
    return rc;
}

static int time_copy(dsa_cuda_ctx *c, double *gbs)
{
    const size_t bytes = (size_t)2 << 30; /* 2 GiB: far beyond the 60 MB L2 */
    void *a = NULL, *b = NULL;
    cudaEvent_t e0, e1;
    if (cudaMalloc(&a, bytes) || cudaMalloc(&b, bytes)) {
        cudaFree(a);
        return dsa_cuda_fail(c, "ceilings: cannot allocate the copy buffers");
    }
    cudaMemsetAsync(a, 1, bytes, c->stream);
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    for (int i = 0; i < 2 + REPS; i++) {
        if (i == 2) cudaEventRecord(e0, c->stream);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream);
    }
    cudaEventRecord(e1, c->stream);
    cudaError_t st = cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    if (st != cudaSuccess) return dsa_cuda_status(c, st, "ceilings: copy");
    *gbs = 2.0 * bytes * REPS / (ms * 1e-3) / 1e9;
    return DSA_OK;
}

int dsa_cuda_measure_ceilings(void *ctx, dsa_ceiling_meas *out)
{
    dsa_cuda_ctx *c = ctx;
    int rc = time_gemm(c, 0, &out->bf16_tflops);
    if (!rc) rc = time_gemm(c, 1, &out->fp8_tflops);
    if (!rc) rc = time_copy(c, &out->copy_gbs);
    return rc;
}
