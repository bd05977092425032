// kernels/idx_logits_core.cuh — the DSA lightning-indexer score kernels (FP8 tensor cores, sm_90a
// wgmma), shared by idx_logits.cu (every score stored) and idx_fused.cu (scores filtered into a
// top-k candidate list), so both compute bit-identical scores:
//   score[i, s] = k_scale[s] * sum_h w[i, h] * relu(q[i, h] . k[s])    (kernels/ops.h)
//
// The op is the GEMM  K[keys, 128] x Q[queries*heads, 128]^T  followed by a weighted relu-sum
// over the heads of each query. Keys are the wgmma M dimension (64 per consumer warpgroup) and
// the query tile's (query, head) rows the N dimension, so a thread's accumulators hold 2 keys x
// N/4 heads-of-queries: the head reduction is local FMAs plus two quad shuffles, no shared
// memory round trip (DeepGEMM's fp8_mqa_logits makes the same choice).
//
// The key cache rows are 132 bytes (128 e4m3 + fp32 scale): no tensor-core shared-memory layout
// has that pitch, so A (keys) goes to the tensor cores from registers. Each thread loads its A
// fragments with conflict-free 4-byte shared loads (132 B = 33 words: row r, word c is bank
// (r + c) % 32), taking 8 contiguous words of each of its 2 rows; the k order this gives the
// fragments is undone by storing Q's 128 dims permuted the same way (qperm_word below), which
// leaves every dot product unchanged. Q (B operand) sits in shared memory in the canonical
// 128-byte-swizzled K-major layout for the whole block.
//
// Block = 2 consumer warpgroups + a producer warp (a producer warpgroup when the accumulators
// are large, see wide_producer). The producer streams 128-key tiles
// (16896 B, contiguous in the cache) into a ring of shared-memory stages with one bulk async
// copy each (cp.async.bulk, completion on an mbarrier); partial or unaligned tiles fall back to
// plain loads by the producer warp. Grid = (query tiles, key chunks) for prefill, (key chunks,
// requests) for decode (grid_tile below says why); a block whose chunk lies wholly beyond the
// causal limit of its tile does no MMA. What happens to each score is the
// epilogue policy's business (see "epilogues" below): StoreScores writes it (and -inf past the
// causal limit), idx_fused.cu's AppendSurvivors keeps the ones above a per-row threshold.
//
// Decode is the same kernel with one query per tile (N = heads): 132 B/key against 2*heads*128
// FLOPs is ~124 FLOP/B at 64 heads, more than CUDA cores sustain at 4 TB/s, so it needs the
// tensor cores as well; with N <= 64 the MMA takes < 30% of a tile's memory time.
//
// Heads are padded to 16, 32 or 64 (zero Q rows and zero weights); heads > 64 go to a plain
// CUDA-core kernel (correct, slow: no model ships more than 64 indexer heads).
//
// Device code and launch helpers only; each including .cu gets its own copy (anonymous namespace).
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "cuda_ops.h"
#include "smem_optin.cuh"

namespace {

constexpr int KEY_BYTES = DSA_IDX_TOKEN_BYTES; // 132: 128 e4m3 + fp32 k_scale
constexpr int KEY_WORDS = KEY_BYTES / 4;       // 33
constexpr int KSCALE_WORD = DSA_IDX_DIM / 4;   // 32: the scale's word in a key row
constexpr int WG_KEYS = 64;                    // keys per consumer warpgroup and tile: wgmma M
constexpr int CONSUMER_WGS = 2;                // one warpgroup reduces while the other multiplies
constexpr int KEY_TILE = WG_KEYS * CONSUMER_WGS;  // 128 keys per pipeline stage
constexpr int STAGE_BYTES = KEY_TILE * KEY_BYTES; // 16896 = 1056 * 16: one bulk copy
constexpr int CONSUMER_THREADS = 128 * CONSUMER_WGS;
constexpr int PRODUCER_WARP = CONSUMER_THREADS / 32; // warp 8 loads; the consumers are warps 0-7
// Large accumulators (N > 64: 128 fp32 per thread at N = 256) need more than the 168 registers a
// 9-warp block gets (each SM quarter has 16K registers and would hold 3 of the warps), so those
// kernels take a whole producer warpgroup and move registers to the consumers with setmaxnreg
// (128 x 40 + 256 x 232 = 64512 of 65536). Small-N kernels (decode) use one producer warp.
constexpr int PRODUCER_REGS = 40;
constexpr int CONSUMER_REGS = 232;
__host__ __device__ constexpr bool wide_producer(int n) { return n > 64; }
__host__ __device__ constexpr int block_threads(int n) { return CONSUMER_THREADS + (wide_producer(n) ? 128 : 32); }
constexpr int Q_ROW_BYTES = DSA_IDX_DIM;       // one (query, head) row of Q: 128 e4m3

// Prefill: N = 256 query-head rows per tile (16 x 16, 8 x 32 or 4 x 64 heads): each key tile's
// shared->register loads and L2 traffic are amortised over 256 columns (128 fp32 accumulators per
// thread); the tensor cores read Q at 64 B/clk at full rate, half of shared memory's 128 B/clk.
// 6 stages (100 KB, ~3 us of MMA work) cover L2 latency. One block per SM (133 KB).
constexpr int PREFILL_N = 256;
constexpr int PREFILL_STAGES = 6;
// Key chunk per block: long enough that the prologue (Q load, pipeline fill, ~2 us) is a few
// percent of a block, short enough for ~8 waves over 132 SMs (tail balance).
constexpr int PREFILL_MIN_CHUNK_TILES = 16;
constexpr int PREFILL_MAX_CHUNK_TILES = 128;
constexpr int PREFILL_WAVES = 8;
// Decode: memory-bound; 2 blocks per SM (77 KB, 80 registers each) so one block's prologue hides
// behind the other's stream; 4 stages x 2 blocks = 135 KB in flight per SM, far above what
// 4 TB/s needs. Chunks are sized for ~4 waves, at least 8 tiles (1 MB+ per block at 200K).
constexpr int DECODE_STAGES = 4;
constexpr int DECODE_BLOCKS_PER_SM = 2;
constexpr int DECODE_MIN_CHUNK_TILES = 8;
constexpr int DECODE_WAVES = 4;
// Generic fallback (heads > 64): one thread per (query, key).
constexpr int GENERIC_THREADS = 256;

struct IdxParams {
    const uint8_t *q;         // tile t's queries start at q + t * QB * heads * 128
    const float *w;           // [n_q, heads]
    const uint8_t *cache;     // tile t reads keys at cache + t * cache_tile_stride
    size_t cache_tile_stride; // 0 for prefill (one cache), cache_stride for decode
    float *scores;            // row i at scores + i * ld
    size_t ld;
    int n_q, heads, n_keys;
    long long q_pos0;         // query i may see keys s <= q_pos0 + q_pos_step * i
    int q_pos_step;
    int chunk_keys;           // keys per block (multiple of KEY_TILE)
    const int *row_flags;     // null, or [n_q]: only tiles holding a query with a non-zero flag run
                              // (idx_fused.cu recomputes the rows whose sampled selection failed)
    // the causal limit: query i sees keys s <= allowed(i)
    __device__ __forceinline__ long long allowed(int i) const { return q_pos0 + (long long)q_pos_step * i; }
};

// Grid order. Prefill tiles (QB > 1): x = query tile, y = key chunk, so the ~132 blocks resident
// at once work on one key chunk (<= 2 MB) and read it from L2, while the query tiles (32 KB each)
// are the part that changes; ordered the other way, a wave spans every chunk of a few query
// tiles, and at 200K keys (a 26 MB cache, next to the score rows streaming out) the keys are
// fetched again for every query tile. Decode (QB == 1): x = key chunk, y = request; each request
// has its own cache, so there is nothing to share.
template <int QB> __device__ __forceinline__ int grid_tile() { return QB > 1 ? blockIdx.x : blockIdx.y; }
template <int QB> __device__ __forceinline__ int grid_chunk() { return QB > 1 ? blockIdx.y : blockIdx.x; }

// ---- PTX wrappers ------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mbar_init(uint64_t *bar, uint32_t count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint64_t *bar)
{
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(smem_addr(bar)) : "memory");
}

__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t *bar, uint32_t bytes)
{
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(
                     smem_addr(bar)),
                 "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity)
{
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\n"
                     "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(smem_addr(bar)), "r"(parity)
                     : "memory");
    } while (!done);
}

// One contiguous global -> shared copy by the bulk copy engine; completes tx bytes on bar.
__device__ __forceinline__ void bulk_copy_g2s(void *dst, const void *src, uint32_t bytes, uint64_t *bar)
{
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                     smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(smem_addr(bar))
                 : "memory");
}

// Shared memory written by ordinary stores, read next by the tensor cores (async proxy).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
__device__ __forceinline__ void fence_mbarrier_init()
{
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
// The 8 consumer warps only (barrier 0 is __syncthreads).
__device__ __forceinline__ void consumer_sync()
{
    asm volatile("bar.sync 1, %0;\n" ::"n"(CONSUMER_THREADS) : "memory");
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
// Waits until at most one committed group is still running (the older ones are done).
__device__ __forceinline__ void wgmma_wait_one() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }

// Pins accumulator registers in program order around the asynchronous MMA (CUTLASS's
// warpgroup_fence_operand): no read or write of them may move across this point.
template <int R> __device__ __forceinline__ void fence_regs(float (&r)[R])
{
    #pragma unroll
    for (int i = 0; i < R; i++) asm volatile("" : "+f"(r[i])::"memory");
}

// Shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row groups 1024 B apart (SBO);
// LBO is unused for swizzled K-major layouts. The base must be 1024-byte aligned; the k-th
// 32-byte slice of the rows is addressed by adding k*32 bytes (k*2 in the >>4 field).
__device__ __forceinline__ uint64_t sw128_desc(const void *base)
{
    uint64_t d = (uint64_t)((smem_addr(base) >> 4) & 0x3FFF);
    d |= (uint64_t)1 << 16;
    d |= (uint64_t)(1024 >> 4) << 32;
    d |= (uint64_t)1 << 62;
    return d;
}

// D[64 x N] (+)= A[64 x 32] (registers) * B[32 x N] (shared, K-major); e4m3 in, fp32 out.
// scale_d = 0 overwrites D. A: a[0] row g, k 4t..4t+3; a[1] row g+8; a[2] row g, k 16+4t..;
// a[3] row g+8, k 16+4t.. (g = lane/4 + 16*warp, t = lane%4). D: d[4j+e] row g, column
// 8j+2t+e; d[4j+2+e] row g+8.
template <int N> struct WgmmaRS;
template <> struct WgmmaRS<16> {
    static __device__ __forceinline__ void mma(float (&d)[8], const uint32_t (&a)[4], uint64_t desc_b, int scale_d)
    {
        asm volatile(
            "{\n.reg .pred p;\n"
            "setp.ne.b32 p, %13, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n16k32.f32.e4m3.e4m3 "
            "{%0, %1, %2, %3, %4, %5, %6, %7}, "
            "{%8, %9, %10, %11}, %12, p, 1, 1;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
    }
};
template <> struct WgmmaRS<32> {
    static __device__ __forceinline__ void mma(float (&d)[16], const uint32_t (&a)[4], uint64_t desc_b, int scale_d)
    {
        asm volatile(
            "{\n.reg .pred p;\n"
            "setp.ne.b32 p, %21, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n32k32.f32.e4m3.e4m3 "
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, "
            "{%16, %17, %18, %19}, %20, p, 1, 1;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
    }
};
template <> struct WgmmaRS<64> {
    static __device__ __forceinline__ void mma(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b, int scale_d)
    {
        asm volatile(
            "{\n.reg .pred p;\n"
            "setp.ne.b32 p, %37, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 "
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
            " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
            "{%32, %33, %34, %35}, %36, p, 1, 1;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
    }
};
template <> struct WgmmaRS<128> {
    static __device__ __forceinline__ void mma(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b, int scale_d)
    {
        asm volatile(
            "{\n.reg .pred p;\n"
            "setp.ne.b32 p, %69, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 "
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
            "{%64, %65, %66, %67}, %68, p, 1, 1;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
    }
};
template <> struct WgmmaRS<256> {
    static __device__ __forceinline__ void mma(float (&d)[128], const uint32_t (&a)[4], uint64_t desc_b, int scale_d)
    {
        asm volatile(
            "{\n.reg .pred p;\n"
            "setp.ne.b32 p, %133, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n256k32.f32.e4m3.e4m3 "
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
            " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
            " %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
            " %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63,"
            " %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79,"
            " %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95,"
            " %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111,"
            " %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
            "{%128, %129, %130, %131}, %132, p, 1, 1;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
              "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
              "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
              "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
              "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
              "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
              "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
              "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
              "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
    }
};

// ---- the tensor-core kernel ----------------------------------------------------------------

// A thread's a[kk][0] holds its row's physical words 8t + 2kk and a[kk][2] words 8t + 2kk + 1,
// which the wgmma reads as logical words 8kk + t and 8kk + 4 + t. So Q's logical word L
// (kk = L/8, j = L%8) must hold its physical word qperm_word(L); a bijection on 0..31.
__host__ __device__ constexpr int qperm_word(int L)
{
    return (L & 7) < 4 ? 8 * (L & 7) + 2 * (L >> 3) : 8 * ((L & 7) - 4) + 2 * (L >> 3) + 1;
}

__device__ __forceinline__ void store_score(float *p, float v) { __stcs(p, v); } // streamed: keep keys in L2

// -inf for rows [0, rows) x keys [k_lo, k_hi) of a tile's score rows.
__device__ void write_masked(float *out, size_t ld, int rows, int k_lo, int k_hi, int tid, int nthreads)
{
    for (int r = 0; r < rows; r++)
        for (int k = k_lo + tid; k < k_hi; k += nthreads) store_score(out + r * ld + k, -INFINITY);
}

// Sums v over the 4 lanes of a quad and spreads the QB results: lane t returns the totals of
// queries t*QB/4 .. t*QB/4 + QB/4 - 1 in out (3/4 of the shuffles of a full butterfly).
template <int QB> __device__ __forceinline__ void quad_reduce_scatter(const float (&v)[QB], float (&out)[QB / 4], int t)
{
    float half[QB / 2];
    const bool hi2 = t & 2, hi1 = t & 1;
    #pragma unroll
    for (int i = 0; i < QB / 2; i++) {
        const float keep = hi2 ? v[QB / 2 + i] : v[i];
        const float give = hi2 ? v[i] : v[QB / 2 + i];
        half[i] = keep + __shfl_xor_sync(0xffffffffu, give, 2);
    }
    #pragma unroll
    for (int i = 0; i < QB / 4; i++) {
        const float keep = hi1 ? half[QB / 4 + i] : half[i];
        const float give = hi1 ? half[i] : half[QB / 4 + i];
        out[i] = keep + __shfl_xor_sync(0xffffffffu, give, 1);
    }
}

template <int HP, int QB, int STAGES, int EPI_SMEM> constexpr size_t wgmma_smem_bytes()
{
    return 1024 /* alignment slack */ + (size_t)HP * QB * Q_ROW_BYTES + (size_t)STAGES * STAGE_BYTES +
           4 * ((size_t)HP * QB / 4 + 4) * sizeof(float) + 2 * STAGES * sizeof(uint64_t) + EPI_SMEM;
}

// ---- epilogues ---------------------------------------------------------------------------------
// The kernel below computes every score of its (query tile, key chunk) with the same instructions
// whatever happens to the score next; an epilogue policy decides that, so every user of the kernel
// sees bit-identical scores. A policy Epi<QB> provides:
//   Args, kSmemBytes                    kernel argument; shared bytes it needs (after the barriers)
//   Epi(p, args, q0, q_count)           per block
//   skipped_chunk(chunk_lo, lim, tid, nthreads)  the chunk lies wholly past the tile's causal limit
//                                       (all threads of the block, then they return)
//   begin(ctid, smem)                   consumers, before the barrier that precedes the first tile
//   put1(t, key_a, key_b, v0, v1, kscale0, kscale1, lim)   QB == 1: quad lane t < 2 owns key_a
//                                       (t = 0: score v0 * kscale0) or key_b (t = 1: v1 * kscale1)
//   putq(t, tot0, tot1, kscale0, kscale1, key_a, key_b, lim)  QB > 1: lane t owns queries
//                                       t*QB/4 + i, scores tot0[i] * kscale0 (key_a), tot1[i] * kscale1
//                                       (key_b); all 32 lanes of each consumer warp call it together
//   end(covered_end, lim, ctid)         consumers, after the last tile
// Keys are chunk-relative to p.cache: key < lim exists, key <= allowed(query) is causal.

// A streamed (evict-first: the keys stay in L2) fp32 store under a predicate, in PTX so that the
// compiler cannot branch around it (a branch around a store costs a reconvergence before the
// next tile's .sync.aligned wgmma; see idx_fused.cu AppendSurvivors::append).
__device__ __forceinline__ void store_score_if(bool pred, float *p, float v)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.u32 p, %0, 0;\n@p st.global.cs.f32 [%1], %2;\n}\n" ::"r"((uint32_t)pred),
                 "l"(p), "f"(v));
}

// idx_logits: every score of the chunk is stored, -inf past each query's causal limit.
template <int QB> struct StoreScores {
    struct Args {};
    static constexpr int QPL = QB == 1 ? 1 : QB / 4; // queries per lane (QB > 1)
    static constexpr int kSmemBytes = 0;
    const IdxParams &p;
    float *out; // the tile's first score row
    int q0, q_count;
    // QB > 1, per query of the lane, set once in begin(): its score row, the last key it sees,
    // and whether it exists (the last query tile may be partial)
    float *row[QPL];
    int allowed[QPL];
    bool real[QPL];

    __device__ __forceinline__ StoreScores(const IdxParams &p_, const Args &, int q0_, int q_count_)
        : p(p_), out(p_.scores + (size_t)q0_ * p_.ld), q0(q0_), q_count(q_count_)
    {
    }
    __device__ __forceinline__ void skipped_chunk(int chunk_lo, int lim, int tid, int nthreads) const
    {
        write_masked(out, p.ld, q_count, chunk_lo, lim, tid, nthreads);
    }
    __device__ __forceinline__ void begin(int ctid, uint8_t *)
    {
        if constexpr (QB > 1) {
            const int t = ctid & 3;
            #pragma unroll
            for (int i = 0; i < QPL; i++) {
                const int q = t * QPL + i;
                real[i] = q < q_count;
                row[i] = out + (size_t)(real[i] ? q : 0) * p.ld;
                const long long a = p.allowed(q0 + q);
                allowed[i] = (int)(a < INT_MAX ? a : INT_MAX);
            }
        }
    }
    __device__ __forceinline__ void put1(int t, int key_a, int key_b, float v0, float v1, float kscale0, float kscale1,
                                         int lim) const
    {
        if (t < 2) { // lane t = 0 writes row g, t = 1 row g + 8
            const int key = t ? key_b : key_a;
            const float v = t ? v1 * kscale1 : v0 * kscale0;
            if (key < lim) store_score(out + key, key <= p.allowed(q0) ? v : -INFINITY);
        }
    }
    template <int N>
    __device__ __forceinline__ void putq(int, const float (&tot0)[N], const float (&tot1)[N], float kscale0,
                                         float kscale1, int key_a, int key_b, int lim) const
    {
        static_assert(N == QPL, "queries per lane");
        #pragma unroll
        for (int i = 0; i < QPL; i++) {
            store_score_if(real[i] && key_a < lim, row[i] + key_a, key_a <= allowed[i] ? tot0[i] * kscale0 : -INFINITY);
            store_score_if(real[i] && key_b < lim, row[i] + key_b, key_b <= allowed[i] ? tot1[i] * kscale1 : -INFINITY);
        }
    }
    __device__ __forceinline__ void end(int covered_end, int lim, int ctid) const
    {
        // keys of the chunk past the last multiplied tile are beyond every query's limit
        write_masked(out, p.ld, q_count, covered_end, lim, ctid, CONSUMER_THREADS);
    }
};

// relu(acc) times the weights, summed per query into part0 (row g) and part1 (row g + 8). acc
// holds the accumulator blocks from block 2 * I0 on (8 columns each, query = block / JPQ); each
// pair of blocks takes one float4 of weights, w_quad[I0 + i].
template <int JPQ, int I0, int R, int QB>
__device__ __forceinline__ void relu_wsum(const float (&acc)[R], const float4 *w_quad, float (&part0)[QB],
                                          float (&part1)[QB])
{
    #pragma unroll
    for (int i = 0; i < R / 8; i++) {
        const float4 wv = w_quad[I0 + i];
        const int j = 2 * i, q = 2 * (I0 + i) / JPQ; // blocks j and j+1 belong to the same query (JPQ even)
        part0[q] = fmaf(fmaxf(acc[4 * j + 0], 0.0f), wv.x, part0[q]);
        part0[q] = fmaf(fmaxf(acc[4 * j + 1], 0.0f), wv.y, part0[q]);
        part1[q] = fmaf(fmaxf(acc[4 * j + 2], 0.0f), wv.x, part1[q]);
        part1[q] = fmaf(fmaxf(acc[4 * j + 3], 0.0f), wv.y, part1[q]);
        part0[q] = fmaf(fmaxf(acc[4 * j + 4], 0.0f), wv.z, part0[q]);
        part0[q] = fmaf(fmaxf(acc[4 * j + 5], 0.0f), wv.w, part0[q]);
        part1[q] = fmaf(fmaxf(acc[4 * j + 6], 0.0f), wv.z, part1[q]);
        part1[q] = fmaf(fmaxf(acc[4 * j + 7], 0.0f), wv.w, part1[q]);
    }
}

// HP: heads padded (16/32/64); QB: queries per tile; N = HP*QB rows of Q per tile.
template <int HP, int QB, int STAGES, int MIN_BLOCKS, template <int> class Epi>
__global__ void __launch_bounds__(block_threads(HP * QB), MIN_BLOCKS)
    idx_logits_wgmma(const IdxParams p, const typename Epi<QB>::Args epi_args)
{
    constexpr int N = HP * QB;
    constexpr int THREADS = block_threads(N);
    constexpr int JPQ = HP / 8;         // n8 accumulator blocks per query
    constexpr int W_STRIDE = N / 4 + 4; // floats per quad-lane row of the weight table (+4: banks)
    static_assert(N % 16 == 0 && N <= 256 && HP % 16 == 0, "tile shape");
    static_assert(QB == 1 || QB % 4 == 0, "reduction assumes 1 or a multiple of 4 queries");

    const int tile = grid_tile<QB>();
    const int q0 = tile * QB;
    const int q_count = min(QB, p.n_q - q0);
    const uint8_t *cache = p.cache + (size_t)tile * p.cache_tile_stride;
    Epi<QB> epi(p, epi_args, q0, q_count);
    const int kend = (int)min((long long)p.n_keys, p.allowed(q0 + q_count - 1) + 1); // keys any query of the tile sees
    const int chunk_lo = grid_chunk<QB>() * p.chunk_keys;
    const int lim = (int)min((long long)chunk_lo + p.chunk_keys, (long long)p.n_keys);

    if (p.row_flags) { // uniform over the block: nothing to wait for or release yet
        bool any = false;
        for (int q = 0; q < q_count; q++) any |= p.row_flags[q0 + q] != 0;
        if (!any) return;
    }
    if (chunk_lo >= kend) { // the whole chunk is beyond the causal limit
        epi.skipped_chunk(chunk_lo, lim, threadIdx.x, THREADS);
        return;
    }
    const int mma_end = min(lim, kend);
    const int n_tiles = (mma_end - chunk_lo + KEY_TILE - 1) / KEY_TILE;
    const int covered_end = min(lim, chunk_lo + n_tiles * KEY_TILE);

    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    uint8_t *q_smem = smem;                                 // N rows x 128 B, swizzled
    uint8_t *stages = q_smem + N * Q_ROW_BYTES;             // STAGES x 128 keys x 132 B
    float *w_smem = (float *)(stages + STAGES * STAGE_BYTES); // [4][W_STRIDE]
    uint64_t *full_bar = (uint64_t *)(w_smem + 4 * W_STRIDE);
    uint64_t *empty_bar = full_bar + STAGES;
    uint8_t *epi_smem = (uint8_t *)(empty_bar + STAGES); // Epi<QB>::kSmemBytes

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) {
            mbar_init(&full_bar[s], 32);                // every producer lane arrives
            mbar_init(&empty_bar[s], CONSUMER_THREADS); // every consumer thread arrives
        }
        fence_mbarrier_init();
    }
    __syncthreads();

    if (threadIdx.x >= CONSUMER_THREADS) {
        // ---- producer: stream the block's key tiles through the stage ring ----
        if constexpr (wide_producer(N)) asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(PRODUCER_REGS));
        if (threadIdx.x / 32 != PRODUCER_WARP) return;
        const int lane = threadIdx.x & 31;
        for (int it = 0; it < n_tiles; it++) {
            const int s = it % STAGES;
            if (it >= STAGES) mbar_wait(&empty_bar[s], ((it / STAGES) - 1) & 1);
            const int key0 = chunk_lo + it * KEY_TILE;
            const int valid = min(KEY_TILE, lim - key0);
            const uint8_t *src = cache + (size_t)key0 * KEY_BYTES;
            uint8_t *dst = stages + s * STAGE_BYTES;
            if (valid == KEY_TILE && ((uintptr_t)src & 15) == 0) {
                if (lane == 0) {
                    mbar_arrive_expect_tx(&full_bar[s], STAGE_BYTES);
                    bulk_copy_g2s(dst, src, STAGE_BYTES, &full_bar[s]);
                } else {
                    mbar_arrive(&full_bar[s]);
                }
            } else { // last partial tile, or a cache not 16-byte aligned: plain 4-byte loads
                const uint32_t *src32 = (const uint32_t *)src;
                uint32_t *dst32 = (uint32_t *)dst;
                const int words = valid * KEY_WORDS;
                for (int i = lane; i < KEY_TILE * KEY_WORDS; i += 32) dst32[i] = i < words ? __ldg(src32 + i) : 0u;
                fence_proxy_async(); // a later bulk copy may overwrite these bytes
                mbar_arrive(&full_bar[s]);
            }
        }
    } else {
        // ---- consumers ----
        if constexpr (wide_producer(N)) asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(CONSUMER_REGS));
        const int ctid = threadIdx.x;
        {
            // Q tile -> shared: row r = (query r / HP, head r % HP), dims permuted by qperm_word,
            // 16-byte chunk c of the row stored at chunk c ^ (r % 8) (128-byte swizzle).
            const uint8_t *q_tile = p.q + (size_t)q0 * p.heads * Q_ROW_BYTES;
            for (int r = ctid; r < N; r += CONSUMER_THREADS) {
                const int q = r / HP, h = r % HP;
                uint32_t src[32];
                if (q < q_count && h < p.heads) {
                    const uint4 *row = (const uint4 *)(q_tile + ((size_t)q * p.heads + h) * Q_ROW_BYTES);
                    #pragma unroll
                    for (int c = 0; c < 8; c++) {
                        const uint4 v = __ldg(row + c);
                        src[4 * c] = v.x, src[4 * c + 1] = v.y, src[4 * c + 2] = v.z, src[4 * c + 3] = v.w;
                    }
                } else {
                    #pragma unroll
                    for (int i = 0; i < 32; i++) src[i] = 0u;
                }
                uint8_t *dst = q_smem + r * Q_ROW_BYTES;
                #pragma unroll
                for (int c = 0; c < 8; c++) {
                    const uint4 v = make_uint4(src[qperm_word(4 * c)], src[qperm_word(4 * c + 1)],
                                               src[qperm_word(4 * c + 2)], src[qperm_word(4 * c + 3)]);
                    *(uint4 *)(dst + ((c ^ (r & 7)) << 4)) = v;
                }
            }
            // Weights in accumulator order: quad lane t reads its columns 8j + 2t + e as one run
            // w_smem[t][2j + e] (float4 loads).
            const float *w_tile = p.w + (size_t)q0 * p.heads;
            for (int c = ctid; c < N; c += CONSUMER_THREADS) {
                const int q = c / HP, h = c % HP;
                const int j = c >> 3, t = (c >> 1) & 3, e = c & 1;
                const bool real = q < q_count && h < p.heads;
                w_smem[t * W_STRIDE + 2 * j + e] = real ? w_tile[(size_t)q * p.heads + h] : 0.0f;
            }
            epi.begin(ctid, epi_smem);
            fence_proxy_async();
            consumer_sync();
        }

        const int wg = ctid / 128, warp = (ctid / 32) & 3, lane = ctid & 31;
        const int g = lane >> 2, t = lane & 3;
        const int row0 = wg * WG_KEYS + warp * 16 + g; // this thread's key rows in a tile: row0, row0 + 8
        const uint64_t q_desc = sw128_desc(q_smem);
        const float4 *w_quad = (const float4 *)(w_smem + t * W_STRIDE);
        // one accumulator, or (N == 256) two halves of it: see the MMA below
        float acc[N == 256 ? 1 : N / 2], acc_lo[N == 256 ? N / 4 : 1], acc_hi[N == 256 ? N / 4 : 1];

        for (int it = 0; it < n_tiles; it++) {
            const int s = it % STAGES;
            mbar_wait(&full_bar[s], (it / STAGES) & 1);
            const uint32_t *k0 = (const uint32_t *)(stages + s * STAGE_BYTES) + row0 * KEY_WORDS + 8 * t;
            const uint32_t *k1 = k0 + 8 * KEY_WORDS;
            uint32_t a[4][4];
            #pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                a[kk][0] = k0[2 * kk];
                a[kk][1] = k1[2 * kk];
                a[kk][2] = k0[2 * kk + 1];
                a[kk][3] = k1[2 * kk + 1];
            }
            const float kscale0 = __uint_as_float(k0[KSCALE_WORD - 8 * t]);
            const float kscale1 = __uint_as_float(k1[KSCALE_WORD - 8 * t]);
            mbar_arrive(&empty_bar[s]); // the stage is in registers now: the producer may refill it

            // relu, times w, summed over this thread's heads of each query (rows g and g+8):
            // part0/part1[q] from accumulator blocks j (columns 8j..8j+7, query j / JPQ).
            float part0[QB], part1[QB];
            #pragma unroll
            for (int q = 0; q < QB; q++) part0[q] = part1[q] = 0.0f;
            if constexpr (N == 256) {
                // Two halves of the query tile, each its own MMA group: the relu-sum of the
                // first half runs while the tensor cores work on the second, so a warpgroup's
                // reduction overlaps its own MMA, not only the other warpgroup's (DeepGEMM's
                // wait_group 1). Same products and the same sums in the same order as one MMA.
                fence_regs(acc_lo);
                fence_regs(acc_hi);
                wgmma_fence();
                #pragma unroll
                for (int kk = 0; kk < 4; kk++) WgmmaRS<N / 2>::mma(acc_lo, a[kk], q_desc + 2 * kk, kk);
                wgmma_commit();
                #pragma unroll
                for (int kk = 0; kk < 4; kk++)
                    WgmmaRS<N / 2>::mma(acc_hi, a[kk], q_desc + ((N / 2) * Q_ROW_BYTES >> 4) + 2 * kk, kk);
                wgmma_commit();
                wgmma_wait_one();
                fence_regs(acc_lo);
                relu_wsum<JPQ, 0>(acc_lo, w_quad, part0, part1);
                wgmma_wait_all();
                fence_regs(acc_hi);
                relu_wsum<JPQ, N / 32>(acc_hi, w_quad, part0, part1);
            } else {
                fence_regs(acc);
                wgmma_fence();
                #pragma unroll
                for (int kk = 0; kk < 4; kk++) WgmmaRS<N>::mma(acc, a[kk], q_desc + 2 * kk, kk);
                wgmma_commit();
                wgmma_wait_all();
                fence_regs(acc);
                relu_wsum<JPQ, 0>(acc, w_quad, part0, part1);
            }

            const int key_a = chunk_lo + it * KEY_TILE + row0, key_b = key_a + 8;
            if constexpr (QB == 1) {
                float v0 = part0[0], v1 = part1[0];
                v0 += __shfl_xor_sync(0xffffffffu, v0, 1);
                v1 += __shfl_xor_sync(0xffffffffu, v1, 1);
                v0 += __shfl_xor_sync(0xffffffffu, v0, 2);
                v1 += __shfl_xor_sync(0xffffffffu, v1, 2);
                epi.put1(t, key_a, key_b, v0, v1, kscale0, kscale1, lim);
            } else {
                float tot0[QB / 4], tot1[QB / 4];
                quad_reduce_scatter<QB>(part0, tot0, t);
                quad_reduce_scatter<QB>(part1, tot1, t);
                epi.putq(t, tot0, tot1, kscale0, kscale1, key_a, key_b, lim);
            }
        }
        epi.end(covered_end, lim, ctid);
    }
}

// ---- generic fallback (heads > 64) ---------------------------------------------------------

// Four e4m3 bytes (little-endian in v) -> fp32, exactly (e4m3 -> f16 is exact).
__device__ __forceinline__ void e4m3x4_to_f32(uint32_t v, float *f)
{
    const __half2 lo = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(v & 0xFFFF), __NV_E4M3);
    const __half2 hi = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(v >> 16), __NV_E4M3);
    const float2 l = __half22float2(lo), h = __half22float2(hi);
    f[0] = l.x, f[1] = l.y, f[2] = h.x, f[3] = h.y;
}

// One thread per (query, key); the query's heads x 128 e4m3 and its weights in shared memory.
__global__ void __launch_bounds__(GENERIC_THREADS) idx_logits_generic(const IdxParams p)
{
    extern __shared__ uint8_t smem_raw[];
    const int qi = blockIdx.y;
    uint32_t *q_smem = (uint32_t *)smem_raw;                    // heads * 32 words
    float *w_smem = (float *)(smem_raw + (size_t)p.heads * Q_ROW_BYTES);
    const uint32_t *q_src = (const uint32_t *)(p.q + (size_t)qi * p.heads * Q_ROW_BYTES);
    for (int i = threadIdx.x; i < p.heads * 32; i += blockDim.x) q_smem[i] = q_src[i];
    for (int i = threadIdx.x; i < p.heads; i += blockDim.x) w_smem[i] = p.w[(size_t)qi * p.heads + i];
    __syncthreads();

    const int key = blockIdx.x * blockDim.x + threadIdx.x;
    if (key >= p.n_keys) return;
    float *dst = p.scores + (size_t)qi * p.ld + key;
    if (key > p.allowed(qi)) {
        *dst = -INFINITY;
        return;
    }
    const uint32_t *k = (const uint32_t *)(p.cache + (size_t)qi * p.cache_tile_stride + (size_t)key * KEY_BYTES);
    float kf[128];
    #pragma unroll
    for (int i = 0; i < 32; i++) e4m3x4_to_f32(__ldg(k + i), &kf[4 * i]);
    const float kscale = __uint_as_float(__ldg(k + KSCALE_WORD));
    float sum = 0.0f;
    for (int h = 0; h < p.heads; h++) {
        float dot = 0.0f;
        #pragma unroll
        for (int i = 0; i < 32; i++) {
            float qf[4];
            e4m3x4_to_f32(q_smem[h * 32 + i], qf);
            #pragma unroll
            for (int e = 0; e < 4; e++) dot = fmaf(qf[e], kf[4 * i + e], dot); // exact products
        }
        if (dot > 0.0f) sum = fmaf(w_smem[h], dot, sum);
    }
    *dst = sum * kscale;
}

// ---- launch ----------------------------------------------------------------------------------

long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// Key tiles per block, prefill: ~PREFILL_WAVES waves over the SMs, within [MIN, MAX] tiles.
long long prefill_chunk_tiles(long long query_tiles, long long key_tiles, int sms)
{
    const long long chunk = ceil_div(query_tiles * key_tiles, (long long)PREFILL_WAVES * sms);
    return chunk < PREFILL_MIN_CHUNK_TILES ? PREFILL_MIN_CHUNK_TILES
                                           : chunk > PREFILL_MAX_CHUNK_TILES ? PREFILL_MAX_CHUNK_TILES : chunk;
}

// Key tiles per block, decode: ~DECODE_WAVES waves of DECODE_BLOCKS_PER_SM blocks per SM, at least
// DECODE_MIN_CHUNK_TILES, at most the whole cache.
long long decode_chunk_tiles(long long batch, long long key_tiles, int sms)
{
    long long chunk = ceil_div(key_tiles * batch, (long long)DECODE_WAVES * DECODE_BLOCKS_PER_SM * sms);
    if (chunk < DECODE_MIN_CHUNK_TILES) chunk = DECODE_MIN_CHUNK_TILES;
    if (chunk > key_tiles) chunk = key_tiles;
    return chunk;
}

template <int HP, int QB, int STAGES, int MIN_BLOCKS, template <int> class Epi>
int launch_wgmma(dsa_cuda_ctx *c, const IdxParams &prm, const typename Epi<QB>::Args &epi_args, int chunk_tiles,
                 const char *op)
{
    auto kernel = idx_logits_wgmma<HP, QB, STAGES, MIN_BLOCKS, Epi>;
    const size_t smem = wgmma_smem_bytes<HP, QB, STAGES, Epi<QB>::kSmemBytes>();
    if (smem > c->smem_optin)
        return dsa_cuda_fail(c, "%s: needs %zu B of shared memory per block, the device allows %zu", op, smem,
                             c->smem_optin);
    if (int rc = smem_optin<idx_logits_wgmma<HP, QB, STAGES, MIN_BLOCKS, Epi>>(c, smem, false, op)) return rc;
    IdxParams prm2 = prm;
    prm2.chunk_keys = chunk_tiles * KEY_TILE;
    const long long key_tiles = ceil_div(prm.n_keys, KEY_TILE);
    const long long chunks = ceil_div(key_tiles, chunk_tiles), q_tiles = ceil_div(prm.n_q, QB);
    if ((QB > 1 ? chunks : q_tiles) > 65535) // grid_tile / grid_chunk: the y dimension
        return dsa_cuda_fail(c, "%s: %lld key chunks x %lld query tiles do not fit one launch", op, chunks, q_tiles);
    const dim3 grid = QB > 1 ? dim3((unsigned)q_tiles, (unsigned)chunks) : dim3((unsigned)chunks, (unsigned)q_tiles);
    kernel<<<grid, block_threads(HP * QB), smem, c->stream>>>(prm2, epi_args);
    return dsa_cuda_check(c, op);
}

int launch_generic(dsa_cuda_ctx *c, const IdxParams &prm, const char *op)
{
    const size_t smem = (size_t)prm.heads * (Q_ROW_BYTES + sizeof(float));
    if (smem > c->smem_optin)
        return dsa_cuda_fail(c, "%s: heads = %d needs %zu B of shared memory, the device allows %zu", op, prm.heads,
                             smem, c->smem_optin);
    if (smem > 48 * 1024)
        if (int rc = smem_optin<idx_logits_generic>(c, smem, false, op)) return rc;
    const dim3 grid((unsigned)ceil_div(prm.n_keys, GENERIC_THREADS), (unsigned)prm.n_q);
    idx_logits_generic<<<grid, GENERIC_THREADS, smem, c->stream>>>(prm);
    return dsa_cuda_check(c, op);
}

// Pointer checks the kernels rely on: 16-byte Q rows (vector loads), 4-byte key rows (the scale).
int check_alignment(dsa_cuda_ctx *c, const char *op, const uint8_t *q, const uint8_t *cache)
{
    if ((uintptr_t)q & 15) return dsa_cuda_fail(c, "%s: q_fp8 must be 16-byte aligned", op);
    if ((uintptr_t)cache & 3) return dsa_cuda_fail(c, "%s: idx_cache must be 4-byte aligned", op);
    return DSA_OK;
}

// Shape checks the launchers of idx_logits and idx_fused share, in the order they report them.
// Prefill: n queries at q_pos0 .. q_pos0 + n - 1 against n_keys >= q_pos0 + n keys.
int check_prefill_shape(dsa_cuda_ctx *c, const char *op, int n, int heads, int n_keys, int q_pos0)
{
    if (n < 0) return dsa_cuda_fail(c, "%s: n = %d < 0", op, n);
    if (heads <= 0) return dsa_cuda_fail(c, "%s: heads = %d must be > 0", op, heads);
    if (q_pos0 < 0) return dsa_cuda_fail(c, "%s: q_pos0 = %d < 0", op, q_pos0);
    if ((long long)n_keys < (long long)q_pos0 + n)
        return dsa_cuda_fail(c, "%s: n_keys = %d < q_pos0 + n = %lld", op, n_keys, (long long)q_pos0 + n);
    return DSA_OK;
}

// Decode, before the op's own output checks: batch, heads, n_keys.
int check_decode_shape(dsa_cuda_ctx *c, const char *op, int batch, int heads, int n_keys)
{
    if (batch < 0) return dsa_cuda_fail(c, "%s: batch = %d < 0", op, batch);
    if (heads <= 0) return dsa_cuda_fail(c, "%s: heads = %d must be > 0", op, heads);
    if (n_keys < 0) return dsa_cuda_fail(c, "%s: n_keys = %d < 0", op, n_keys);
    return DSA_OK;
}

// Decode, after them: the per-request cache stride (rows of KEY_BYTES, 4-byte scales) and the
// grid's batch dimension.
int check_decode_stride(dsa_cuda_ctx *c, const char *op, int batch, size_t cache_stride, int n_keys)
{
    if (batch > 1 && cache_stride < (size_t)n_keys * KEY_BYTES)
        return dsa_cuda_fail(c, "%s: cache_stride = %zu < n_keys * %d", op, cache_stride, KEY_BYTES);
    if (batch > 1 && cache_stride % 4)
        return dsa_cuda_fail(c, "%s: cache_stride = %zu must be a multiple of 4", op, cache_stride);
    if (batch > 65535) return dsa_cuda_fail(c, "%s: batch = %d > 65535", op, batch);
    return DSA_OK;
}

} // namespace
