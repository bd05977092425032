// kernels/topk.cu — exact top-k per row (the DSA indexer's selection): a sampled threshold, one
// filtering read of the row, and an exact radix select among the few candidates it keeps.
//
// Contract (kernels/ops.h): row r of scores [rows, ld_scores] holds len = len0 + r * len_step
// valid scores (clipped to [0, ld_scores]); out[r, 0..k) = the indices of its min(k, len)
// highest scores, ties to the LOWER index, then -1. The reference (kernels/ref/topk.c) also sorts
// them by (score desc, index asc); this kernel writes the same SET in an arbitrary order, because
// the consumer (sparse attention: a softmax over the selected keys) does not depend on the order.
// Keys, composites and the radix-select core: kernels/topk_core.cuh.
//
// Why not a plain MSB radix select. The first version histogrammed the top 11 key bits (sign,
// 8 exponent bits, 2 mantissa bits) over the whole row, filtered the threshold bin in a second
// read, and resolved it. Scores narrow in exponent defeat that digit: for uniform [-10, 10)
// (the benchmark) half of all scores fall in ~10 bins, so a warp's 32 shared atomics collide
// several ways in the first pass, and the threshold bin [8, 10) holds 10% of the row (20K of
// 200K), so the candidate resolve is large and, in decode, serial in one block. Real indexer
// scores (weighted sums of ReLU'd dot products) are narrow in exponent too, so the algorithm here
// does not rely on the exponent spreading values at all.
//
// Algorithm for a row of len > kCap scores (kCap: the candidate buffer in shared memory):
//   1. Sample: kSamples = 4096 scores, in 128 chunks of 32 centred in 128 equal strata of the
//      row (coalesced, 16 KB, away from the row's ends). tau = the exact key of the j-th best
//      sample (three small histograms over the samples, which stay in registers), with j chosen
//      (sample_rank) so that the expected count of the row at or above tau is 2.5 k, and at
//      most kCap / 2. For iid scores the count above the j-th best of m samples is about
//      len * Gamma(j) / m, so it falls below k or above kCap with probability < 1e-12 (j = 105
//      at 200K and k = 2048; measured on a model of this code: 5.1K +- 0.6K, never outside
//      [3.5K, 7K] in 400 rows each of uniform, narrow and ReLU-like scores).
//   2. Filter: one read of the row; every score >= tf (tau as a float, never NaN) appends
//      (key, index) to the candidates in shared memory: per batch of 16-byte loads one warp
//      prefix sum and one shared atomic per warp. Per score, the hot loop is one compare.
//   3. If k <= candidates <= kCap: the top k of the row are the top k of the candidates (every
//      other score is below tf or NaN, strictly worse than any candidate), found exactly by
//      resolve_candidates: a radix select whose first digit starts at the highest bit where the
//      candidates' keys differ (two passes over shared memory for continuous scores).
//   4. Otherwise (fewer than k: the sample over-represents the row's best, e.g. the best scores
//      sit exactly where it reads; more than kCap: heavy ties, few distinct values, 95% -inf):
//      the exact general path below, on the whole row. Exactness never depends on the data,
//      only the speed does.
// The general path (select_row): a row of <= kCap scores is read once into shared memory and
// selected there; a longer one by MSB radix select over the row (histogram passes over the
// row until the threshold bin fits kCap, a filter pass, the rest in shared memory).
//
// Paths (chosen in the launcher), one launch each:
//   - many rows (prefill): topk_rows_kernel, one block per row, three blocks per SM so that one
//     block's sampling and resolve overlap the others' filtering reads. Rows of at most
//     kShortMaxLen scores use ShortRows blocks, three per SM.
//   - few rows (2 <= SMs / rows: decode): topk_split_kernel, each row split over S = SMs / rows
//     blocks (one per SM; chunks of >= kSplitMinChunk scores). Every block of a row computes the
//     same tau from the same samples (deterministic), filters its chunk into shared memory and
//     appends it to the row's candidate list in scratch with one global atomic; the row's last
//     block to finish (threadFenceReduction pattern) resolves the list, or runs the general path
//     on the row when the guess failed. The per-row counters live in the context (zeroed once
//     when it is created) and the row's last block resets them for the next call, so no memset
//     launch is needed; calls on one context must therefore not run concurrently on two streams
//     (the ops table issues them on one).
//
// Expected time on the H200 (4.0-4.3 TB/s copy): prefill 4096 rows x 200K = 3.28 GB read once
// at ~4 TB/s is 0.8 ms; the samples add 2% of reads, and a block's sampling and resolve overlap
// the other blocks' reads: measured 1.08 ms (target 2.0 ms; the previous version read every row
// twice with conflicting atomics: 3.1 ms). The fixed part per row is larger than first thought:
// a fit over 64K/128K/200K rows gives ~0.24 ms per 4096 rows on top of streaming at ~3.9 TB/s
// (three blocks per SM; 0.31 ms with two). Decode at 200K, one launch: sampling ~2-3 us (16 KB from L2, three
// histograms), filtering the B rows over all SMs (B = 32: 25.6 MB, ~6 us from HBM, less when
// L2 holds it), publishing ~1 us, the last block's resolve of ~5K candidates ~3-5 us: ~10-16 us
// of kernel plus the launch for B = 1..32 (target 30 us; the previous version: 35-55 us).
//
// The same sampled threshold drives the fused indexer + top-k (kernels/idx_fused.cu), which
// filters score tiles inside the score kernel and never writes the scores.
//
// Next optimisations (not done): one warp per row for short prefill rows; for decode, hand the resolve of large candidate
// lists to several blocks.
#include <stdint.h>

#include "cuda_ops.h"
#include "smem_optin.cuh"
#include "topk_core.cuh"

namespace {

constexpr int kSplitMinChunk = 2048;  // decode: below this many scores per block, blocks cost more than reads
constexpr int kMaxSplitRows = DSA_TOPK_SPLIT_ROWS; // rows of the split path: one counter pair each (ctx)

// Long rows (prefill): 256 threads, three blocks per SM (while one samples or resolves, two
// stream), 80 registers: the filter keeps 8 x 16 B loads in flight per thread (32 KB per block,
// 96 KB per SM). 8K candidates (64 KB, three blocks in 217 KB): sample_rank then aims at 4K
// (kCap / 2), twice k. Measured on the H200 against 512 threads x 2 blocks with 12K candidates
// and 6 loads in flight (`kernels -k topk_prefill`, 4096 rows, two runs each): 64K 0.519 /
// 0.522 ms against 0.599 / 0.571, 128K 0.793 / 0.801 against 0.861 / 0.831, 200K 1.076 / 1.081
// against 1.089 / 1.089: the per-row fixed cost (sampling, resolve) hides better behind the
// other blocks' streaming; the streaming rate (~3.9 TB/s) is unchanged. 512 x 2 with 8 loads in
// flight gave about half the gain.
struct LongRows {
    static constexpr int kThreads = 256;
    static constexpr int kMinBlocks = 3;
    static constexpr int kCap = 8192;
    static constexpr int kFilterUnroll = 8;
    static constexpr int kUnroll = 2;
    static constexpr bool kRowsFit = false;
};
// Split rows (decode): one 512-thread block per SM, so 128 registers: 8 x 16 B loads in flight
// per thread (64 KB per SM, enough for one SM's share of HBM bandwidth), no spills in the
// general path that the last block may run. The same 12K candidates, so the row's list in
// scratch stays 96 KB.
struct SplitRows {
    static constexpr int kThreads = 512;
    static constexpr int kMinBlocks = 1;
    static constexpr int kCap = 12288;
    static constexpr int kFilterUnroll = 8;
    static constexpr int kUnroll = 4;
    static constexpr bool kRowsFit = false;
};
// Short rows (<= kCap scores, read once into shared memory): 512-thread blocks, three per SM, so
// one row's shared-memory selection overlaps other rows' loads.
struct ShortRows {
    static constexpr int kThreads = 512;
    static constexpr int kMinBlocks = 3;
    static constexpr int kCap = 8192;
    static constexpr int kUnroll = 2;
    static constexpr bool kRowsFit = true;  // the launcher sends only rows of <= kCap scores here
};
constexpr int kShortMaxLen = ShortRows::kCap;
static_assert(kSamples % LongRows::kThreads == 0 && kSamples % SplitRows::kThreads == 0,
              "samples split evenly over the threads");

// Per-row hand-off of the split path, in the context's topk_split_state: zero between calls (the
// row's last block resets it).
struct SplitRowState {
    uint32_t count;  // candidates of the row found so far (all blocks)
    uint32_t done;   // blocks of the row that have finished filtering
};
static_assert(sizeof(SplitRowState) * kMaxSplitRows <= DSA_TOPK_SPLIT_STATE_BYTES, "the context's counters");

// Calls f(score, index) for every index in [lo, hi) of row, all T threads together: 16-byte
// loads (kUnroll in flight per thread) between a scalar head up to 16-byte alignment and a scalar
// tail. `reverse` walks the vector part from the end (the L2-friendly order after a forward pass).
template <int T, int kUnroll, class F>
__device__ __forceinline__ void for_each_score(const float *__restrict__ row, int lo, int hi, bool reverse, F &&f)
{
    if (hi <= lo) return;
    const float *p = row + lo;
    const int n = hi - lo;
    int head = (int)(((16u - ((uint32_t)(uintptr_t)p & 15u)) & 15u) >> 2);
    head = head < n ? head : n;
    for (int i = threadIdx.x; i < head; i += T) f(__ldg(p + i), lo + i);
    const float4 *v = reinterpret_cast<const float4 *>(p + head);
    const int nvec = (n - head) >> 2;
    for (int j0 = threadIdx.x; j0 < nvec; j0 += T * kUnroll) {
        float4 x[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const int j = j0 + u * T;
            if (j < nvec) x[u] = __ldg(v + (reverse ? nvec - 1 - j : j));
        }
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const int j = j0 + u * T;
            if (j < nvec) {
                const int base = lo + head + 4 * (reverse ? nvec - 1 - j : j);
                f(x[u].x, base);
                f(x[u].y, base + 1);
                f(x[u].z, base + 2);
                f(x[u].w, base + 3);
            }
        }
    }
    for (int i = head + 4 * nvec + threadIdx.x; i < n; i += T) f(__ldg(p + i), lo + i);
}

// ---- the sampled threshold (steps 1-2 of the header) ----------------------------------------

// The threshold (as a float, never NaN): the exact key of the rank-th best of kSamples scores of
// the row (topk_core.cuh kth_key, over the samples held in registers). All 32 bits matter: for
// scores as narrow as 1 +- 1e-3, dropping even the low 10 bits would let 6% of the row in. Every
// thread returns the same value, and every block reading the same row computes the same value.
template <int T>
__device__ float sample_threshold(SelectShared<T> &sh, const float *__restrict__ row, int len, uint32_t rank)
{
    constexpr int kPer = kSamples / T;
    uint32_t key[kPer];
#pragma unroll
    for (int u = 0; u < kPer; u++) {
        key[u] = order_key(__ldg(row + sample_position(u * T + threadIdx.x, len)));
    }
    return threshold_float(kth_key<T, kPer>(sh, key, rank));
}

// Appends (key, index) of every score >= tf in row[lo, hi) to cand at slots counted from *count
// (all T threads call it together; every hit is counted, those past cap are not stored). A NaN
// score fails the compare, so NaN never becomes a candidate; tf itself is never NaN.
template <int T, int U>
__device__ void filter_candidates(const float *__restrict__ row, int lo, int hi, float tf, uint2 *cand, uint32_t cap,
                                  uint32_t *count)
{
    if (hi <= lo) return;
    const float *p = row + lo;
    const int n = hi - lo;
    int head = (int)(((16u - ((uint32_t)(uintptr_t)p & 15u)) & 15u) >> 2);
    head = head < n ? head : n;
    const int nvec = (n - head) >> 2;
    const int tail = head + 4 * nvec;
    // The < 4 unaligned scores at each end: one warp, a claim per hit.
    if (threadIdx.x < 32) {
        const int i = threadIdx.x < 4 ? threadIdx.x : tail + threadIdx.x - 4;
        if ((threadIdx.x < 4 && i < head) || (threadIdx.x >= 4 && i < n)) {
            const float v = __ldg(p + i);
            if (v >= tf) {
                const uint32_t pos = warp_claim(count, count, false);
                if (pos < cap) cand[pos] = make_uint2(order_key(v), (uint32_t)(lo + i));
            }
        }
    }
    // The aligned body, U float4 per thread per batch. The trip count is the same for every
    // thread (the warp prefix sum needs all 32 lanes); loads past the end read as NaN (no hit).
    const float4 *v = reinterpret_cast<const float4 *>(p + head);
    const int lane = threadIdx.x & 31;
    for (int j0 = 0; j0 < nvec; j0 += T * U) {
        float4 x[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int j = j0 + u * T + threadIdx.x;
            x[u] = j < nvec ? __ldg(v + j) : make_float4(__int_as_float(0x7FC00000), __int_as_float(0x7FC00000),
                                                          __int_as_float(0x7FC00000), __int_as_float(0x7FC00000));
        }
        uint32_t hits = 0;
#pragma unroll
        for (int u = 0; u < U; u++)
            hits += (uint32_t)(x[u].x >= tf) + (uint32_t)(x[u].y >= tf) + (uint32_t)(x[u].z >= tf) + (uint32_t)(x[u].w >= tf);
        uint32_t incl = hits;  // inclusive prefix sum over the warp
#pragma unroll
        for (int d = 1; d < 32; d <<= 1) {
            const uint32_t t = __shfl_up_sync(0xFFFFFFFFu, incl, d);
            if (lane >= d) incl += t;
        }
        const uint32_t warp_hits = __shfl_sync(0xFFFFFFFFu, incl, 31);
        if (warp_hits == 0) continue;  // the same for the whole warp
        uint32_t base = 0;
        if (lane == 31) base = atomicAdd(count, warp_hits);
        uint32_t pos = __shfl_sync(0xFFFFFFFFu, base, 31) + incl - hits;
        if (hits == 0) continue;
#pragma unroll
        for (int u = 0; u < U; u++) {
            const uint32_t idx = (uint32_t)(lo + head) + 4u * (uint32_t)(j0 + u * T + (int)threadIdx.x);
            const float e[4] = {x[u].x, x[u].y, x[u].z, x[u].w};
#pragma unroll
            for (int q = 0; q < 4; q++)
                if (e[q] >= tf) {
                    if (pos < cap) cand[pos] = make_uint2(order_key(e[q]), idx + q);
                    pos++;
                }
        }
    }
}

// ---- the general path ---------------------------------------------------------------------

template <class Cfg>
__device__ void select_long_row(SelectShared<Cfg::kThreads> &sh, uint2 *cand, const float *row, int len, int k,
                                int32_t *out);

// The whole selection of one row by one block (needs len > k >= 1), whatever the scores.
// Writes out[0..k). Expects no thread still reading sh.
template <class Cfg>
__device__ void select_row(SelectShared<Cfg::kThreads> &sh, uint2 *cand, const float *row, int len, int k,
                           int32_t *out)
{
    constexpr int T = Cfg::kThreads, U = Cfg::kUnroll;
    if (threadIdx.x == 0) {
        sh.out_count = 0;
        sh.cand_count = 0;
    }
    zero_hist<T>(sh);
    __syncthreads();

    if (Cfg::kRowsFit || len <= Cfg::kCap) {
        // The row fits: load it as the candidate list and histogram the first digit on the way.
        for_each_score<T, U>(row, 0, len, false, [&](float v, int i) {
            const uint32_t key = order_key(v);
            cand[i] = make_uint2(key, (uint32_t)i);
            atomicAdd(&sh.hist[key >> (kFirstShift - 32)], 1u);
        });
        __syncthreads();
        finish_step<T>(sh, 64, kFirstShift, 0ull, (uint32_t)k);
        refine_candidates<T>(sh, cand, len, len, k, out);
        return;
    }
    if constexpr (!Cfg::kRowsFit) select_long_row<Cfg>(sh, cand, row, len, k, out);
}

// select_row for a row of more than kCap scores: 1. a histogram of the top 11 key bits over the
// row; 2. more histogram passes over the row while the threshold bin exceeds kCap (heavy ties,
// scores in few bins); 3. a filter pass: elements above the prefix go straight to the output,
// those matching it to the candidates; 4. the rest of the threshold on the candidates. Each pass
// walks the row opposite to the one before, starting where the last left L2 warm.
// Expects what select_row sets up: counters at 0, a zeroed histogram, a barrier passed.
template <class Cfg>
__device__ void select_long_row(SelectShared<Cfg::kThreads> &sh, uint2 *cand, const float *row, int len, int k,
                                int32_t *out)
{
    constexpr int T = Cfg::kThreads, U = Cfg::kUnroll;
    constexpr int kRareUnroll = 2;  // the tie-heavy passes: fewer loads in flight, no spills

    // 1. Histogram of the top 11 key bits.
    for_each_score<T, U>(row, 0, len, false,
                         [&](float v, int) { atomicAdd(&sh.hist[order_key(v) >> (kFirstShift - 32)], 1u); });
    __syncthreads();
    finish_step<T>(sh, 64, kFirstShift, 0ull, (uint32_t)k);

    // 2. More passes over the row while the threshold bin is too big for shared memory.
    bool reverse = true;
    while (!sh.exact && sh.n_match > (uint32_t)Cfg::kCap && sh.shift > 0) {
        const int s = sh.shift, ns = next_shift(s);
        const unsigned long long prefix = sh.prefix;
        const uint32_t need = sh.need;
        const uint32_t mask = (1u << (s - ns)) - 1;
        __syncthreads();
        if (skip_constant_digit<T>(sh, s, ns, prefix, len)) continue;
        zero_hist<T>(sh);
        __syncthreads();
        for_each_score<T, kRareUnroll>(row, 0, len, reverse, [&](float v, int i) {
            const unsigned long long c = composite(order_key(v), (uint32_t)i);
            if (prefix_cmp(c, s, prefix) == 0) atomicAdd(&sh.hist[(uint32_t)(c >> ns) & mask], 1u);
        });
        reverse = !reverse;
        __syncthreads();
        finish_step<T>(sh, s, ns, prefix, need);
    }

    // 3. Filter: above the prefix -> output; matching it -> candidates (or output when exact).
    const int s = sh.shift;
    const unsigned long long prefix = sh.prefix;
    const bool exact = sh.exact != 0;
    const uint32_t cap = (uint32_t)Cfg::kCap;
    if (s == kFirstShift) {  // the usual case: compare the top 11 key bits only
        const uint32_t bin = (uint32_t)prefix;
        for_each_score<T, U>(row, 0, len, reverse, [&](float v, int i) {
            const uint32_t key = order_key(v), d = key >> (kFirstShift - 32);
            if (d >= bin) {
                const bool keep = d == bin && !exact;  // a candidate, else an output
                const uint32_t pos = warp_claim(&sh.out_count, &sh.cand_count, keep);
                if (!keep && pos < (uint32_t)k) out[pos] = i;
                if (keep && pos < cap) cand[pos] = make_uint2(key, (uint32_t)i);
            }
        });
    } else {
        for_each_score<T, kRareUnroll>(row, 0, len, reverse, [&](float v, int i) {
            const uint32_t key = order_key(v);
            const int cmp = prefix_cmp(composite(key, (uint32_t)i), s, prefix);
            if (cmp >= 0) {
                const bool keep = cmp == 0 && !exact;
                const uint32_t pos = warp_claim(&sh.out_count, &sh.cand_count, keep);
                if (!keep && pos < (uint32_t)k) out[pos] = i;
                if (keep && pos < cap) cand[pos] = make_uint2(key, (uint32_t)i);
            }
        });
    }
    __syncthreads();

    // 4. The rest of the threshold on the candidates.
    if (!exact) {
        const uint32_t n = sh.cand_count;
        refine_candidates<T>(sh, cand, (int)(n < cap ? n : cap), len, k, out);
    }
}

// ---- prefill: one block per row -----------------------------------------------------------

// Steps 1-3 of the header for a whole row (len > kCap). False when the guess failed (fewer than
// k or more than kCap candidates): nothing was written, the caller runs the general path after
// a barrier.
template <class Cfg>
__device__ bool sampled_select(SelectShared<Cfg::kThreads> &sh, uint2 *cand, const float *row, int len, int k,
                               uint32_t rank, int32_t *out)
{
    constexpr int T = Cfg::kThreads;
    const float tf = sample_threshold<T>(sh, row, len, rank);
    if (threadIdx.x == 0) sh.cand_count = 0;
    __syncthreads();
    filter_candidates<T, Cfg::kFilterUnroll>(row, 0, len, tf, cand, (uint32_t)Cfg::kCap, &sh.cand_count);
    __syncthreads();
    const uint32_t n = sh.cand_count;
    if (n < (uint32_t)k || n > (uint32_t)Cfg::kCap) return false;
    resolve_candidates<T>(sh, cand, n, len, k, out);
    return true;
}

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks)
    topk_rows_kernel(const float *__restrict__ scores, int ld, int len0, int len_step, int k,
                     const int *__restrict__ row_flags, int32_t *__restrict__ out)
{
    __shared__ SelectShared<Cfg::kThreads> sh;
    extern __shared__ uint2 cand[];  // Cfg::kCap
    const int r = blockIdx.x;
    if (row_flags && !row_flags[r]) return;  // dsa_cuda_topk_flagged: only the flagged rows
    const int len = row_len(r, ld, len0, len_step);
    int32_t *o = out + (size_t)r * k;
    if (len <= k) {
        write_all<Cfg::kThreads>(o, len, k);
        return;
    }
    const float *row = scores + (size_t)r * ld;
    if constexpr (!Cfg::kRowsFit) {
        const uint32_t rank = sample_rank(len, k, Cfg::kCap);
        if (rank) {
            if (sampled_select<Cfg>(sh, cand, row, len, k, rank, o)) return;
            __syncthreads();  // every thread has read the failed guess's count
        }
    }
    select_row<Cfg>(sh, cand, row, len, k, o);
}

// ---- decode: S blocks per row -------------------------------------------------------------

__device__ __forceinline__ void split_chunk(int len, int splits, int part, int &lo, int &hi)
{
    long long chunk = ((long long)len + splits - 1) / splits;
    chunk = (chunk + 3) & ~3ll;  // chunk starts 16 bytes apart: every chunk has the same alignment
    long long l = (long long)part * chunk, h = l + chunk;
    lo = (int)(l < len ? l : len);
    hi = (int)(h < len ? h : len);
}

// Block (x, r): chunk x of row r. Every block of a row samples the same tau, filters its chunk
// into shared memory, and appends the candidates to the row's list (list + r * kCap) with one
// global atomic per block (a global atomic per hit would stall each warp on an L2 round trip).
// The row's last block to finish resolves the list, or runs the general path on the row when
// the guess failed. Rows that are short (<= kCap) or not worth sampling (large k) are done by
// block 0 alone with the general path.
__global__ void __launch_bounds__(SplitRows::kThreads, SplitRows::kMinBlocks)
    topk_split_kernel(const float *__restrict__ scores, int ld, int len0, int len_step, int k, int splits, uint2 *list,
                      SplitRowState *state, int32_t *__restrict__ out)
{
    using Cfg = SplitRows;
    constexpr int T = Cfg::kThreads;
    constexpr uint32_t cap = (uint32_t)Cfg::kCap;
    __shared__ SelectShared<T> sh;
    extern __shared__ uint2 cand[];  // Cfg::kCap: first the block's staging area, then the row's candidates
    const int r = blockIdx.y;
    const int len = row_len(r, ld, len0, len_step);
    const float *row = scores + (size_t)r * ld;
    int32_t *o = out + (size_t)r * k;
    if (len <= k) {
        if (blockIdx.x == 0) write_all<T>(o, len, k);
        return;
    }
    const uint32_t rank = sample_rank(len, k, Cfg::kCap);
    if (!rank) {
        if (blockIdx.x == 0) select_row<Cfg>(sh, cand, row, len, k, o);
        return;
    }

    const float tf = sample_threshold<T>(sh, row, len, rank);
    if (threadIdx.x == 0) sh.cand_count = 0;
    __syncthreads();
    int lo, hi;
    split_chunk(len, splits, blockIdx.x, lo, hi);
    filter_candidates<T, Cfg::kFilterUnroll>(row, lo, hi, tf, cand, cap, &sh.cand_count);
    __syncthreads();

    // Publish: the block's full count (so the row's total is exact even past cap), and its
    // staged candidates where they fall inside the list.
    SplitRowState *st = &state[r];
    uint2 *lst = list + (size_t)r * cap;
    const uint32_t found = sh.cand_count, staged = found < cap ? found : cap;
    if (threadIdx.x == 0) sh.list_base = found ? atomicAdd(&st->count, found) : 0u;
    __syncthreads();
    const uint32_t base = sh.list_base;
    for (uint32_t j = threadIdx.x; j < staged && base + j < cap; j += T) lst[base + j] = cand[j];

    // Last-block hand-off (the threadFenceReduction pattern): each block publishes its list
    // entries before counting itself done, so the block that completes the row sees them all.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) sh.is_last = atomicAdd(&st->done, 1u) == (uint32_t)(splits - 1);
    __syncthreads();
    if (!sh.is_last) return;
    __threadfence();
    if (threadIdx.x == 0) {  // every other block of the row is done with the counters: reset them
        sh.list_total = atomicExch(&st->count, 0u);
        atomicExch(&st->done, 0u);
    }
    __syncthreads();
    const uint32_t total = sh.list_total;
    if (total >= (uint32_t)k && total <= cap) {
        for (uint32_t j = threadIdx.x; j < total; j += T) cand[j] = __ldcg(lst + j);
        __syncthreads();
        resolve_candidates<T>(sh, cand, total, len, k, o);
    } else {
        select_row<Cfg>(sh, cand, row, len, k, o);
    }
}

template <class Cfg> int launch_rows(dsa_cuda_ctx *c, const float *scores, int rows, int ld, int len0, int len_step,
                                     int k, const int *row_flags, int32_t *out)
{
    const size_t smem = (size_t)Cfg::kCap * sizeof(uint2);
    // All of the unified L1/shared array as shared memory: kMinBlocks blocks per SM need it.
    if (int rc = smem_optin<topk_rows_kernel<Cfg>>(c, smem, true, "topk: shared memory")) return rc;
    topk_rows_kernel<Cfg><<<rows, Cfg::kThreads, smem, c->stream>>>(scores, ld, len0, len_step, k, row_flags, out);
    return dsa_cuda_check(c, "topk");
}

int launch_split(dsa_cuda_ctx *c, const float *scores, int rows, int ld, int len0, int len_step, int k, int splits,
                 int32_t *out)
{
    using Cfg = SplitRows;
    void *list = nullptr;  // [rows][kCap] (key, index) candidates
    int rc = dsa_cuda_scratch(c, (size_t)rows * Cfg::kCap * sizeof(uint2), &list);
    if (rc) return rc;
    const size_t smem = (size_t)Cfg::kCap * sizeof(uint2);
    if (int rc = smem_optin<topk_split_kernel>(c, smem, false, "topk: shared memory")) return rc;
    topk_split_kernel<<<dim3((unsigned)splits, (unsigned)rows), Cfg::kThreads, smem, c->stream>>>(
        scores, ld, len0, len_step, k, splits, (uint2 *)list, (SplitRowState *)c->topk_split_state, out);
    return dsa_cuda_check(c, "topk: split rows");
}

// Both entry points: the argument checks, then the path. row_flags (null: every row) keeps the
// split path out: its blocks hand a row over through counters that every block must reach.
int topk_select(dsa_cuda_ctx *c, const float *scores, int rows, int ld_scores, int len0, int len_step, int k,
                const int *row_flags, int32_t *out)
{
    if (rows < 0) return dsa_cuda_fail(c, "topk: rows = %d < 0", rows);
    if (ld_scores < 0) return dsa_cuda_fail(c, "topk: ld_scores = %d < 0", ld_scores);
    if (k < 0) return dsa_cuda_fail(c, "topk: k = %d < 0", k);
    if (rows == 0 || k == 0) return DSA_OK;
    if (!scores) return dsa_cuda_fail(c, "topk: scores is NULL");
    if (!out) return dsa_cuda_fail(c, "topk: out is NULL");
    if ((uintptr_t)scores & 3u) return dsa_cuda_fail(c, "topk: scores not 4-byte aligned");
    if ((uintptr_t)out & 3u) return dsa_cuda_fail(c, "topk: out not 4-byte aligned");
    const size_t smem_need = (size_t)SplitRows::kCap * sizeof(uint2) + sizeof(SelectShared<SplitRows::kThreads>);
    static_assert(SplitRows::kCap >= LongRows::kCap && SplitRows::kThreads >= LongRows::kThreads, "the larger block");
    if (smem_need > c->smem_optin)
        return dsa_cuda_fail(c, "topk: needs %zu bytes of shared memory per block, the device allows %zu", smem_need,
                             c->smem_optin);

    // Lengths are linear in r, so the longest row is the first or the last.
    const int len_first = row_len(0, ld_scores, len0, len_step);
    const int len_last = row_len(rows - 1, ld_scores, len0, len_step);
    const int len_max = len_first > len_last ? len_first : len_last;

    // Few long rows: split each over several blocks so that the grid fills the GPU.
    if (!row_flags && len_max > SplitRows::kCap && len_max > k && rows <= c->sms && rows <= kMaxSplitRows) {
        const int by_sms = SplitRows::kMinBlocks * c->sms / rows;
        const int by_len = (int)(((long long)len_max + kSplitMinChunk - 1) / kSplitMinChunk);
        const int splits = by_sms < by_len ? by_sms : by_len;
        if (splits >= 2) return launch_split(c, scores, rows, ld_scores, len0, len_step, k, splits, out);
    }
    if (len_max <= kShortMaxLen)
        return launch_rows<ShortRows>(c, scores, rows, ld_scores, len0, len_step, k, row_flags, out);
    return launch_rows<LongRows>(c, scores, rows, ld_scores, len0, len_step, k, row_flags, out);
}

} // namespace

extern "C" int dsa_cuda_topk(void *ctx, const float *scores, int rows, int ld_scores, int len0, int len_step, int k,
                             int32_t *out)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (!c) return DSA_EOP;
    return topk_select(c, scores, rows, ld_scores, len0, len_step, k, nullptr, out);
}

extern "C" int dsa_cuda_topk_flagged(void *ctx, const float *scores, int rows, int ld_scores, int len0, int len_step,
                                     int k, const int *row_flags, int32_t *out)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (!c) return DSA_EOP;
    if (!row_flags) return dsa_cuda_fail(c, "topk: row_flags is NULL");
    return topk_select(c, scores, rows, ld_scores, len0, len_step, k, row_flags, out);
}
