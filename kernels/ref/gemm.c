/* kernels/ref/gemm.c — linear layers: D = A . W^T (+ residual), W [n, k] (PyTorch layout).
 *
 * bf16 weights: exact products, double accumulation, one rounding of D to bf16 (after the
 * residual add, which is done in fp32 as a beta = 1 epilogue would).
 * FP8 weights (DeepSeek-V3.2 / GLM-5 block scales): W holds e4m3 bytes with one fp32 scale per
 * 128x128 block; A is quantised per row and 1x128 block with scale = max(amax, 1e-4) / 448 (the
 * fp32 mode: the op has no scale-mode argument), and
 *   D[m, n] = sum_kb sa[m, kb] * sw[n/128, kb] * sum_{k in kb} e4m3(A)[m, k] * e4m3(W)[n, k].
 * A last partial block (k not a multiple of 128) is a block of its own. */
#include <math.h>
#include <stdlib.h>

#include "ref_internal.h"

enum { BLK = 128 };

int ref_check_weight(void *ctx, const char *op, const dsa_weight *W)
{
    if (!W || !W->data)
        return ref_fail(ctx, "%s: weight is NULL", op);
    if (W->n <= 0 || W->k <= 0)
        return ref_fail(ctx, "%s: weight shape [%d, %d]", op, W->n, W->k);
    if (W->dtype == DSA_FP8_E4M3) {
        if (!W->scale)
            return ref_fail(ctx, "%s: FP8 weight without block scales", op);
    } else if (W->dtype != DSA_BF16) {
        return ref_fail(ctx, "%s: weight dtype %d is neither bf16 nor fp8 e4m3", op, W->dtype);
    }
    return DSA_OK;
}

int ref_linear_row(void *ctx, const bf16_t *a, const dsa_weight *W, float *out)
{
    const int n = W->n, k = W->k;
    if (W->dtype == DSA_BF16) {
        const bf16_t *w = W->data;
        float *af = malloc((size_t)k * sizeof *af);
        if (!af)
            return ref_fail(ctx, "gemm: out of memory for the row buffer");
        for (int c = 0; c < k; c++)
            af[c] = ref_bf16f(a[c]);
        for (int j = 0; j < n; j++) {
            const bf16_t *wj = w + (size_t)j * k;
            /* A product of two bf16 values is exact in fp32, and sums of such products are
             * exact in double at these sizes, so four partial sums (for speed) give the
             * same result as one. */
            double acc[4] = {0, 0, 0, 0};
            int c = 0;
            for (; c + 4 <= k; c += 4)
                for (int u = 0; u < 4; u++)
                    acc[u] += (double)(af[c + u] * ref_bf16f(wj[c + u]));
            for (; c < k; c++)
                acc[0] += (double)(af[c] * ref_bf16f(wj[c]));
            out[j] = (float)((acc[0] + acc[1]) + (acc[2] + acc[3]));
        }
        free(af);
        return DSA_OK;
    }

    const int nkb = (k + BLK - 1) / BLK;
    float *af = malloc((size_t)k * sizeof *af), *sa = malloc((size_t)nkb * sizeof *sa);
    uint8_t *qa = malloc((size_t)k);
    if (!af || !sa || !qa) {
        free(af), free(sa), free(qa);
        return ref_fail(ctx, "gemm: out of memory for the FP8 row buffers");
    }
    for (int c = 0; c < k; c++)
        af[c] = ref_bf16f(a[c]);
    for (int kb = 0; kb < nkb; kb++) {
        int len = k - kb * BLK < BLK ? k - kb * BLK : BLK;
        sa[kb] = ref_quant_e4m3(af + kb * BLK, len, DSA_SCALE_FP32, qa + kb * BLK);
    }
    const uint8_t *w = W->data;
    for (int j = 0; j < n; j++) {
        const uint8_t *wj = w + (size_t)j * k;
        double acc = 0.0;
        for (int kb = 0; kb < nkb; kb++) {
            int end = (kb + 1) * BLK < k ? (kb + 1) * BLK : k;
            double dot = 0.0; /* exact: products of e4m3 values fit easily in a double */
            for (int c = kb * BLK; c < end; c++)
                dot += (double)dsa_e4m3_to_f32(qa[c]) * dsa_e4m3_to_f32(wj[c]);
            acc += dot * sa[kb] * W->scale[(size_t)(j / BLK) * nkb + kb];
        }
        out[j] = (float)acc;
    }
    free(af), free(sa), free(qa);
    return DSA_OK;
}

int ref_gemm(void *ctx, const bf16_t *A, int lda, int m, const dsa_weight *W,
             const bf16_t *residual, bf16_t *D, int ldd)
{
    int st = ref_check_weight(ctx, "gemm", W);
    if (st)
        return st;
    REF_REQUIRE(ctx, "gemm", m >= 0 && lda >= W->k && ldd >= W->n);
    REF_REQUIRE(ctx, "gemm", m == 0 || (A && D));
    float *row = malloc((size_t)W->n * sizeof *row);
    if (!row)
        return ref_fail(ctx, "gemm: out of memory");
    for (int r = 0; r < m && st == DSA_OK; r++) {
        st = ref_linear_row(ctx, A + (size_t)r * lda, W, row);
        for (int j = 0; j < W->n && st == DSA_OK; j++) {
            size_t o = (size_t)r * ldd + j;
            /* residual is read before D[o] is written: residual may alias D */
            float v = residual ? row[j] + ref_bf16f(residual[o]) : row[j];
            D[o] = dsa_f32_to_bf16(v);
        }
    }
    free(row);
    return st;
}
