/* kernels/ceilings.h — the machine's own ceilings, measured at start (DESIGN.md §7): a large
 * bf16 and FP8 GEMM through cuBLASLt on random data, and a device-to-device copy. */
#ifndef DSA_KERNELS_CEILINGS_H
#define DSA_KERNELS_CEILINGS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsa_ceiling_meas {
    double bf16_tflops; /* 8192^3 bf16 GEMM, fp32 accumulate */
    double fp8_tflops;  /* 8192^3 e4m3 GEMM, per-tensor scales, bf16 out */
    double copy_gbs;    /* cudaMemcpyAsync device to device, bytes read + written */
} dsa_ceiling_meas;

/* ctx: a dsa_cuda_ctx. Takes about a second; uses ~1 GiB of device memory while it runs. */
int dsa_cuda_measure_ceilings(void *ctx, dsa_ceiling_meas *out);

#ifdef __cplusplus
}
#endif
#endif
