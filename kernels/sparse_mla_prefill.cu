// kernels/sparse_mla_prefill.cu — sparse MLA attention over a bf16 latent cache (the operation of
// FlashMLA's sparse prefill), kernels/ops.h sparse_attn_prefill, reference
// kernels/ref/sparse_attn.c. The kernels are in kernels/sparse_mla_core.cuh (shared with the
// FP8 decode); this file validates the arguments and launches.
//
// Grid: one block per (query row, head tile): 64 heads per block when heads % 64 == 0 (the h64
// wgmma "seesaw" kernel), else up to 32 heads per block padded to a multiple of 8 (the narrow
// kernel: heads are the wgmma N, so 20 heads cost 24 rows, not 64). Each block streams all of
// its row's topk selected keys (64 per stage, gathered with 16-byte cp.async per 1152-byte row);
// 4096 queries x 2 head tiles = 8192 blocks at 128 heads, so no split-KV here.
#include "sparse_mla_core.cuh"

extern "C" int dsa_cuda_sparse_attn_prefill(void *ctx, const bf16_t *query, int n, int heads, const bf16_t *cache,
                                            const int32_t *idx, int topk, float scale, bf16_t *out_lat, float *lse)
{
    static const char op[] = "sparse_attn_prefill";
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (!c) return DSA_EOP;
    if (n < 0) return dsa_cuda_fail(c, "%s: n = %d, must be >= 0", op, n);
    if (heads <= 0) return dsa_cuda_fail(c, "%s: heads = %d, must be > 0", op, heads);
    if (topk < 0) return dsa_cuda_fail(c, "%s: topk = %d, must be >= 0", op, topk);
    if (!(scale > 0.0f) || !isfinite(scale))
        return dsa_cuda_fail(c, "%s: scale = %g, must be positive and finite", op, (double)scale);
    if (n == 0) return DSA_OK;
    if (!query || !out_lat || !lse) return dsa_cuda_fail(c, "%s: query, out_lat and lse must not be NULL", op);
    if (topk > 0 && (!cache || !idx))
        return dsa_cuda_fail(c, "%s: cache and idx must not be NULL (topk = %d)", op, topk);
    // 16-byte cp.async copies of 1152-byte rows; out_lat is stored 4 and 16 bytes at a time
    if (((uintptr_t)query | (uintptr_t)cache | (uintptr_t)out_lat) & 15)
        return dsa_cuda_fail(c, "%s: query, cache and out_lat must be 16-byte aligned", op);
    if ((uintptr_t)lse & 3) return dsa_cuda_fail(c, "%s: lse must be 4-byte aligned", op);

    SparseMlaParams prm = {};
    prm.query = reinterpret_cast<const uint8_t *>(query);
    prm.cache = reinterpret_cast<const uint8_t *>(cache);
    prm.cache_stride = 0;
    prm.idx = idx;
    prm.rows = n;
    prm.heads = heads;
    prm.topk = topk;
    prm.splits = 1;
    prm.split_keys = topk; // one block covers the whole row
    prm.scale_log2 = scale * kLog2e;
    prm.out = out_lat;
    prm.lse = lse;
    return launch_sparse_mla<false>(c, op, prm, plan_heads(heads));
}
