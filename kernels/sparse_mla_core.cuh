// kernels/sparse_mla_core.cuh — the sparse MLA attention kernels shared by
// kernels/sparse_mla_prefill.cu (bf16 cache) and kernels/sparse_mla_decode.cu (FP8 cache).
// Private to those two files: everything here is in an anonymous namespace.
//
// The op (kernels/ops.h, reference kernels/ref/sparse_attn.c), per query row r and head h:
//   p_j = softmax_j(scale * query[r, h] . key_j) over the selected keys j = idx[r, 0..topk) >= 0,
//   out_lat[r, h] = sum_j p_j c_kv_j (512), lse[r, h] = ln sum_j exp(scale * q . k_j),
// with key_j = [c_kv | k_pe] (576) of cache row idx[r, j]; the index set is shared by all heads.
//
// Shape of the computation: a query row's heads are the rows of a flash-attention tile, the
// selected keys its columns, streamed in chunks of 64 keys gathered by index into shared memory
// (bf16, 128-byte-swizzled K-major tiles of 64 rows x 64 dims, the canonical wgmma layout).
// K and V are the same rows: V = the first 512 dims of the gathered tile, read by the tensor
// cores as an MN-major operand (no copy, no transpose). Block = 3 warpgroups (bf16 cache) or 4
// (FP8): WG0 and WG1 compute (bf16 wgmma, fp32 accumulators), WG2 gathers (cp.async). FP8 rows
// are dequantised to bf16 in shared memory before the compute warpgroups see them, and that
// widening (CUDA-core conversions, ~50 cycles per key) is the decode kernel's critical path, so
// there WG2 gathers and widens dims [0, 256) of every row and WG3 dims [256, 512) and k_pe. Two
// stages of 64 keys; WG0 owns the even chunks (stage 0), WG1 the odd ones (stage 1).
//
// Two compute schedules:
// - h64 (heads a multiple of 64: one block per 64 heads): FlashMLA's sm90 "seesaw". S = Q K^T
//   is 64 heads x 64 keys per warpgroup (m64n64k16 x 36); the 512 output dims are split, WG0
//   owns dims [0, 256), WG1 [256, 512) (a 64 x 256 fp32 accumulator, 128 per thread). Each
//   warpgroup multiplies its own chunk's P (registers) and the other's P (shared memory) by its
//   half of V; the running row maximum is handed WG0 -> WG1 -> WG0 through shared memory so both
//   halves of O and both P tiles share one reference. While one warpgroup does its softmax the
//   other keeps the tensor cores busy.
// - narrow (other head counts, e.g. 20, 16, 4): heads are the N dimension instead (swap AB:
//   S^T = K Q^T, m64 = keys, N = heads padded to a multiple of 8, never to 64), O^T = V^T P^T
//   (8 m64 tiles of dims x N heads). The two warpgroups run independent online softmaxes over
//   their own chunks and merge at the end (flash-decoding inside the block). A block takes up
//   to 32 heads (4*N <= 128 accumulators per thread); more heads take more blocks.
// P is rounded to bf16 before the PV product (as FlashMLA does); the row sums use fp32 P.
//
// Split-KV (decode with few rows): a block may cover only a range of the selected keys; it then
// writes fp32 partial outputs normalised by their own sum plus their lse, and a small combine
// kernel merges the splits.
//
// Registers (h64, per compute thread): O 128 + S 32 + P as bf16 A fragments 16 + softmax state
// and addresses: ptxas fits it in 208 without spills (not in 200); setmaxnreg gives the compute
// warpgroups 216 and the gather warpgroup 72 (2 x 128 x 216 + 128 x 72 = 64512 of 65536), or
// with two gather warpgroups (FP8) 208 and 48 (65536). 512 threads enter with 128 registers, and
// ptxas will not compile an instruction naming more operands than that (C7602), so the PV product
// is issued as two m64n128 halves instead of one m64n256. The narrow kernel needs < 184 (O^T <= 128).
// Shared memory (h64): Q 72 KB + 2 stages x 72 KB + WG1's P tile 8 KB (WG0's P tile reuses the
// k_pe tile of stage 0, dead once WG0's S is computed) + 1.3 KB of masks, statistics and
// barriers + 1 KB alignment slack = 226.3 KB of 227. Narrow: Q N x 1152 B + 2 x 72 KB + P tiles.
//
// Next optimisations, not done: TMA for the Q load and the output; a persistent grid so a block's
// prologue (Q load, first gather) overlaps the previous block's epilogue.
// Tried and measured slower (ncu, 4096 queries, 20 heads, against this kernel's 2.11 / 2.37 /
// 2.49 ms at 8K / 64K / 200K keys before the two-chain S of narrow_wg):
// - the next rows prefetched into L2 two or three pairs ahead instead of one: 2.43 / 2.93 and
//   2.53 / 3.47 ms at 64K / 200K (64 heads alike);
// - a narrow bf16 kernel on whole rows, one bulk copy per row (the gather probe's fastest copy,
//   scripts/probes) read by ldmatrix into register-A wgmma: 2.28 / 2.41 / 2.51 ms, and 1.86 ms
//   at 8K with the copies left out, so its compute path, not the copies, bounds it. The code
//   is in scripts/probes/narrow_rows_bulk.patch (git am on 93b450d).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <math.h>
#include <stdint.h>

#include "cuda_ops.h"
#include "smem_optin.cuh"

namespace {

constexpr int kQkDim = DSA_MLA_DIM;       // 576: the dims of S = Q K^T
constexpr int kVDim = DSA_KV_LORA;        // 512: the dims of O = P V
constexpr int kChunkKeys = 64;            // keys per stage: wgmma M (narrow) or N (h64)
constexpr int kPairKeys = 2 * kChunkKeys; // one loop iteration: WG0's chunk and WG1's chunk
constexpr int kTileBytes = 64 * 128;      // 64 rows x 64 bf16, 128-byte swizzled rows
constexpr int kTilesQK = kQkDim / 64;     // 9 tiles per 576-dim row block
constexpr int kStageBytes = kTilesQK * kTileBytes;
// WG0, WG1 compute; WG2 gathers (bf16), WG2 and WG3 gather a half of every row each (FP8: the
// widening to bf16 is the gather's critical path, see run_gather)
template <bool kFp8> constexpr int block_threads() { return kFp8 ? 512 : 384; }
constexpr int kBf16RowBytes = kQkDim * 2;                        // 1152
constexpr int kFp8RowBytes = DSA_MLA_FP8_TOKEN_BYTES;            // 656
constexpr int kFp8ScaleOff = DSA_KV_LORA;                        // 512: 4 fp32 scales
constexpr int kFp8PeOff = DSA_KV_LORA + 4 * (DSA_KV_LORA / 128); // 528: 64 bf16 k_pe
constexpr int kH64Heads = 64;                                    // heads per h64 block: wgmma M
constexpr int kNarrowMaxHeads = 32; // narrow kernel: N <= 32 keeps O^T at <= 128 fp32/thread
// setmaxnreg split, see the header comment: 2 x 128 x 216 + 128 x 72 = 64512 (bf16), and
// 2 x 128 x 208 + 2 x 128 x 48 = 65536 (FP8) of the 65536 registers
template <bool kFp8> constexpr int compute_regs() { return kFp8 ? 208 : 216; }
template <bool kFp8> constexpr int gather_regs() { return kFp8 ? 48 : 72; }
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.69314718055994531f;
constexpr float kMaxInit = -1e30f; // finite start for running maxima: no inf - inf
static_assert(kFp8PeOff + 2 * DSA_ROPE_DIM == kFp8RowBytes, "FP8 MLA row layout");

// Named barriers (0 is __syncthreads).
enum : int {
    kBarCompute = 1, // both compute warpgroups (256 threads)
    kBarMax0 = 2,    // h64: WG0's row maxima are in shared memory
    kBarP1 = 5,      // h64: WG1's P tile is in shared memory
    kBarWg0 = 6,     // narrow: WG0 alone (128); WG1 uses kBarWg0 + 1
};

struct SparseMlaParams {
    const uint8_t *query; // bf16 [rows, heads, 576]
    const uint8_t *cache; // row t of query row r: cache + r * cache_stride + t * row bytes
    size_t cache_stride;  // bytes per request (decode); 0 for prefill (one request)
    const int32_t *idx;   // [rows, topk], -1 = none
    int rows, heads, topk;
    int head_tile;          // heads per block
    int head_tiles;         // blocks per row along heads
    int splits, split_keys; // block s of a (row, head tile) covers idx [s * split_keys, +split_keys)
    float scale_log2;       // softmax scale * log2(e): exponentials are exp2
    uint16_t *out;          // bf16 [rows, heads, 512] (when part_o is null)
    float *lse;             // [rows, heads]
    float *part_o;          // split partials [(r * heads + h) * splits + s, 512], or null
    float *part_lse;        // [(r * heads + h) * splits + s]
};

// ---------------------------------------------------------------------------------------------
// PTX wrappers

// An optimisation barrier on a value: code derived from it is not hoisted across calls.
__device__ __forceinline__ void opaque(uint32_t &v) { asm volatile("" : "+r"(v)); }

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint32_t bar)
{
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(bar) : "memory");
}

__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity)
{
    uint32_t done;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    } while (!done);
}

// The warpgroup index as a value the compiler knows is warp-uniform (a shuffle result), so code
// that branches on it is not treated as divergent around wgmma.
__device__ __forceinline__ int warpgroup_index() { return __shfl_sync(0xffffffffu, (int)(threadIdx.x >> 7), 0); }

__device__ __forceinline__ void fence_mbar_init()
{
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
// Orders this thread's generic-proxy shared-memory accesses with the tensor cores' (async proxy).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

__device__ __forceinline__ void named_sync(int id, int n)
{
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
// The h64 hand-offs through named barriers (kBarMax0, kBarP1): the producer arrives, the consumer
// syncs. bar.arrive orders the producer's earlier shared-memory accesses before everything the
// consumers do after their matching bar.sync (PTX: they "are performed relative to all threads
// participating in the barrier"), but compute-sanitizer racecheck reported hazards across such a
// hand-off whenever the consumer was usually already waiting when the producer arrived (WG1's
// maxima to WG0 every iteration, WG0's P to WG1 in some): those two hand-offs are mbarriers
// (Bars::max1, Bars::p0), which racecheck follows, and the production build is racecheck-clean.
// -DDSA_SPARSE_MLA_RACECHECK still turns the two named hand-offs into bar.sync on both sides
// (same barriers in the same order in both warpgroups: no deadlock; identical results), a check
// that they need no more; it costs the seesaw overlap, so never time that build.
__device__ __forceinline__ void named_arrive(int id, int n)
{
#ifdef DSA_SPARSE_MLA_RACECHECK
    named_sync(id, n);
#else
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
#endif
}

// 16-byte global -> shared copy; valid == false writes zeros and reads nothing.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
}
// Arrive on bar once all of this thread's earlier cp.async have landed (count pre-set at init).
__device__ __forceinline__ void cp_async_arrive(uint32_t bar)
{
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

__device__ __forceinline__ void prefetch_l2(const void *p, uint32_t bytes)
{
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(p), "r"(bytes) : "memory");
}

__device__ __forceinline__ void st_shared_u32(uint32_t a, uint32_t v)
{
    asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(a), "r"(v) : "memory");
}
__device__ __forceinline__ void st_shared_u16(uint32_t a, uint16_t v)
{
    asm volatile("st.shared.b16 [%0], %1;\n" ::"r"(a), "h"(v) : "memory");
}
__device__ __forceinline__ void st_shared_v4(uint32_t a, uint4 v)
{
    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(a), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
                 : "memory");
}
__device__ __forceinline__ uint4 ld_shared_v4(uint32_t a)
{
    uint4 v;
    asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "r"(a)
                 : "memory");
    return v;
}

__device__ __forceinline__ float ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 b = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&b);
}

template <int R> __device__ __forceinline__ void setmaxnreg_inc()
{
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R> __device__ __forceinline__ void setmaxnreg_dec()
{
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wg_wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accumulator reads/writes across a wgmma wait.
template <int N> __device__ __forceinline__ void fence_regs(float (&r)[N])
{
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
// The same for A fragments read from registers: keeps them alive (unreused) until the wait.
template <int N> __device__ __forceinline__ void fence_regs(uint32_t (&r)[N])
{
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+r"(r[i])::"memory");
}

// Shared-memory matrix descriptor, 128-byte swizzle. K-major operands: 8-row groups 1024 B
// apart (SBO), LBO unused. MN-major operands (V): 64-wide atoms along M/N one tile (8 KB) apart
// (LBO), 8-row groups along K 1024 B apart (SBO).
__device__ __forceinline__ uint64_t make_desc(uint32_t addr, uint32_t lbo, uint32_t sbo)
{
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFF) << 16) |
           ((uint64_t)((sbo >> 4) & 0x3FFF) << 32) | (1ull << 62);
}
__device__ __forceinline__ uint64_t desc_k(uint32_t addr) { return make_desc(addr, 16, 1024); }
__device__ __forceinline__ uint64_t desc_mn(uint32_t addr) { return make_desc(addr, kTileBytes, 1024); }

// Byte offset of 16-byte chunk c (0..7) of row r in a 128-byte-swizzled tile (tile base 1024-aligned).
__device__ __forceinline__ uint32_t swz(int r, int c) { return (uint32_t)(r * 128 + ((c ^ (r & 7)) << 4)); }

#define DSA_WG_ACC4_AT(d, i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define DSA_WG_ACC16_AT(d, i)                                                                                          \
    DSA_WG_ACC4_AT(d, i), DSA_WG_ACC4_AT(d, i + 4), DSA_WG_ACC4_AT(d, i + 8), DSA_WG_ACC4_AT(d, i + 12)
#define DSA_WG_ACC64_AT(d, i)                                                                                          \
    DSA_WG_ACC16_AT(d, i), DSA_WG_ACC16_AT(d, i + 16), DSA_WG_ACC16_AT(d, i + 32), DSA_WG_ACC16_AT(d, i + 48)
#define DSA_WG_ACC4(d) DSA_WG_ACC4_AT(d, 0)
#define DSA_WG_ACC8(d) DSA_WG_ACC4_AT(d, 0), DSA_WG_ACC4_AT(d, 4)
#define DSA_WG_ACC12(d) DSA_WG_ACC4_AT(d, 0), DSA_WG_ACC4_AT(d, 4), DSA_WG_ACC4_AT(d, 8)
#define DSA_WG_ACC16(d) DSA_WG_ACC16_AT(d, 0)
#define DSA_WG_ACC32(d) DSA_WG_ACC16_AT(d, 0), DSA_WG_ACC16_AT(d, 16)

// D[64 x N] (+)= A[64 x 16] B[16 x N], bf16 in, fp32 accumulators (the wgmma fragment layout:
// d[4j + {0,1}] = row 16*warp + lane/4, cols 8j + 2*(lane%4) + {0,1}; d[4j + {2,3}] = row + 8).
// A and B from shared memory (descriptors); TA/TB = 1: the operand is MN-major. accumulate = 0
// overwrites D.
template <int TA, int TB>
__device__ __forceinline__ void wgmma_ss(float (&d)[4], uint64_t a, uint64_t b, int accumulate)
{
    asm volatile("{\n.reg .pred p;\n"
                 "setp.ne.b32 p, %6, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 "
                 "{"
                 "%0, %1, %2, %3"
                 "}, %4, %5, p, 1, 1, %7, %8;\n}\n"
                 : DSA_WG_ACC4(d)
                 : "l"(a), "l"(b), "r"(accumulate), "n"(TA), "n"(TB));
}

template <int TA, int TB>
__device__ __forceinline__ void wgmma_ss(float (&d)[8], uint64_t a, uint64_t b, int accumulate)
{
    asm volatile("{\n.reg .pred p;\n"
                 "setp.ne.b32 p, %10, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 "
                 "{"
                 "%0, %1, %2, %3, %4, %5, %6, %7"
                 "}, %8, %9, p, 1, 1, %11, %12;\n}\n"
                 : DSA_WG_ACC8(d)
                 : "l"(a), "l"(b), "r"(accumulate), "n"(TA), "n"(TB));
}

template <int TA, int TB>
__device__ __forceinline__ void wgmma_ss(float (&d)[12], uint64_t a, uint64_t b, int accumulate)
{
    asm volatile("{\n.reg .pred p;\n"
                 "setp.ne.b32 p, %14, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n24k16.f32.bf16.bf16 "
                 "{"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11"
                 "}, %12, %13, p, 1, 1, %15, %16;\n}\n"
                 : DSA_WG_ACC12(d)
                 : "l"(a), "l"(b), "r"(accumulate), "n"(TA), "n"(TB));
}

template <int TA, int TB>
__device__ __forceinline__ void wgmma_ss(float (&d)[16], uint64_t a, uint64_t b, int accumulate)
{
    asm volatile("{\n.reg .pred p;\n"
                 "setp.ne.b32 p, %18, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
                 "{"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
                 "}, %16, %17, p, 1, 1, %19, %20;\n}\n"
                 : DSA_WG_ACC16(d)
                 : "l"(a), "l"(b), "r"(accumulate), "n"(TA), "n"(TB));
}

template <int TA, int TB>
__device__ __forceinline__ void wgmma_ss(float (&d)[32], uint64_t a, uint64_t b, int accumulate)
{
    asm volatile("{\n.reg .pred p;\n"
                 "setp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                 "{"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, %32, %33, p, 1, 1, %35, %36;\n}\n"
                 : DSA_WG_ACC32(d)
                 : "l"(a), "l"(b), "r"(accumulate), "n"(TA), "n"(TB));
}

// Half H of an N = 256 accumulator (d[64H, 64H + 64): columns 128H..128H+127) as one m64n128
// instruction. With 512 threads per block (FP8: two gather warpgroups) the entry register count
// is 128, and ptxas refuses an instruction whose operands need more than that, whatever setmaxnreg
// grants the warpgroup afterwards: m64n256 names 128 accumulators.
template <int TA, int TB, int H>
__device__ __forceinline__ void wgmma_ss_half(float (&d)[128], uint64_t a, uint64_t b, int accumulate)
{
    asm volatile("{\n.reg .pred p;\n"
                 "setp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
                 "{"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
                 "}, %64, %65, p, 1, 1, %67, %68;\n}\n"
                 : DSA_WG_ACC64_AT(d, 64 * H)
                 : "l"(a), "l"(b), "r"(accumulate), "n"(TA), "n"(TB));
}

// RS form: A (64 x 16) from registers, per warp the mma.sync A layout (g = lane / 4, q = lane % 4):
// a[0] = row g, k 2q..2q+1; a[1] = row g + 8; a[2] = row g, k 2q+8..; a[3] = row g + 8, k 2q+8..
template <int TB, int H>
__device__ __forceinline__ void wgmma_rs_half(float (&d)[128], const uint32_t (&a)[4], uint64_t b, int accumulate)
{
    asm volatile("{\n.reg .pred p;\n"
                 "setp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
                 "{"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
                 "}, {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
                 : DSA_WG_ACC64_AT(d, 64 * H)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate), "n"(TB));
}

// ---------------------------------------------------------------------------------------------
// Block geometry, shared-memory plans, barriers

struct BlockWork {
    int row, split, h0, heads_here; // query row, key split, first head, heads in this block
    int key_begin, key_end, iters;  // idx positions [key_begin, key_end), iters pairs of chunks
};

__device__ __forceinline__ BlockWork block_work(const SparseMlaParams &p)
{
    BlockWork w;
    int b = blockIdx.x;
    w.split = b % p.splits;
    b /= p.splits;
    const int ht = b % p.head_tiles;
    w.row = b / p.head_tiles;
    w.h0 = ht * p.head_tile;
    w.heads_here = min(p.head_tile, p.heads - w.h0);
    w.key_begin = w.split * p.split_keys;
    w.key_end = min(p.topk, w.key_begin + p.split_keys);
    w.iters = w.key_end > w.key_begin ? (w.key_end - w.key_begin + kPairKeys - 1) / kPairKeys : 0;
    return w;
}

// Barriers: ready[stage][half] (gathered; half 0 = tiles 0-3, i.e. dims [0, 256); half 1 =
// tiles 4-8), free[stage][half] (released by the warpgroup that read it last), mask[stage]
// (the validity row of the stage); h64 only: max1 (WG1's row maxima are in shared memory) and p0
// (WG0's P tile is), one phase per iteration each. 12 mbarriers, 96 bytes.
struct Bars {
    uint32_t base;
    __device__ __forceinline__ uint32_t ready(int s, int h) const { return base + (s * 2 + h) * 8; }
    __device__ __forceinline__ uint32_t free(int s, int h) const { return base + 32 + (s * 2 + h) * 8; }
    __device__ __forceinline__ uint32_t mask(int s) const { return base + 64 + s * 8; }
    __device__ __forceinline__ uint32_t max1() const { return base + 80; }
    __device__ __forceinline__ uint32_t p0() const { return base + 88; }
};
constexpr int kBarBytes = 96;

// h64: free(0, 1) takes WG0's arrivals too, after its P store into stage 0's k_pe tile (see
// store_p64 in h64_wg0), so 256.
__device__ __forceinline__ void init_bars(Bars b, bool h64)
{
    for (int i = 0; i < 4; i++) {
        mbar_init(b.base + i * 8, 128); // ready: one arrival per gather thread
        mbar_init(b.base + 32 + i * 8, h64 && i == 1 ? 256 : 128); // free: one warpgroup
    }
    mbar_init(b.mask(0), 128);
    mbar_init(b.mask(1), 128);
    if (h64) {
        mbar_init(b.max1(), 128); // WG1's threads
        mbar_init(b.p0(), 128);   // WG0's threads
    }
    fence_mbar_init();
}

// h64 plan (bytes from the 1024-aligned base)
constexpr uint32_t kH64Q = 0;
constexpr uint32_t kH64Stage = kTilesQK * kTileBytes;    // stage s at kH64Stage + s * kStageBytes
constexpr uint32_t kH64P1 = kH64Stage + 2 * kStageBytes; // WG1's P tile
constexpr uint32_t kH64Mask = kH64P1 + kTileBytes;       // float [2][64]: 0 or -inf
constexpr uint32_t kH64RowMax = kH64Mask + 2 * 64 * 4;   // float2 [32]: the handed-over maxima
constexpr uint32_t kH64RowSum = kH64RowMax + 32 * 8;     // float2 [64]: final row sums
constexpr uint32_t kH64Bars = kH64RowSum + 64 * 8;
constexpr uint32_t kH64Bytes = kH64Bars + kBarBytes + 1024; // + alignment slack
static_assert(kH64Bytes <= 232448, "h64 plan exceeds 227 KB of shared memory");

// narrow plan for N padded heads
template <int N> struct NarrowPlan {
    static constexpr uint32_t q = 0;
    static constexpr uint32_t q_tile = N * 128;               // one 64-dim tile of N rows
    static constexpr uint32_t stage = kTilesQK * q_tile;      // N multiple of 8: 1024-aligned
    static constexpr uint32_t p = stage + 2 * kStageBytes;    // P^T [N heads x 64 keys] per WG
    static constexpr uint32_t mask = p + 2 * N * 128;         // float [2][64]
    static constexpr uint32_t red = mask + 2 * 64 * 4;        // float [wg][buf][warp][N]: maxima
    static constexpr uint32_t lred = red + 2 * 2 * 4 * N * 4; // float [wg][warp][N]: sums
    static constexpr uint32_t mshare = lred + 2 * 4 * N * 4;  // float [wg][N]: final maxima
    static constexpr uint32_t bars = mshare + 2 * N * 4;
    static constexpr uint32_t bytes = bars + kBarBytes + 1024;
    static constexpr uint32_t out_pitch = (kVDim + 4) * 4; // fp32 staging row, padded
    static_assert(N % 8 == 0 && N <= kNarrowMaxHeads, "narrow kernel: N = 8, 16, 24 or 32");
    static_assert(N * out_pitch <= kStageBytes && 8 * (N / 2) * 128 * 4 <= kStageBytes, "epilogue fits a stage");
    static_assert(bytes <= 232448, "narrow plan exceeds 227 KB of shared memory");
};

// Q [rows_pad x 576] of (row, heads h0..) -> 9 swizzled tiles of rows_pad rows; rows past
// `valid` are zeros. Called by the 256 compute threads.
__device__ __forceinline__ void load_q(const SparseMlaParams &p, const BlockWork &w, uint32_t q, int tile_stride,
                                       int rows_pad, int tid)
{
    const uint8_t *src_row0 = p.query + ((size_t)w.row * p.heads + w.h0) * kBf16RowBytes;
    for (int i = tid; i < rows_pad * 72; i += 256) {
        const int hr = i / 72, j = i % 72;
        const bool ok = hr < w.heads_here;
        cp_async16(q + (j >> 3) * tile_stride + swz(hr, j & 7),
                   src_row0 + (size_t)(ok ? hr : 0) * kBf16RowBytes + j * 16, ok);
    }
    cp_async_wait_all();
    fence_proxy_async();
    named_sync(kBarCompute, 256);
}

// ---------------------------------------------------------------------------------------------
// Gather warpgroup. Warp gw (0..3) owns rows [16 gw, 16 gw + 16) of every chunk; lane i < 16
// holds the cache row of its row i (-1: no key). Fill order per pair of chunks follows the order
// the compute warpgroups need them (FlashMLA's): stage 0 dims 0-255, stage 1 dims 256-575,
// stage 0 dims 256-575, stage 1 dims 0-255.

__device__ __forceinline__ int load_token(const SparseMlaParams &p, const BlockWork &w, int chunk, int gw, int lane)
{
    const int pos = w.key_begin + chunk * kChunkKeys + gw * 16 + lane;
    if (lane >= 16 || pos >= w.key_end) return -1;
    const int t = __ldg(p.idx + (size_t)w.row * p.topk + pos);
    return t >= 0 ? t : -1;
}

template <int kRowBytes> __device__ __forceinline__ void prefetch_rows(const uint8_t *cache, int tok)
{
    if (tok >= 0) prefetch_l2(cache + (size_t)tok * kRowBytes, kRowBytes);
}

// bf16 rows: piece j (16 B) of a 1152-byte row goes to tile j / 8, chunk j % 8. Lane l copies
// pieces l (tiles 0-3, half 0) and 32 + l (tiles 4-7, half 1) of each of the warp's 16 rows, one
// row per instruction (512 contiguous bytes per warp); tile 8 (k_pe, half 1) takes rows
// 4k + l / 8, piece 64 + l % 8. Row i of the warp has i & 7 == (16 gw + i) & 7, so the swizzle
// term is a constant per unrolled i.
__device__ __forceinline__ void gather_bf16(uint32_t stage, const uint8_t *cache, int tok, int gw, int lane, int half)
{
    opaque(stage);
    const uint32_t base = stage + (4 * half + (lane >> 3)) * kTileBytes + gw * 16 * 128;
    const int piece = 32 * half + lane;
#pragma unroll
    for (int i = 0; i < 16; i++) {
        const int t = __shfl_sync(0xffffffffu, tok, i);
        cp_async16(base + i * 128 + (((lane & 7) ^ (i & 7)) << 4),
                   cache + (size_t)(t >= 0 ? t : 0) * kBf16RowBytes + piece * 16, t >= 0);
    }
    if (half == 1) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int i = 4 * k + (lane >> 3);
            const int t = __shfl_sync(0xffffffffu, tok, i);
            cp_async16(stage + 8 * kTileBytes + (gw * 16 + i) * 128 + (((lane & 7) ^ (i & 7)) << 4),
                       cache + (size_t)(t >= 0 ? t : 0) * kBf16RowBytes + (64 + (lane & 7)) * 16, t >= 0);
        }
    }
}

// FP8 rows, in place: the 16 e4m3 of piece j (dims 16j..16j+15, j < 32) land in the upper half
// of their own destination row (tile j / 4, logical chunk 4 + j % 4) and are widened there to
// chunks 2 (j % 4) and 2 (j % 4) + 1, so a stage needs no staging buffer; the row's 4 scales
// (16 B) are copied to logical chunk 0 of each tile row, also free until widened. Instruction k
// covers rows 2k (lanes 0-15) and 2k + 1 (lanes 16-31) of the warp; lane piece 16 half + l % 16.
// The lane that copies a piece widens it. Besides its own copy it reads the row's scales (copied
// by lane l & ~3), and its bf16 output overwrites chunks copied by the row's other lanes: lanes
// of its own warp (a warp copies and widens only its own 16 rows), each of which has waited for
// its own copies (cp.async.wait_group) before the __syncwarp that opens widen_fp8; a second
// __syncwarp separates the row's reads from its writes. So no warpgroup barrier is needed. A
// stage half is copied into again only after free(stage, half), which completes after the compute
// warpgroup passed ready(stage, half), on which every gather thread arrives after its widening:
// the next pair's copies never overlap this pair's widening. Half 1 also copies k_pe (bf16,
// final) into tile 8 (rows 4k + l / 8, chunk l % 8).
__device__ __forceinline__ void gather_fp8(uint32_t stage, const uint8_t *cache, int tok, int gw, int lane, int half)
{
    opaque(stage);
    // These copies overwrite bf16 chunks that other lanes of this warp widened in the previous
    // pair. free(stage, half) already orders them (each lane arrived on ready after its stores,
    // and free completes only after the compute warpgroup passed ready), but racecheck does not
    // follow that chain between two lanes of one warp (it warned, 194K hazards); this makes it direct.
    __syncwarp();
    const int pj = half * 16 + (lane & 15);
    const uint32_t tile = stage + (pj >> 2) * kTileBytes + gw * 16 * 128;
#pragma unroll 1
    for (int k = 0; k < 8; k++) {
        const int i = 2 * k + (lane >> 4);
        const int t = __shfl_sync(0xffffffffu, tok, i);
        const uint8_t *row = cache + (size_t)(t >= 0 ? t : 0) * kFp8RowBytes;
        cp_async16(tile + i * 128 + (((4 + (pj & 3)) ^ (i & 7)) << 4), row + pj * 16, t >= 0);
        if ((pj & 3) == 0) cp_async16(tile + i * 128 + ((i & 7) << 4), row + kFp8ScaleOff, t >= 0);
    }
    if (half == 1) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int i = 4 * k + (lane >> 3);
            const int t = __shfl_sync(0xffffffffu, tok, i);
            cp_async16(stage + 8 * kTileBytes + (gw * 16 + i) * 128 + (((lane & 7) ^ (i & 7)) << 4),
                       cache + (size_t)(t >= 0 ? t : 0) * kFp8RowBytes + kFp8PeOff + (lane & 7) * 16, t >= 0);
        }
    }
    cp_async_commit();
}

__device__ __forceinline__ float ld_shared_f32(uint32_t a)
{
    float v;
    asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(a) : "memory");
    return v;
}

__device__ __forceinline__ uint32_t e4m3x2_to_bf16x2(uint32_t two, float s)
{
    __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(two & 0xffffu), __NV_E4M3);
    const float2 f = __half22float2(*reinterpret_cast<__half2 *>(&h));
    return pack_bf16(f.x * s, f.y * s);
}

// Widen the pieces gather_fp8 copied (same half, same lane mapping) once they have landed,
// kWidenRows rows per read/write round (more rounds, fewer live registers: the gather
// warpgroup has gather_regs).
constexpr int kWidenRows = 2;
__device__ __forceinline__ void widen_fp8(uint32_t stage, int gw, int lane, int half)
{
    opaque(stage); // addresses recomputed per call: hoisted out of the pair loop they cost registers
    const int pj = half * 16 + (lane & 15);
    const uint32_t tile = stage + (pj >> 2) * kTileBytes + gw * 16 * 128;
    __syncwarp(); // a row's scales were copied by another lane (l & ~3) of this warp
#pragma unroll 1  // rolled loops keep the gather warpgroups within gather_regs
    for (int b = 0; b < 8 / kWidenRows; b++) {
        uint4 raw[kWidenRows];
        float sc[kWidenRows];
#pragma unroll
        for (int kk = 0; kk < kWidenRows; kk++) {
            const int i = 2 * (kWidenRows * b + kk) + (lane >> 4);
            raw[kk] = ld_shared_v4(tile + i * 128 + (((4 + (pj & 3)) ^ (i & 7)) << 4));
            sc[kk] = ld_shared_f32(tile + i * 128 + ((i & 7) << 4) + 4 * (pj >> 3)); // scale of block pj / 8
        }
        __syncwarp(); // every lane has read its row's raw bytes and scales before any lane overwrites them
#pragma unroll
        for (int kk = 0; kk < kWidenRows; kk++) {
            const int i = 2 * (kWidenRows * b + kk) + (lane >> 4);
            const float s = sc[kk];
            const uint4 v = raw[kk];
            const uint4 lo = make_uint4(e4m3x2_to_bf16x2(v.x, s), e4m3x2_to_bf16x2(v.x >> 16, s),
                                        e4m3x2_to_bf16x2(v.y, s), e4m3x2_to_bf16x2(v.y >> 16, s));
            const uint4 hi = make_uint4(e4m3x2_to_bf16x2(v.z, s), e4m3x2_to_bf16x2(v.z >> 16, s),
                                        e4m3x2_to_bf16x2(v.w, s), e4m3x2_to_bf16x2(v.w >> 16, s));
            st_shared_v4(tile + i * 128 + (((2 * (pj & 3)) ^ (i & 7)) << 4), lo);
            st_shared_v4(tile + i * 128 + (((2 * (pj & 3) + 1) ^ (i & 7)) << 4), hi);
        }
    }
}

__device__ __forceinline__ void write_mask(uint8_t *sm, uint32_t mask_off, int s, int gw, int lane, int tok)
{
    if (lane < 16) reinterpret_cast<float *>(sm + mask_off)[s * 64 + gw * 16 + lane] = tok >= 0 ? 0.0f : -INFINITY;
}

template <bool kFp8>
__device__ void run_gather(const SparseMlaParams &p, const BlockWork &w, uint8_t *sm, uint32_t sb, uint32_t stage0,
                           uint32_t mask_off, Bars bars, int half)
{
    constexpr int kRowBytes = kFp8 ? kFp8RowBytes : kBf16RowBytes;
    const int gw = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
    const uint8_t *cache = p.cache + (size_t)w.row * p.cache_stride;
    const uint32_t st0 = sb + stage0, st1 = sb + stage0 + kStageBytes;
    int tok0 = -1, tok1 = -1;
    if (w.iters > 0) {
        tok0 = load_token(p, w, 0, gw, lane);
        tok1 = load_token(p, w, 1, gw, lane);
    }
    for (int it = 0; it < w.iters; it++) {
        const uint32_t par = (it & 1) ^ 1; // a fresh barrier passes parity 1 at once
        if constexpr (!kFp8) {
            mbar_wait(bars.free(0, 0), par);
            gather_bf16(st0, cache, tok0, gw, lane, 0);
            cp_async_arrive(bars.ready(0, 0));
            mbar_wait(bars.free(1, 1), par);
            gather_bf16(st1, cache, tok1, gw, lane, 1);
            cp_async_arrive(bars.ready(1, 1));
            mbar_wait(bars.free(0, 1), par);
            gather_bf16(st0, cache, tok0, gw, lane, 1);
            cp_async_arrive(bars.ready(0, 1));
            write_mask(sm, mask_off, 0, gw, lane, tok0);
            mbar_arrive(bars.mask(0));
            mbar_wait(bars.free(1, 0), par);
            gather_bf16(st1, cache, tok1, gw, lane, 0);
            cp_async_arrive(bars.ready(1, 0));
            write_mask(sm, mask_off, 1, gw, lane, tok1);
            mbar_arrive(bars.mask(1));
        } else if (half == 0) {
            // WG2: dims [0, 256) of both stages, and the masks. The order of waits and arrivals
            // keeps the one-warpgroup order's guarantees (each wait comes after every arrival that
            // preceded it there): stage 0 is widened and handed over before waiting for stage 1
            // to be freed, which the compute warpgroups may only do after using stage 0.
            const auto fill_half0 = [&](int s, uint32_t st, int tok) { // stage s, dims [0, 256)
                mbar_wait(bars.free(s, 0), par);
                gather_fp8(st, cache, tok, gw, lane, 0);
                cp_async_wait<0>();
                widen_fp8(st, gw, lane, 0);
                fence_proxy_async();
                mbar_arrive(bars.ready(s, 0));
            };
            fill_half0(0, st0, tok0);
            write_mask(sm, mask_off, 0, gw, lane, tok0);
            mbar_arrive(bars.mask(0));
            fill_half0(1, st1, tok1);
            // Stage 1's mask is read by WG1, which arrives on free(1, 1) after that read; free(1, 0)
            // (WG0's) orders it only through WG1's hand-off to WG0 (then a named barrier, now the
            // max1 mbarrier) and WG0's arrival, a chain that racecheck did not follow (it reported
            // this write against WG1's read). The wait
            // should not cost: both compute warpgroups free stage 1 right after their PV products
            // on it, so WG1's arrival is normally in by the time WG0's was.
            mbar_wait(bars.free(1, 1), par);
            write_mask(sm, mask_off, 1, gw, lane, tok1);
            mbar_arrive(bars.mask(1));
        } else { // WG3: dims [256, 512) and k_pe, in the one-warpgroup order (stage 1 first)
            mbar_wait(bars.free(1, 1), par);
            gather_fp8(st1, cache, tok1, gw, lane, 1);
            mbar_wait(bars.free(0, 1), par);
            gather_fp8(st0, cache, tok0, gw, lane, 1);
            cp_async_wait<1>();
            widen_fp8(st1, gw, lane, 1);
            fence_proxy_async();
            mbar_arrive(bars.ready(1, 1));
            cp_async_wait<0>();
            widen_fp8(st0, gw, lane, 1);
            fence_proxy_async();
            mbar_arrive(bars.ready(0, 1));
        }
        if (it + 1 < w.iters) { // next pair's rows: indices now, bytes into L2 while this pair computes
            tok0 = load_token(p, w, 2 * it + 2, gw, lane);
            tok1 = load_token(p, w, 2 * it + 3, gw, lane);
            if (half == 0) { // one prefetch per row
                prefetch_rows<kRowBytes>(cache, tok0);
                prefetch_rows<kRowBytes>(cache, tok1);
            }
        }
    }
    cp_async_wait_all(); // no copy of this thread still in flight when it exits
}

// ---------------------------------------------------------------------------------------------
// h64 compute warpgroups. Thread layout of a 64-row accumulator: warp w of the warpgroup holds
// rows 16w + g and 16w + g + 8 (g = lane / 4); q = lane % 4 picks the column pairs 8j + 2q.

__device__ __forceinline__ float quad_max(float v)
{
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

__device__ __forceinline__ float quad_sum(float v)
{
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// S (64 heads x 64 keys) over Q/K tiles [T0, T1).
template <int T0, int T1> __device__ __forceinline__ void issue_qk64(float (&s)[32], uint32_t q, uint32_t k, bool clear)
{
#pragma unroll
    for (int t = T0; t < T1; t++)
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
            wgmma_ss<0, 0>(s, desc_k(q + t * kTileBytes + kk * 32), desc_k(k + t * kTileBytes + kk * 32),
                           (clear && t == T0 && kk == 0) ? 0 : 1);
}

// O (64 x 256) += P (64 x 64 keys) V (64 keys x 256 dims); v = the first of V's 4 tiles.
__device__ __forceinline__ void issue_pv_regs(float (&o)[128], const uint32_t (&pa)[16], uint32_t v)
{
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        const uint32_t a[4] = {pa[4 * kk], pa[4 * kk + 1], pa[4 * kk + 2], pa[4 * kk + 3]};
        wgmma_rs_half<1, 0>(o, a, desc_mn(v + kk * 2048), 1);
        wgmma_rs_half<1, 1>(o, a, desc_mn(v + 2 * kTileBytes + kk * 2048), 1);
    }
}

__device__ __forceinline__ void issue_pv_smem(float (&o)[128], uint32_t ptile, uint32_t v)
{
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        wgmma_ss_half<0, 1, 0>(o, desc_k(ptile + kk * 32), desc_mn(v + kk * 2048), 1);
        wgmma_ss_half<0, 1, 1>(o, desc_k(ptile + kk * 32), desc_mn(v + 2 * kTileBytes + kk * 2048), 1);
    }
}

// mask: 0 (key present) or -inf, per key of the chunk
__device__ __forceinline__ void mask_s64(float (&s)[32], const float *mask, int q)
{
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const float2 mv = *reinterpret_cast<const float2 *>(mask + 8 * j + 2 * q);
        s[4 * j] += mv.x;
        s[4 * j + 1] += mv.y;
        s[4 * j + 2] += mv.x;
        s[4 * j + 3] += mv.y;
    }
}

// P (fp32 in s) times per-row factors -> bf16 A fragments for the PV product.
__device__ __forceinline__ void pack_p64(uint32_t (&pa)[16], const float (&s)[32], float f0, float f1)
{
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        pa[4 * kk] = pack_bf16(s[8 * kk] * f0, s[8 * kk + 1] * f0);
        pa[4 * kk + 1] = pack_bf16(s[8 * kk + 2] * f1, s[8 * kk + 3] * f1);
        pa[4 * kk + 2] = pack_bf16(s[8 * kk + 4] * f0, s[8 * kk + 5] * f0);
        pa[4 * kk + 3] = pack_bf16(s[8 * kk + 6] * f1, s[8 * kk + 7] * f1);
    }
}

// Online softmax of this warpgroup's chunk against the maximum `ref` (the running maximum, or
// the one WG0 just handed over): rescales o and l from this warpgroup's previous maximum m,
// leaves P (fp32) in s and bf16 P in pa, and m = the new maximum (log2 units, scaled).
__device__ __forceinline__ void softmax64(float (&s)[32], float (&o)[128], uint32_t (&pa)[16], float (&m)[2],
                                          float (&l)[2], float ref0, float ref1, float sl2)
{
#pragma unroll
    for (int e = 0; e < 2; e++) {
        float cur = -INFINITY;
#pragma unroll
        for (int j = 0; j < 8; j++) cur = fmaxf(cur, fmaxf(s[4 * j + 2 * e], s[4 * j + 2 * e + 1]));
        const float nm = fmaxf(e ? ref1 : ref0, quad_max(cur) * sl2); // scale > 0: max commutes
        const float so = ex2(m[e] - nm);
#pragma unroll
        for (int j = 0; j < 32; j++) {
            o[4 * j + 2 * e] *= so;
            o[4 * j + 2 * e + 1] *= so;
        }
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            s[4 * j + 2 * e] = ex2(fmaf(s[4 * j + 2 * e], sl2, -nm));
            s[4 * j + 2 * e + 1] = ex2(fmaf(s[4 * j + 2 * e + 1], sl2, -nm));
            sum += s[4 * j + 2 * e] + s[4 * j + 2 * e + 1];
        }
        l[e] = l[e] * so + sum;
        m[e] = nm;
    }
    pack_p64(pa, s, 1.0f, 1.0f);
}

// bf16 P fragments -> a 64 x 64 K-major swizzled tile (the A operand of the other warpgroup).
__device__ __forceinline__ void store_p64(uint32_t tile, const uint32_t (&pa)[16], int warp, int g, int q)
{
    const int r0 = warp * 16 + g;
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        st_shared_u32(tile + swz(r0, 2 * kk) + 4 * q, pa[4 * kk]);
        st_shared_u32(tile + swz(r0 + 8, 2 * kk) + 4 * q, pa[4 * kk + 1]);
        st_shared_u32(tile + swz(r0, 2 * kk + 1) + 4 * q, pa[4 * kk + 2]);
        st_shared_u32(tile + swz(r0 + 8, 2 * kk + 1) + 4 * q, pa[4 * kk + 3]);
    }
}

// WG0: chunks 0, 2, 4, ... in stage 0; output dims [0, 256).
__device__ __forceinline__ void h64_wg0(const SparseMlaParams &p, const BlockWork &w, uint8_t *sm, uint32_t sb,
                                        Bars bars, float (&o)[128], float (&m)[2], float (&l)[2])
{
    const int tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
    const uint32_t qs = sb + kH64Q, st0 = sb + kH64Stage, st1 = st0 + kStageBytes;
    const uint32_t p0 = st0 + 8 * kTileBytes, p1 = sb + kH64P1; // WG0's P: stage 0's k_pe tile
    const float *mask = reinterpret_cast<const float *>(sm + kH64Mask);
    float2 *row_max = reinterpret_cast<float2 *>(sm + kH64RowMax);
    float s[32];
    uint32_t pa[16];
    for (int it = 0; it < w.iters; it++) {
        const uint32_t par = it & 1;
        if (it == 0) {
            mbar_wait(bars.ready(0, 0), 0);
            fence_proxy_async();
            wg_fence();
            issue_qk64<0, 4>(s, qs, st0, true);
            wg_commit();
            mbar_wait(bars.ready(0, 1), 0);
            fence_proxy_async();
            wg_fence();
            issue_qk64<4, kTilesQK>(s, qs, st0, false);
            wg_commit();
            wg_wait<0>();
            fence_regs(s);
        }
        mbar_wait(bars.mask(0), par);
        mask_s64(s, mask, q);
        softmax64(s, o, pa, m, l, m[0], m[1], p.scale_log2);
        if (q == 0) row_max[tid >> 2] = make_float2(m[0], m[1]);
        named_arrive(kBarMax0, 256);

        wg_fence();
        issue_pv_regs(o, pa, st0); // own P x V(stage 0, dims 0-255)
        wg_commit();
        wg_wait<0>();
        fence_regs(o);
        fence_regs(pa);
        mbar_arrive(bars.free(0, 0));

        // WG1 has folded its chunk's maximum in: rescale to it, hand P over
        mbar_wait(bars.max1(), par);
        // row_max per iteration it, one phase of each hand-off per iteration:
        //   WG0 writes (q == 0) -> bar.arrive kBarMax0 -> WG1 bar.sync kBarMax0 -> WG1 reads;
        //   WG1 reads -> __syncwarp -> WG1 writes (q == 0) -> WG1 arrives on max1 -> this wait
        //   -> this read (RAW);
        //   this read -> (program order) WG0's write of it + 1 -> kBarMax0 of it + 1 -> WG1's
        //   write of it + 1 (WAR); WG0's q == 0 write of it + 1 after its quad's reads of it:
        //   kBarP1 (bar.sync by all of WG0) lies between.
        // Phases cannot slip: WG1 arrives on max1 of it + 1 only after kBarMax0 of it + 1, which
        // WG0 arrives on only after passing max1 of it (p0 and kBarP1 alike).
        const float2 nm = row_max[tid >> 2];
        const float f0 = ex2(m[0] - nm.x), f1 = ex2(m[1] - nm.y);
        m[0] = nm.x;
        m[1] = nm.y;
        pack_p64(pa, s, f0, f1);
        // p0 is stage 0's k_pe tile (tile 8), which the gather refills with cp.async every pair.
        // The copy of it lands before this store: the gather arrives on ready(0, 1) once its
        // copies have landed (cp.async.mbarrier.arrive.noinc; FP8: wait_group, then arrive), and
        // WG0 waited on ready(0, 1) before the S product that precedes this store. This store
        // precedes the copy of it + 1 through WG1 (p0, WG1's wgmma read of p0, WG1's arrival on
        // free(0, 1), the gather's wait on it), but racecheck did not follow that chain and
        // reported every such pair (WAW); WG0 therefore arrives on free(0, 1) as well (count
        // 256), a direct edge that costs one arrival per thread per pair and never delays the
        // gather (WG1 arrives later: after p0 and its PV product).
        store_p64(p0, pa, warp, g, q);
        fence_proxy_async();
        mbar_arrive(bars.free(0, 1));
        mbar_arrive(bars.p0());
        named_sync(kBarP1, 256);
#pragma unroll
        for (int j = 0; j < 32; j++) {
            o[4 * j] *= f0;
            o[4 * j + 1] *= f0;
            o[4 * j + 2] *= f1;
            o[4 * j + 3] *= f1;
        }
        l[0] *= f0;
        l[1] *= f1;
        wg_fence();
        issue_pv_smem(o, p1, st1); // WG1's P x V(stage 1, dims 0-255)
        wg_commit();

        if (it + 1 < w.iters) { // next chunk's S while the PV product runs
            mbar_wait(bars.ready(0, 0), par ^ 1);
            fence_proxy_async();
            wg_fence();
            issue_qk64<0, 4>(s, qs, st0, true);
            wg_commit();
            wg_wait<1>();
            mbar_arrive(bars.free(1, 0));
            mbar_wait(bars.ready(0, 1), par ^ 1);
            fence_proxy_async();
            wg_fence();
            issue_qk64<4, kTilesQK>(s, qs, st0, false);
            wg_commit();
            wg_wait<0>();
            fence_regs(s);
            fence_regs(o);
        } else {
            wg_wait<0>();
            fence_regs(o);
            mbar_arrive(bars.free(1, 0));
        }
    }
}

// WG1: chunks 1, 3, 5, ... in stage 1; output dims [256, 512).
__device__ __forceinline__ void h64_wg1(const SparseMlaParams &p, const BlockWork &w, uint8_t *sm, uint32_t sb,
                                        Bars bars, float (&o)[128], float (&m)[2], float (&l)[2])
{
    const int tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
    const uint32_t qs = sb + kH64Q, st0 = sb + kH64Stage, st1 = st0 + kStageBytes;
    const uint32_t p0 = st0 + 8 * kTileBytes, p1 = sb + kH64P1;
    const float *mask = reinterpret_cast<const float *>(sm + kH64Mask) + 64;
    float2 *row_max = reinterpret_cast<float2 *>(sm + kH64RowMax);
    float s[32];
    uint32_t pa[16];
    for (int it = 0; it < w.iters; it++) {
        const uint32_t par = it & 1;
        mbar_wait(bars.ready(1, 1), par);
        fence_proxy_async();
        wg_fence();
        issue_qk64<4, kTilesQK>(s, qs, st1, true);
        mbar_wait(bars.ready(1, 0), par);
        fence_proxy_async();
        wg_fence();
        issue_qk64<0, 4>(s, qs, st1, false);
        wg_commit();
        wg_wait<0>();
        fence_regs(s);
        mbar_wait(bars.mask(1), par);
        mask_s64(s, mask, q);

        named_sync(kBarMax0, 256); // WG0's new maximum
        const float2 ref = row_max[tid >> 2];
        softmax64(s, o, pa, m, l, ref.x, ref.y, p.scale_log2);
        __syncwarp(); // the row's 4 lanes have read row_max before lane q == 0 overwrites it
        if (q == 0) row_max[tid >> 2] = make_float2(m[0], m[1]); // WG0 reads it after max1
        mbar_arrive(bars.max1());

        wg_fence();
        issue_pv_regs(o, pa, st1 + 4 * kTileBytes); // own P x V(stage 1, dims 256-511)
        wg_commit();
        store_p64(p1, pa, warp, g, q);
        mbar_wait(bars.p0(), par); // WG0's P
        wg_fence();                // after the wait loop (else ptxas injects one, C7519)
        issue_pv_smem(o, p0, st0 + 4 * kTileBytes); // WG0's P x V(stage 0, dims 256-511)
        wg_commit();
        fence_proxy_async();
        named_arrive(kBarP1, 256);
        wg_wait<1>();
        mbar_arrive(bars.free(1, 1));
        wg_wait<0>();
        fence_regs(o);
        fence_regs(pa);
        mbar_arrive(bars.free(0, 1));
    }
}

// Both warpgroups: total row sums, normalise, store (bf16 output or fp32 split partial).
__device__ __forceinline__ void h64_epilogue(const SparseMlaParams &p, const BlockWork &w, uint8_t *sm,
                                             const float (&o)[128], const float (&m)[2], float (&l)[2])
{
    const int wg = threadIdx.x >> 7, tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31, g = lane >> 2,
              q = lane & 3;
    float2 *row_sum = reinterpret_cast<float2 *>(sm + kH64RowSum);
    l[0] = quad_sum(l[0]);
    l[1] = quad_sum(l[1]);
    if (q == 0) row_sum[threadIdx.x >> 2] = make_float2(l[0], l[1]);
    named_sync(kBarCompute, 256);
    const float2 peer = row_sum[(threadIdx.x >> 2) ^ 32];
    const float lt[2] = {l[0] + peer.x, l[1] + peer.y};
    const size_t rh = (size_t)w.row * p.heads + w.h0 + warp * 16 + g; // (row, head) of e = 0; e = 1 is +8
#pragma unroll
    for (int e = 0; e < 2; e++) {
        const bool any = lt[e] > 0.0f; // else no valid key: exact zeros (not -0) and lse = -inf
        const float inv = any ? 1.0f / lt[e] : 0.0f;
        const float lse = any ? logf(lt[e]) + m[e] * kLn2 : -INFINITY;
        if (!p.part_o) {
            uint16_t *dst = p.out + (rh + 8 * e) * kVDim + 256 * wg + 2 * q;
#pragma unroll
            for (int j = 0; j < 32; j++)
                *reinterpret_cast<uint32_t *>(dst + 8 * j) =
                    any ? pack_bf16(o[4 * j + 2 * e] * inv, o[4 * j + 2 * e + 1] * inv) : 0u;
            if (wg == 0 && q == 0) p.lse[rh + 8 * e] = lse;
        } else {
            const size_t part = (rh + 8 * e) * p.splits + w.split;
            float *dst = p.part_o + part * kVDim + 256 * wg + 2 * q;
#pragma unroll
            for (int j = 0; j < 32; j++)
                *reinterpret_cast<float2 *>(dst + 8 * j) =
                    any ? make_float2(o[4 * j + 2 * e] * inv, o[4 * j + 2 * e + 1] * inv) : make_float2(0.0f, 0.0f);
            if (wg == 0 && q == 0) p.part_lse[part] = lse;
        }
    }
}

template <bool kFp8>
__global__ void __launch_bounds__(block_threads<kFp8>(), 1) sparse_mla_h64(const __grid_constant__ SparseMlaParams p)
{
    extern __shared__ uint8_t smem_raw[];
    const uint32_t raw = smem_u32(smem_raw), pad = (1024u - (raw & 1023u)) & 1023u; // swizzle atoms: 1 KB
    uint8_t *sm = smem_raw + pad;
    const uint32_t sb = raw + pad;
    const BlockWork w = block_work(p);
    const Bars bars{sb + kH64Bars};
    if (threadIdx.x == 0) init_bars(bars, true);
    __syncthreads();
    const int wg = warpgroup_index();
    if (wg >= 2) {
        setmaxnreg_dec<gather_regs<kFp8>()>();
        run_gather<kFp8>(p, w, sm, sb, kH64Stage, kH64Mask, bars, wg - 2);
    } else {
        setmaxnreg_inc<compute_regs<kFp8>()>();
        load_q(p, w, sb + kH64Q, kTileBytes, kH64Heads, threadIdx.x);
        float o[128], m[2] = {kMaxInit, kMaxInit}, l[2] = {0.0f, 0.0f};
#pragma unroll
        for (int i = 0; i < 128; i++) o[i] = 0.0f;
        if (wg == 0)
            h64_wg0(p, w, sm, sb, bars, o, m, l);
        else
            h64_wg1(p, w, sm, sb, bars, o, m, l);
        h64_epilogue(p, w, sm, o, m, l);
    }
}

// ---------------------------------------------------------------------------------------------
// narrow compute warpgroups (N = heads padded to 8..32). S^T = K Q^T: rows = the chunk's 64
// keys (this thread: keys k0 = 16 warp + g and k0 + 8), columns = heads 8 jb + 2q + {0, 1}.
// Head slot sl = 2 jb + c indexes a thread's N/4 heads; O^T tile t (dims 64t..64t+63) has the
// same columns, rows = dims 64t + k0 (+8).

template <int N>
__device__ __forceinline__ void narrow_wg(const SparseMlaParams &p, const BlockWork &w, uint8_t *sm, uint32_t sb,
                                          Bars bars, int wg, float (&o)[8][N / 2], float (&m)[N / 4], float (&l)[N / 4])
{
    using P = NarrowPlan<N>;
    const int tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
    const uint32_t qs = sb + P::q, st = sb + P::stage + wg * kStageBytes, pt = sb + P::p + wg * N * 128;
    const float *mask = reinterpret_cast<const float *>(sm + P::mask) + 64 * wg;
    float *red = reinterpret_cast<float *>(sm + P::red) + wg * 2 * 4 * N;
    const float sl2 = p.scale_log2;
    const int k0 = warp * 16 + g;
    float s[N / 2];
    for (int it = 0; it < w.iters; it++) {
        const uint32_t par = it & 1;
        mbar_wait(bars.ready(wg, 0), par);
        mbar_wait(bars.ready(wg, 1), par);
        fence_proxy_async();
        wg_fence();
        // two interleaved accumulator chains (even / odd k-steps): at N <= 32 one m64nNk16 is short,
        // and a single chain of 36 dependent products measured 1-2% slower (ncu, 20 heads)
        float s2[N / 2];
#pragma unroll
        for (int t = 0; t < kTilesQK; t++)
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
                wgmma_ss<0, 0>(((4 * t + kk) & 1) ? s2 : s, desc_k(st + t * kTileBytes + kk * 32),
                               desc_k(qs + t * P::q_tile + kk * 32), (4 * t + kk) >= 2 ? 1 : 0);
        wg_commit();
        wg_wait<0>();
        fence_regs(s);
        fence_regs(s2);
#pragma unroll
        for (int i = 0; i < N / 2; i++) s[i] += s2[i];

        // chunk maximum per head: the thread's 2 keys, the warp's 16 (shuffles), 4 warps (smem)
        mbar_wait(bars.mask(wg), par);
        const float mv0 = mask[k0], mv1 = mask[k0 + 8];
        float *rb = red + par * 4 * N; // double-buffered: one barrier per use suffices
#pragma unroll
        for (int sl = 0; sl < N / 4; sl++) {
            const int jb = sl >> 1, c = sl & 1;
            s[4 * jb + c] += mv0;
            s[4 * jb + 2 + c] += mv1;
            float mx = fmaxf(s[4 * jb + c], s[4 * jb + 2 + c]);
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 8));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 16));
            if (g == 0) rb[warp * N + 8 * jb + 2 * q + c] = mx * sl2;
        }
        named_sync(kBarWg0 + wg, 128);
#pragma unroll
        for (int sl = 0; sl < N / 4; sl++) {
            const int jb = sl >> 1, c = sl & 1, h = 8 * jb + 2 * q + c;
            const float cm = fmaxf(fmaxf(rb[h], rb[N + h]), fmaxf(rb[2 * N + h], rb[3 * N + h]));
            const float nm = fmaxf(m[sl], cm);
            const float so = ex2(m[sl] - nm);
            m[sl] = nm;
            const float p0 = ex2(fmaf(s[4 * jb + c], sl2, -nm)), p1 = ex2(fmaf(s[4 * jb + 2 + c], sl2, -nm));
            l[sl] = l[sl] * so + p0 + p1;
#pragma unroll
            for (int t = 0; t < 8; t++) {
                o[t][4 * jb + c] *= so;
                o[t][4 * jb + 2 + c] *= so;
            }
            // P^T as P [head][key]: the K-major B operand of the PV product
            st_shared_u16(pt + swz(h, k0 >> 3) + (k0 & 7) * 2, __bfloat16_as_ushort(__float2bfloat16_rn(p0)));
            st_shared_u16(pt + swz(h, (k0 >> 3) + 1) + (k0 & 7) * 2, __bfloat16_as_ushort(__float2bfloat16_rn(p1)));
        }
        fence_proxy_async();
        named_sync(kBarWg0 + wg, 128);

        wg_fence();
        // k-steps outer, tiles inner: the 8 accumulators' products interleave
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
#pragma unroll
            for (int t = 0; t < 8; t++)
                wgmma_ss<1, 0>(o[t], desc_mn(st + t * kTileBytes + kk * 2048), desc_k(pt + kk * 32), 1);
        wg_commit();
        wg_wait<0>();
#pragma unroll
        for (int t = 0; t < 8; t++) fence_regs(o[t]);
        mbar_arrive(bars.free(wg, 0));
        mbar_arrive(bars.free(wg, 1));
    }
}

// Merge the two warpgroups' softmax states, normalise, store through shared memory.
template <int N>
__device__ __forceinline__ void narrow_epilogue(const SparseMlaParams &p, const BlockWork &w, uint8_t *sm, int wg,
                                                float (&o)[8][N / 2], const float (&m)[N / 4], const float (&l)[N / 4])
{
    using P = NarrowPlan<N>;
    const int tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
    float *lred = reinterpret_cast<float *>(sm + P::lred);     // [wg][warp][N]
    float *mshare = reinterpret_cast<float *>(sm + P::mshare); // [wg][N]
#pragma unroll
    for (int sl = 0; sl < N / 4; sl++) {
        const int h = 8 * (sl >> 1) + 2 * q + (sl & 1);
        float v = l[sl];
        v += __shfl_xor_sync(0xffffffffu, v, 4);
        v += __shfl_xor_sync(0xffffffffu, v, 8);
        v += __shfl_xor_sync(0xffffffffu, v, 16);
        if (g == 0) lred[(wg * 4 + warp) * N + h] = v;
        if (g == 0 && warp == 0) mshare[wg * N + h] = m[sl];
    }
    named_sync(kBarCompute, 256);
    float f[N / 4], lse[N / 4]; // this warpgroup's weight in the merged output; the merged lse
#pragma unroll
    for (int sl = 0; sl < N / 4; sl++) {
        const int h = 8 * (sl >> 1) + 2 * q + (sl & 1);
        const float mo = mshare[(1 - wg) * N + h], mm = fmaxf(m[sl], mo);
        const float fs = ex2(m[sl] - mm), fo = ex2(mo - mm);
        float ls = 0.0f, lo = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            ls += lred[(wg * 4 + i) * N + h];
            lo += lred[((1 - wg) * 4 + i) * N + h];
        }
        const float lt = ls * fs + lo * fo;
        f[sl] = lt > 0.0f ? fs / lt : 0.0f;
        lse[sl] = lt > 0.0f ? logf(lt) + mm * kLn2 : -INFINITY;
    }
    // WG1's share goes to WG0 through stage 0; WG0 stages the sum [head][dim] (fp32) in stage 1.
    float *xfer = reinterpret_cast<float *>(sm + P::stage);
    float *stg = reinterpret_cast<float *>(sm + P::stage + kStageBytes);
    constexpr int kPitch = P::out_pitch / 4;
    if (wg == 1) {
#pragma unroll
        for (int t = 0; t < 8; t++)
#pragma unroll
            for (int i = 0; i < N / 2; i++) {
                const int sl = 2 * (i >> 2) + (i & 1);
                xfer[(t * (N / 2) + i) * 128 + tid] = f[sl] > 0.0f ? o[t][i] * f[sl] : 0.0f; // exact +0, not -0
            }
    }
    named_sync(kBarCompute, 256);
    if (wg == 0) {
#pragma unroll
        for (int t = 0; t < 8; t++)
#pragma unroll
            for (int i = 0; i < N / 2; i++) {
                const int h = 8 * (i >> 2) + 2 * q + (i & 1), d = 64 * t + warp * 16 + g + ((i & 2) ? 8 : 0);
                const int sl = 2 * (i >> 2) + (i & 1);
                stg[h * kPitch + d] = f[sl] > 0.0f ? o[t][i] * f[sl] + xfer[(t * (N / 2) + i) * 128 + tid]
                                                   : xfer[(t * (N / 2) + i) * 128 + tid];
            }
        if (warp == 0 && g == 0) {
#pragma unroll
            for (int sl = 0; sl < N / 4; sl++) {
                const int h = 8 * (sl >> 1) + 2 * q + (sl & 1);
                if (h >= w.heads_here) continue;
                const size_t rh = (size_t)w.row * p.heads + w.h0 + h;
                if (!p.part_o)
                    p.lse[rh] = lse[sl];
                else
                    p.part_lse[rh * p.splits + w.split] = lse[sl];
            }
        }
    }
    named_sync(kBarCompute, 256);
    const size_t rh0 = (size_t)w.row * p.heads + w.h0;
    if (!p.part_o) {
        for (int i = threadIdx.x; i < w.heads_here * (kVDim / 8); i += 256) {
            const int h = i / (kVDim / 8), c = i % (kVDim / 8);
            const float4 a = *reinterpret_cast<const float4 *>(stg + h * kPitch + 8 * c);
            const float4 b = *reinterpret_cast<const float4 *>(stg + h * kPitch + 8 * c + 4);
            *reinterpret_cast<uint4 *>(p.out + (rh0 + h) * kVDim + 8 * c) =
                make_uint4(pack_bf16(a.x, a.y), pack_bf16(a.z, a.w), pack_bf16(b.x, b.y), pack_bf16(b.z, b.w));
        }
    } else {
        for (int i = threadIdx.x; i < w.heads_here * (kVDim / 4); i += 256) {
            const int h = i / (kVDim / 4), c = i % (kVDim / 4);
            *reinterpret_cast<float4 *>(p.part_o + ((rh0 + h) * p.splits + w.split) * kVDim + 4 * c) =
                *reinterpret_cast<const float4 *>(stg + h * kPitch + 4 * c);
        }
    }
}

template <int N, bool kFp8>
__global__ void __launch_bounds__(block_threads<kFp8>(), 1) sparse_mla_narrow(const __grid_constant__ SparseMlaParams p)
{
    using P = NarrowPlan<N>;
    extern __shared__ uint8_t smem_raw[];
    const uint32_t raw = smem_u32(smem_raw), pad = (1024u - (raw & 1023u)) & 1023u;
    uint8_t *sm = smem_raw + pad;
    const uint32_t sb = raw + pad;
    const BlockWork w = block_work(p);
    const Bars bars{sb + P::bars};
    if (threadIdx.x == 0) init_bars(bars, false);
    __syncthreads();
    const int wg = warpgroup_index();
    if (wg >= 2) {
        setmaxnreg_dec<gather_regs<kFp8>()>();
        run_gather<kFp8>(p, w, sm, sb, P::stage, P::mask, bars, wg - 2);
    } else {
        setmaxnreg_inc<compute_regs<kFp8>()>();
        load_q(p, w, sb + P::q, P::q_tile, N, threadIdx.x);
        float o[8][N / 2], m[N / 4], l[N / 4];
#pragma unroll
        for (int t = 0; t < 8; t++)
#pragma unroll
            for (int i = 0; i < N / 2; i++) o[t][i] = 0.0f;
#pragma unroll
        for (int i = 0; i < N / 4; i++) {
            m[i] = kMaxInit;
            l[i] = 0.0f;
        }
        narrow_wg<N>(p, w, sm, sb, bars, wg, o, m, l);
        narrow_epilogue<N>(p, w, sm, wg, o, m, l);
    }
}

// ---------------------------------------------------------------------------------------------
// Split-KV combine: one block per (row, head); each split's output is normalised by its own
// sum, so out = sum_s exp(lse_s - lse) O_s, lse = ln sum_s exp(lse_s).

constexpr int kCombineThreads = kVDim / 4; // 4 dims per thread

__global__ void __launch_bounds__(kCombineThreads)
    sparse_mla_combine(const float *__restrict__ part_o, const float *__restrict__ part_lse, int splits,
                       uint16_t *__restrict__ out, float *__restrict__ lse)
{
    const size_t rh = blockIdx.x;
    const float *pl = part_lse + rh * splits;
    float mx = -INFINITY;
    for (int s = 0; s < splits; s++) mx = fmaxf(mx, pl[s]);
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float sum = 0.0f;
    if (mx != -INFINITY) {
        for (int s = 0; s < splits; s++) {
            if (pl[s] == -INFINITY) continue; // empty split: its O is 0 and its weight 0
            const float wgt = expf(pl[s] - mx);
            const float4 v = *reinterpret_cast<const float4 *>(part_o + (rh * splits + s) * kVDim + 4 * threadIdx.x);
            sum += wgt;
            acc.x += wgt * v.x;
            acc.y += wgt * v.y;
            acc.z += wgt * v.z;
            acc.w += wgt * v.w;
        }
    }
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    *reinterpret_cast<uint2 *>(out + rh * kVDim + 4 * threadIdx.x) =
        make_uint2(pack_bf16(acc.x * inv, acc.y * inv), pack_bf16(acc.z * inv, acc.w * inv));
    if (threadIdx.x == 0) lse[rh] = sum > 0.0f ? mx + logf(sum) : -INFINITY;
}

// ---------------------------------------------------------------------------------------------
// Host side

struct HeadPlan {
    bool h64;       // the h64 kernel (heads % 64 == 0), else narrow
    int head_tile;  // heads per block
    int head_tiles; // blocks per row along heads
    int n_pad;      // narrow: N (head_tile rounded up to 8)
};

inline HeadPlan plan_heads(int heads)
{
    if (heads % kH64Heads == 0) return {true, kH64Heads, heads / kH64Heads, kH64Heads};
    const int tiles = (heads + kNarrowMaxHeads - 1) / kNarrowMaxHeads;
    const int per = (heads + tiles - 1) / tiles;
    return {false, per, (heads + per - 1) / per, (per + 7) / 8 * 8};
}

// One launch of kernel K. The shared-memory opt-in is set the first time per kernel and device
// (kernels/smem_optin.cuh; so it happens before any graph capture that follows a first,
// uncaptured call).
template <auto K, int kBlockThreads>
inline int launch_kernel(dsa_cuda_ctx *c, const char *op, size_t smem, long long blocks, const SparseMlaParams &prm)
{
    if (smem > c->smem_optin)
        return dsa_cuda_fail(c, "%s: needs %zu B of shared memory per block, the device allows %zu", op, smem,
                             c->smem_optin);
    if (blocks > 0x7fffffffLL) return dsa_cuda_fail(c, "%s: %lld blocks, more than a grid holds", op, blocks);
    if (int rc = smem_optin<K>(c, smem, false, op)) return rc;
    K<<<(unsigned)blocks, kBlockThreads, smem, c->stream>>>(prm);
    return dsa_cuda_check(c, op);
}

// The attention kernel for prm (rows, heads, splits and split_keys set); head_tile(s) from hp.
template <bool kFp8>
inline int launch_sparse_mla(dsa_cuda_ctx *c, const char *op, SparseMlaParams prm, const HeadPlan &hp)
{
    prm.head_tile = hp.head_tile;
    prm.head_tiles = hp.head_tiles;
    const long long blocks = (long long)prm.rows * hp.head_tiles * prm.splits;
    constexpr int kThreads = block_threads<kFp8>();
    if (hp.h64) return launch_kernel<sparse_mla_h64<kFp8>, kThreads>(c, op, kH64Bytes, blocks, prm);
    switch (hp.n_pad) {
    case 8: return launch_kernel<sparse_mla_narrow<8, kFp8>, kThreads>(c, op, NarrowPlan<8>::bytes, blocks, prm);
    case 16: return launch_kernel<sparse_mla_narrow<16, kFp8>, kThreads>(c, op, NarrowPlan<16>::bytes, blocks, prm);
    case 24: return launch_kernel<sparse_mla_narrow<24, kFp8>, kThreads>(c, op, NarrowPlan<24>::bytes, blocks, prm);
    case 32: return launch_kernel<sparse_mla_narrow<32, kFp8>, kThreads>(c, op, NarrowPlan<32>::bytes, blocks, prm);
    default:
        return dsa_cuda_fail(c, "%s: internal: no kernel for %d padded heads", op, hp.n_pad);
    }
}

inline int launch_combine(dsa_cuda_ctx *c, const char *op, const SparseMlaParams &prm)
{
    const size_t rows_heads = (size_t)prm.rows * prm.heads;
    if (rows_heads > 0x7fffffffu)
        return dsa_cuda_fail(c, "%s: %zu (row, head) pairs, more than a grid holds", op, rows_heads);
    sparse_mla_combine<<<(unsigned)rows_heads, kCombineThreads, 0, c->stream>>>(prm.part_o, prm.part_lse, prm.splits,
                                                                                prm.out, prm.lse);
    return dsa_cuda_check(c, op);
}

} // namespace
