// kernels/idx_logits.cu — DSA lightning-indexer scores on FP8 tensor cores (sm_90a wgmma):
//   score[i, s] = k_scale[s] * sum_h w[i, h] * relu(q[i, h] . k[s])    (kernels/ops.h)
//
// The kernels (and their design notes) are in idx_logits_core.cuh, shared with idx_fused.cu; this
// file holds the two launchers, which store every score (the StoreScores epilogue).
#include "cuda_ops.h"
#include "idx_logits_core.cuh"

extern "C" int dsa_cuda_idx_logits_prefill(void *ctx, const uint8_t *q_fp8, const float *w, int n, int heads,
                                           const uint8_t *idx_cache, int n_keys, int q_pos0, float *scores,
                                           int ld_scores)
{
    const char *op = "idx_logits_prefill";
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (!c) return DSA_EOP;
    if (int rc = check_prefill_shape(c, op, n, heads, n_keys, q_pos0)) return rc;
    if (ld_scores < n_keys) return dsa_cuda_fail(c, "%s: ld_scores = %d < n_keys = %d", op, ld_scores, n_keys);
    if (n == 0) return DSA_OK;
    if (!q_fp8 || !w || !idx_cache || !scores) return dsa_cuda_fail(c, "%s: null pointer", op);
    if (int rc = check_alignment(c, op, q_fp8, idx_cache)) return rc;

    IdxParams prm = {q_fp8, w, idx_cache, 0, scores, (size_t)ld_scores, n, heads, n_keys, q_pos0, 1, 0};
    if (heads > 64) {
        if (n > 65535) return dsa_cuda_fail(c, "%s: n = %d > 65535 with heads > 64", op, n);
        return launch_generic(c, prm, op);
    }
    const int hp = heads <= 16 ? 16 : heads <= 32 ? 32 : 64;
    const int qb = PREFILL_N / hp;
    if (ceil_div(n, qb) > 65535) return dsa_cuda_fail(c, "%s: n = %d too large (> %d)", op, n, 65535 * qb);
    const long long chunk = prefill_chunk_tiles(ceil_div(n, qb), ceil_div(n_keys, KEY_TILE), c->sms);
    switch (hp) {
    case 16: return launch_wgmma<16, PREFILL_N / 16, PREFILL_STAGES, 1, StoreScores>(c, prm, {}, (int)chunk, op);
    case 32: return launch_wgmma<32, PREFILL_N / 32, PREFILL_STAGES, 1, StoreScores>(c, prm, {}, (int)chunk, op);
    default: return launch_wgmma<64, PREFILL_N / 64, PREFILL_STAGES, 1, StoreScores>(c, prm, {}, (int)chunk, op);
    }
}

extern "C" int dsa_cuda_idx_logits_decode(void *ctx, const uint8_t *q_fp8, const float *w, int batch, int heads,
                                          const uint8_t *idx_cache, size_t cache_stride, int n_keys, float *scores,
                                          int ld_scores)
{
    const char *op = "idx_logits_decode";
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (!c) return DSA_EOP;
    if (int rc = check_decode_shape(c, op, batch, heads, n_keys)) return rc;
    if (ld_scores < n_keys) return dsa_cuda_fail(c, "%s: ld_scores = %d < n_keys = %d", op, ld_scores, n_keys);
    if (int rc = check_decode_stride(c, op, batch, cache_stride, n_keys)) return rc;
    if (batch == 0 || n_keys == 0) return DSA_OK;
    if (!q_fp8 || !w || !idx_cache || !scores) return dsa_cuda_fail(c, "%s: null pointer", op);
    if (int rc = check_alignment(c, op, q_fp8, idx_cache)) return rc;

    // one query per tile, seeing every key: limit = (n_keys - 1) + 0 * b
    IdxParams prm = {q_fp8, w, idx_cache, batch > 1 ? cache_stride : 0, scores, (size_t)ld_scores,
                     batch, heads, n_keys, (long long)n_keys - 1, 0, 0};
    if (heads > 64) return launch_generic(c, prm, op);
    const long long chunk = decode_chunk_tiles(batch, ceil_div(n_keys, KEY_TILE), c->sms);
    if (heads <= 16)
        return launch_wgmma<16, 1, DECODE_STAGES, DECODE_BLOCKS_PER_SM, StoreScores>(c, prm, {}, (int)chunk, op);
    if (heads <= 32)
        return launch_wgmma<32, 1, DECODE_STAGES, DECODE_BLOCKS_PER_SM, StoreScores>(c, prm, {}, (int)chunk, op);
    return launch_wgmma<64, 1, DECODE_STAGES, DECODE_BLOCKS_PER_SM, StoreScores>(c, prm, {}, (int)chunk, op);
}
