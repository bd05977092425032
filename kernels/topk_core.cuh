// kernels/topk_core.cuh — the exact selection core of kernels/topk.cu: the order-preserving keys,
// one block's radix-select state, and the exact top-k of a candidate set held in shared memory.
// Kept apart so that the fused indexer + top-k (kernels/idx_fused.cu), which filters its own score
// tiles against a sampled threshold, resolves its candidates with the same code. Everything is in
// an anonymous namespace: each including .cu file gets its own copy.
//
// Order. Each element gets a 64-bit composite c = key << 32 | ~index, where key is the
// order-preserving uint32 image of the float (NaN lowest, as in the reference; -0 == +0). The
// reference's order (score desc, index asc) is exactly c descending, and all c of a row are
// distinct, so the top k are {c >= T} for one threshold T with no ties left to break. T is found
// MSB first in digits of at most 11 bits: a histogram of the next digit over the elements that
// still match the prefix found so far picks the digit holding the k-th best; the search stops as
// soon as the elements matching the prefix are exactly the ones still needed ("exact").
#pragma once

#include <cub/block/block_scan.cuh>
#include <stdint.h>

namespace {

constexpr int kBins = 2048;      // 11-bit digits: 2048 counters of 4 bytes fit beside the candidates
constexpr int kFirstShift = 53;  // a search over the whole key space starts with the top 11 bits (c >> 53)

// ---- the sampled threshold (kernels/topk.cu, kernels/idx_fused.cu) ----

// Sampling: 128 chunks of 32 scores (one 128-byte warp load each), one centred in each of 128
// equal strata of the row: small chunks keep clusters of high scores (a relevant passage) from
// weighing as much as the whole stratum, and no chunk sits at either end of the row (the local
// window and the attention sinks, whose high scores a chunk there would over-represent). 4096
// samples put the j-th best within ~10% of its expected rank (1/sqrt(j), j ~ 100 at 200K), far
// inside the [k, kCap] window the filter needs.
constexpr int kSampleChunks = 128;
constexpr int kSampleChunkLen = 32;
constexpr int kSamples = kSampleChunks * kSampleChunkLen;
constexpr int kMinSampleRank = 64;   // for small k: the j-th sample keeps a relative spread <= 1/8

// The position of sample i (0 <= i < chunks * kSampleChunkLen) in a row of len >= that many
// scores: chunk i / kSampleChunkLen, centred in its stratum (one of `chunks` equal ones), offset
// i % kSampleChunkLen. Never outside [0, len). topk.cu always takes kSampleChunks; idx_fused takes
// half as many where the rows are short enough (kernels/idx_fused.cu, sample_count).
__host__ __device__ __forceinline__ int sample_position(int i, int len, int chunks = kSampleChunks)
{
    const long long mid = (2ll * (i / kSampleChunkLen) + 1) * len / (2 * chunks);  // centre of the stratum
    return (int)(mid - kSampleChunkLen / 2 + i % kSampleChunkLen);
}

// The sample rank j for a row of len scores and m samples (0: do not sample, use the general
// path). The count of the row at or above the j-th best of m samples is expected near
// len * j / m; j aims that at 2.5 k (and at >= kMinSampleRank samples), capped so that it stays
// <= cap / 2, and is refused when the cap leaves less than 1.25 k expected (large k: fallbacks
// would be common).
__host__ __device__ __forceinline__ uint32_t sample_rank(int len, int k, int cap, int samples = kSamples)
{
    if (len <= cap || len < samples) return 0u;
    const long long m = samples, n = len;
    long long j = (5ll * k * m + 2 * n - 1) / (2 * n);  // ceil(2.5 k m / n)
    j = j > kMinSampleRank ? j : kMinSampleRank;
    const long long j_max = (long long)cap * m / (2 * n);
    j = j < j_max ? j : j_max;
    const long long j_min = (5ll * k * m + 4 * n - 1) / (4 * n);  // ceil(1.25 k m / n)
    return (j >= 1 && j >= j_min && j <= m) ? (uint32_t)j : 0u;
}

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
    uint32_t list_base, list_total, is_last;  // the split (decode) path's hand-off
    uint32_t warp_lo[T / 32], warp_hi[T / 32];  // per-warp key range of the candidates
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

// The lowest float whose key is >= tau (-inf when every non-NaN score qualifies): never NaN, so
// `v >= threshold_float(tau)` is false for NaN scores and exact for all others.
__device__ __forceinline__ float threshold_float(uint32_t tau)
{
    if (tau >= 0x80000000u) return __uint_as_float(tau & 0x7FFFFFFFu);  // +0 .. +inf (tau <= key(+inf))
    if (tau >= 0x00800000u) return __uint_as_float(~tau);               // the negative float of key tau
    return -__int_as_float(0x7F800000);                                 // -inf
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

// Digits of 11 bits, never straddling the key/index boundary at bit 32: from 64 this is
// 53, 42, 32, 21, 10, 0; a search that starts lower (resolve_candidates) keeps 11-bit steps.
__device__ __forceinline__ int next_shift(int s)
{
    return s > 32 ? (s - 11 > 32 ? s - 11 : 32) : (s - 11 > 0 ? s - 11 : 0);
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

template <int T> __device__ __forceinline__ void zero_hist(SelectShared<T> &sh)
{
    for (int b = threadIdx.x; b < kBins; b += T) sh.hist[b] = 0;
}

// Finds the bin b with (count in bins above b) < need <= (count in bins >= b), walking the bins
// from the top; needs 1 <= need <= total. Leaves b and the count above it in sh.sel_*. Every
// read of sh.hist is done when it returns (its last step is a barrier).
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

// The exact key of the rank-th best (1 <= rank <= T * kPer) of the keys the block holds in
// registers, kPer per thread: three histograms, one per key digit (bits [21, 32), [10, 21),
// [0, 10)), each over the keys matching the digits found before. Every thread returns the same
// value. Expects no thread still reading sh.hist; leaves a barrier passed.
template <int T, int kPer>
__device__ uint32_t kth_key(SelectShared<T> &sh, const uint32_t (&key)[kPer], uint32_t rank)
{
    uint32_t prefix = 0, need = rank;
#pragma unroll
    for (int level = 0; level < 3; level++) {
        const int hi = level == 0 ? 32 : level == 1 ? 21 : 10;  // the digit is key bits [lo, hi)
        const int lo = level == 0 ? 21 : level == 1 ? 10 : 0;
        const uint32_t mask = (1u << (hi - lo)) - 1;
        zero_hist<T>(sh);  // the previous select_bin has finished reading the bins
        __syncthreads();
#pragma unroll
        for (int u = 0; u < kPer; u++)
            if (level == 0 || (key[u] >> hi) == prefix) atomicAdd(&sh.hist[(key[u] >> lo) & mask], 1u);
        __syncthreads();
        select_bin<T>(sh, need);
        prefix = (prefix << (hi - lo)) | sh.sel_bin;
        need -= sh.sel_above;
    }
    return prefix;
}

// After a histogram of digit [ns, s) over the elements matching (s, prefix): choose the digit
// and move the state down to shift ns.
template <int T>
__device__ void finish_step(SelectShared<T> &sh, int s, int ns, unsigned long long prefix, uint32_t need)
{
    select_bin<T>(sh, need);
    if (threadIdx.x == 0) {
        const uint32_t b = sh.sel_bin, n_match = sh.hist[b], left = need - sh.sel_above;
        sh.prefix = s >= 64 ? (unsigned long long)b : (prefix << (s - ns)) | b;
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

// Resolves the remaining digits on the n candidates cand[0..n) in shared memory (all of which
// match the current prefix; indices < len), then writes those at or above the threshold at
// out[sh.out_count++] (the caller zeroed out_count). The candidates are few (<= a few times k),
// so each digit is a pass over shared memory only.
template <int T>
__device__ void refine_candidates(SelectShared<T> &sh, const uint2 *cand, int n, int len, int k, int32_t *out)
{
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
            const uint32_t pos = warp_claim(&sh.out_count, &sh.out_count, false);
            if (pos < (uint32_t)k) out[pos] = (int32_t)e.y;
        }
    }
}

// Row r's length when rows grow by len_step: len0 + r * len_step, clipped to [0, ld].
__host__ __device__ __forceinline__ int row_len(int r, int ld, long long len0, int len_step)
{
    const long long len = len0 + (long long)r * len_step;
    return (int)(len < 0 ? 0 : len > ld ? ld : len);
}

// len <= k: every index, then -1.
template <int T> __device__ void write_all(int32_t *out, int len, int k)
{
    for (int j = threadIdx.x; j < k; j += T) out[j] = j < len ? j : -1;
}

// The top k of n >= k candidates (key, index) in shared memory, written to out[0..k) in an
// arbitrary order. Expects a barrier since cand was written and none of sh in use; lo and hi are
// the lowest and highest key among the candidates this thread saw (any split of them over the
// threads; 0xFFFFFFFF and 0 for a thread that saw none), so that a caller that already passes over
// the candidates (idx_fused's select_final converts them in place) saves a pass.
// The search starts below the bits all candidates share: a candidate set cut at a threshold is
// narrow (for scores close in value, the top of the key is one sign, one exponent and the first
// mantissa bits), so an 11-bit digit taken from the top of the key would put them all in one bin.
// Starting at the highest bit where the lowest and highest key differ, the first digit already
// spreads them over up to 2048 bins; continuous scores need two digits, ties add index digits.
template <int T>
__device__ void resolve_candidates_in_range(SelectShared<T> &sh, const uint2 *cand, uint32_t n, uint32_t lo,
                                            uint32_t hi, int len, int k, int32_t *out)
{
    lo = __reduce_min_sync(0xFFFFFFFFu, lo);
    hi = __reduce_max_sync(0xFFFFFFFFu, hi);
    if ((threadIdx.x & 31) == 0) {
        sh.warp_lo[threadIdx.x >> 5] = lo;
        sh.warp_hi[threadIdx.x >> 5] = hi;
    }
    __syncthreads();
#pragma unroll
    for (int w = 0; w < T / 32; w++) {
        lo = sh.warp_lo[w] < lo ? sh.warp_lo[w] : lo;
        hi = sh.warp_hi[w] > hi ? sh.warp_hi[w] : hi;
    }
    // Bits [s0, 64) of every candidate's composite are those of hi: key bits above the highest
    // differing one (s0 = 32 when all keys are equal: only index bits are left).
    const uint32_t diff = lo ^ hi;
    const int s0 = diff ? 64 - __clz((int)diff) : 32;
    if (threadIdx.x == 0) {
        sh.prefix = s0 >= 64 ? 0ull : (unsigned long long)(hi >> (s0 - 32));
        sh.shift = s0;
        sh.need = (uint32_t)k;
        sh.n_match = n;
        sh.exact = n == (uint32_t)k;
        sh.out_count = 0;
    }
    __syncthreads();
    refine_candidates<T>(sh, cand, (int)n, len, k, out);
}

// The same, scanning the candidates for their key range first.
template <int T>
__device__ void resolve_candidates(SelectShared<T> &sh, const uint2 *cand, uint32_t n, int len, int k, int32_t *out)
{
    uint32_t lo = 0xFFFFFFFFu, hi = 0u;
    for (uint32_t j = threadIdx.x; j < n; j += T) {
        const uint32_t key = cand[j].x;
        lo = key < lo ? key : lo;
        hi = key > hi ? key : hi;
    }
    resolve_candidates_in_range<T>(sh, cand, n, lo, hi, len, k, out);
}

} // namespace
