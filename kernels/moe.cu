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
// moe_experts has two paths, chosen per call.
//
// A. Decode path (n * topk <= SMALL_MAX_PAIRS = 512 (token, expert) pairs, <= 512 experts, each
//    matrix kind all bf16 or all FP8 with k % 16 == 0 and 16-byte aligned data). It never
//    synchronises and never allocates (scratch comes from dsa_cuda_scratch, which only grows
//    outside a capture: dsa_cuda_moe_reserve grows it ahead of one), so it can be captured in
//    a CUDA graph; the routing stays on the device and the graph follows new ids on each replay.
//    Launches, all on ctx->stream:
//      1. group_pairs (one block): the pairs grouped by expert: the list of experts that got
//         pairs ("groups", ascending expert id), each group's slice of a pair list (ascending);
//      2. (FP8 gate_up only) x quantised to e4m3 per 1x128 block (quant_fp8.cu, the GEMM's own);
//      3. expert_gemv<gate_up>: per group, the expert's gate and up rows times its tokens' x rows
//         on the tensor cores (mma.sync m16n8k16: 16 weight rows x 8 pairs; weights read straight
//         from global memory with 16-byte loads, each touched expert's weights read once), then
//         act = bf16(silu(bf16(g)) * bf16(u)) per pair [pairs, inter] in scratch;
//      4. (FP8 down only) act quantised to e4m3 per 1x128 block;
//      5. expert_gemv<down>: y = act . W_down^T per pair, fp32 [pairs, hidden] in scratch;
//      6. combine_pairs: out[t] = bf16(residual[t] + sum_j w[t,j] * y[t,j]), the sum in fp32 in
//         slot order: no atomics anywhere, so the result is the same bits run after run (and
//         in a graph or not).
//    An id >= n_experts cannot be reported without a host round trip: that token's output row
//    is written as NaN instead (the other path fails the call).
//    Why 512 pairs: decode batches (B <= 64 tokens x 4..8 experts) always fit; one block of 512
//    threads groups them (one thread per pair and per expert); and past a few hundred pairs each
//    expert gets dozens of rows, where the tensor-core GEMMs of path B win and its host sync is
//    amortised over enough work.
//    Cost: memory-bound on the touched experts' weights, each read once (glm-4.7-flash, B = 1,
//    top-4: 75 MB, ~20 us at 3.8 TB/s; expected ~30 us with the launches and their ramps).
//    A captured graph holds the scratch's address: reserve for the largest n first, and let no
//    op grow the scratch while the graph is in use.
//    Next steps: programmatic dependent launch (or one persistent kernel) to hide the gaps
//    between the 4-6 launches; FP8: keep the quantised activations as f16 so that only the
//    weights are converted; an expert with more than 16 pairs re-reads its rows (from L2) per
//    16: a wider pass (n32) for B >= 64.
//
// B. Grouped path (larger n: prefill). The next step is a grouped GEMM over all experts in one
//    launch, driven by device-side offsets, so that nothing waits for the host.
//   1. count the (token, expert) pairs per expert on the device and copy the counts to the
//      host. THIS SYNCHRONISES THE STREAM: fine for prefill and for eager decode, but this path
//      cannot be captured in a CUDA graph (it says so instead of failing inside the capture);
//   2. on the host, give each expert a segment of rows, its pair count rounded up to a bucket
//      (multiples of 16 up to 1024 rows, then 1/16-octave steps), so that only a few distinct
//      GEMM shapes exist and their cuBLASLt plans stay cached; padded rows are zero;
//   3. on the device, list the pairs by expert (token of each row, row of each pair), and
//      gather every row of x in one launch;
//   4. the gate_up GEMMs of all experts (bf16 out, as a linear layer), spread round-robin over
//      DSA_SIDE_STREAMS (8) streams; one swiglu over all rows; the down GEMMs (fp32 out), spread
//      the same way. Why streams: a chunk of 8192 tokens gives each of 64 experts ~512 rows,
//      and one such GEMM leaves SMs idle in its tail wave; several at once fill them. With bf16
//      weights, the experts of neighbouring buckets form groups (kernels/moe_groups.c), each one
//      cuBLASLt pointer-array batch (~7-14 launches per phase instead of 64); one GEMM per
//      expert left the GPU waiting on the host's launches (64K prefill: moe_experts 626 ->
//      517 ms, idle 81 -> 55 ms, wall 3.947 -> 3.857 s, with one batch per bucket);
//   5. combine as path A (step 6), reading each pair's row through the row map: out[t] =
//      bf16(residual[t] + sum_j w[t,j] * y[row(t,j)]), in slot order, no atomics.
//    Launches per call: ~8 plus two GEMMs per group (bf16) or per expert with rows (FP8);
//    it was five per expert, and the gaps between ~320 launches per layer and chunk were most
//    of the prefill's idle time.
// Rounding points of both paths are the reference's (gate_up output bf16, swiglu output bf16,
// down output fp32, expert sum + residual rounded once); the reference sums in double.
#include <cub/block/block_scan.cuh>
#include <cuda_bf16.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_ops.h"

#include "gemm_internal.h"
#include "moe_groups.h"

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
list_pairs(const int32_t *__restrict__ ids, long long pairs, int topk, int ne, const int *__restrict__ offsets,
           int *__restrict__ cursor, int *__restrict__ tok, int *__restrict__ pair_row)
{
    const long long p = (long long)blockIdx.x * PAIR_THREADS + threadIdx.x;
    if (p >= pairs) return;
    const int e = ids[p];
    if (e < 0 || e >= ne) return;
    const int at = offsets[e] + atomicAdd(&cursor[e], 1);
    tok[at] = (int)(p / topk);
    pair_row[p] = at;
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

size_t align256(size_t x) { return (x + 255) / 256 * 256; }

// The grouped path's device pointer arrays, ne entries each: gate_up A, W, D; down A, W, D.
constexpr int PTR_ARRAYS = 6;
// bf16 expert groups: rows beyond the members' own buckets at most 1/GROUP_PAD_DIV of those
// (kernels/moe_groups.c).
constexpr int GROUP_PAD_DIV = 16;

bool weight_ok(const dsa_weight *w, int n, int k)
{
    return w->data && w->n == n && w->k == k && (w->dtype == DSA_BF16 || (w->dtype == DSA_FP8_E4M3 && w->scale));
}

// ---------------------------------------------------------------- decode path (A)

// Pairs and experts the decode path takes: group_pairs runs one block with one thread per pair
// and per expert (and 32 KB of per-warp counts), and the expert table is a kernel parameter
// (16 B per expert: 8 KB at 512, within the 32 KB that CUDA 12.1+ allows; a parameter, so a
// graph captures it by value).
constexpr int SMALL_MAX_PAIRS = 512;
constexpr int SMALL_MAX_EXPERTS = 512;
constexpr int GROUP_THREADS = 512;
static_assert(GROUP_THREADS == SMALL_MAX_PAIRS && GROUP_THREADS == SMALL_MAX_EXPERTS, "one thread per pair and expert");
// expert_gemv: a block is 4 warps that split K (warp w takes the 128-wide k blocks w, w+4, ...)
// over one 16-row tile of the expert's matrix, and reduce in shared memory at the end in warp
// order (deterministic). Four warps give every touched row tile enough loads in flight at B = 1
// (glm: 192 gate_up tiles x 4 experts = 3072 warps), 128-wide k blocks are the FP8 scale blocks.
constexpr int GEMV_WARPS = 4;
constexpr int GEMV_KBLK = 128;
// Pairs per pass: two n8 MMA tiles. An expert with more pairs re-reads its tile (from L2) per
// 16 pairs; decode rarely gives one expert more than 16 (glm, B = 64, top-4 of 64: 4 on average).
constexpr int PASS_PAIRS = 16;
// gate_up tile: 8 act columns = 8 gate rows (MMA rows 0-7) + the matching 8 up rows (rows 8-15),
// so that the lane holding gate(col, pair) also holds up(col, pair) and swiglu is lane-local.
constexpr int GU_COLS = 8;
constexpr int DN_ROWS = 16;
constexpr int COMBINE_THREADS = 256;

// Device pointers of every expert's matrix (data, and FP8 block scales), by expert id.
struct ExpertTable {
    const void *data[SMALL_MAX_EXPERTS];
    const float *scale[SMALL_MAX_EXPERTS];
};

// group_pairs' output, in scratch. Group a (a < *n_active) is expert expert[a], whose pairs
// are pairs[first[a] .. first[a] + count[a]); a pair p = t * topk + j is token t's slot j.
struct PairGroups {
    int *n_active, *expert, *first, *count, *pairs;
};

// Thread p owns pair p (n_pairs <= GROUP_THREADS), and thread e expert e. Within a group the
// pairs are in ascending order (ranks from warp matches and per-warp counts, no atomics), so
// every pair lands in the same MMA column on every run: the results are reproducible bit for
// bit without relying on the MMA treating its columns alike.
__global__ void __launch_bounds__(GROUP_THREADS)
group_pairs(const int32_t *__restrict__ ids, int n_pairs, int ne, PairGroups g)
{
    constexpr int WARPS = GROUP_THREADS / 32;
    using Scan = cub::BlockScan<int, GROUP_THREADS>;
    __shared__ typename Scan::TempStorage scan_tmp;
    // in_warp[w][e]: expert e's pairs in warp w; then, after the prefix pass, those in warps < w.
    __shared__ int in_warp[WARPS][SMALL_MAX_EXPERTS];
    __shared__ int start[SMALL_MAX_EXPERTS];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    for (int i = tid; i < WARPS * SMALL_MAX_EXPERTS; i += GROUP_THREADS) (&in_warp[0][0])[i] = 0;
    __syncthreads();
    int e = tid < n_pairs ? __ldg(ids + tid) : -1;
    if (e >= ne) e = -1; // no expert (combine_pairs flags the token)
    const unsigned same = __match_any_sync(0xffffffffu, e);
    const int rank = __popc(same & ((1u << lane) - 1u)); // same-expert pairs below p in its warp
    if (e >= 0 && rank == 0) in_warp[warp][e] = __popc(same);
    __syncthreads();
    int cnt = 0;
    for (int w = 0; w < WARPS; w++) {
        const int c = in_warp[w][tid];
        in_warp[w][tid] = cnt;
        cnt += c;
    }
    // One scan gives both the pairs of experts below e (low 16 bits: at most 512) and the
    // groups below e (high bits).
    int below, total;
    Scan(scan_tmp).ExclusiveSum(cnt | (cnt > 0 ? 1 << 16 : 0), below, total);
    const int first = below & 0xffff, a = below >> 16;
    start[tid] = first;
    if (cnt > 0) g.expert[a] = tid, g.first[a] = first, g.count[a] = cnt;
    if (tid == 0) *g.n_active = total >> 16;
    __syncthreads();
    if (e >= 0) g.pairs[start[e] + in_warp[warp][e] + rank] = tid;
}

// 16 bytes at p if pred, else zeros, as one predicated load: no branch, and volatile so that
// the compiler neither sinks a load into the branch that uses it nor moves it past the MMAs (so
// a k block's loads are all issued before the first MMA waits). STREAM (the weights, read once):
// not kept in L1, which the activations (read by every warp of the block and by the expert's
// other tiles on the SM) use.
template <bool STREAM>
__device__ __forceinline__ uint4 ld16_if(const void *p, bool pred)
{
    uint4 v;
    if constexpr (STREAM)
        asm volatile("{\n\t.reg .pred q;\n\tsetp.ne.b32 q, %4, 0;\n\t"
                     "mov.b32 %0, 0;\n\tmov.b32 %1, 0;\n\tmov.b32 %2, 0;\n\tmov.b32 %3, 0;\n\t"
                     "@q ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%5];\n\t}"
                     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                     : "r"((int)pred), "l"(p));
    else
        asm volatile("{\n\t.reg .pred q;\n\tsetp.ne.b32 q, %4, 0;\n\t"
                     "mov.b32 %0, 0;\n\tmov.b32 %1, 0;\n\tmov.b32 %2, 0;\n\tmov.b32 %3, 0;\n\t"
                     "@q ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%5];\n\t}"
                     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                     : "r"((int)pred), "l"(p));
    return v;
}

// The 16 bytes of a row (K elements of 1 (FP8) or 2 (bf16) bytes) starting at element k; zeros
// for a missing row (NULL) and past the row's end. VEC: 16-byte aligned rows and K a multiple of
// the chunk (8 bf16 / 16 e4m3), so a chunk is all in or all out; otherwise (bf16 only) element
// by element.
template <bool FP8, bool VEC, bool STREAM>
__device__ __forceinline__ uint4 load_chunk(const uint8_t *row, int k, int K)
{
    if constexpr (VEC) {
        // Integer address arithmetic: row may be NULL (then the load is predicated off).
        const uintptr_t at = reinterpret_cast<uintptr_t>(row) + (uintptr_t)k * (FP8 ? 1 : 2);
        return ld16_if<STREAM>(reinterpret_cast<const void *>(at), row != nullptr && k < K);
    } else {
        static_assert(!FP8, "FP8 rows always take the 16-byte path");
        if (!row) return make_uint4(0, 0, 0, 0);
        const uint16_t *r = reinterpret_cast<const uint16_t *>(row);
        uint32_t w[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t lo = k + 2 * i < K ? r[k + 2 * i] : 0u, hi = k + 2 * i + 1 < K ? r[k + 2 * i + 1] : 0u;
            w[i] = lo | hi << 16;
        }
        return make_uint4(w[0], w[1], w[2], w[3]);
    }
}

__device__ __forceinline__ uint32_t word_of(const uint4 &v, int i)
{
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// d += A . B, m16n8k16, fp32 accumulation. Per lane (g = lane / 4, c = lane % 4): a0 holds row g
// k-slots {2c, 2c+1}, a1 row g+8 the same slots, a2 row g slots {2c+8, 2c+9}, a3 row g+8 those;
// b0 column g slots {2c, 2c+1}, b1 column g slots {2c+8, 2c+9}; d0, d1 row g columns 2c, 2c+1,
// d2, d3 row g+8 the same columns.
__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void mma_f16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                        uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Four e4m3 codes to two f16x2 words (codes 0,1 and 2,3). Exact: every e4m3 value is an f16,
// and so is every product of two of them in the f16 MMA, which accumulates in fp32.
__device__ __forceinline__ void e4m3x4_to_f16(uint32_t codes, uint32_t &lo, uint32_t &hi)
{
    asm("{\n\t.reg .b16 c01, c23;\n\tmov.b32 {c01, c23}, %2;\n\t"
        "cvt.rn.f16x2.e4m3x2 %0, c01;\n\tcvt.rn.f16x2.e4m3x2 %1, c23;\n\t}"
        : "=r"(lo), "=r"(hi)
        : "r"(codes));
}

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

// Per group (blockIdx.y) and row tile (blockIdx.x): the expert's 16 tile rows times the
// activation rows of the group's pairs, 16 pairs per pass.
//   GATE_UP: rows = gate rows c0..c0+7 and up rows inter+c0..; activations = x (FP8: its e4m3
//            copy), row t = p / topk; out = act bf16 [pairs, inter] after SwiGLU.
//   down:    rows = r0..r0+15 of W_down; activations = act (FP8: its e4m3 copy), row p; out = y
//            fp32 [pairs, n_out].
// The k order is permuted, identically for A and B (a dot product does not care): lane (g, c)
// loads 16 bytes of weight rows g and g+8 and of pair g's activations at the same k, and feeds
// them to the MMA's k-slots of its own (c) — every load is a plain 16-byte load, the 4 lanes of
// a row cover 64 contiguous bytes, and no shuffle or shared memory stages the operands.
// FP8: per 128-wide k block, the MMAs accumulate e4m3 x e4m3 products (as f16, exact) into a
// fresh fp32 partial, which is then scaled by act_scale[kb * act_rows + row] (the activation's
// 1x128 block scale) times the weight's 128x128 block scale and added: the reference's
// sum_kb sa * sw * dot_kb, in fp32.
template <bool FP8, bool VEC, bool GATE_UP>
__global__ void __launch_bounds__(32 * GEMV_WARPS)
expert_gemv(PairGroups g, const __grid_constant__ ExpertTable tab, const uint8_t *__restrict__ act,
            const float *__restrict__ act_scale, int act_rows, int topk, int K, int n_out, int inter,
            void *__restrict__ out)
{
    __shared__ float partial[GEMV_WARPS][8][32];
    const int grp = blockIdx.y;
    if (grp >= *g.n_active) return; // block-uniform
    const int e = g.expert[grp], first = g.first[grp], count = g.count[grp];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gi = lane >> 2, ci = lane & 3;
    constexpr int EB = FP8 ? 1 : 2; // bytes per element
    const uint8_t *W = static_cast<const uint8_t *>(tab.data[e]);

    // This lane's two weight rows (MMA rows gi and gi + 8); -1 past the matrix.
    int row_lo, row_hi;
    if (GATE_UP) {
        const int col = blockIdx.x * GU_COLS + gi;
        row_lo = col < inter ? col : -1;
        row_hi = col < inter ? inter + col : -1;
    } else {
        const int r = blockIdx.x * DN_ROWS + gi;
        row_lo = r < n_out ? r : -1;
        row_hi = r + 8 < n_out ? r + 8 : -1;
    }
    const uint8_t *w_lo = row_lo >= 0 ? W + (size_t)row_lo * K * EB : nullptr;
    const uint8_t *w_hi = row_hi >= 0 ? W + (size_t)row_hi * K * EB : nullptr;
    const int nkb = (K + GEMV_KBLK - 1) / GEMV_KBLK;
    const float *ws_lo = nullptr, *ws_hi = nullptr; // FP8: the rows' block scales over k blocks
    if (FP8) {
        if (row_lo >= 0) ws_lo = tab.scale[e] + (size_t)(row_lo / GEMV_KBLK) * nkb;
        if (row_hi >= 0) ws_hi = tab.scale[e] + (size_t)(row_hi / GEMV_KBLK) * nkb;
    }

    for (int p0 = 0; p0 < count; p0 += PASS_PAIRS) {
        const int np = min(PASS_PAIRS, count - p0);
        const bool two = np > 8; // the second n8 tile has pairs (block-uniform)
        const int *pl = g.pairs + first + p0;
        // B operand: pair slots gi (tile 0) and 8 + gi (tile 1).
        const uint8_t *a_row[2];
#pragma unroll
        for (int t = 0; t < 2; t++) {
            const int s = 8 * t + gi;
            int r = -1;
            if (s < np) r = GATE_UP ? pl[s] / topk : pl[s];
            a_row[t] = r >= 0 ? act + (size_t)r * K * EB : nullptr;
        }
        // C fragment columns: pair slots 8t + 2ci + j; their pairs, and (FP8) activation rows.
        int out_pair[2][2], out_arow[2][2];
#pragma unroll
        for (int t = 0; t < 2; t++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const int s = 8 * t + 2 * ci + j;
                out_pair[t][j] = s < np ? pl[s] : -1;
                out_arow[t][j] = out_pair[t][j] < 0 ? -1 : GATE_UP ? out_pair[t][j] / topk : out_pair[t][j];
            }

        float acc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
        for (int kb = warp; kb < nkb; kb += GEMV_WARPS) {
            if constexpr (!FP8) {
                // 4 x 16 B per row per lane: k = kb*128 + 8c + 32u, 8 values each (2 MMAs).
                uint4 wl[4], wh[4], xa[2][4];
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    const int k = kb * GEMV_KBLK + 8 * ci + 32 * u;
                    wl[u] = load_chunk<false, VEC, true>(w_lo, k, K);
                    wh[u] = load_chunk<false, VEC, true>(w_hi, k, K);
                    xa[0][u] = load_chunk<false, VEC, false>(a_row[0], k, K);
                    xa[1][u] = load_chunk<false, VEC, false>(a_row[1], k, K); // NULL unless two
                }
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    mma_bf16(acc[0], wl[u].x, wh[u].x, wl[u].y, wh[u].y, xa[0][u].x, xa[0][u].y);
                    mma_bf16(acc[0], wl[u].z, wh[u].z, wl[u].w, wh[u].w, xa[0][u].z, xa[0][u].w);
                    if (two) {
                        mma_bf16(acc[1], wl[u].x, wh[u].x, wl[u].y, wh[u].y, xa[1][u].x, xa[1][u].y);
                        mma_bf16(acc[1], wl[u].z, wh[u].z, wl[u].w, wh[u].w, xa[1][u].z, xa[1][u].w);
                    }
                }
            } else {
                // 2 x 16 B per row per lane: k = kb*128 + 16c + 64u, 16 codes each (4 MMAs).
                uint4 wl[2], wh[2], xa[2][2];
#pragma unroll
                for (int u = 0; u < 2; u++) {
                    const int k = kb * GEMV_KBLK + 16 * ci + 64 * u;
                    wl[u] = load_chunk<true, true, true>(w_lo, k, K);
                    wh[u] = load_chunk<true, true, true>(w_hi, k, K);
                    xa[0][u] = load_chunk<true, true, false>(a_row[0], k, K);
                    xa[1][u] = load_chunk<true, true, false>(a_row[1], k, K); // NULL unless two
                }
                const float sw_lo = ws_lo ? __ldg(ws_lo + kb) : 0.0f, sw_hi = ws_hi ? __ldg(ws_hi + kb) : 0.0f;
                float sa[2][2];
#pragma unroll
                for (int t = 0; t < 2; t++)
#pragma unroll
                    for (int j = 0; j < 2; j++) {
                        const int r = out_arow[t][j];
                        sa[t][j] = r >= 0 ? __ldg(act_scale + (size_t)kb * act_rows + r) : 0.0f;
                    }
                float part[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
                for (int u = 0; u < 2; u++)
#pragma unroll
                    for (int q = 0; q < 4; q++) {
                        uint32_t l0, l1, h0, h1, x0, x1;
                        e4m3x4_to_f16(word_of(wl[u], q), l0, l1);
                        e4m3x4_to_f16(word_of(wh[u], q), h0, h1);
                        e4m3x4_to_f16(word_of(xa[0][u], q), x0, x1);
                        mma_f16(part[0], l0, h0, l1, h1, x0, x1);
                        if (two) {
                            e4m3x4_to_f16(word_of(xa[1][u], q), x0, x1);
                            mma_f16(part[1], l0, h0, l1, h1, x0, x1);
                        }
                    }
#pragma unroll
                for (int t = 0; t < 2; t++)
#pragma unroll
                    for (int j = 0; j < 2; j++) {
                        acc[t][j] = fmaf(part[t][j], sa[t][j] * sw_lo, acc[t][j]);
                        acc[t][2 + j] = fmaf(part[t][2 + j], sa[t][j] * sw_hi, acc[t][2 + j]);
                    }
            }
        }

        // Split-K reduction in warp order, then the epilogue in warp 0.
#pragma unroll
        for (int t = 0; t < 2; t++)
#pragma unroll
            for (int i = 0; i < 4; i++) partial[warp][4 * t + i][lane] = acc[t][i];
        __syncthreads();
        if (warp == 0) {
#pragma unroll
            for (int t = 0; t < 2; t++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    float s = partial[0][4 * t + i][lane];
#pragma unroll
                    for (int w = 1; w < GEMV_WARPS; w++) s += partial[w][4 * t + i][lane];
                    acc[t][i] = s;
                }
#pragma unroll
            for (int t = 0; t < 2; t++)
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    const int p = out_pair[t][j];
                    if (p < 0) continue;
                    if (GATE_UP) {
                        if (row_lo < 0) continue;
                        // The reference's roundings: gate_up to bf16, then swiglu.cu's expression.
                        const float gv = round_bf16(acc[t][j]), uv = round_bf16(acc[t][2 + j]);
                        const float silu = gv / (1.0f + expf(-gv));
                        static_cast<__nv_bfloat16 *>(out)[(size_t)p * inter + row_lo] =
                            __float2bfloat16_rn(__fmul_rn(silu, uv));
                    } else {
                        float *y = static_cast<float *>(out) + (size_t)p * n_out;
                        if (row_lo >= 0) y[row_lo] = acc[t][j];
                        if (row_hi >= 0) y[row_hi] = acc[t][2 + j];
                    }
                }
        }
        __syncthreads(); // partial is reused by the next pass
    }
}

// out[t, col] = bf16(residual[t, col] + sum_j w[t, j] * y[row(t, j), col]) over the slots with
// an expert, in slot order, fp32; row(t, j) = pair_row[t*topk + j], or t*topk + j without a
// map. A token with an id >= ne gets NaN (see the header comment).
// V columns per thread: 4 (16-byte loads of y) when hidden % 4 == 0, else 1; the sum per column
// is the same either way. Why 4: with one float per thread the prefill combine (8192 tokens x
// top-4 rows of 8 KB, read through the row map) ran at 1.4 TB/s.
// residual[o] is read before out[o] is written by the same thread (they may alias).
template <int V>
__global__ void __launch_bounds__(COMBINE_THREADS)
combine_pairs(const float *__restrict__ y, const int *__restrict__ pair_row, const int32_t *__restrict__ ids,
              const float *__restrict__ wts, int n, int topk, int ne, int hidden, const uint16_t *residual,
              uint16_t *out)
{
    const int col = (blockIdx.x * COMBINE_THREADS + threadIdx.x) * V;
    if (col >= hidden) return;
    for (int t = blockIdx.y; t < n; t += gridDim.y) {
        float acc[V];
#pragma unroll
        for (int i = 0; i < V; i++) acc[i] = 0.0f;
        bool bad = false;
        for (int j = 0; j < topk; j++) {
            const size_t p = (size_t)t * topk + j;
            const int e = __ldg(ids + p);
            if (e < 0) continue;
            if (e >= ne) {
                bad = true;
                continue;
            }
            const size_t row = pair_row ? (size_t)__ldg(pair_row + p) : p;
            const float w = __ldg(wts + p);
            if constexpr (V == 4) {
                const float4 v = *reinterpret_cast<const float4 *>(y + row * hidden + col);
                acc[0] = fmaf(w, v.x, acc[0]), acc[1] = fmaf(w, v.y, acc[1]);
                acc[2] = fmaf(w, v.z, acc[2]), acc[3] = fmaf(w, v.w, acc[3]);
            } else {
                acc[0] = fmaf(w, y[row * hidden + col], acc[0]);
            }
        }
#pragma unroll
        for (int i = 0; i < V; i++) {
            const size_t o = (size_t)t * hidden + col + i;
            float v = acc[i];
            if (residual) v = __fadd_rn(v, bf16f(residual[o]));
            out[o] = bad ? (uint16_t)0x7fc0 : __bfloat16_as_ushort(__float2bfloat16_rn(v));
        }
    }
}

int launch_combine(dsa_cuda_ctx *c, const float *y, const int *pair_row, const int32_t *ids, const float *weights,
                   int n, int topk, int ne, int hidden, const bf16_t *residual, bf16_t *out)
{
    // y rows are hidden floats in 256-byte aligned scratch: 16-byte aligned when hidden % 4 == 0
    const bool vec = hidden % 4 == 0 && (uintptr_t)y % 16 == 0;
    const int per_block = COMBINE_THREADS * (vec ? 4 : 1);
    const dim3 grid((unsigned)((hidden + per_block - 1) / per_block),
                    (unsigned)(n < 65535 ? n : 65535)); // grid.y's limit: combine_pairs loops over tokens
    const uint16_t *res = reinterpret_cast<const uint16_t *>(residual);
    uint16_t *o = reinterpret_cast<uint16_t *>(out);
    if (vec)
        combine_pairs<4><<<grid, COMBINE_THREADS, 0, c->stream>>>(y, pair_row, ids, weights, n, topk, ne, hidden, res, o);
    else
        combine_pairs<1><<<grid, COMBINE_THREADS, 0, c->stream>>>(y, pair_row, ids, weights, n, topk, ne, hidden, res, o);
    return dsa_cuda_check(c, "moe_experts: combine");
}

// Scratch of the decode path (offsets in bytes, 256-aligned). fp8: also the e4m3 copies of x
// and act with their 1x128 block scales (quant_fp8.cu's layout: scale[kb * rows + row]).
struct SmallLayout {
    size_t n_active, expert, first, count, pairs, act, y, xq, xs, aq, as, total;
};

SmallLayout small_layout(int n, int topk, int hidden, int inter, bool fp8)
{
    const size_t pairs = (size_t)n * topk;
    const size_t kb_h = ((size_t)hidden + 127) / 128, kb_i = ((size_t)inter + 127) / 128;
    SmallLayout L = {};
    size_t off = 0;
    L.n_active = off, off += align256(sizeof(int));
    L.expert = off, off += align256(pairs * sizeof(int));
    L.first = off, off += align256(pairs * sizeof(int));
    L.count = off, off += align256(pairs * sizeof(int));
    L.pairs = off, off += align256(pairs * sizeof(int));
    L.act = off, off += align256(pairs * inter * 2);
    L.y = off, off += align256(pairs * hidden * sizeof(float));
    if (fp8) {
        L.xq = off, off += align256((size_t)n * hidden);
        L.xs = off, off += align256(kb_h * n * sizeof(float));
        L.aq = off, off += align256(pairs * inter);
        L.as = off, off += align256(kb_i * pairs * sizeof(float));
    }
    L.total = off;
    return L;
}

// The scratch the decode path needs, taken without growing it inside a capture.
int small_scratch(dsa_cuda_ctx *c, const char *op, size_t bytes, int n, int topk, int hidden, int inter, void **p)
{
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    int rc = dsa_cuda_status(c, cudaStreamIsCapturing(c->stream, &cs), op);
    if (rc) return rc;
    if (cs != cudaStreamCaptureStatusNone && c->scratch_bytes < bytes)
        return dsa_cuda_fail(c,
                             "%s: the decode path needs %zu bytes of scratch (n = %d, topk = %d, hidden = %d, "
                             "inter = %d) but has %zu, and it cannot grow inside a CUDA graph capture: call "
                             "dsa_cuda_moe_reserve before capturing",
                             op, bytes, n, topk, hidden, inter, c->scratch_bytes);
    return dsa_cuda_scratch(c, bytes, p);
}

template <bool FP8, bool VEC, bool GATE_UP>
int launch_gemv(dsa_cuda_ctx *c, dim3 grid, const PairGroups &g, const ExpertTable &tab, const void *act,
                const float *act_scale, int act_rows, int topk, int K, int n_out, int inter, void *out)
{
    expert_gemv<FP8, VEC, GATE_UP><<<grid, 32 * GEMV_WARPS, 0, c->stream>>>(
        g, tab, static_cast<const uint8_t *>(act), act_scale, act_rows, topk, K, n_out, inter, out);
    return dsa_cuda_check(c, GATE_UP ? "moe_experts: gate_up" : "moe_experts: down");
}

// The decode path. fp8_* say the matrix kind's dtype (all experts alike), vec_* whether bf16
// rows take 16-byte loads (FP8 ones always do).
int experts_small(dsa_cuda_ctx *c, const bf16_t *x, int n, int hidden, const int32_t *ids, const float *weights,
                  int topk, int ne, int inter, const dsa_weight *gate_up, const dsa_weight *down,
                  const bf16_t *residual, bf16_t *out, bool fp8_gu, bool fp8_dn, bool vec_gu, bool vec_dn)
{
    const int pairs = n * topk;
    int rc = DSA_OK;
    void *scratch = NULL;
    SmallLayout L = {};
    if (pairs > 0) {
        L = small_layout(n, topk, hidden, inter, fp8_gu || fp8_dn);
        if ((rc = small_scratch(c, "moe_experts", L.total, n, topk, hidden, inter, &scratch))) return rc;
    }
    uint8_t *base = static_cast<uint8_t *>(scratch);
    float *y = reinterpret_cast<float *>(base + L.y);
    if (pairs > 0) {
        PairGroups g = {reinterpret_cast<int *>(base + L.n_active), reinterpret_cast<int *>(base + L.expert),
                        reinterpret_cast<int *>(base + L.first), reinterpret_cast<int *>(base + L.count),
                        reinterpret_cast<int *>(base + L.pairs)};
        bf16_t *act = reinterpret_cast<bf16_t *>(base + L.act);
        uint8_t *xq = base + L.xq, *aq = base + L.aq;
        float *xs = reinterpret_cast<float *>(base + L.xs), *as = reinterpret_cast<float *>(base + L.as);
        // Host-side tables, passed by value as kernel parameters (a capture copies them).
        ExpertTable tgu, tdn;
        memset(&tgu, 0, sizeof tgu);
        memset(&tdn, 0, sizeof tdn);
        for (int e = 0; e < ne; e++) {
            tgu.data[e] = gate_up[e].data, tgu.scale[e] = gate_up[e].scale;
            tdn.data[e] = down[e].data, tdn.scale[e] = down[e].scale;
        }
        const unsigned max_groups = (unsigned)(ne < pairs ? ne : pairs);

        group_pairs<<<1, GROUP_THREADS, 0, c->stream>>>(ids, pairs, ne, g);
        if ((rc = dsa_cuda_check(c, "moe_experts: grouping"))) return rc;

        const dim3 grid_gu((unsigned)((inter + GU_COLS - 1) / GU_COLS), max_groups);
        if (fp8_gu) {
            if ((rc = dsa_cuda_quant_e4m3_rows(c, c->stream, x, hidden, n, n, hidden, xq, xs))) return rc;
            rc = launch_gemv<true, true, true>(c, grid_gu, g, tgu, xq, xs, n, topk, hidden, inter, inter, act);
        } else if (vec_gu) {
            rc = launch_gemv<false, true, true>(c, grid_gu, g, tgu, x, NULL, n, topk, hidden, inter, inter, act);
        } else {
            rc = launch_gemv<false, false, true>(c, grid_gu, g, tgu, x, NULL, n, topk, hidden, inter, inter, act);
        }
        if (rc) return rc;

        // Rows of act for pairs without an expert hold stale scratch; nothing reads them (the
        // FP8 quantisation does, harmlessly: their codes are never used).
        const dim3 grid_dn((unsigned)((hidden + DN_ROWS - 1) / DN_ROWS), max_groups);
        if (fp8_dn) {
            if ((rc = dsa_cuda_quant_e4m3_rows(c, c->stream, act, inter, pairs, pairs, inter, aq, as))) return rc;
            rc = launch_gemv<true, true, false>(c, grid_dn, g, tdn, aq, as, pairs, topk, inter, hidden, inter, y);
        } else if (vec_dn) {
            rc = launch_gemv<false, true, false>(c, grid_dn, g, tdn, act, NULL, pairs, topk, inter, hidden, inter, y);
        } else {
            rc = launch_gemv<false, false, false>(c, grid_dn, g, tdn, act, NULL, pairs, topk, inter, hidden, inter, y);
        }
        if (rc) return rc;
    }

    return launch_combine(c, y, NULL, ids, weights, n, topk, ne, hidden, residual, out);
}

// The grouped path (B) synchronises: it says so instead of failing inside a capture.
int refuse_capture(dsa_cuda_ctx *c, const char *op)
{
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    int rc = dsa_cuda_status(c, cudaStreamIsCapturing(c->stream, &cs), op);
    if (rc) return rc;
    if (cs != cudaStreamCaptureStatusNone)
        return dsa_cuda_fail(c, "%s: these arguments take the grouped path, which cannot run inside a CUDA graph "
                                "capture (it reads the per-expert token counts back to the host); the decode path, "
                                "which can, takes n * topk <= %d, at most %d experts, and FP8 weights only with "
                                "hidden and inter multiples of 16 and 16-byte aligned data",
                             op, SMALL_MAX_PAIRS, SMALL_MAX_EXPERTS);
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
    rc = dsa_cuda_gemm_ex(c, "moe_router: logits", x, hidden, n, &wr, NULL, logits, ne, 1, NULL, 0, c->stream, c->lt_ws);
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
    // Besides validating: whether each matrix kind is one dtype across experts, and whether all
    // its data is 16-byte aligned (the decode path's 16-byte loads).
    bool same_gu = true, same_dn = true, al_gu = true, al_dn = true;
    for (int e = 0; e < ne; e++) {
        if (!weight_ok(&gate_up[e], 2 * inter, hidden) || !weight_ok(&down[e], hidden, inter))
            return dsa_cuda_fail(c,
                                 "moe_experts: expert %d has gate_up [%d, %d] and down [%d, %d] (dtypes %d, %d), "
                                 "expected [%d, %d] and [%d, %d], with data (and scales if FP8)",
                                 e, gate_up[e].n, gate_up[e].k, down[e].n, down[e].k, gate_up[e].dtype, down[e].dtype,
                                 2 * inter, hidden, hidden, inter);
        same_gu &= gate_up[e].dtype == gate_up[0].dtype, same_dn &= down[e].dtype == down[0].dtype;
        al_gu &= (uintptr_t)gate_up[e].data % 16 == 0, al_dn &= (uintptr_t)down[e].data % 16 == 0;
    }

    // The decode path (A in the header comment) when the pairs are few and the weights suit it.
    const bool fp8_gu = gate_up[0].dtype == DSA_FP8_E4M3, fp8_dn = down[0].dtype == DSA_FP8_E4M3;
    const bool vec_gu = al_gu && hidden % (fp8_gu ? 16 : 8) == 0 && (fp8_gu || (uintptr_t)x % 16 == 0);
    const bool vec_dn = al_dn && inter % (fp8_dn ? 16 : 8) == 0;
    if ((long long)n * topk <= SMALL_MAX_PAIRS && ne <= SMALL_MAX_EXPERTS && same_gu && same_dn &&
        (!fp8_gu || vec_gu) && (!fp8_dn || vec_dn))
        return experts_small(c, x, n, hidden, ids, weights, topk, ne, inter, gate_up, down, residual, out, fp8_gu,
                             fp8_dn, vec_gu, vec_dn);

    int rc = refuse_capture(c, op);
    if (rc) return rc;

    // 1. Tokens per expert, read back to the host (synchronises; see the header comment).
    int *h_counts = (int *)calloc((size_t)ne + 1, sizeof(int));
    // h_offsets [ne + 1], then the grouping of step 2: order [ne], group_start [ne + 1], rows_of [ne]
    int *h_offsets = (int *)calloc(4 * (size_t)ne + 2, sizeof(int));
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

    // 2. Rows per expert, and the scratch plan. FP8 weights: each expert gets its own bucket.
    //    bf16 weights (batched): the experts with pairs, sorted by count, form groups of one
    //    GEMM shape, each member padded to the bucket of the group's largest count
    //    (kernels/moe_groups.c); one pointer-array GEMM per group and phase. At glm-4.7-flash's
    //    ~512 rows per expert and 8192-token chunk there were ~32 distinct buckets per phase,
    //    and the GPU waited on the host's launches, ~9 us each under CUPTI (200K prefill at
    //    a217eb1: 21 gaps of 9.2 us per call); groups (0b476b5) measured at 64K: moe_experts
    //    540 -> 512 ms, idle 157 -> 97 ms.
    const bool batched = !fp8_gu && !fp8_dn && same_gu && same_dn && hidden % 8 == 0 && inter % 8 == 0 &&
                         al_gu && al_dn;
    int *order = h_offsets + ne + 1, *group_start = order + ne, *rows_of = group_start + ne + 1;
    int n_active = 0;
    const int n_groups = dsa_moe_group_experts(h_counts, ne, batched ? GROUP_PAD_DIV : 0, order, group_start,
                                               rows_of, &n_active);
    long long total_rows = 0;
    size_t ws_bytes = 0;
    for (int e = 0; e < ne && !rc; e++) {
        h_offsets[e] = (int)total_rows;
        if (!h_counts[e]) continue;
        const int rows = rows_of[e];
        total_rows += rows;
        size_t a = dsa_cuda_gemm_ws_bytes(c, rows, &gate_up[e], NULL, 2 * inter, 0, NULL);
        size_t b = dsa_cuda_gemm_ws_bytes(c, rows, &down[e], NULL, hidden, 1, NULL);
        if (a > ws_bytes) ws_bytes = a;
        if (b > ws_bytes) ws_bytes = b;
    }
    h_offsets[ne] = (int)total_rows;
    if (!rc && total_rows > 0x7fffffffLL) rc = dsa_cuda_fail(c, "moe_experts: %lld routed rows is too many", total_rows);
    if (!rc) rc = dsa_cuda_side_streams(c);
    if (rc || total_rows == 0) { // no pair has an expert: out = residual, rounded as the reference
        if (!rc) rc = launch_combine(c, NULL, NULL, ids, weights, n, topk, ne, hidden, residual, out);
        free(h_counts), free(h_offsets);
        return rc;
    }

    const size_t R = (size_t)total_rows, ws_each = align256(ws_bytes);
    size_t off = 0;
    // the offsets and (bf16 weights) the GEMMs' pointer arrays: one contiguous upload
    const size_t ptrs_at = align256(((size_t)ne + 1) * sizeof(int));
    const size_t up_bytes = ptrs_at + (batched ? (size_t)PTR_ARRAYS * ne * sizeof(void *) : 0);
    const size_t o_offsets = off; off += align256(up_bytes);
    const size_t o_cursor = off;  off += align256((size_t)ne * sizeof(int));
    const size_t o_tok = off;     off += align256(R * sizeof(int));
    const size_t o_row = off;     off += align256((size_t)pairs * sizeof(int));
    const size_t o_xg = off;      off += align256(R * hidden * 2);
    const size_t o_gu = off;      off += align256(R * 2 * inter * 2);
    const size_t o_h = off;       off += align256(R * inter * 2);
    const size_t o_y = off;       off += align256(R * hidden * sizeof(float));
    const size_t o_ws = off;      off += ws_each * DSA_SIDE_STREAMS;
    if ((rc = dsa_cuda_scratch(c, off, &scratch))) {
        free(h_counts), free(h_offsets);
        return rc;
    }
    uint8_t *base = (uint8_t *)scratch;
    int *d_offsets = (int *)(base + o_offsets), *cursor = (int *)(base + o_cursor), *tok = (int *)(base + o_tok);
    int *pair_row = (int *)(base + o_row);
    float *y = (float *)(base + o_y);
    bf16_t *xg = (bf16_t *)(base + o_xg), *gu = (bf16_t *)(base + o_gu), *h = (bf16_t *)(base + o_h);

    // 3. The rows by expert (and the GEMMs' pointer arrays), and x gathered into them.
    uint8_t *h_up = (uint8_t *)malloc(up_bytes);
    if (!h_up) rc = dsa_cuda_fail(c, "moe_experts: out of host memory");
    else memcpy(h_up, h_offsets, ((size_t)ne + 1) * sizeof(int));
    if (!rc && batched) {
        const void **hp = (const void **)(h_up + ptrs_at); // in group order
        for (int i = 0; i < n_active; i++) {
            const int e = order[i];
            const size_t r0 = (size_t)h_offsets[e];
            hp[0 * ne + i] = xg + r0 * hidden, hp[1 * ne + i] = gate_up[e].data, hp[2 * ne + i] = gu + r0 * 2 * inter;
            hp[3 * ne + i] = h + r0 * inter, hp[4 * ne + i] = down[e].data, hp[5 * ne + i] = y + r0 * hidden;
        }
    }
    // One copy, queued while the stream is idle (just after the counts' sync): a copy from
    // pageable memory first waits for the stream, and returns once the bytes are staged.
    if (!rc)
        rc = dsa_cuda_status(c, cudaMemcpyAsync(base + o_offsets, h_up, up_bytes, cudaMemcpyHostToDevice, c->stream), op);
    free(h_up);
    if (!rc) rc = dsa_cuda_status(c, cudaMemsetAsync(cursor, 0, (size_t)ne * sizeof(int), c->stream), op);
    if (!rc) rc = dsa_cuda_status(c, cudaMemsetAsync(tok, 0xff, R * sizeof(int), c->stream), op);
    if (!rc) {
        list_pairs<<<pair_blocks, PAIR_THREADS, 0, c->stream>>>(ids, pairs, topk, ne, d_offsets, cursor, tok, pair_row);
        rc = dsa_cuda_check(c, "moe_experts: pair list");
    }
    if (!rc) {
        if (hidden % 8 == 0 && (uintptr_t)x % 16 == 0)
            gather_rows<true><<<(unsigned)R, ROW_THREADS, 0, c->stream>>>(tok, x, hidden, xg);
        else
            gather_rows<false><<<(unsigned)R, ROW_THREADS, 0, c->stream>>>(tok, x, hidden, xg);
        rc = dsa_cuda_check(c, "moe_experts: gather");
    }

    // 4. gate_up GEMMs on the side streams, one swiglu, down GEMMs on the side streams.
    //    bf16 weights: the experts whose rows fall in the same bucket share a GEMM shape, and
    //    each such group is one pointer-array batched GEMM (~32 groups of 64 experts at ~512
    //    rows each, measured at 64K: half the launches, and the host no longer falls behind).
    //    FP8 weights: one GEMM per expert (cuBLASLt's block scales take one pointer per matmul).
    //    (One pass per expert, gate_up -> swiglu -> down on its side stream with no barrier
    //    between the phases, measured slower: 200K prefill 20.38 s against 20.14 s, with 46%
    //    more launches and 2.7% tracing overhead against 1.4%.)
    void **dp = (void **)(base + o_offsets + ptrs_at);
    for (int pass = 0; pass < 2 && !rc; pass++) {
        if (pass == 1 && (rc = dsa_cuda_swiglu(c, gu, (int)R, inter, h))) break;
        if ((rc = dsa_cuda_side_fork(c))) break;
        for (int g = 0; batched && g < n_groups && !rc; g++) {
            const int i0 = group_start[g], cnt = group_start[g + 1] - i0, s = g % DSA_SIDE_STREAMS;
            const int rows = rows_of[order[i0]];
            void **a = dp + (pass ? 3 : 0) * ne + i0;
            if (pass == 0)
                rc = dsa_cuda_gemm_ptr_array(c, "moe_experts: gate_up", rows, 2 * inter, hidden, cnt, a, hidden,
                                             a + ne, a + 2 * ne, 2 * inter, 0, c->side[s], c->side_lt_ws[s], c->lt_ws_bytes);
            else
                rc = dsa_cuda_gemm_ptr_array(c, "moe_experts: down", rows, hidden, inter, cnt, a, inter, a + ne,
                                             a + 2 * ne, hidden, 1, c->side[s], c->side_lt_ws[s], c->lt_ws_bytes);
        }
        for (int e = 0, k = 0; !batched && e < ne && !rc; e++) {
            if (!h_counts[e]) continue;
            const int rows = rows_of[e], s = k++ % DSA_SIDE_STREAMS;
            const size_t r0 = (size_t)h_offsets[e];
            void *ws = base + o_ws + ws_each * s;
            if (pass == 0)
                rc = dsa_cuda_gemm_ex(c, "moe_experts: gate_up", xg + r0 * hidden, hidden, rows, &gate_up[e], NULL,
                                      gu + r0 * 2 * inter, 2 * inter, 0, ws, ws_bytes, c->side[s], c->side_lt_ws[s]);
            else
                rc = dsa_cuda_gemm_ex(c, "moe_experts: down", h + r0 * inter, inter, rows, &down[e], NULL,
                                      y + r0 * hidden, hidden, 1, ws, ws_bytes, c->side[s], c->side_lt_ws[s]);
        }
        const int jrc = dsa_cuda_side_join(c); // even after a failure: nothing may stay queued behind
        if (!rc) rc = jrc;
    }

    // 5. out = bf16(residual + the weighted expert rows), in slot order.
    if (!rc) rc = launch_combine(c, y, pair_row, ids, weights, n, topk, ne, hidden, residual, out);
    free(h_counts), free(h_offsets);
    return rc;
}

extern "C" int dsa_cuda_moe_reserve(void *ctx, int max_tokens, int topk, int hidden, int inter)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (max_tokens < 0 || topk < 0 || hidden <= 0 || inter <= 0)
        return dsa_cuda_fail(c, "moe_reserve: max_tokens = %d, topk = %d, hidden = %d, inter = %d", max_tokens, topk,
                             hidden, inter);
    if (max_tokens == 0 || topk == 0 || topk > SMALL_MAX_PAIRS) return DSA_OK; // no decode-path scratch at all
    // The largest n the decode path takes; the layout grows with n, so this covers every smaller
    // one. FP8 parts included: the dtype is not known here, and they are small.
    const int n = max_tokens < SMALL_MAX_PAIRS / topk ? max_tokens : SMALL_MAX_PAIRS / topk;
    void *p = NULL;
    const size_t bytes = small_layout(n, topk, hidden, inter, true).total;
    return small_scratch(c, "moe_reserve", bytes, n, topk, hidden, inter, &p);
}
