// kernels/sparse_mla_decode.cu — sparse MLA attention over the FP8 latent cache (the operation
// of FlashMLA's FP8 sparse decode), kernels/ops.h sparse_attn_decode, reference
// kernels/ref/sparse_attn.c. The kernels are in kernels/sparse_mla_core.cuh (shared with the bf16
// prefill); this file validates the arguments, chooses the key split and launches.
//
// One query row per request. Two gather warpgroups copy each selected 656-byte row (512 e4m3 |
// 4 fp32 scales | 64 bf16 k_pe) into shared memory, one half each, and widen c_kv to bf16 in place
// (e4m3 x its 128-block scale, rounded to bf16), then the same bf16 tensor-core pipeline as the
// prefill runs. One warpgroup doing all the widening was the critical path: 149.8 us at B=64 /
// 128 heads / 200K against 137.9 with two (H200, results/README.md).
//
// Split-KV: B requests x head tiles is often far below the 132 SMs (B = 1: 1-2 blocks), so the
// topk keys are split into ranges of whole 128-key pairs, enough splits for about one block per
// SM; each split writes an fp32 partial output and its lse to the scratch arena, and a combine
// kernel merges them (B = 64 with 128 heads already gives 128 blocks: no split, no scratch).
#include "sparse_mla_core.cuh"

extern "C" int dsa_cuda_sparse_attn_decode(void *ctx, const bf16_t *query, int batch, int heads, const uint8_t *cache,
                                           size_t cache_stride, const int32_t *idx, int topk, float scale,
                                           bf16_t *out_lat, float *lse)
{
    static const char op[] = "sparse_attn_decode";
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (!c) return DSA_EOP;
    if (batch < 0) return dsa_cuda_fail(c, "%s: batch = %d, must be >= 0", op, batch);
    if (heads <= 0) return dsa_cuda_fail(c, "%s: heads = %d, must be > 0", op, heads);
    if (topk < 0) return dsa_cuda_fail(c, "%s: topk = %d, must be >= 0", op, topk);
    if (!(scale > 0.0f) || !isfinite(scale))
        return dsa_cuda_fail(c, "%s: scale = %g, must be positive and finite", op, (double)scale);
    if (batch == 0) return DSA_OK;
    if (!query || !out_lat || !lse) return dsa_cuda_fail(c, "%s: query, out_lat and lse must not be NULL", op);
    if (topk > 0 && (!cache || !idx))
        return dsa_cuda_fail(c, "%s: cache and idx must not be NULL (topk = %d)", op, topk);
    // 16-byte cp.async copies of 656-byte rows (656 = 41 x 16)
    if (((uintptr_t)query | (uintptr_t)cache | (uintptr_t)out_lat) & 15)
        return dsa_cuda_fail(c, "%s: query, cache and out_lat must be 16-byte aligned", op);
    if (cache_stride % 16)
        return dsa_cuda_fail(c, "%s: cache_stride = %zu, must be a multiple of 16 bytes", op, cache_stride);
    if ((uintptr_t)lse & 3) return dsa_cuda_fail(c, "%s: lse must be 4-byte aligned", op);

    const HeadPlan hp = plan_heads(heads);
    const int pairs = (topk + kPairKeys - 1) / kPairKeys;
    const long long base_blocks = (long long)batch * hp.head_tiles;
    int splits = 1;
    if (pairs > 1 && base_blocks < c->sms) {
        const long long want = c->sms / base_blocks;
        splits = (int)(want < pairs ? want : pairs);
    }
    const int pairs_per_split = (pairs + splits - 1) / (splits > 0 ? splits : 1);
    const int split_keys = splits > 1 ? pairs_per_split * kPairKeys : topk;
    if (splits > 1) splits = (topk + split_keys - 1) / split_keys; // no empty trailing split

    SparseMlaParams prm = {};
    prm.query = reinterpret_cast<const uint8_t *>(query);
    prm.cache = cache;
    prm.cache_stride = cache_stride;
    prm.idx = idx;
    prm.rows = batch;
    prm.heads = heads;
    prm.topk = topk;
    prm.splits = splits;
    prm.split_keys = split_keys;
    prm.scale_log2 = scale * kLog2e;
    prm.out = out_lat;
    prm.lse = lse;
    if (splits > 1) {
        const size_t parts = (size_t)batch * heads * splits;
        void *scratch = NULL;
        int rc = dsa_cuda_scratch(c, parts * (kVDim + 1) * sizeof(float), &scratch);
        if (rc) return rc;
        prm.part_o = static_cast<float *>(scratch);
        prm.part_lse = prm.part_o + parts * kVDim;
    }
    int rc = launch_sparse_mla<true>(c, op, prm, hp);
    if (rc || splits == 1) return rc;
    return launch_combine(c, op, prm);
}
