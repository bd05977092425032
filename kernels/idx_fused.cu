// kernels/idx_fused.cu — the DSA indexer scores and their exact top-k in one operation that never
// writes the score matrix (kernels/ops.h: idx_fused_prefill, idx_fused_decode).
//
// Result contract: out[i] = the index SET that idx_logits followed by topk gives for row i (ties to
// the lower index, -1 padding), written in an arbitrary order as the CUDA topk does (the sparse
// attention that consumes it does not depend on the order). The scores are computed by the same
// kernel as idx_logits (idx_logits_core.cuh, an epilogue policy decides what happens to them), so
// they are bit-identical, and the selection is exact on 64-bit composites
//   c = order_key(score) << 32 | ~index
// (topk_core.cuh: NaN lowest as the reference ranks it, -0 == +0); the reference's order (score
// desc, index asc) is c descending, and every c of a row is distinct, so "the k best" is one
// threshold on c with no tie left to break.
//
// The idea is kernels/topk.cu's: a threshold tau guessed from a sample of the row, one pass that
// keeps the scores >= tau, an exact selection among the few it kept. Here the pass is the score
// computation itself, so the scores never leave the SM unless they pass. Why it is exact: if at
// least k keys of row i score >= tau_i, the row's top k all score >= tau_i (the k-th best is >= tau_i),
// so the top k of the kept keys are the row's; when fewer than k pass, or more than the selection
// holds, the row is recomputed densely (below). Nothing depends on the data but the speed.
//
// Pipeline (one stream, no host sync, graph-capturable once the scratch is reserved):
//   1. gather_samples: the key rows at m sample positions of [0, S) (topk_core.cuh sample_position;
//      S = the first row's length, which every row has), m / 32 chunks of 32 centred in equal
//      strata, copied to a small contiguous cache (<= 540 KB; per request in decode). m =
//      sample_count: topk_core.cuh's kSamples = 4096, or 2048 where every row still gets a rank
//      j >= 80 (rows up to ~100K keys for k = 2048).
//   2. Sample scores: the idx_logits kernel (StoreScores) on that cache -> [rows, m] fp32, ~3% of
//      the main pass's MMA work at 64K and at 200K.
//   3. row_thresholds: per row, tau = the exact key of the j-th best sample (topk_core.cuh kth_key),
//      j = sample_rank(len, k, cap, m): 2.5 k keys of the row, or cap / 2, are expected at or above it.
//   4. The main pass: the idx_logits kernel on every key with the AppendSurvivors epilogue: a score
//      >= tau is appended as (score, index) to a list of its own (row, key chunk, consumer lane),
//      whose length lives in a register: one compare and a predicated store per score, no ballots
//      or atomics (see AppendSurvivors for what those cost). Nothing else is stored.
//   5. select_final: per row, the lists' k <= n <= kFinalCap candidates into shared memory, then
//      topk_core.cuh's resolve_candidates (two radix passes for continuous scores). Three blocks
//      per SM. A row with fewer than k candidates, more than kFinalCap or a full list is flagged.
//   6. Fallback, for flagged rows only (two launches that exit at once when none is flagged): the
//      idx_logits kernel again, StoreScores, for each query tile holding a flagged row, into that
//      row's own list space (dead by then: it holds n_keys floats), then topk.cu on those rows
//      (dsa_cuda_topk_flagged).
//      Same kernel, same scores: still bit-identical. Seen only on adversarial data (equal scores
//      everywhere, scores that peak exactly at the sample positions); each such row costs about
//      a dense row of the unfused pair. dsa_cuda_idx_fused_fallback_rows counts them.
// Calls whose rows are short (S below what sampling needs: sample_rank = 0) or with heads > 64
// (idx_logits' CUDA-core kernel) take the dense path: the unfused pair, every score into scratch
// and dsa_cuda_topk.
//
// Measured on the H200 (ncu, 4096 queries; `dsa-bench kernels -k idx_fused_prefill`), in us:
//                      32 heads        64 heads
//                      64K    200K     64K    200K   keys
//   gather_samples        4      4        4      4
//   sample scores        95    184      169    302    (2048 / 4096 samples)
//   row_thresholds       35     44       35     44
//   main pass          2230   6810     4210  12970    (idx_logits storing every score: 2300 / 6910 /
//                                                      4170 / 12670)
//   select_final        172    173      173    173
//   fallback, idle       13     13       15     16    (one StoreScores launch, one topk)
// against the unfused pair's topk of 520 / 1070 us: idx_fused 2549 / 7228 / 4606 / 13509 us, the pair
// 2820 / 7980 / 4691 / 13740. The fixed stages cost less than the top-k; at 64 heads the main pass,
// 1-2% slower than the plain kernel, gives back most of that (the two differ only in the epilogue).
// Before the survivor store stopped being a branch (AppendSurvivors::append) the main pass took
// 2.61 / 4.65 ms at 64K. select_final is mostly its selection passes, not its loads (cp.async
// instead of register loads took it from 196 to 192 us; 512 threads instead of 256 from 187 to 172).
//
// Decode (B requests, one query each) runs the same pipeline with one query per tile (the idx_logits
// decode kernel shape) and its per-request cache stride.
#include <cub/block/block_scan.cuh>
#include <limits.h>
#include <math.h>

#include "cuda_ops.h"
#include "idx_logits_core.cuh"
#include "smem_optin.cuh"
#include "topk_core.cuh"

namespace {

// ---- main pass epilogue: survivors of the threshold into lists ---------------------------------

// Prefill tiles (QB > 1): one list per (row, key chunk, consumer lane of a query): lane (g, t) of
// consumer warp w holds keys 16 w + g and 16 w + g + 8 of every tile for queries t * QPL + i, so it
// appends to its own lists with a length kept in a register: per score one compare and a predicated
// store, no ballots, no atomics. The score kernel is issue-bound (the relu-weighted head sums), so
// every instruction of the epilogue shows: a shared-memory counter per query (an atomic per
// survivor) made the pass 12-23% slower than storing every score, warp ballots 8-11% (ncu, 4096
// queries, 32 heads, 64K / 200K keys: 3165 / 8660 and 2843 / 8293 us against StoreScores' 2565 /
// 7728). Survivors are stored as (score bits, index); select_final forms the composites.
// Decode tiles (QB == 1: every lane has the same query): one list per (row, chunk), slots from one
// shared atomic per warp; decode is memory-bound and has the slack for it.
constexpr int CONSUMER_WARPS = CONSUMER_THREADS / 32;
__host__ __device__ constexpr int lists_per_chunk(int qb) { return qb == 1 ? 1 : CONSUMER_WARPS * 8; }

template <int QB> struct AppendSurvivors {
    struct Args {
        const float *thr; // [rows]: row r keeps scores >= thr[r] (never NaN; -inf keeps every number)
        uint2 *segs;      // list l of (row r, chunk c) at segs + ((r * n_chunks + c) * LPC + l) * cap
        int *counts;      // [rows, n_chunks, LPC]: survivors of each list (may exceed cap: then only
                          // cap are stored, and select_final flags the row)
        int n_chunks, cap;
    };
    static constexpr int LPC = lists_per_chunk(QB);
    static constexpr int QPL = QB == 1 ? 1 : QB / 4; // queries per lane
    static constexpr int kSmemBytes = (int)sizeof(uint32_t); // decode: the list length
    const IdxParams &p;
    const Args &a;
    const int q0, q_count;
    uint32_t *list_len = nullptr;
    float thr[QPL];
    int last[QPL];      // the lane's queries see keys <= last (causal limit and chunk end)
    uint2 *dst[QPL];    // the lane's list of each of its queries (decode: the row's list)
    uint32_t len[QPL];  // QB > 1: ... and its length
    __device__ __forceinline__ AppendSurvivors(const IdxParams &p_, const Args &a_, int q0_, int q_count_)
        : p(p_), a(a_), q0(q0_), q_count(q_count_)
    {
    }

    __device__ __forceinline__ size_t list_id(int q, int l) const
    {
        return ((size_t)(q0 + q) * a.n_chunks + grid_chunk<QB>()) * LPC + l;
    }
    // this consumer thread's list among a query's LPC (QB > 1): (warp, g)
    __device__ __forceinline__ static int lane_list(int ctid) { return (ctid >> 5) * 8 + ((ctid & 31) >> 2); }
    __device__ __forceinline__ size_t list(int q, int l) const { return list_id(q, l) * a.cap; }

    __device__ __forceinline__ void skipped_chunk(int, int, int tid, int nthreads) const
    {
        for (int i = tid; i < q_count * LPC; i += nthreads)
            a.counts[list_id(i / LPC, i % LPC)] = 0;
    }

    // Per-query constants of the block, so that the per-score work is two compares.
    __device__ __forceinline__ void begin(int ctid, uint8_t *smem)
    {
        list_len = (uint32_t *)smem;
        if (ctid == 0) list_len[0] = 0; // the kernel's consumer barrier follows
        const int t = ctid & 3;
        const long long lim = min((long long)grid_chunk<QB>() * p.chunk_keys + p.chunk_keys, (long long)p.n_keys);
        #pragma unroll
        for (int i = 0; i < QPL; i++) {
            const int q = QB == 1 ? 0 : t * QPL + i;
            const bool real = q < q_count;
            thr[i] = real ? a.thr[q0 + q] : INFINITY;
            last[i] = real ? (int)min(p.allowed(q0 + q), lim - 1) : -1;
            dst[i] = a.segs + (real ? list(q, QB == 1 ? 0 : lane_list(ctid)) : 0);
            len[i] = 0;
        }
    }

    // QB == 1 (decode): quad lane 0 owns key_a, lane 1 key_b.
    __device__ __forceinline__ void put1(int t, int key_a, int key_b, float v0, float v1, float kscale0,
                                         float kscale1, int lim) const
    {
        const int lane = threadIdx.x & 31;
        const int key = t ? key_b : key_a;
        const float v = t ? v1 * kscale1 : v0 * kscale0; // the StoreScores expression: same rounding
        const bool kept = t < 2 && key <= last[0] && v >= thr[0];
        const uint32_t ballot = __ballot_sync(0xffffffffu, kept);
        if (!ballot) return;
        uint32_t base = 0;
        if (lane == 0) base = atomicAdd(&list_len[0], (uint32_t)__popc(ballot));
        const uint32_t slot = __shfl_sync(0xffffffffu, base, 0) + __popc(ballot & ((1u << lane) - 1u));
        if (kept && slot < (uint32_t)a.cap) dst[0][slot] = make_uint2(__float_as_uint(v), (uint32_t)key);
    }

    // QB > 1: lane t owns queries t*QPL + i; the 8 lanes of equal t (one per g) share them.
    template <int N>
    __device__ __forceinline__ void putq(int t, const float (&tot0)[N], const float (&tot1)[N], float kscale0,
                                         float kscale1, int key_a, int key_b, int lim)
    {
        static_assert(N == QPL, "queries per lane");
        #pragma unroll
        for (int i = 0; i < QPL; i++) {
            const float va = tot0[i] * kscale0, vb = tot1[i] * kscale1; // StoreScores' expressions
            const bool keep_a = key_a <= last[i] && va >= thr[i]; // last = -1 for padding queries
            append(dst[i], len[i], keep_a, va, key_a);
            const bool keep_b = key_b <= last[i] && vb >= thr[i];
            append(dst[i], len[i], keep_b, vb, key_b);
        }
    }
    // A predicated store (PTX, so that the compiler cannot turn it into a branch): ~6% of the
    // lanes keep a score, so a branch around the store diverges nearly every warp, and the warp
    // must reconverge for the next tile's .sync.aligned wgmma. ncu, 4096 queries, 64K keys, 32 /
    // 64 heads: with the branch, 13.5K divergent branches per SM (branch efficiency 48% / 63%)
    // and 2.61 / 4.65 ms, slower than StoreScores (2.55 / 4.47 ms) while issuing fewer
    // instructions; predicated, 2.26 / 4.27 ms, no divergence.
    __device__ __forceinline__ void append(uint2 *list, uint32_t &n, bool keep, float v, int key) const
    {
        const uint32_t do_store = keep && n < (uint32_t)a.cap;
        asm volatile("{\n.reg .pred p;\nsetp.ne.u32 p, %0, 0;\n@p st.global.v2.u32 [%1], {%2, %3};\n}\n" ::"r"(do_store),
                     "l"(list + n), "r"(__float_as_uint(v)), "r"((uint32_t)key));
        n += keep;
    }

    __device__ __forceinline__ void end(int, int, int ctid) const
    {
        if constexpr (QB == 1) {
            consumer_sync(); // every warp's slots are taken
            if (ctid == 0 && q_count > 0) a.counts[list_id(0, 0)] = (int)list_len[0];
        } else {
            const int t = ctid & 3;
            #pragma unroll
            for (int i = 0; i < QPL; i++)
                if (t * QPL + i < q_count) a.counts[list_id(t * QPL + i, lane_list(ctid))] = (int)len[i];
        }
    }
};

// ---- the samples and the thresholds -------------------------------------------------------------

// Block (c, g) copies the kSampleChunkLen key rows of sample chunk c (of gridDim.x) of cache g
// (cache + g * stride) to dst + g * m * KEY_BYTES, m = gridDim.x * kSampleChunkLen samples, as
// 4-byte words (key rows are 4-byte aligned): 4 KB per block, ~4 loads per thread, all in flight
// (one block per cache took ~100 us of dependent loads).
constexpr int GATHER_THREADS = 256;
__global__ void __launch_bounds__(GATHER_THREADS) gather_samples(const uint8_t *__restrict__ cache, size_t stride,
                                                                 int s_len, uint8_t *__restrict__ dst)
{
    constexpr int kWords = kSampleChunkLen * KEY_WORDS;
    const size_t m = (size_t)gridDim.x * kSampleChunkLen;
    const uint8_t *src = cache + (size_t)blockIdx.y * stride;
    uint32_t *d = (uint32_t *)(dst + ((size_t)blockIdx.y * m + (size_t)blockIdx.x * kSampleChunkLen) * KEY_BYTES);
    // the chunk's rows are consecutive keys: one contiguous run of words
    const uint32_t *s =
        (const uint32_t *)(src + (size_t)sample_position(blockIdx.x * kSampleChunkLen, s_len, gridDim.x) * KEY_BYTES);
    for (int i = threadIdx.x; i < kWords; i += GATHER_THREADS) d[i] = __ldg(s + i);
}

constexpr int THR_THREADS = 256;
constexpr int kFinalCap = 8192; // select_final's candidates in shared memory (64 KB: three blocks per SM)

// thr[r] = tau as a float (threshold_float: never NaN) of row r's j-th best of its M sample
// scores (sscores + r * M), j = sample_rank(len_r, k, kFinalCap, M); -inf when j = 0.
template <int M>
__global__ void __launch_bounds__(THR_THREADS) row_thresholds(const float *__restrict__ sscores, long long len0,
                                                              int len_step, int n_keys, int k, float *__restrict__ thr)
{
    __shared__ SelectShared<THR_THREADS> sh;
    constexpr int kPer = M / THR_THREADS;
    const int r = blockIdx.x;
    const uint32_t rank = sample_rank(row_len(r, n_keys, len0, len_step), k, kFinalCap, M);
    if (!rank) { // uniform over the block
        if (threadIdx.x == 0) thr[r] = -INFINITY;
        return;
    }
    uint32_t key[kPer];
    #pragma unroll
    for (int u = 0; u < kPer; u++) key[u] = order_key(__ldg(sscores + (size_t)r * M + u * THR_THREADS + threadIdx.x));
    const uint32_t tau = kth_key<THR_THREADS, kPer>(sh, key, rank);
    if (threadIdx.x == 0) thr[r] = threshold_float(tau);
}

// ---- the exact top-k of each row's survivors ----------------------------------------------------

// 512 threads, three blocks per SM (40 registers, 64 KB of candidates each): ncu, 4096 rows of
// 64K keys, 172 us against 187 with 256 threads (the selection passes are latency-bound).
constexpr int FINAL_THREADS = 512;
constexpr int FINAL_MIN_BLOCKS = 3;
constexpr int MAX_LISTS = 256; // lists per row (<= FINAL_THREADS: one count per thread in the scan)

struct FinalArgs {
    const uint2 *segs;  // row r's list j at segs + (r * n_lists + j) * cap: (score bits, index)
    const int *counts;  // [rows, n_lists]
    int n_lists, cap;
    long long len0; // row r has len0 + len_step * r keys, clipped to [0, n_keys]
    int len_step, n_keys, k;
    int32_t *out;          // [rows, k]
    int *failed;           // [rows]: 1 = flagged for the dense fallback, else 0 (every row is written)
    unsigned long long *fallback_rows; // the context's running count of flagged rows
};

__device__ __forceinline__ void cp_async8(void *smem_dst, const void *src)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(smem_addr(smem_dst)), "l"(src) : "memory");
}

__global__ void __launch_bounds__(FINAL_THREADS, FINAL_MIN_BLOCKS) select_final(const FinalArgs a)
{
    constexpr int T = FINAL_THREADS;
    static_assert(T >= MAX_LISTS, "one list count per thread");
    __shared__ SelectShared<T> sh;
    __shared__ int list_off[MAX_LISTS + 1];
    __shared__ int list_full;
    extern __shared__ uint2 cand[]; // kFinalCap (key, index)
    const int r = blockIdx.x, tid = threadIdx.x;
    const int len = row_len(r, a.n_keys, a.len0, a.len_step), k = a.k;
    int32_t *out = a.out + (size_t)r * k;
    if (len <= k) { // every key (NaN ones too), then -1
        write_all<T>(out, len, k);
        if (tid == 0) a.failed[r] = 0;
        return;
    }
    if (tid == 0) list_full = 0;
    __syncthreads();
    uint32_t n = 0, off, total;
    if (tid < a.n_lists) {
        n = (uint32_t)a.counts[(size_t)r * a.n_lists + tid];
        if (n > (uint32_t)a.cap) list_full = 1;
    }
    cub::BlockScan<uint32_t, T, cub::BLOCK_SCAN_WARP_SCANS>(sh.scan).ExclusiveSum(n, off, total);
    if (tid < a.n_lists) list_off[tid] = (int)off;
    if (tid == 0) list_off[a.n_lists] = (int)total;
    __syncthreads();
    if (total < (uint32_t)k || total > (uint32_t)kFinalCap || list_full) { // uniform
        if (tid == 0) {
            a.failed[r] = 1;
            atomicAdd(a.fallback_rows, 1ull);
        }
        return;
    }
    if (tid == 0) a.failed[r] = 0;
    // candidates -> shared memory: every entry of every list copied at once with 8-byte cp.async
    // (a warp per list, a lane per entry: no registers hold them, so nothing limits the copies in
    // flight but the memory system), then the score bits turned into topk_core's keys in place.
    // Keeping the loads in registers allowed 8 lists per warp in flight: 196 us for 4096 rows at
    // 64K keys (ncu), for ~170 MB.
    constexpr int kWarps = T / 32;
    const int warp = tid >> 5, lane = tid & 31;
    const uint2 *row_lists = a.segs + (size_t)r * a.n_lists * a.cap;
    for (int l = warp; l < a.n_lists; l += kWarps) {
        const int off = list_off[l], n = list_off[l + 1] - off;
        for (int j = lane; j < n; j += 32) cp_async8(cand + off + j, row_lists + (size_t)l * a.cap + j);
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncthreads();
    uint32_t lo = 0xFFFFFFFFu, hi = 0u; // the key range, for the selection's first digit
    for (uint32_t j = tid; j < total; j += T) {
        const uint32_t key = order_key(__uint_as_float(cand[j].x));
        cand[j].x = key;
        lo = key < lo ? key : lo;
        hi = key > hi ? key : hi;
    }
    __syncthreads();
    resolve_candidates_in_range<T>(sh, cand, total, lo, hi, len, k, out);
}

// ---- plan and launch -------------------------------------------------------------------------

struct FusedPlan {
    bool dense;                // every score into scratch, one selection (no sampling)
    int hp, qb;                // heads padded; queries per tile (prefill 256 / hp, decode 1)
    int groups;                // sample caches: 1 (prefill) or one per request (decode)
    int n_chunks, chunk_tiles; // main pass: key chunks, tiles per chunk
    int n_lists, cap;          // lists per row (n_chunks * lists_per_chunk), capacity of one
    int samples;               // m: the sample count (sample_count)
    size_t thr_off, failed_off, counts_off, samples_off, sscores_off, big_off, bytes; // scratch layout
};

size_t align_up(size_t x) { return (x + 255) & ~(size_t)255; }

// The sample count m for rows of at most len_max keys: kSamples, or half of it where that still
// gives every row a rank j >= kHalfSamplesMinRank. The spread of the threshold's count is ~1/sqrt(j)
// (topk_core.cuh sample_rank); 83 is the j that kSamples give at 200K keys (capped by kFinalCap / 2
// expected), so halving where j stays >= 80 accepts no wider spread than the longest rows already
// do. It halves the sample scores and the threshold selection: at 64K keys j goes from 256 to 128.
constexpr uint32_t kHalfSamplesMinRank = 80;
int sample_count(int len_max, int k)
{
    return sample_rank(len_max, k, kFinalCap, kSamples / 2) >= kHalfSamplesMinRank ? kSamples / 2 : kSamples;
}

// s_len: the first row's length (every row has at least it), the range the samples come from;
// len_max: the longest row's.
FusedPlan make_plan(int rows, int heads, int n_keys, int s_len, int len_max, int k, bool decode, int sms)
{
    FusedPlan P = {};
    P.hp = heads <= 16 ? 16 : heads <= 32 ? 32 : 64;
    P.qb = decode ? 1 : PREFILL_N / P.hp;
    P.groups = decode ? rows : 1;
    P.dense = heads > 64 || sample_rank(s_len, k, kFinalCap) == 0;
    size_t big = (size_t)rows * (size_t)n_keys * sizeof(float); // dense scores
    P.samples = P.dense ? 0 : sample_count(len_max, k);
    if (!P.dense) {
        const long long query_tiles = ceil_div(rows, P.qb), key_tiles = ceil_div(n_keys, KEY_TILE);
        long long chunk =
            decode ? decode_chunk_tiles(rows, key_tiles, sms) : prefill_chunk_tiles(query_tiles, key_tiles, sms);
        const int lpc = lists_per_chunk(P.qb);
        const long long min_chunk = ceil_div(key_tiles * lpc, MAX_LISTS);
        if (chunk < min_chunk) chunk = min_chunk;
        P.chunk_tiles = (int)ceil_div(key_tiles, ceil_div(key_tiles, chunk)); // as many chunks, evened out
        P.n_chunks = (int)ceil_div(key_tiles, P.chunk_tiles);                // the grid launch_wgmma makes
        P.n_lists = P.n_chunks * lpc;
        // A list holds what its lane(s) see of the chunk (it cannot overflow), or less when that
        // exceeds select_final's share (kFinalCap / lpc: past it the row is flagged anyway, the
        // prefill lanes seeing 2 keys of every tile). Row r's lists, n_lists * cap entries of 8 B,
        // also hold its n_keys fp32 scores for the fallback: cap >= chunk / (2 lpc).
        const int chunk_keys = P.chunk_tiles * KEY_TILE, seen = chunk_keys / lpc;
        P.cap = seen < kFinalCap / lpc ? seen : kFinalCap / lpc;
        if (P.cap < (seen + 1) / 2) P.cap = (seen + 1) / 2;
        big = (size_t)rows * P.n_lists * P.cap * sizeof(uint2);
    }
    P.thr_off = 0;
    P.failed_off = align_up(P.thr_off + (size_t)rows * sizeof(float));
    P.counts_off = align_up(P.failed_off + (size_t)rows * sizeof(int));
    P.samples_off = align_up(P.counts_off + (size_t)rows * P.n_lists * sizeof(int));
    P.sscores_off = align_up(P.samples_off + (size_t)P.groups * P.samples * KEY_BYTES);
    P.big_off = align_up(P.sscores_off + (size_t)rows * P.samples * sizeof(float));
    P.bytes = P.big_off + big;
    return P;
}

// Scratch of the plan; inside a graph capture the scratch must already be large enough.
int take_scratch(dsa_cuda_ctx *c, const char *op, size_t bytes, uint8_t **p)
{
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (int rc = dsa_cuda_status(c, cudaStreamIsCapturing(c->stream, &cs), op)) return rc;
    if (cs != cudaStreamCaptureStatusNone && c->scratch_bytes < bytes)
        return dsa_cuda_fail(c,
                             "%s: needs %zu bytes of scratch, %zu reserved: reserve "
                             "dsa_cuda_idx_fused_scratch_bytes() before capturing",
                             op, bytes, c->scratch_bytes);
    void *v = nullptr;
    int rc = dsa_cuda_scratch(c, bytes, &v);
    *p = (uint8_t *)v;
    return rc;
}

int launch_final(dsa_cuda_ctx *c, const FinalArgs &a, int rows, const char *op)
{
    const int smem = kFinalCap * (int)sizeof(uint2);
    // three blocks per SM need the whole L1/shared array as shared memory
    if (int rc = smem_optin<select_final>(c, smem, true, op)) return rc;
    select_final<<<rows, FINAL_THREADS, smem, c->stream>>>(a);
    return dsa_cuda_check(c, op);
}

// The idx_logits kernel of this plan's tile shape with epilogue Epi.
template <template <int> class Epi>
int launch_logits(dsa_cuda_ctx *c, const FusedPlan &P, bool decode, const IdxParams &prm,
                  const typename Epi<1>::Args &args1, const typename Epi<PREFILL_N / 16>::Args &args16,
                  const typename Epi<PREFILL_N / 32>::Args &args32, const typename Epi<PREFILL_N / 64>::Args &args64,
                  int chunk_tiles, const char *op)
{
    constexpr int DS = DECODE_STAGES, DB = DECODE_BLOCKS_PER_SM;
    if (decode) {
        if (P.hp == 16) return launch_wgmma<16, 1, DS, DB, Epi>(c, prm, args1, chunk_tiles, op);
        if (P.hp == 32) return launch_wgmma<32, 1, DS, DB, Epi>(c, prm, args1, chunk_tiles, op);
        return launch_wgmma<64, 1, DS, DB, Epi>(c, prm, args1, chunk_tiles, op);
    }
    if (P.hp == 16) return launch_wgmma<16, PREFILL_N / 16, PREFILL_STAGES, 1, Epi>(c, prm, args16, chunk_tiles, op);
    if (P.hp == 32) return launch_wgmma<32, PREFILL_N / 32, PREFILL_STAGES, 1, Epi>(c, prm, args32, chunk_tiles, op);
    return launch_wgmma<64, PREFILL_N / 64, PREFILL_STAGES, 1, Epi>(c, prm, args64, chunk_tiles, op);
}

// Dense scores of rows (all, or the flagged ones' query tiles) into dst, row i at dst + i * ld.
int launch_store(dsa_cuda_ctx *c, const FusedPlan &P, bool decode, IdxParams prm, float *dst, size_t ld,
                 long long chunk_tiles, const char *op)
{
    prm.scores = dst;
    prm.ld = ld;
    if (prm.heads > 64) return launch_generic(c, prm, op);
    return launch_logits<StoreScores>(c, P, decode, prm, {}, {}, {}, {}, (int)chunk_tiles, op);
}

// Both ops: rows queries (prefill: positions q_pos0 + i, one cache; decode: one per request, each
// with its cache at cache + b * cache_stride and every key visible).
int run_fused(dsa_cuda_ctx *c, const char *op, const uint8_t *q, const float *w, int rows, int heads,
              const uint8_t *cache, size_t cache_stride, int n_keys, int q_pos0, bool decode, int k, int32_t *out)
{
    const long long len0 = decode ? (long long)n_keys : (long long)q_pos0 + 1;
    const int len_step = decode ? 0 : 1;
    // rows grow (prefill) or are equal: the first is the shortest, the last the longest
    const int len_first = row_len(0, n_keys, len0, len_step), len_max = row_len(rows - 1, n_keys, len0, len_step);
    const FusedPlan P = make_plan(rows, heads, n_keys, len_first, len_max, k, decode, c->sms);
    if (ceil_div(rows, P.qb) > 65535 || (heads > 64 && rows > 65535))
        return dsa_cuda_fail(c, "%s: %d queries is more than one launch covers", op, rows);
    uint8_t *scratch = nullptr;
    if (int rc = take_scratch(c, op, P.bytes, &scratch)) return rc;
    float *thr = (float *)(scratch + P.thr_off);
    int *failed = (int *)(scratch + P.failed_off);
    int *counts = (int *)(scratch + P.counts_off);
    uint8_t *samples = scratch + P.samples_off;
    float *sscores = (float *)(scratch + P.sscores_off);
    float *scores = (float *)(scratch + P.big_off); // dense path
    uint2 *segs = (uint2 *)(scratch + P.big_off);   // sampled path

    // query i may see keys s <= q_pos0 + i (prefill) or all n_keys (decode)
    const long long pos0 = decode ? (long long)n_keys - 1 : q_pos0;
    const size_t stride = decode && rows > 1 ? cache_stride : 0;
    const IdxParams all = {q, w, cache, stride, nullptr, 0, rows, heads, n_keys, pos0, len_step, 0};
    const long long key_tiles = ceil_div(n_keys, KEY_TILE);

    if (P.dense) { // the unfused pair: every score, then topk.cu
        if (n_keys > 0) {
            const long long chunk = decode ? decode_chunk_tiles(rows, key_tiles, c->sms)
                                           : prefill_chunk_tiles(ceil_div(rows, P.qb), key_tiles, c->sms);
            if (int rc = launch_store(c, P, decode, all, scores, (size_t)n_keys, chunk, op)) return rc;
        }
        return dsa_cuda_topk(c, scores, rows, n_keys, (int)len0, len_step, k, out);
    }
    // 1-3. samples, their scores, each row's threshold
    const int s_len = len_first; // the range the samples come from (the plan took it as such)
    const int m = P.samples;
    gather_samples<<<dim3(m / kSampleChunkLen, P.groups), GATHER_THREADS, 0, c->stream>>>(
        cache, decode ? cache_stride : 0, s_len, samples);
    if (int rc = dsa_cuda_check(c, op)) return rc;
    const IdxParams smp = {q, w, samples, decode ? (size_t)m * KEY_BYTES : 0, nullptr, 0, rows, heads,
                           m, m, 0, 0}; // every sample visible to every query
    const long long s_tiles = m / KEY_TILE;
    const long long s_chunk = decode ? decode_chunk_tiles(rows, s_tiles, c->sms)
                                     : prefill_chunk_tiles(ceil_div(rows, P.qb), s_tiles, c->sms);
    if (int rc = launch_store(c, P, decode, smp, sscores, (size_t)m, s_chunk, op)) return rc;
    if (m == kSamples)
        row_thresholds<kSamples><<<rows, THR_THREADS, 0, c->stream>>>(sscores, len0, len_step, n_keys, k, thr);
    else
        row_thresholds<kSamples / 2><<<rows, THR_THREADS, 0, c->stream>>>(sscores, len0, len_step, n_keys, k, thr);
    if (int rc = dsa_cuda_check(c, op)) return rc;
    // 4. survivors of every key
    const AppendSurvivors<1>::Args a1 = {thr, segs, counts, P.n_chunks, P.cap};
    const AppendSurvivors<PREFILL_N / 16>::Args a16 = {thr, segs, counts, P.n_chunks, P.cap};
    const AppendSurvivors<PREFILL_N / 32>::Args a32 = {thr, segs, counts, P.n_chunks, P.cap};
    const AppendSurvivors<PREFILL_N / 64>::Args a64 = {thr, segs, counts, P.n_chunks, P.cap};
    if (int rc = launch_logits<AppendSurvivors>(c, P, decode, all, a1, a16, a32, a64, P.chunk_tiles, op)) return rc;
    // 5. the exact top-k of the survivors
    const FinalArgs fin = {segs,  counts, P.n_lists, P.cap, len0, len_step, n_keys, k, out, failed,
                           (unsigned long long *)c->idx_fused_fallback_rows};
    if (int rc = launch_final(c, fin, rows, op)) return rc;
    // 6. the flagged rows, densely: their scores into their own list space (row i's lists hold
    //    n_lists * cap entries of 8 B >= n_keys floats), one block per query tile; then topk.cu
    const size_t ld = (size_t)P.n_lists * P.cap * 2;
    IdxParams redo = all;
    redo.row_flags = failed;
    if (int rc = launch_store(c, P, decode, redo, (float *)segs, ld, key_tiles, op)) return rc;
    return dsa_cuda_topk_flagged(c, (const float *)segs, rows, (int)ld, (int)len0, len_step, k, failed, out);
}

} // namespace

extern "C" size_t dsa_cuda_idx_fused_scratch_bytes(void *ctx, int rows, int heads, int n_keys, int k, int decode)
{
    const dsa_cuda_ctx *c = (const dsa_cuda_ctx *)ctx;
    if (!c || rows <= 0 || heads <= 0 || n_keys < 0 || k <= 0) return 0;
    // the larger of the two paths: which one runs depends on the first row's length
    // (the most samples: kSamples, for rows that long)
    const size_t dense = make_plan(rows, heads, n_keys, 0, 0, k, decode != 0, c->sms).bytes;
    const size_t sampled = make_plan(rows, heads, n_keys, n_keys, INT_MAX, k, decode != 0, c->sms).bytes;
    return dense > sampled ? dense : sampled;
}

extern "C" unsigned long long dsa_cuda_idx_fused_fallback_rows(void *ctx)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    unsigned long long n = 0;
    if (!c || cudaMemcpy(&n, c->idx_fused_fallback_rows, sizeof n, cudaMemcpyDeviceToHost) != cudaSuccess) return 0;
    return n;
}
extern "C" int dsa_cuda_idx_fused_prefill(void *ctx, const uint8_t *q_fp8, const float *w, int n, int heads,
                                          const uint8_t *idx_cache, int n_keys, int q_pos0, int k, int32_t *out)
{
    const char *op = "idx_fused_prefill";
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (!c) return DSA_EOP;
    if (int rc = check_prefill_shape(c, op, n, heads, n_keys, q_pos0)) return rc;
    if (k < 0) return dsa_cuda_fail(c, "%s: k = %d < 0", op, k);
    if (n == 0 || k == 0) return DSA_OK;
    if (!q_fp8 || !w || !idx_cache || !out) return dsa_cuda_fail(c, "%s: null pointer", op);
    if (int rc = check_alignment(c, op, q_fp8, idx_cache)) return rc;
    return run_fused(c, op, q_fp8, w, n, heads, idx_cache, 0, n_keys, q_pos0, false, k, out);
}

extern "C" int dsa_cuda_idx_fused_decode(void *ctx, const uint8_t *q_fp8, const float *w, int batch, int heads,
                                         const uint8_t *idx_cache, size_t cache_stride, int n_keys, int k,
                                         int32_t *out)
{
    const char *op = "idx_fused_decode";
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (!c) return DSA_EOP;
    if (int rc = check_decode_shape(c, op, batch, heads, n_keys)) return rc;
    if (k < 0) return dsa_cuda_fail(c, "%s: k = %d < 0", op, k);
    if (int rc = check_decode_stride(c, op, batch, cache_stride, n_keys)) return rc;
    if (batch == 0 || k == 0) return DSA_OK;
    if (!out) return dsa_cuda_fail(c, "%s: null pointer", op);
    if (n_keys > 0) {
        if (!q_fp8 || !w || !idx_cache) return dsa_cuda_fail(c, "%s: null pointer", op);
        if (int rc = check_alignment(c, op, q_fp8, idx_cache)) return rc;
    }
    return run_fused(c, op, q_fp8, w, batch, heads, idx_cache, cache_stride, n_keys, 0, true, k, out);
}
