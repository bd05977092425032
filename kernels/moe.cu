// kernels/moe.cu — mixture of experts (kernels/ops.h moe_router / moe_experts, oracle
// kernels/ref/moe.c).
//
// moe_router: logits = x . W_router^T as an fp32-output cuBLASLt GEMM (bf16 inputs, fp32
// accumulation: DeepSeek runs its router in fp32; the reference accumulates in double, so the
// logits differ in the last bits and a near-tie can resolve differently), then one warp per
// token does the DeepSeek-V3 grouped selection exactly as the reference: s = sigmoid in double
// rounded to fp32, biased = s + bias, group score = sum of the group's top-2 biased scores,
// topk_group groups kept, topk experts of the kept groups, every argmax with ties to the lower
// index; weights = s (unbiased), normalised in selection order in fp32, times routed_scale.
//
// moe_experts, a first version (correct, not fast; the next step is a grouped GEMM over all
// experts in one launch, driven by device-side offsets so that it can be captured in a graph):
//   1. count the (token, expert) pairs per expert on the device and copy the counts to the
//      host. THIS SYNCHRONISES THE STREAM: fine for prefill and for eager decode, but the op
//      cannot be captured in a CUDA graph yet (it says so instead of failing inside the capture);
//   2. on the host, give each expert a segment of a pair list, its row count rounded up to a
//      bucket (multiples of 16 up to 64 rows, then quarter-octave steps), so that only a few
//      distinct GEMM shapes exist and their cuBLASLt plans stay cached; padded rows are zero;
//   3. on the device, fill the pair list (token, weight) by expert with atomics;
//   4. per expert with rows: gather its tokens' rows of x, gate_up GEMM (bf16 out, as a linear
//      layer), swiglu (bf16), down GEMM with fp32 output, and scatter-add weight * y into an
//      fp32 accumulator [n, hidden] with atomics;
//   5. out = bf16(acc + residual), one rounding (the reference's order; residual may alias out).
// Rounding points are the reference's. The fp32 atomics make the expert sum's order (hence its
// last bits) run-dependent; the reference sums in double.
#include <cuda_bf16.h>
#include <stdint.h>
#include <stdlib.h>

#include "cuda_ops.h"

#include "gemm_internal.h"

namespace {

// Router: one warp per token, 4 tokens per 128-thread block; per warp, shared memory holds the
// token's scores, biased scores, group scores and flags: 10 B per expert, so up to 512 experts
// fit 4 warps in the default 48 KB.
constexpr int ROUTER_WARPS = 4;
constexpr int ROUTER_MAX_EXPERTS = 512;
// Experts: elementwise / row kernels.
constexpr int PAIR_THREADS = 256;
constexpr int ROW_THREADS = 128;

__device__ __forceinline__ float bf16f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

// Index of the largest v[i] over i < count with ok[i], ties to the lower index (the reference's
// strict > scan); -1 when none. Every lane of the warp gets the result.
__device__ __forceinline__ int warp_argmax(const float *v, const unsigned char *ok, int count, int lane)
{
    float bv = 0.0f;
    int bi = -1;
    for (int i = lane; i < count; i += 32)
        if (ok[i] && (bi < 0 || v[i] > bv)) bv = v[i], bi = i;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) bv = ov, bi = oi;
    }
    return bi;
}

__global__ void __launch_bounds__(32 * ROUTER_WARPS)
route_tokens(const float *__restrict__ logits, int n, int ne, const float *__restrict__ bias, int ng, int tg, int topk,
             int norm_topk, float routed_scale, int smem_stride, int32_t *__restrict__ ids, float *__restrict__ wts)
{
    extern __shared__ __align__(16) unsigned char router_smem[];
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const int r = blockIdx.x * ROUTER_WARPS + warp;
    if (r >= n) return; // warp-uniform; the kernel uses no block barrier
    float *s = reinterpret_cast<float *>(router_smem + (size_t)warp * smem_stride);
    float *biased = s + ne, *gscore = biased + ne;
    unsigned char *gfree = reinterpret_cast<unsigned char *>(gscore + ng), *allowed = gfree + ng;
    const int gs = ne / ng;

    for (int e = lane; e < ne; e += 32) {
        const double logit = logits[(size_t)r * ne + e];
        const float sv = (float)(1.0 / (1.0 + exp(-logit)));
        s[e] = sv;
        biased[e] = sv + (bias ? bias[e] : 0.0f); // the bias steers selection only
    }
    __syncwarp();
    if (ng > 1) {
        // Group score: the sum of the group's top-2 biased scores (its top-1 if it has one).
        for (int g = lane; g < ng; g += 32) {
            float b1 = -INFINITY, b2 = -INFINITY;
            for (int e = g * gs; e < (g + 1) * gs; e++) {
                const float v = biased[e];
                if (v > b1) b2 = b1, b1 = v;
                else if (v > b2) b2 = v;
            }
            gscore[g] = gs >= 2 ? b1 + b2 : b1;
            gfree[g] = 1;
        }
        __syncwarp();
        for (int t = 0; t < tg; t++) {
            const int g = warp_argmax(gscore, gfree, ng, lane);
            if (lane == 0 && g >= 0) gfree[g] = 0;
            __syncwarp();
        }
        for (int e = lane; e < ne; e += 32) allowed[e] = !gfree[e / gs];
    } else {
        for (int e = lane; e < ne; e += 32) allowed[e] = 1;
    }
    __syncwarp();
    int32_t *id = ids + (size_t)r * topk;
    float *w = wts + (size_t)r * topk;
    for (int j = 0; j < topk; j++) {
        const int e = warp_argmax(biased, allowed, ne, lane);
        if (lane == 0) {
            id[j] = e;
            w[j] = e >= 0 ? s[e] : 0.0f; // the unbiased score
            if (e >= 0) allowed[e] = 0;
        }
        __syncwarp();
    }
    if (lane == 0) { // the reference's fp32 sequence, in selection order
        float sum = 0.0f;
        for (int j = 0; j < topk; j++) sum += w[j];
        for (int j = 0; j < topk; j++) {
            float v = w[j];
            if (norm_topk) v /= sum + 1e-20f; // DeepSeek's guard against an all-zero sum
            w[j] = v * routed_scale;
        }
    }
}

__global__ void __launch_bounds__(PAIR_THREADS)
count_pairs(const int32_t *__restrict__ ids, long long pairs, int ne, int *__restrict__ counts)
{
    const long long p = (long long)blockIdx.x * PAIR_THREADS + threadIdx.x;
    if (p >= pairs) return;
    const int e = ids[p];
    if (e < 0) return; // no expert
    atomicAdd(&counts[e < ne ? e : ne], 1); // counts[ne] counts bad ids
}

__global__ void __launch_bounds__(PAIR_THREADS)
list_pairs(const int32_t *__restrict__ ids, const float *__restrict__ weights, long long pairs, int topk, int ne,
           const int *__restrict__ offsets, int *__restrict__ cursor, int *__restrict__ tok, float *__restrict__ wt)
{
    const long long p = (long long)blockIdx.x * PAIR_THREADS + threadIdx.x;
    if (p >= pairs) return;
    const int e = ids[p];
    if (e < 0 || e >= ne) return;
    const int at = offsets[e] + atomicAdd(&cursor[e], 1);
    tok[at] = (int)(p / topk);
    wt[at] = weights[p];
}

// xg[i, :] = x[tok[i], :], or zeros for a padding row (tok < 0).
template <bool VEC>
__global__ void __launch_bounds__(ROW_THREADS)
gather_rows(const int *__restrict__ tok, const uint16_t *__restrict__ x, int hidden, uint16_t *__restrict__ xg)
{
    const int i = blockIdx.x, t = tok[i];
    uint16_t *dst = xg + (size_t)i * hidden;
    if (VEC) {
        uint4 *d4 = reinterpret_cast<uint4 *>(dst);
        const uint4 *s4 = reinterpret_cast<const uint4 *>(x + (size_t)(t < 0 ? 0 : t) * hidden);
        for (int c = threadIdx.x; c < hidden / 8; c += ROW_THREADS) d4[c] = t < 0 ? make_uint4(0, 0, 0, 0) : __ldg(s4 + c);
    } else {
        const uint16_t *src = x + (size_t)(t < 0 ? 0 : t) * hidden;
        for (int c = threadIdx.x; c < hidden; c += ROW_THREADS) dst[c] = t < 0 ? (uint16_t)0 : src[c];
    }
}

// acc[tok[i], :] += wt[i] * y[i, :] for the expert's real rows.
__global__ void __launch_bounds__(ROW_THREADS)
scatter_add_rows(const int *__restrict__ tok, const float *__restrict__ wt, const float *__restrict__ y, int hidden,
                 float *__restrict__ acc)
{
    const int i = blockIdx.x, t = tok[i];
    if (t < 0) return;
    const float w = wt[i];
    const float *yr = y + (size_t)i * hidden;
    float *ar = acc + (size_t)t * hidden;
    for (int c = threadIdx.x; c < hidden; c += ROW_THREADS) atomicAdd(ar + c, __fmul_rn(w, yr[c]));
}

// out = bf16(acc + residual); residual is read before out is written by the same thread.
__global__ void __launch_bounds__(PAIR_THREADS)
finish_rows(const float *__restrict__ acc, size_t total, const uint16_t *residual, uint16_t *out)
{
    for (size_t i = blockIdx.x * (size_t)PAIR_THREADS + threadIdx.x; i < total; i += (size_t)gridDim.x * PAIR_THREADS) {
        float v = acc[i];
        if (residual) v = __fadd_rn(v, bf16f(residual[i]));
        out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(v));
    }
}

// Rows given to an expert with `count` pairs: few distinct GEMM shapes, at most ~25% padding
// (plus up to 15 rows), and always a multiple of 16 (FP8 scale vectors stay 16-byte aligned).
int bucket_rows(int count)
{
    if (count <= 16) return 16;
    int p = 16;
    while (p <= count / 2) p *= 2; // p <= count < 2p
    const int step = p / 4 < 16 ? 16 : p / 4;
    return (count + step - 1) / step * step;
}

size_t align256(size_t x) { return (x + 255) / 256 * 256; }

bool weight_ok(const dsa_weight *w, int n, int k)
{
    return w->data && w->n == n && w->k == k && (w->dtype == DSA_BF16 || (w->dtype == DSA_FP8_E4M3 && w->scale));
}

int refuse_capture(dsa_cuda_ctx *c, const char *op)
{
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    int rc = dsa_cuda_status(c, cudaStreamIsCapturing(c->stream, &cs), op);
    if (rc) return rc;
    if (cs != cudaStreamCaptureStatusNone)
        return dsa_cuda_fail(c, "%s: cannot run inside a CUDA graph capture yet (it reads the per-expert token counts "
                                "back to the host)", op);
    return DSA_OK;
}

} // namespace

extern "C" int dsa_cuda_moe_router(void *ctx, const bf16_t *x, int n, int hidden, const bf16_t *w_router,
                                   const float *bias, dsa_router_cfg cfg, int32_t *ids, float *weights)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    const int ne = cfg.n_experts;
    const int ng = cfg.n_group > 1 ? cfg.n_group : 1; // n_group <= 1: one group, no group stage
    const int tg = cfg.n_group > 1 ? cfg.topk_group : 1;
    if (n < 0 || hidden <= 0 || ne <= 0)
        return dsa_cuda_fail(c, "moe_router: n = %d, hidden = %d, n_experts = %d", n, hidden, ne);
    if (ne % ng || tg < 1 || tg > ng)
        return dsa_cuda_fail(c, "moe_router: n_experts %d, n_group %d, topk_group %d are inconsistent", ne, ng, tg);
    if (cfg.topk < 1 || cfg.topk > tg * (ne / ng))
        return dsa_cuda_fail(c, "moe_router: topk %d must be in [1, %d]", cfg.topk, tg * (ne / ng));
    if (ne > ROUTER_MAX_EXPERTS)
        return dsa_cuda_fail(c, "moe_router: %d experts; this kernel takes at most %d", ne, ROUTER_MAX_EXPERTS);
    if (n == 0) return DSA_OK;
    if (!x || !w_router || !ids || !weights) return dsa_cuda_fail(c, "moe_router: a pointer argument is NULL");

    void *scratch = NULL;
    int rc = dsa_cuda_scratch(c, (size_t)n * ne * sizeof(float), &scratch);
    if (rc) return rc;
    float *logits = (float *)scratch;
    dsa_weight wr = {DSA_BF16, ne, hidden, (void *)w_router, NULL};
    rc = dsa_cuda_gemm_ex(c, "moe_router: logits", x, hidden, n, &wr, NULL, logits, ne, 1, NULL, 0);
    if (rc) return rc;
    const int smem_stride = (int)((8 * (size_t)ne + 4 * (size_t)ng + ng + ne + 15) / 16 * 16);
    const int blocks = (n + ROUTER_WARPS - 1) / ROUTER_WARPS;
    route_tokens<<<blocks, 32 * ROUTER_WARPS, ROUTER_WARPS * smem_stride, c->stream>>>(
        logits, n, ne, bias, ng, tg, cfg.topk, cfg.norm_topk, cfg.routed_scale, smem_stride, ids, weights);
    return dsa_cuda_check(c, "moe_router");
}

extern "C" int dsa_cuda_moe_experts(void *ctx, const bf16_t *x, int n, int hidden, const int32_t *ids,
                                    const float *weights, int topk, int n_experts, int inter, const dsa_weight *gate_up,
                                    const dsa_weight *down, const bf16_t *residual, bf16_t *out)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    const char *op = "moe_experts";
    const int ne = n_experts;
    if (n < 0 || hidden <= 0 || topk < 0 || ne <= 0 || inter <= 0)
        return dsa_cuda_fail(c, "moe_experts: n = %d, hidden = %d, topk = %d, n_experts = %d, inter = %d", n, hidden,
                             topk, ne, inter);
    if (n == 0) return DSA_OK;
    if (!x || !out || (topk > 0 && (!ids || !weights)) || !gate_up || !down)
        return dsa_cuda_fail(c, "moe_experts: a pointer argument is NULL");
    for (int e = 0; e < ne; e++)
        if (!weight_ok(&gate_up[e], 2 * inter, hidden) || !weight_ok(&down[e], hidden, inter))
            return dsa_cuda_fail(c,
                                 "moe_experts: expert %d has gate_up [%d, %d] and down [%d, %d] (dtypes %d, %d), "
                                 "expected [%d, %d] and [%d, %d], with data (and scales if FP8)",
                                 e, gate_up[e].n, gate_up[e].k, down[e].n, down[e].k, gate_up[e].dtype, down[e].dtype,
                                 2 * inter, hidden, hidden, inter);
    int rc = refuse_capture(c, op);
    if (rc) return rc;

    // 1. Tokens per expert, read back to the host (synchronises; see the header comment).
    int *h_counts = (int *)calloc((size_t)ne + 1, sizeof(int));
    int *h_offsets = (int *)calloc((size_t)ne + 1, sizeof(int));
    if (!h_counts || !h_offsets) {
        free(h_counts), free(h_offsets);
        return dsa_cuda_fail(c, "moe_experts: out of host memory");
    }
    const long long pairs = (long long)n * topk;
    const unsigned pair_blocks = (unsigned)((pairs + PAIR_THREADS - 1) / PAIR_THREADS);
    void *scratch = NULL;
    if (pairs > 0) {
        if (!(rc = dsa_cuda_scratch(c, ((size_t)ne + 1) * sizeof(int), &scratch)))
            rc = dsa_cuda_status(c, cudaMemsetAsync(scratch, 0, ((size_t)ne + 1) * sizeof(int), c->stream), op);
        if (!rc) {
            count_pairs<<<pair_blocks, PAIR_THREADS, 0, c->stream>>>(ids, pairs, ne, (int *)scratch);
            rc = dsa_cuda_check(c, "moe_experts: count");
        }
        if (!rc)
            rc = dsa_cuda_status(c, cudaMemcpyAsync(h_counts, scratch, ((size_t)ne + 1) * sizeof(int),
                                                    cudaMemcpyDeviceToHost, c->stream), op);
        if (!rc) rc = dsa_cuda_status(c, cudaStreamSynchronize(c->stream), "moe_experts: counts");
        if (!rc && h_counts[ne] > 0)
            rc = dsa_cuda_fail(c, "moe_experts: %d routed ids are >= n_experts %d", h_counts[ne], ne);
    }

    // 2. Segments of the pair list, and the scratch plan.
    long long total_rows = 0;
    int max_rows = 0;
    size_t ws_bytes = 0;
    for (int e = 0; e < ne && !rc; e++) {
        h_offsets[e] = (int)total_rows;
        if (!h_counts[e]) continue;
        const int rows = bucket_rows(h_counts[e]);
        total_rows += rows;
        if (rows > max_rows) max_rows = rows;
        size_t a = dsa_cuda_gemm_ws_bytes(c, rows, &gate_up[e], NULL, 2 * inter, 0, NULL);
        size_t b = dsa_cuda_gemm_ws_bytes(c, rows, &down[e], NULL, hidden, 1, NULL);
        if (a > ws_bytes) ws_bytes = a;
        if (b > ws_bytes) ws_bytes = b;
    }
    h_offsets[ne] = (int)total_rows;
    if (!rc && total_rows > 0x7fffffffLL) rc = dsa_cuda_fail(c, "moe_experts: %lld routed rows is too many", total_rows);
    if (rc) {
        free(h_counts), free(h_offsets);
        return rc;
    }

    size_t off = 0;
    const size_t o_offsets = off; off += align256(((size_t)ne + 1) * sizeof(int));
    const size_t o_cursor = off;  off += align256((size_t)ne * sizeof(int));
    const size_t o_tok = off;     off += align256((size_t)total_rows * sizeof(int));
    const size_t o_wt = off;      off += align256((size_t)total_rows * sizeof(float));
    const size_t o_xg = off;      off += align256((size_t)max_rows * hidden * 2);
    const size_t o_gu = off;      off += align256((size_t)max_rows * 2 * inter * 2);
    const size_t o_h = off;       off += align256((size_t)max_rows * inter * 2);
    const size_t o_y = off;       off += align256((size_t)max_rows * hidden * sizeof(float));
    const size_t o_acc = off;     off += align256((size_t)n * hidden * sizeof(float));
    const size_t o_ws = off;      off += align256(ws_bytes);
    if ((rc = dsa_cuda_scratch(c, off, &scratch))) {
        free(h_counts), free(h_offsets);
        return rc;
    }
    uint8_t *base = (uint8_t *)scratch;
    int *d_offsets = (int *)(base + o_offsets), *cursor = (int *)(base + o_cursor), *tok = (int *)(base + o_tok);
    float *wt = (float *)(base + o_wt), *y = (float *)(base + o_y), *acc = (float *)(base + o_acc);
    bf16_t *xg = (bf16_t *)(base + o_xg), *gu = (bf16_t *)(base + o_gu), *h = (bf16_t *)(base + o_h);
    void *ws = base + o_ws;

    // 3. The pair list, by expert.
    rc = dsa_cuda_status(c, cudaMemsetAsync(acc, 0, (size_t)n * hidden * sizeof(float), c->stream), op);
    if (!rc && total_rows > 0) {
        // h_offsets is pageable: the copy has staged it by the time the call returns.
        rc = dsa_cuda_status(c, cudaMemcpyAsync(d_offsets, h_offsets, ((size_t)ne + 1) * sizeof(int),
                                                cudaMemcpyHostToDevice, c->stream), op);
        if (!rc) rc = dsa_cuda_status(c, cudaMemsetAsync(cursor, 0, (size_t)ne * sizeof(int), c->stream), op);
        if (!rc) rc = dsa_cuda_status(c, cudaMemsetAsync(tok, 0xff, (size_t)total_rows * sizeof(int), c->stream), op);
        if (!rc) {
            list_pairs<<<pair_blocks, PAIR_THREADS, 0, c->stream>>>(ids, weights, pairs, topk, ne, d_offsets, cursor, tok, wt);
            rc = dsa_cuda_check(c, "moe_experts: pair list");
        }
    }

    // 4. Expert by expert.
    const bool vec = hidden % 8 == 0 && (uintptr_t)x % 16 == 0;
    for (int e = 0; e < ne && !rc; e++) {
        if (!h_counts[e]) continue;
        const int rows = bucket_rows(h_counts[e]);
        const int *seg_tok = tok + h_offsets[e];
        if (vec)
            gather_rows<true><<<rows, ROW_THREADS, 0, c->stream>>>(seg_tok, x, hidden, xg);
        else
            gather_rows<false><<<rows, ROW_THREADS, 0, c->stream>>>(seg_tok, x, hidden, xg);
        if ((rc = dsa_cuda_check(c, "moe_experts: gather"))) break;
        if ((rc = dsa_cuda_gemm_ex(c, "moe_experts: gate_up", xg, hidden, rows, &gate_up[e], NULL, gu, 2 * inter, 0, ws,
                                   ws_bytes)))
            break;
        if ((rc = dsa_cuda_swiglu(c, gu, rows, inter, h))) break;
        if ((rc = dsa_cuda_gemm_ex(c, "moe_experts: down", h, inter, rows, &down[e], NULL, y, hidden, 1, ws, ws_bytes)))
            break;
        scatter_add_rows<<<rows, ROW_THREADS, 0, c->stream>>>(seg_tok, wt + h_offsets[e], y, hidden, acc);
        rc = dsa_cuda_check(c, "moe_experts: scatter");
    }

    // 5. out = bf16(acc + residual).
    if (!rc) {
        const size_t total = (size_t)n * hidden;
        size_t blocks = (total + PAIR_THREADS - 1) / PAIR_THREADS;
        if (blocks > (size_t)c->sms * 16) blocks = (size_t)c->sms * 16;
        finish_rows<<<(unsigned)blocks, PAIR_THREADS, 0, c->stream>>>(acc, total, residual, out);
        rc = dsa_cuda_check(c, "moe_experts: residual");
    }
    free(h_counts), free(h_offsets);
    return rc;
}
