/* kernels/ref/ref.h — the C reference implementation of the operation table (kernels/ops.h),
 * and the numeric helpers that tests and the rest of the project share with it.
 *
 * The reference is the correctness oracle: it computes in fp32 or better (double for
 * reductions) and rounds to bf16 only where an op's output is bf16. It shares no code with
 * the CUDA kernels it checks. Memory is host memory; "device" ops are memcpy/calloc/free.
 */
#ifndef DSA_KERNELS_REF_H
#define DSA_KERNELS_REF_H

#include <stdint.h>

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fill *ops with the reference implementation (ops->name = "cpu"); allocates a small context
 * that holds the last error message. Returns DSA_OK, or DSA_EOP when out of memory. */
int dsa_ref_ops_init(dsa_ops *ops);
/* Frees the context; *ops must not be used afterwards. Safe on a zeroed table. */
void dsa_ref_ops_fini(dsa_ops *ops);

/* bf16 <-> fp32. f32 -> bf16 rounds to nearest even; NaN stays NaN (quiet), inf stays inf. */
float dsa_bf16_to_f32(bf16_t h);
bf16_t dsa_f32_to_bf16(float f);

/* OCP FP8 e4m3 ("e4m3fn": bias 7, no infinities, 0x7F/0xFF = NaN, max 448, subnormals
 * down to 2^-9). f32 -> e4m3 rounds to nearest even and saturates to +-448 (inf included);
 * NaN -> 0x7F. Signed zero keeps its sign. */
uint8_t dsa_f32_to_e4m3(float f);
float dsa_e4m3_to_f32(uint8_t b);

/* In-place fast Walsh-Hadamard transform of 128 values in Sylvester (natural) order,
 * H[i][j] = (-1)^popcount(i & j), scaled by 128^-0.5 (so it is its own inverse). */
void dsa_hadamard128(float *v);

/* FP8 scale of a block with absolute maximum amax: max(amax, 1e-4) / 448; with
 * DSA_SCALE_UE8M0 rounded up to a power of two, 2^ceil(log2(scale)). */
float dsa_fp8_scale(float amax, int scale_mode);

/* splitmix64 as a pure function of its state: z = x + 0x9e3779b97f4a7c15, then the
 * standard mix. dsa_splitmix64(0) = 0xe220a8397b1dcdaf. */
uint64_t dsa_splitmix64(uint64_t x);
/* u(seed, i) = ((splitmix64(seed ^ splitmix64(i)) >> 40) * 2^-23) - 1, in [-1, 1); exact in
 * fp32. The synthetic-data formula of ops.h fill_bf16 / fill_f32. */
float dsa_rand_uniform(uint64_t seed, uint64_t i);

#ifdef __cplusplus
}
#endif
#endif
