// kernels/topk.cu — exact top-k per row (the DSA indexer's selection), by radix select.
//
// Contract (kernels/ops.h): row r of scores [rows, ld_scores] holds len = len0 + r * len_step
// valid scores (clipped to [0, ld_scores]); out[r, 0..k) = the indices of its min(k, len)
// highest scores, ties to the LOWER index, then -1. The reference (kernels/ref/topk.c) also sorts
// them by (score desc, index asc); this kernel writes the same SET in an arbitrary order, because
// the consumer (sparse attention: a softmax over the selected keys) does not depend on the order.
//
// Exactness. Each element gets a 64-bit composite c = key << 32 | ~index, where key is the
// order-preserving uint32 image of the float (NaN lowest, as in the reference; -0 == +0). The
// reference's order (score desc, index asc) is exactly c descending, and all c of a row are
// distinct, so the top k are {c >= T} for one threshold T with no ties left to break. T is found
// MSB first in digits of at most 11 bits (shifts 64 -> 53 -> 42 -> 32 -> 21 -> 10 -> 0): a
// histogram of the next digit over the elements that still match the prefix found so far picks
// the digit holding the k-th best; the search stops as soon as the elements matching the prefix
// are exactly the ones still needed ("exact"), which for continuous scores happens within the
// 32 key bits, so the index digits are only walked when elements tie at the threshold.
//
// Row algorithm (one block, select_row):
//   1. one pass over the row (global/L2): histogram of the top 11 key bits;
//   2. while the threshold bin holds more than kCap elements (only for heavy ties or scores
//      squeezed into a few bins): another histogram pass over the row on the next digit;
//   3. a filter pass over the row: elements above the prefix go straight to the output, elements
//      matching it (<= kCap) go to a candidate buffer in shared memory;
//   4. the remaining digits are resolved on the candidates in shared memory, and the candidates
//      at or above the threshold are written.
//   A row of <= kCap scores is loaded into the candidate buffer by pass 1 itself (one read).
//   For continuous scores that is two reads of the row; the second runs backwards, so it starts
//   on the part of the row the first pass left most recently in L2.
//
// Paths (chosen in the launcher):
//   - many rows (prefill): one block per row, start to finish (topk_rows_kernel); rows of at
//     most kShortMaxLen scores use smaller blocks so several rows overlap per SM.
//   - few rows (2 * rows <= sms: decode, B << 132): each row is split over S = sms / rows blocks
//     (chunks of >= kSplitMinChunk scores). topk_split_hist_kernel adds each chunk's top-11-bit
//     histogram into the row's histogram in global memory; topk_split_filter_kernel re-reads the
//     chunks (from L2) and appends (key, index) of the elements above the threshold bin and in
//     it to a per-row list in scratch; the row's last block to finish writes the ones above and
//     resolves the bin as in step 4 (or, when the bin exceeds kCap, runs select_row itself).
//     Three launches (a memset and two kernels) instead of one block per row: B rows alone
//     would leave most of the 132 SMs idle.
//
// Next optimisations (not done): keep the head of a long row in shared memory during pass 1 so
// pass 2 reads less; if pass 1 turns out bound by shared-atomic conflicts (lanes of a warp
// hitting one bin, for narrow score distributions), aggregate equal bins per warp
// (__match_any_sync) before the atomic; for short prefill rows, one warp per row.
#include <cub/block/block_scan.cuh>
#include <stdint.h>

#include "cuda_ops.h"

namespace {

constexpr int kBins = 2048;        // 11-bit digits: the first pass narrows 200K scores to a few thousand
constexpr int kFirstShift = 53;    // the first digit is the top 11 bits of the key (c >> 53)
constexpr int kSplitMinChunk = 2048;  // decode: below this many scores per block, launches cost more than reads
constexpr int kSplitHistThreads = 1024;  // 64 KB of loads in flight per SM for the one read that is not from L2

// Long rows: one 1024-thread block per SM, which leaves the most L2 per row for the backward
// second pass; 24K candidates (192 KB) absorb thresholds shared by up to 24K scores without an
// extra pass over the row.
struct LongRows {
    static constexpr int kThreads = 1024;
    static constexpr int kMinBlocks = 1;
    static constexpr int kCap = 24576;
    static constexpr int kUnroll = 4;  // 4 x 16 B loads in flight per thread: 64 KB per SM
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

// Selection state of one block; one thread updates it between barriers, all threads read it.
template <int T> struct SelectShared {
    uint32_t hist[kBins];
    typename cub::BlockScan<uint32_t, T, cub::BLOCK_SCAN_WARP_SCANS>::TempStorage scan;
    unsigned long long prefix;  // the composite's bits [shift, 64) found so far
    int shift;                  // 64: nothing found yet
    uint32_t need;              // how many of the elements matching the prefix are still to take
    uint32_t n_match;           // how many elements match the prefix
    uint32_t exact;             // n_match == need: every element matching the prefix is taken
    uint32_t sel_bin, sel_above;
    uint32_t out_count, cand_count;
    uint32_t is_last;
};

// Order-preserving image of a float: a > b (as the reference compares) iff key(a) > key(b).
// NaN maps to 0, below -inf's 0x007FFFFF, as the reference ranks it; -0 and +0 share one key.
__device__ __forceinline__ uint32_t order_key(float f)
{
    uint32_t b = __float_as_uint(f);
    const uint32_t mag = b & 0x7FFFFFFFu;
    if (mag > 0x7F800000u) return 0u;
    if (mag == 0u) b = 0u;
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Larger composite = better: higher key, then lower index.
__device__ __forceinline__ unsigned long long composite(uint32_t key, uint32_t idx)
{
    return ((unsigned long long)key << 32) | (uint32_t)~idx;
}

// Sign of (c >> shift) - prefix; shift 64 means "no prefix yet" (everything matches).
__device__ __forceinline__ int prefix_cmp(unsigned long long c, int shift, unsigned long long prefix)
{
    if (shift >= 64) return 0;
    const unsigned long long x = c >> shift;
    return (x > prefix) - (x < prefix);
}

__device__ __forceinline__ int next_shift(int s)
{
    return s > 53 ? 53 : s > 42 ? 42 : s > 32 ? 32 : s > 21 ? 21 : s > 10 ? 10 : 0;
}

// A slot for each calling lane from counter c1 (sel1) or c0, with one atomic per counter per warp
// instead of one per lane (same-address shared atomics serialise). The lanes that call together
// are named by __activemask and meet again in the *_sync intrinsics, which is correct however
// the warp is diverged; the two counters are told apart explicitly, so merged call sites are safe.
__device__ __forceinline__ uint32_t warp_claim(uint32_t *c0, uint32_t *c1, bool sel1)
{
    const uint32_t active = __activemask();
    const uint32_t m1 = __ballot_sync(active, sel1);
    const uint32_t mine = sel1 ? m1 : active & ~m1;
    const int lane = threadIdx.x & 31;
    const int leader = __ffs(mine) - 1;
    uint32_t base = 0;
    if (lane == leader) base = atomicAdd(sel1 ? c1 : c0, (uint32_t)__popc(mine));
    base = __shfl_sync(active, base, leader);
    return base + (uint32_t)__popc(mine & ((1u << lane) - 1u));
}

__device__ __forceinline__ int row_len(int r, int ld, int len0, int len_step)
{
    long long len = (long long)len0 + (long long)r * len_step;
    return (int)(len < 0 ? 0 : len > ld ? ld : len);
}

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

template <int T> __device__ __forceinline__ void zero_hist(SelectShared<T> &sh)
{
    for (int b = threadIdx.x; b < kBins; b += T) sh.hist[b] = 0;
}

// Finds the bin b with (count in bins above b) < need <= (count in bins >= b), walking the bins
// from the top; needs 1 <= need <= total. Leaves b and the count above it in sh.sel_*.
template <int T> __device__ void select_bin(SelectShared<T> &sh, uint32_t need)
{
    static_assert(kBins % T == 0, "bins split evenly over the threads");
    constexpr int kPer = kBins / T;
    uint32_t h[kPer], sum = 0;
#pragma unroll
    for (int j = 0; j < kPer; j++) {
        h[j] = sh.hist[kBins - 1 - (threadIdx.x * kPer + j)];
        sum += h[j];
    }
    uint32_t above;
    cub::BlockScan<uint32_t, T, cub::BLOCK_SCAN_WARP_SCANS>(sh.scan).ExclusiveSum(sum, above);
#pragma unroll
    for (int j = 0; j < kPer; j++) {
        if (above < need && need <= above + h[j]) {
            sh.sel_bin = kBins - 1 - (threadIdx.x * kPer + j);
            sh.sel_above = above;
        }
        above += h[j];
    }
    __syncthreads();
}

// After a histogram of digit [ns, s) over the elements matching (s, prefix): choose the digit
// and move the state down to shift ns.
template <int T>
__device__ void finish_step(SelectShared<T> &sh, int s, int ns, unsigned long long prefix, uint32_t need)
{
    select_bin<T>(sh, need);
    if (threadIdx.x == 0) {
        const uint32_t b = sh.sel_bin, n_match = sh.hist[b], left = need - sh.sel_above;
        sh.prefix = (prefix << (s - ns)) | b;  // prefix is 0 while s == 64
        sh.shift = ns;
        sh.need = left;
        sh.n_match = n_match;
        sh.exact = n_match == left;
    }
    __syncthreads();
}

// A digit made only of index bits that are 0 for every index < len is all ones in ~index:
// take it without a pass. Returns true when it did (state updated, barrier passed).
template <int T>
__device__ bool skip_constant_digit(SelectShared<T> &sh, int s, int ns, unsigned long long prefix, int len)
{
    if (s > 32 || ((uint32_t)(len - 1) >> ns) != 0u) return false;
    if (threadIdx.x == 0) {
        sh.prefix = (prefix << (s - ns)) | ((1ull << (s - ns)) - 1);
        sh.shift = ns;
    }
    __syncthreads();
    return true;
}

// Step 4: resolve the remaining digits on the n candidates in shared memory (all of which match
// the current prefix), then write those at or above the threshold at out[sh.out_count++].
template <class Cfg>
__device__ void refine_candidates(SelectShared<Cfg::kThreads> &sh, const uint2 *cand, int n, int len, int k,
                                  int32_t *out)
{
    constexpr int T = Cfg::kThreads;
    while (!sh.exact && sh.shift > 0) {
        const int s = sh.shift, ns = next_shift(s);
        const unsigned long long prefix = sh.prefix;
        const uint32_t need = sh.need;
        const uint32_t mask = (1u << (s - ns)) - 1;
        __syncthreads();  // every thread has read the state; the last histogram is consumed
        if (skip_constant_digit<T>(sh, s, ns, prefix, len)) continue;
        zero_hist<T>(sh);
        __syncthreads();
        for (int j = threadIdx.x; j < n; j += T) {
            const uint2 e = cand[j];
            const unsigned long long c = composite(e.x, e.y);
            if (prefix_cmp(c, s, prefix) == 0) atomicAdd(&sh.hist[(uint32_t)(c >> ns) & mask], 1u);
        }
        __syncthreads();
        finish_step<T>(sh, s, ns, prefix, need);
    }
    const int s = sh.shift;
    const unsigned long long prefix = sh.prefix;
    for (int j = threadIdx.x; j < n; j += T) {
        const uint2 e = cand[j];
        if (prefix_cmp(composite(e.x, e.y), s, prefix) >= 0) {
            const uint32_t pos = atomicAdd(&sh.out_count, 1u);
            if (pos < (uint32_t)k) out[pos] = (int32_t)e.y;
        }
    }
}

template <class Cfg>
__device__ void select_long_row(SelectShared<Cfg::kThreads> &sh, uint2 *cand, const float *row, int len, int k,
                                int32_t *out);

// The whole selection of one row by one block (needs len > k >= 1). Writes out[0..k).
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
        refine_candidates<Cfg>(sh, cand, len, len, k, out);
        return;
    }
    if constexpr (!Cfg::kRowsFit) select_long_row<Cfg>(sh, cand, row, len, k, out);
}

// select_row for a row of more than kCap scores: steps 1-4 of the header. Expects what
// select_row sets up: counters at 0, a zeroed histogram, a barrier passed.
template <class Cfg>
__device__ void select_long_row(SelectShared<Cfg::kThreads> &sh, uint2 *cand, const float *row, int len, int k,
                                int32_t *out)
{
    constexpr int T = Cfg::kThreads, U = Cfg::kUnroll;
    constexpr int kRareUnroll = T >= 1024 ? 2 : 1;  // the tie-heavy passes: fewer loads in flight, no spills

    // 1. Histogram of the top 11 key bits.
    for_each_score<T, U>(row, 0, len, false,
                         [&](float v, int) { atomicAdd(&sh.hist[order_key(v) >> (kFirstShift - 32)], 1u); });
    __syncthreads();
    finish_step<T>(sh, 64, kFirstShift, 0ull, (uint32_t)k);

    // 2. More passes over the row while the threshold bin is too big for shared memory.
    bool reverse = true;  // each pass walks the row opposite to the one before
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
        refine_candidates<Cfg>(sh, cand, (int)(n < cap ? n : cap), len, k, out);
    }
}

// len <= k: every index, then -1.
template <int T> __device__ void write_all(int32_t *out, int len, int k)
{
    for (int j = threadIdx.x; j < k; j += T) out[j] = j < len ? j : -1;
}

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks)
    topk_rows_kernel(const float *__restrict__ scores, int ld, int len0, int len_step, int k, int32_t *__restrict__ out)
{
    __shared__ SelectShared<Cfg::kThreads> sh;
    extern __shared__ uint2 cand[];  // Cfg::kCap
    const int r = blockIdx.x;
    const int len = row_len(r, ld, len0, len_step);
    int32_t *o = out + (size_t)r * k;
    if (len <= k) {
        write_all<Cfg::kThreads>(o, len, k);
        return;
    }
    select_row<Cfg>(sh, cand, scores + (size_t)r * ld, len, k, o);
}

// ---- decode: S blocks per row -------------------------------------------------------------

// Per-row state of the split path in scratch (zeroed before every call).
struct SplitRowState {
    uint32_t count;  // entries in the row's list
    uint32_t done;   // blocks of the row that have finished
};

__device__ __forceinline__ void split_chunk(int len, int splits, int part, int &lo, int &hi)
{
    long long chunk = ((long long)len + splits - 1) / splits;
    chunk = (chunk + 3) & ~3ll;  // keep chunk starts 16-byte apart from the row start
    long long l = (long long)part * chunk, h = l + chunk;
    lo = (int)(l < len ? l : len);
    hi = (int)(h < len ? h : len);
}

// Histogram of the top 11 key bits of chunk blockIdx.x of row blockIdx.y, added to hist[row].
__global__ void __launch_bounds__(kSplitHistThreads)
    topk_split_hist_kernel(const float *__restrict__ scores, int ld, int len0, int len_step, int k, int splits,
                           uint32_t *__restrict__ hist)
{
    __shared__ uint32_t h[kBins];
    const int r = blockIdx.y;
    const int len = row_len(r, ld, len0, len_step);
    if (len <= k) return;
    for (int b = threadIdx.x; b < kBins; b += kSplitHistThreads) h[b] = 0;
    __syncthreads();
    int lo, hi;
    split_chunk(len, splits, blockIdx.x, lo, hi);
    for_each_score<kSplitHistThreads, 4>(scores + (size_t)r * ld, lo, hi, false,
                                         [&](float v, int) { atomicAdd(&h[order_key(v) >> (kFirstShift - 32)], 1u); });
    __syncthreads();
    uint32_t *g = hist + (size_t)r * kBins;
    for (int b = threadIdx.x; b < kBins; b += kSplitHistThreads)
        if (h[b]) atomicAdd(&g[b], h[b]);
}

// Every block: the threshold bin from hist[row]; its chunk's elements above the bin, and those
// in the bin when the bin fits kCap, are staged in shared memory and appended to the row's
// global list with one atomic per block (a global atomic per element would stall each warp for
// an L2 round trip per hit). The row's last block to finish then selects from the list.
__global__ void __launch_bounds__(LongRows::kThreads, LongRows::kMinBlocks)
    topk_split_filter_kernel(const float *__restrict__ scores, int ld, int len0, int len_step, int k, int splits,
                             const uint32_t *__restrict__ hist, SplitRowState *state, uint2 *list,
                             size_t list_stride, int32_t *__restrict__ out)
{
    using Cfg = LongRows;
    constexpr int T = Cfg::kThreads;
    constexpr uint32_t cap = (uint32_t)Cfg::kCap;
    __shared__ SelectShared<T> sh;
    extern __shared__ uint2 cand[];  // Cfg::kCap: first the block's staging area, then the candidates
    const int r = blockIdx.y;
    const int len = row_len(r, ld, len0, len_step);
    const float *row = scores + (size_t)r * ld;
    int32_t *o = out + (size_t)r * k;
    if (len <= k) {
        if (blockIdx.x == 0) write_all<T>(o, len, k);
        return;
    }
    SplitRowState *st = state + r;
    uint2 *lst = list + (size_t)r * list_stride;

    const uint32_t *g = hist + (size_t)r * kBins;
    for (int b = threadIdx.x; b < kBins; b += T) sh.hist[b] = g[b];
    if (threadIdx.x == 0) sh.cand_count = 0;
    __syncthreads();
    select_bin<T>(sh, (uint32_t)k);
    const uint32_t bin = sh.sel_bin, above = sh.sel_above, n_match = sh.hist[bin];
    const bool fits = n_match <= cap;

    int lo, hi;
    split_chunk(len, splits, blockIdx.x, lo, hi);
    for_each_score<T, Cfg::kUnroll>(row, lo, hi, false, [&](float v, int i) {
        const uint32_t key = order_key(v), d = key >> (kFirstShift - 32);
        if (d > bin || (d == bin && fits)) {
            const uint2 e = make_uint2(key, (uint32_t)i);
            const uint32_t pos = warp_claim(&sh.cand_count, &sh.cand_count, false);
            if (pos < cap) {
                cand[pos] = e;
            } else {  // staging full (only when k is large): straight to the global list
                const uint32_t gpos = atomicAdd(&st->count, 1u);
                if (gpos < list_stride) lst[gpos] = e;
            }
        }
    });
    __syncthreads();
    const uint32_t staged = sh.cand_count < cap ? sh.cand_count : cap;
    if (threadIdx.x == 0) sh.sel_above = staged ? atomicAdd(&st->count, staged) : 0u;
    __syncthreads();
    const uint32_t base = sh.sel_above;
    for (uint32_t j = threadIdx.x; j < staged; j += T)
        if (base + j < list_stride) lst[base + j] = cand[j];

    // Last-block hand-off (the threadFenceReduction pattern): each block publishes its list
    // entries before counting itself done, so the block that completes the row sees them all.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) sh.is_last = atomicAdd(&st->done, 1u) == (uint32_t)(splits - 1);
    __syncthreads();
    if (!sh.is_last) return;
    __threadfence();

    if (!fits) {
        // Too many scores share the top 11 bits for the candidate buffer: the whole row here.
        select_row<Cfg>(sh, cand, row, len, k, o);
        return;
    }
    // The list holds the `above` elements over the bin and the n_match in it (above + n_match
    // <= k - 1 + kCap = list_stride): the first go out, the second become the candidates.
    const uint32_t n_list = above + n_match;
    if (threadIdx.x == 0) {
        sh.out_count = 0;
        sh.cand_count = 0;
        sh.prefix = bin;
        sh.shift = kFirstShift;
        sh.need = (uint32_t)k - above;
        sh.n_match = n_match;
        sh.exact = n_match == (uint32_t)k - above;
    }
    __syncthreads();
    for (uint32_t j = threadIdx.x; j < n_list; j += T) {
        const uint2 e = __ldcg(lst + j);
        if ((e.x >> (kFirstShift - 32)) > bin) {
            const uint32_t pos = atomicAdd(&sh.out_count, 1u);
            if (pos < (uint32_t)k) o[pos] = (int32_t)e.y;
        } else {
            const uint32_t pos = atomicAdd(&sh.cand_count, 1u);
            if (pos < cap) cand[pos] = e;
        }
    }
    __syncthreads();
    refine_candidates<Cfg>(sh, cand, (int)n_match, len, k, o);
}

template <class Cfg> int launch_rows(dsa_cuda_ctx *c, const float *scores, int rows, int ld, int len0, int len_step,
                                     int k, int32_t *out)
{
    const size_t smem = (size_t)Cfg::kCap * sizeof(uint2);
    cudaError_t st = cudaFuncSetAttribute(topk_rows_kernel<Cfg>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (st != cudaSuccess) return dsa_cuda_status(c, st, "topk: shared memory");
    topk_rows_kernel<Cfg><<<rows, Cfg::kThreads, smem, c->stream>>>(scores, ld, len0, len_step, k, out);
    return dsa_cuda_check(c, "topk");
}

int launch_split(dsa_cuda_ctx *c, const float *scores, int rows, int ld, int len0, int len_step, int k, int splits,
                 int len_max, int32_t *out)
{
    using Cfg = LongRows;
    // scratch: hist [rows][kBins] u32 | state [rows] | list [rows][list_stride] uint2, where a
    // row's list holds fewer than k elements above its threshold bin plus at most kCap in it.
    const size_t list_stride = (size_t)k + Cfg::kCap < (size_t)len_max ? (size_t)k + Cfg::kCap : (size_t)len_max;
    const size_t hist_bytes = (size_t)rows * kBins * sizeof(uint32_t);
    const size_t state_bytes = (size_t)rows * sizeof(SplitRowState);
    const size_t zero_bytes = (hist_bytes + state_bytes + 15) & ~(size_t)15;
    const size_t list_bytes = (size_t)rows * list_stride * sizeof(uint2);
    void *scratch = nullptr;
    int rc = dsa_cuda_scratch(c, zero_bytes + list_bytes, &scratch);
    if (rc) return rc;
    uint32_t *hist = (uint32_t *)scratch;
    SplitRowState *state = (SplitRowState *)((char *)scratch + hist_bytes);
    uint2 *list = (uint2 *)((char *)scratch + zero_bytes);
    rc = dsa_cuda_status(c, cudaMemsetAsync(scratch, 0, zero_bytes, c->stream), "topk: clear");
    if (rc) return rc;

    const size_t smem = (size_t)Cfg::kCap * sizeof(uint2);
    cudaError_t st = cudaFuncSetAttribute(topk_split_filter_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (st != cudaSuccess) return dsa_cuda_status(c, st, "topk: shared memory");
    const dim3 grid((unsigned)splits, (unsigned)rows);
    topk_split_hist_kernel<<<grid, kSplitHistThreads, 0, c->stream>>>(scores, ld, len0, len_step, k, splits, hist);
    rc = dsa_cuda_check(c, "topk: split histogram");
    if (rc) return rc;
    topk_split_filter_kernel<<<grid, Cfg::kThreads, smem, c->stream>>>(scores, ld, len0, len_step, k, splits, hist,
                                                                       state, list, list_stride, out);
    return dsa_cuda_check(c, "topk: split filter");
}

int clip_len(long long len, int ld) { return (int)(len < 0 ? 0 : len > ld ? ld : len); }

} // namespace

extern "C" int dsa_cuda_topk(void *ctx, const float *scores, int rows, int ld_scores, int len0, int len_step, int k,
                             int32_t *out)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (!c) return DSA_EOP;
    if (rows < 0) return dsa_cuda_fail(c, "topk: rows = %d < 0", rows);
    if (ld_scores < 0) return dsa_cuda_fail(c, "topk: ld_scores = %d < 0", ld_scores);
    if (k < 0) return dsa_cuda_fail(c, "topk: k = %d < 0", k);
    if (rows == 0 || k == 0) return DSA_OK;
    if (!scores) return dsa_cuda_fail(c, "topk: scores is NULL");
    if (!out) return dsa_cuda_fail(c, "topk: out is NULL");
    if ((uintptr_t)scores & 3u) return dsa_cuda_fail(c, "topk: scores not 4-byte aligned");
    if ((uintptr_t)out & 3u) return dsa_cuda_fail(c, "topk: out not 4-byte aligned");
    if ((size_t)LongRows::kCap * sizeof(uint2) + sizeof(SelectShared<LongRows::kThreads>) > c->smem_optin)
        return dsa_cuda_fail(c, "topk: needs %zu bytes of shared memory per block, the device allows %zu",
                             (size_t)LongRows::kCap * sizeof(uint2) + sizeof(SelectShared<LongRows::kThreads>),
                             c->smem_optin);

    // Lengths are linear in r, so the longest row is the first or the last.
    const int len_first = clip_len(len0, ld_scores);
    const int len_last = clip_len((long long)len0 + (long long)(rows - 1) * len_step, ld_scores);
    const int len_max = len_first > len_last ? len_first : len_last;

    // Few rows: split each over several blocks so the grid fills the GPU.
    if (len_max > k && 2 * rows <= c->sms) {
        const int by_sms = c->sms / rows;
        const int by_len = (int)(((long long)len_max + kSplitMinChunk - 1) / kSplitMinChunk);
        const int splits = by_sms < by_len ? by_sms : by_len;
        if (splits >= 2) return launch_split(c, scores, rows, ld_scores, len0, len_step, k, splits, len_max, out);
    }
    if (len_max <= kShortMaxLen) return launch_rows<ShortRows>(c, scores, rows, ld_scores, len0, len_step, k, out);
    return launch_rows<LongRows>(c, scores, rows, ld_scores, len0, len_step, k, out);
}
