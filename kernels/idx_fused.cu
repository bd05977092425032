// kernels/idx_fused.cu — the DSA indexer scores and their exact top-k in one operation that never
// writes the score matrix (kernels/ops.h: idx_fused_prefill, idx_fused_decode).
//
// Result contract: out[i] = the index SET that idx_logits followed by topk gives for row i (ties to
// the lower index, -1 padding), written in an arbitrary order as the CUDA topk does (the sparse
// attention that consumes it does not depend on the order). The scores are computed by the same
// kernel as idx_logits (idx_logits_core.cuh, an epilogue policy decides what happens to them), so
// they are bit-identical, and the selection is exact on 64-bit composites
//   c = order_key(score) << 32 | ~index
// (order_key: the order-preserving uint32 image of a float, NaN lowest as the reference ranks it,
// -0 == +0); the reference's order (score desc, index asc) is c descending, and every c of a row is
// distinct, so "the k best" is one threshold on c with no tie left to break.
//
// Why it is exact. Row i (len_i = q_pos0 + i + 1 keys in prefill, n_keys in decode) is split into a
// head F = keys [0, B0) and the rest. Three facts:
//   1. The k-th best score T_i of F_i (its first min(B0, len_i) keys) is <= the k-th best of the row:
//      the k best of F_i are k row elements scoring >= T_i.
//   2. A key s >= B0 with score < T_i, or == T_i, is out of the row's top-k: those k elements of F
//      beat it (higher score, or equal score and lower index since every F index is < B0 <= s).
//   3. An element of F outside F's own top-k is out: k elements of F beat it.
// So the row's top-k is the top-k of {F's top-k} + {s >= B0 : score > T_i}, and when F_i has fewer
// than k elements (T_i = -inf) every key is kept. Nothing depends on the data but the count of
// survivors, and their lists have room for every key by construction (below).
//
// Pipeline (one stream, no host sync, graph-capturable once the scratch is reserved):
//   1. F scores: the idx_logits kernel (StoreScores epilogue) on keys [0, B0) into scratch [rows, B0].
//   2. select_rows<dense, threshold>: per row, F's top-k composites, their count, and T_i.
//   3. The main pass: the idx_logits kernel on keys [B0, n_keys) with the AppendSurvivors epilogue:
//      a score > T_i (or any, when T_i = -inf) is appended as its composite to the list of (row,
//      key chunk) — warp ballots give each survivor its slot, one shared-memory atomic per warp and
//      query hands out the slots of the block's list — no global atomics, nothing but survivors
//      leaves the SM. A list holds up to the chunk's key count: it cannot overflow, whatever the
//      scores (the adversarial case "scores increase along the keys" makes every key a survivor and
//      fills them). The lists alias step 1's score buffer, dead by then.
//   4. select_rows<lists, final>: per row, the exact top-k of F's top-k + every chunk's list -> out.
// Rows whose keys all fit in F (n_keys <= B0) and heads > 64 (idx_logits' CUDA-core kernel) take a
// dense path: all scores into scratch, then one select_rows<dense, final>.
//
// B0 balances the two costs: F costs ~4 B written + read per key of F, a survivor ~8 + 8 B, and with
// scores independent of the position ~k (L - B0) / B0 keys survive, so the traffic
// B0 + 2 k (L - B0) / B0 is least at B0 = sqrt(2 k L): 28.7K keys at L = 200K, k = 2048, leaving
// ~14K candidates per row instead of 200K scores (the unfused pair writes 200K, topk reads them
// twice). B0 is capped so that F rows fit select_rows' shared memory (48K scores).
//
// select_rows: one block of 1024 threads per row. Candidates (F scores as fp32, or list composites)
// are loaded once into shared memory (192 KB: 48K scores or 24K composites) with 8 loads in flight
// per thread; then MSB-first radix select on c in 11-bit digits (shifts 64 -> 53 -> 42 -> 32 ->
// 21 -> 10 -> 0): a histogram of the next digit over the candidates that match the prefix found so
// far (lanes of a warp with equal bins add once: __match_any_sync), a block scan from the top bin
// finds the bin that holds the need-th best; it stops as soon as the prefix's bin holds exactly the
// elements still needed, which for continuous scores is within the 32 score bits. A final pass
// writes every candidate whose top bits are >= the prefix (exactly min(k, count)). Rows with more
// candidates than shared memory holds (only for data that defeats the threshold) run the same
// passes from global memory: slower, equally exact.
//
// Decode (B requests, one query each) runs the same pipeline with one query per tile (the idx_logits
// decode kernel shape) and its per-request cache stride; F is then read by B blocks only.
//
// Next optimisations (not done): raise T_i during the main pass (key ranges in sequence with a
// re-selection between them) so survivors fall from ~k L / B0 to ~k ln(L / B0); two select blocks
// per SM (half the shared cache) so one row's passes overlap the next row's load; for decode with
// few rows, split each row's selection over several blocks as topk.cu does (one block per request
// leaves most SMs idle and its latency dominates).
#include <cub/block/block_scan.cuh>
#include <math.h>

#include "cuda_ops.h"
#include "idx_logits_core.cuh"
#include "topk_core.cuh"

namespace {

// ---- composites ------------------------------------------------------------------------------

// order_key (the order-preserving image of a float, NaN lowest, -0 == +0) is topk_core.cuh's,
// so the fused selection ranks exactly as the top-k kernel does.

// The float of an order key (NaN for key 0).
__device__ __forceinline__ float key_value(uint32_t key)
{
    return __uint_as_float((key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key);
}

// Larger composite = better: higher score, then lower index.
__device__ __forceinline__ unsigned long long composite(float score, int index)
{
    return ((unsigned long long)order_key(score) << 32) | (uint32_t)~(uint32_t)index;
}

// ---- main pass epilogue: survivors of the threshold into per-(row, chunk) lists ----------------

template <int QB> struct AppendSurvivors {
    struct Args {
        const float *thr;         // [rows]: row r keeps scores > thr[r]; every score when thr[r] = -inf
        unsigned long long *segs; // list of (row r, chunk c) at segs + (r * n_chunks + c) * seg_cap
        int *counts;              // [rows, n_chunks]: entries in each list
        int n_chunks, seg_cap;    // seg_cap = keys per chunk, so a list cannot overflow
        int key_base;             // index of the key at p.cache (the main pass starts at B0)
    };
    static constexpr int QPL = QB == 1 ? 1 : QB / 4; // queries per lane
    static constexpr int kSmemBytes = QB * (int)sizeof(uint32_t); // the block's list lengths
    const IdxParams &p;
    const Args &a;
    const int q0, q_count;
    uint32_t *list_len = nullptr;
    float thr[QPL];

    __device__ __forceinline__ AppendSurvivors(const IdxParams &p_, const Args &a_, int q0_, int q_count_)
        : p(p_), a(a_), q0(q0_), q_count(q_count_)
    {
    }

    __device__ __forceinline__ static bool keep(float v, float t) { return v > t || t == -INFINITY; }

    __device__ __forceinline__ unsigned long long *list(int q) const
    {
        return a.segs + ((size_t)(q0 + q) * a.n_chunks + grid_chunk<QB>()) * a.seg_cap;
    }

    __device__ __forceinline__ void skipped_chunk(int, int, int tid, int) const
    {
        if (tid < q_count) a.counts[(size_t)(q0 + tid) * a.n_chunks + grid_chunk<QB>()] = 0;
    }

    __device__ __forceinline__ void begin(int ctid, uint8_t *smem)
    {
        list_len = (uint32_t *)smem;
        if (ctid < QB) list_len[ctid] = 0; // the kernel's consumer barrier follows
        const int t = ctid & 3;
        #pragma unroll
        for (int i = 0; i < QPL; i++) {
            const int q = QB == 1 ? 0 : t * QPL + i;
            thr[i] = q < q_count ? a.thr[q0 + q] : INFINITY;
        }
    }

    // QB == 1 (decode): quad lane 0 owns key_a, lane 1 key_b.
    __device__ __forceinline__ void put1(int t, int key_a, int key_b, float v0, float v1, float kscale0,
                                         float kscale1, int lim) const
    {
        const int lane = threadIdx.x & 31;
        const int key = t ? key_b : key_a;
        const float v = t ? v1 * kscale1 : v0 * kscale0; // the StoreScores expression: same rounding
        const long long allowed = p.q_pos0 + (long long)p.q_pos_step * q0;
        const bool kept = t < 2 && key < lim && key <= allowed && keep(v, thr[0]);
        const uint32_t ballot = __ballot_sync(0xffffffffu, kept);
        uint32_t base = 0;
        if (lane == 0 && ballot) base = atomicAdd(&list_len[0], (uint32_t)__popc(ballot));
        base = __shfl_sync(0xffffffffu, base, 0);
        if (kept) list(0)[base + __popc(ballot & ((1u << lane) - 1u))] = composite(v, a.key_base + key);
    }

    // QB > 1: lane t owns queries t*QPL + i; the 8 lanes of equal t (one per g) share a query, and
    // lane t (g = 0) takes the slots of their survivors with one shared atomic.
    template <int N>
    __device__ __forceinline__ void putq(int t, const float (&tot0)[N], const float (&tot1)[N], float kscale0,
                                         float kscale1, int key_a, int key_b, int lim) const
    {
        static_assert(N == QPL, "queries per lane");
        const int lane = threadIdx.x & 31;
        const uint32_t group = 0x11111111u << t, below = (1u << lane) - 1u;
        #pragma unroll
        for (int i = 0; i < QPL; i++) {
            const int q = t * QPL + i;
            const long long allowed = p.q_pos0 + (long long)p.q_pos_step * (q0 + q);
            const float va = tot0[i] * kscale0, vb = tot1[i] * kscale1; // StoreScores' expressions
            const bool real = q < q_count;
            const bool ka = real && key_a < lim && key_a <= allowed && keep(va, thr[i]);
            const bool kb = real && key_b < lim && key_b <= allowed && keep(vb, thr[i]);
            const uint32_t ba = __ballot_sync(0xffffffffu, ka) & group;
            const uint32_t bb = __ballot_sync(0xffffffffu, kb) & group;
            const int na = __popc(ba), n_kept = na + __popc(bb);
            uint32_t base = 0;
            if (lane == t && n_kept) base = atomicAdd(&list_len[q], (uint32_t)n_kept);
            base = __shfl_sync(0xffffffffu, base, t);
            if (ka) list(q)[base + __popc(ba & below)] = composite(va, a.key_base + key_a);
            if (kb) list(q)[base + na + __popc(bb & below)] = composite(vb, a.key_base + key_b);
        }
    }

    __device__ __forceinline__ void end(int, int, int ctid) const
    {
        consumer_sync(); // every consumer's slots are taken
        if (ctid < q_count) a.counts[(size_t)(q0 + ctid) * a.n_chunks + grid_chunk<QB>()] = (int)list_len[ctid];
    }
};

// ---- exact top-k of each row's candidates ----------------------------------------------------

// One block per row, one per SM: the shared cache takes most of shared memory, and 1024 threads
// keep 8 x 1024 loads in flight while it fills.
constexpr int SEL_THREADS = 1024;
constexpr int SEL_BINS = 2048;                       // 11-bit digits: 2 bins per thread in the scan
constexpr int SEL_CACHE_BYTES = 192 * 1024;          // + ~13 KB static: within the 227 KB a block may use
constexpr int SEL_DENSE_CAP = SEL_CACHE_BYTES / 4;   // 49152 fp32 scores
constexpr int SEL_LIST_CAP = SEL_CACHE_BYTES / 8;    // 24576 composites
constexpr int SEL_LOAD_UNROLL = 8;
// Lists per row: F's plus one per key chunk; their offsets come from one block scan (1 per thread).
constexpr int MAX_CHUNKS = 256;
static_assert(SEL_BINS == 2 * SEL_THREADS && MAX_CHUNKS + 2 <= SEL_THREADS, "select_rows layout");
static_assert(SEL_DENSE_CAP % KEY_TILE == 0, "B0 is a whole number of key tiles");

struct SelectArgs {
    int k;
    // dense source: row r = dense + r * ld; its first clamp(len0 + r * len_step, 0, ld) scores
    const float *dense;
    int ld;
    long long len0;
    int len_step;
    // list source: F's list (fseg + r * k, fcount[r] entries), chunk c's list
    // (segs + (r * n_chunks + c) * seg_cap, counts[r * n_chunks + c] entries)
    const unsigned long long *fseg;
    const int *fcount;
    const unsigned long long *segs;
    const int *counts;
    int n_chunks, seg_cap;
    // final: out[r, 0..k) indices, -1 padded; threshold: fseg_out[r, 0..fcount_out[r]) composites of
    // the min(k, count) best, thr_out[r] = the k-th best score (-inf when fewer than k, or not a
    // number above -inf)
    int32_t *out;
    unsigned long long *fseg_out;
    int *fcount_out;
    float *thr_out;
};

// Row r's candidates as composites, visited by every thread of the block in warp-uniform steps
// (all 32 lanes call f together, `valid` false past the end), from the shared cache when loaded.
template <bool DENSE> struct RowCandidates {
    const SelectArgs &a;
    int r, total;
    bool cached;
    const float *drow;        // DENSE: the row's scores
    const int *list_off;      // lists: list s holds candidates [list_off[s], list_off[s + 1])
    const void *cache;

    __device__ __forceinline__ const unsigned long long *list(int s) const
    {
        return s == 0 ? a.fseg + (size_t)r * a.k : a.segs + ((size_t)r * a.n_chunks + (s - 1)) * a.seg_cap;
    }

    // candidates -> shared memory, 8 loads in flight per thread (read once: evict-first)
    __device__ __forceinline__ void load(void *dst) const
    {
        int s = 0; // this thread's list: its indices only grow
        for (int i0 = threadIdx.x; i0 < total; i0 += SEL_LOAD_UNROLL * SEL_THREADS) {
            if constexpr (DENSE) {
                float v[SEL_LOAD_UNROLL];
                #pragma unroll
                for (int u = 0; u < SEL_LOAD_UNROLL; u++) {
                    const int i = i0 + u * SEL_THREADS;
                    v[u] = i < total ? __ldcs(drow + i) : 0.0f;
                }
                #pragma unroll
                for (int u = 0; u < SEL_LOAD_UNROLL; u++) {
                    const int i = i0 + u * SEL_THREADS;
                    if (i < total) ((float *)dst)[i] = v[u];
                }
            } else {
                unsigned long long v[SEL_LOAD_UNROLL];
                #pragma unroll
                for (int u = 0; u < SEL_LOAD_UNROLL; u++) {
                    const int i = i0 + u * SEL_THREADS;
                    v[u] = 0;
                    if (i < total) {
                        while (i >= list_off[s + 1]) s++;
                        v[u] = __ldcs(list(s) + (i - list_off[s]));
                    }
                }
                #pragma unroll
                for (int u = 0; u < SEL_LOAD_UNROLL; u++) {
                    const int i = i0 + u * SEL_THREADS;
                    if (i < total) ((unsigned long long *)dst)[i] = v[u];
                }
            }
        }
    }

    template <class F> __device__ __forceinline__ void each(F &&f) const
    {
        const int lane = threadIdx.x & 31;
        int s = 0;
        for (int base = threadIdx.x - lane; base < total; base += SEL_THREADS) { // warp-uniform
            const int i = base + lane;
            const bool valid = i < total;
            unsigned long long c = 0;
            if (valid) {
                if constexpr (DENSE) {
                    c = composite(cached ? ((const float *)cache)[i] : __ldg(drow + i), i);
                } else if (cached) {
                    c = ((const unsigned long long *)cache)[i];
                } else {
                    while (i >= list_off[s + 1]) s++;
                    c = __ldg(list(s) + (i - list_off[s]));
                }
            }
            f(c, valid);
        }
    }
};

// next_shift (11-bit digits 64 -> 53 -> 42 -> 32 -> 21 -> 10 -> 0) is topk_core.cuh's.

template <bool DENSE, bool THRESHOLD>
__global__ void __launch_bounds__(SEL_THREADS, 1) select_rows(const SelectArgs a)
{
    using Scan = cub::BlockScan<uint32_t, SEL_THREADS, cub::BLOCK_SCAN_WARP_SCANS>;
    __shared__ typename Scan::TempStorage scan;
    __shared__ uint32_t hist[SEL_BINS];
    __shared__ int list_off[MAX_CHUNKS + 2];
    __shared__ unsigned long long s_prefix;
    __shared__ uint32_t s_need, s_match, s_taken, s_min_key;
    extern __shared__ __align__(16) uint8_t sel_cache[];

    const int r = blockIdx.x, tid = threadIdx.x, lane = tid & 31;
    const int k = a.k;

    RowCandidates<DENSE> src{a, r, 0, false, nullptr, list_off, sel_cache};
    if constexpr (DENSE) {
        const long long len = a.len0 + (long long)r * a.len_step;
        src.total = (int)(len < 0 ? 0 : len > a.ld ? a.ld : len);
        if (src.total > 0) src.drow = a.dense + (size_t)r * a.ld;
        src.cached = src.total <= SEL_DENSE_CAP;
    } else {
        const int n_lists = a.n_chunks + 1;
        uint32_t n = 0, off, total;
        if (tid < n_lists) n = (uint32_t)(tid == 0 ? a.fcount[r] : a.counts[(size_t)r * a.n_chunks + tid - 1]);
        Scan(scan).ExclusiveSum(n, off, total);
        if (tid <= n_lists) list_off[tid] = (int)off; // list_off[n_lists] = total
        src.total = (int)total;
        src.cached = src.total <= SEL_LIST_CAP;
        __syncthreads();
    }
    if (src.cached) {
        src.load(sel_cache);
        __syncthreads();
    }

    // Radix select of the k-th best composite, unless every candidate is taken.
    const bool take_all = src.total <= k;
    int shift = 64;              // bits [shift, 64) of the k-th best are known: prefix
    unsigned long long prefix = 0;
    uint32_t need = (uint32_t)k; // how many of the candidates matching the prefix are to be taken
    while (!take_all) {
        const int next = next_shift(shift);
        const uint32_t digit_mask = (1u << (shift - next)) - 1u;
        for (int b = tid; b < SEL_BINS; b += SEL_THREADS) hist[b] = 0;
        __syncthreads();
        src.each([&](unsigned long long c, bool valid) {
            const bool match = valid && (shift == 64 || (c >> shift) == prefix);
            const uint32_t bin = match ? (uint32_t)(c >> next) & digit_mask : 0xFFFFFFFFu;
            const uint32_t peers = __match_any_sync(0xffffffffu, bin);
            if (match && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], (uint32_t)__popc(peers));
        });
        __syncthreads();
        // bins from the top: thread t holds bins 2047 - 2t and 2046 - 2t; "above" counts better bins
        uint32_t h[2] = {hist[SEL_BINS - 1 - 2 * tid], hist[SEL_BINS - 2 - 2 * tid]}, above[2];
        Scan(scan).ExclusiveSum(h, above);
        #pragma unroll
        for (int u = 0; u < 2; u++)
            if (above[u] < need && above[u] + h[u] >= need) { // exactly one bin in the block
                const uint32_t bin = (uint32_t)(SEL_BINS - 1 - 2 * tid - u);
                s_prefix = (shift == 64 ? 0ull : prefix << (shift - next)) | bin;
                s_need = need - above[u];
                s_match = h[u];
            }
        __syncthreads();
        prefix = s_prefix;
        need = s_need;
        shift = next;
        if (s_match == need) break; // every candidate matching the prefix is taken (composites are distinct)
    }

    // Write the taken: all, or those whose bits [shift, 64) are >= the prefix (exactly k).
    if (tid == 0) s_taken = 0, s_min_key = 0xFFFFFFFFu;
    __syncthreads();
    src.each([&](unsigned long long c, bool valid) {
        const bool take = valid && (take_all || (c >> shift) >= prefix);
        const uint32_t ballot = __ballot_sync(0xffffffffu, take);
        uint32_t base = 0;
        if (lane == 0 && ballot) base = atomicAdd(&s_taken, (uint32_t)__popc(ballot));
        base = __shfl_sync(0xffffffffu, base, 0);
        const size_t pos = (size_t)r * k + base + __popc(ballot & ((1u << lane) - 1u));
        if constexpr (THRESHOLD) {
            if (take) a.fseg_out[pos] = c;
            const uint32_t m = __reduce_min_sync(0xffffffffu, take ? (uint32_t)(c >> 32) : 0xFFFFFFFFu);
            if (lane == 0 && m != 0xFFFFFFFFu) atomicMin(&s_min_key, m);
        } else {
            if (take) a.out[pos] = (int32_t)~(uint32_t)c;
        }
    });
    __syncthreads();
    const int taken = (int)s_taken; // min(k, total)
    if constexpr (THRESHOLD) {
        if (tid == 0) {
            a.fcount_out[r] = taken;
            float t = -INFINITY;
            if (taken == k) {
                t = key_value(s_min_key);
                if (!(t > -INFINITY)) t = -INFINITY; // NaN: keep everything, as for -inf
            }
            a.thr_out[r] = t;
        }
    } else {
        for (int j = taken + tid; j < k; j += SEL_THREADS) a.out[(size_t)r * k + j] = -1;
    }
}

// ---- plan and launch -------------------------------------------------------------------------

struct FusedPlan {
    bool dense;                // all scores into scratch, one selection (no threshold pass)
    int hp, qb;                // heads padded; queries per tile (prefill 256 / hp, decode 1)
    int b0;                    // F = keys [0, b0); dense: b0 = n_keys
    long long f_chunk_tiles;   // key tiles per block of the F (or dense) logits pass
    int n_chunks, chunk_tiles; // main pass: key chunks, tiles per chunk (one list per row and chunk)
    size_t thr_off, fcount_off, counts_off, fseg_off, big_off, bytes; // scratch layout
};

size_t align_up(size_t x) { return (x + 255) & ~(size_t)255; }

FusedPlan make_plan(int rows, int heads, int n_keys, int k, bool decode, int sms)
{
    FusedPlan P = {};
    P.hp = heads <= 16 ? 16 : heads <= 32 ? 32 : 64;
    P.qb = decode ? 1 : PREFILL_N / P.hp;
    const long long query_tiles = ceil_div(rows, P.qb);
    long long b0 = (long long)ceil(sqrt(2.0 * (double)n_keys * (double)k));
    if (b0 < 2LL * k) b0 = 2LL * k; // T must be the k-th of a set larger than k to filter anything
    b0 = ceil_div(b0, KEY_TILE) * KEY_TILE;
    if (b0 > SEL_DENSE_CAP) b0 = SEL_DENSE_CAP;
    P.dense = heads > 64 || b0 >= n_keys;
    P.b0 = P.dense ? n_keys : (int)b0;
    const long long f_tiles = ceil_div(P.b0, KEY_TILE);
    if (f_tiles > 0) {
        const long long chunk =
            decode ? decode_chunk_tiles(rows, f_tiles, sms) : prefill_chunk_tiles(query_tiles, f_tiles, sms);
        P.f_chunk_tiles = ceil_div(f_tiles, ceil_div(f_tiles, chunk)); // as many chunks, evened out
    }
    size_t big = (size_t)rows * (size_t)P.b0 * sizeof(float);
    if (!P.dense) {
        const long long key_tiles = ceil_div(n_keys - P.b0, KEY_TILE);
        long long chunk =
            decode ? decode_chunk_tiles(rows, key_tiles, sms) : prefill_chunk_tiles(query_tiles, key_tiles, sms);
        if (chunk < ceil_div(key_tiles, MAX_CHUNKS)) chunk = ceil_div(key_tiles, MAX_CHUNKS);
        P.chunk_tiles = (int)ceil_div(key_tiles, ceil_div(key_tiles, chunk)); // as many chunks, evened out
        P.n_chunks = (int)ceil_div(key_tiles, P.chunk_tiles); // the grid launch_wgmma makes
        const size_t lists = (size_t)rows * P.n_chunks * P.chunk_tiles * KEY_TILE * sizeof(unsigned long long);
        if (lists > big) big = lists; // the lists replace the F scores once those are selected
    }
    P.thr_off = 0;
    P.fcount_off = align_up(P.thr_off + (size_t)rows * sizeof(float));
    P.counts_off = align_up(P.fcount_off + (size_t)rows * sizeof(int));
    P.fseg_off = align_up(P.counts_off + (size_t)rows * P.n_chunks * sizeof(int));
    P.big_off = align_up(P.fseg_off + (P.dense ? 0 : (size_t)rows * k * sizeof(unsigned long long)));
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

template <bool DENSE, bool THRESHOLD> int launch_select(dsa_cuda_ctx *c, const SelectArgs &a, int rows, const char *op)
{
    auto kernel = select_rows<DENSE, THRESHOLD>;
    static bool attr_set = false; // per instantiation; the ctx is one device
    if (!attr_set) {
        if (int rc = dsa_cuda_status(
                c, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, SEL_CACHE_BYTES), op))
            return rc;
        attr_set = true;
    }
    kernel<<<rows, SEL_THREADS, SEL_CACHE_BYTES, c->stream>>>(a);
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

// Both ops: rows queries (prefill: positions q_pos0 + i, one cache; decode: one per request, each
// with its cache at cache + b * cache_stride and every key visible).
int run_fused(dsa_cuda_ctx *c, const char *op, const uint8_t *q, const float *w, int rows, int heads,
              const uint8_t *cache, size_t cache_stride, int n_keys, int q_pos0, bool decode, int k, int32_t *out)
{
    const FusedPlan P = make_plan(rows, heads, n_keys, k, decode, c->sms);
    if (ceil_div(rows, P.qb) > 65535 || (heads > 64 && rows > 65535))
        return dsa_cuda_fail(c, "%s: %d queries is more than one launch covers", op, rows);
    uint8_t *scratch = nullptr;
    if (int rc = take_scratch(c, op, P.bytes, &scratch)) return rc;
    float *thr = (float *)(scratch + P.thr_off);
    int *fcount = (int *)(scratch + P.fcount_off);
    int *counts = (int *)(scratch + P.counts_off);
    unsigned long long *fseg = (unsigned long long *)(scratch + P.fseg_off);
    float *scores = (float *)(scratch + P.big_off);                          // F (or all) scores
    unsigned long long *segs = (unsigned long long *)(scratch + P.big_off); // then the main lists

    // query i may see keys s <= q_pos0 + i (prefill) or all n_keys (decode)
    const long long pos0 = decode ? (long long)n_keys - 1 : q_pos0;
    const int pos_step = decode ? 0 : 1;
    const size_t stride = decode && rows > 1 ? cache_stride : 0;
    SelectArgs sel = {};
    sel.k = k;
    sel.dense = scores;
    sel.ld = P.b0;
    sel.len0 = decode ? (long long)n_keys : (long long)q_pos0 + 1;
    sel.len_step = pos_step;

    // 1. F scores (dense: all scores)
    if (P.b0 > 0) {
        const IdxParams f = {q, w, cache, stride, scores, (size_t)P.b0, rows, heads, P.b0, pos0, pos_step, 0};
        int rc = heads > 64 ? launch_generic(c, f, op)
                            : launch_logits<StoreScores>(c, P, decode, f, {}, {}, {}, {}, (int)P.f_chunk_tiles, op);
        if (rc) return rc;
    }
    if (P.dense) {
        sel.out = out;
        return launch_select<true, false>(c, sel, rows, op);
    }
    // 2. F's top-k and the threshold
    sel.fseg_out = fseg;
    sel.fcount_out = fcount;
    sel.thr_out = thr;
    if (int rc = launch_select<true, true>(c, sel, rows, op)) return rc;
    // 3. survivors of keys [b0, n_keys)
    const IdxParams m = {q,  w, cache + (size_t)P.b0 * KEY_BYTES, stride, nullptr, 0, rows, heads, n_keys - P.b0,
                         pos0 - P.b0, pos_step, 0};
    const int seg_cap = P.chunk_tiles * KEY_TILE;
    const AppendSurvivors<1>::Args a1 = {thr, segs, counts, P.n_chunks, seg_cap, P.b0};
    const AppendSurvivors<PREFILL_N / 16>::Args a16 = {thr, segs, counts, P.n_chunks, seg_cap, P.b0};
    const AppendSurvivors<PREFILL_N / 32>::Args a32 = {thr, segs, counts, P.n_chunks, seg_cap, P.b0};
    const AppendSurvivors<PREFILL_N / 64>::Args a64 = {thr, segs, counts, P.n_chunks, seg_cap, P.b0};
    if (int rc = launch_logits<AppendSurvivors>(c, P, decode, m, a1, a16, a32, a64, P.chunk_tiles, op)) return rc;
    // 4. the exact top-k of F's top-k and the survivors
    SelectArgs fin = {};
    fin.k = k;
    fin.fseg = fseg;
    fin.fcount = fcount;
    fin.segs = segs;
    fin.counts = counts;
    fin.n_chunks = P.n_chunks;
    fin.seg_cap = seg_cap;
    fin.out = out;
    return launch_select<false, false>(c, fin, rows, op);
}

} // namespace

extern "C" size_t dsa_cuda_idx_fused_scratch_bytes(void *ctx, int rows, int heads, int n_keys, int k, int decode)
{
    const dsa_cuda_ctx *c = (const dsa_cuda_ctx *)ctx;
    if (!c || rows <= 0 || heads <= 0 || n_keys < 0 || k <= 0) return 0;
    return make_plan(rows, heads, n_keys, k, decode != 0, c->sms).bytes;
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
