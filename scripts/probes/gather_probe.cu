// scripts/probes/gather_probe.cu — how fast can the GPU gather 2048 rows of 1152 B per query (the
// sparse MLA prefill's reads: bf16 [c_kv | k_pe]) into shared memory, with no math at all? The
// bound under the 20-head sparse prefill (results/README.md). 4096 queries at the end of an 8K /
// 64K / 200K context, indices uniform over each query's visible keys as `dsa-bench kernels`
// makes them; rows copied into a ring of shared-memory stages and discarded; median of 7 runs.
// Two ways: 16-byte cp.async (what the kernels do) and one bulk copy (cp.async.bulk) per row.
// A standalone measurement, not part of the build:
//   nvcc -O2 -std=c++17 -gencode=arch=compute_90a,code=sm_90a scripts/probes/gather_probe.cu -o gather_probe
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <vector>
#include <algorithm>
#include <cuda_runtime.h>

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e)); exit(1); } } while (0)
constexpr int ROW = 1152, TOPK = 2048, CHUNKS = ROW / 16;

__device__ __forceinline__ uint32_t saddr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// cp.async 16 B: T threads, stages of R rows, S stages in flight
template <int T, int R, int S>
__global__ void __launch_bounds__(T) gather_cp(const uint8_t *cache, const int32_t *idx, int q_per_block)
{
    extern __shared__ __align__(128) uint8_t sm[];
    for (int qq = 0; qq < q_per_block; qq++) {
        const int32_t *ix = idx + (size_t)(blockIdx.x * q_per_block + qq) * TOPK;
        for (int r0 = 0, st = 0; r0 < TOPK; r0 += R, st = (st + 1) % S) {
            uint8_t *dst = sm + (size_t)st * R * ROW;
            for (int c = threadIdx.x; c < R * CHUNKS; c += T) {
                const int r = c / CHUNKS, k = c % CHUNKS;
                const int t = __ldg(ix + r0 + r);
                asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(saddr(dst + r * ROW + k * 16)),
                             "l"(cache + (size_t)t * ROW + k * 16) : "memory");
            }
            asm volatile("cp.async.commit_group;\n" ::: "memory");
            asm volatile("cp.async.wait_group %0;\n" ::"n"(S - 1) : "memory");
        }
        asm volatile("cp.async.wait_all;\n" ::: "memory");
    }
}

// one bulk copy (TMA 1D) per row, completion on an mbarrier per stage
template <int T, int R, int S>
__global__ void __launch_bounds__(T) gather_bulk(const uint8_t *cache, const int32_t *idx, int q_per_block)
{
    extern __shared__ __align__(128) uint8_t sm[];
    __shared__ __align__(8) uint64_t bar[S];
    if (threadIdx.x < S) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(saddr(&bar[threadIdx.x])));
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    __syncthreads();
    uint32_t phase[S] = {};
    int issued = 0;
    for (int qq = 0; qq < q_per_block; qq++) {
        const int32_t *ix = idx + (size_t)(blockIdx.x * q_per_block + qq) * TOPK;
        for (int r0 = 0; r0 < TOPK; r0 += R, issued++) {
            const int st = issued % S;
            if (issued >= S) { // wait for this stage's previous fill
                uint32_t done = 0;
                const uint32_t ph = phase[st];
                while (!done)
                    asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                                 : "=r"(done) : "r"(saddr(&bar[st])), "r"(ph) : "memory");
                phase[st] ^= 1;
            }
            __syncthreads();
            uint8_t *dst = sm + (size_t)st * R * ROW;
            if (threadIdx.x == 0)
                asm volatile("{\n.reg .b64 s;\nmbarrier.arrive.expect_tx.shared::cta.b64 s, [%0], %1;\n}\n" ::"r"(saddr(&bar[st])), "r"(R * ROW) : "memory");
            __syncthreads();
            for (int r = threadIdx.x; r < R; r += T) {
                const int t = __ldg(ix + r0 + r);
                asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
                             ::"r"(saddr(dst + r * ROW)), "l"(cache + (size_t)t * ROW), "r"(ROW), "r"(saddr(&bar[st])) : "memory");
            }
        }
    }
    for (int st = 0; st < S && st < issued; st++) { // drain
        uint32_t done = 0;
        while (!done)
            asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                         : "=r"(done) : "r"(saddr(&bar[st])), "r"(phase[st]) : "memory");
    }
}

template <class K> float time_it(K kernel, int grid, int threads, size_t smem, const uint8_t *cache, const int32_t *idx, int qpb)
{
    CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    cudaEvent_t a, b;
    cudaEventCreate(&a); cudaEventCreate(&b);
    kernel<<<grid, threads, smem>>>(cache, idx, qpb);
    CK(cudaDeviceSynchronize());
    std::vector<float> ts;
    for (int i = 0; i < 7; i++) {
        cudaEventRecord(a);
        kernel<<<grid, threads, smem>>>(cache, idx, qpb);
        cudaEventRecord(b);
        CK(cudaEventSynchronize(b));
        float ms; cudaEventElapsedTime(&ms, a, b); ts.push_back(ms);
    }
    std::sort(ts.begin(), ts.end());
    return ts[3];
}

int main()
{
    const int Q = 4096;
    const long long ctxs[] = {8192, 65536, 200000};
    for (long long L : ctxs) {
        uint8_t *cache; int32_t *idx;
        CK(cudaMalloc(&cache, (size_t)L * ROW));
        CK(cudaMemset(cache, 1, (size_t)L * ROW));
        std::vector<int32_t> h((size_t)Q * TOPK);
        uint64_t x = 0x9e3779b97f4a7c15ULL;
        std::vector<uint8_t> seen(L, 0);
        for (int r = 0; r < Q; r++) {
            const long long n = L - Q + r + 1;
            int32_t *o = &h[(size_t)r * TOPK];
            for (int j = 0; j < TOPK;) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; int k = (int)(x % n); if (!seen[k]) seen[k] = 1, o[j++] = k; }
            for (int j = 0; j < TOPK; j++) seen[o[j]] = 0;
        }
        CK(cudaMalloc(&idx, h.size() * 4));
        CK(cudaMemcpy(idx, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
        const double bytes = (double)Q * TOPK * ROW;
        struct { const char *name; float ms; } res[10]; int n = 0;
        res[n++] = {"cp.async T=256 R=32 S=4 (1 blk/SM)", time_it(gather_cp<256, 32, 4>, Q, 256, 32 * ROW * 4, cache, idx, 1)};
        res[n++] = {"cp.async T=128 R=32 S=3 (2 blk/SM)", time_it(gather_cp<128, 32, 3>, Q, 128, 32 * ROW * 3, cache, idx, 1)};
        res[n++] = {"cp.async T=512 R=64 S=3 (1 blk/SM)", time_it(gather_cp<512, 64, 3>, Q, 512, 64 * ROW * 3, cache, idx, 1)};
        res[n++] = {"bulk T=128 R=64 S=3 (1 blk/SM)", time_it(gather_bulk<128, 64, 3>, Q, 128, 64 * ROW * 3, cache, idx, 1)};
        res[n++] = {"bulk T=64 R=32 S=4 (1 blk/SM)", time_it(gather_bulk<64, 32, 4>, Q, 64, 32 * ROW * 4, cache, idx, 1)};
        res[n++] = {"bulk T=32 R=16 S=4 (3 blk/SM)", time_it(gather_bulk<32, 16, 4>, Q, 32, 16 * ROW * 4, cache, idx, 1)};
        // the sparse kernels' capacity: two 64-row stages beside Q, one block per SM
        res[n++] = {"cp.async T=128 R=64 S=2 (1 blk/SM)", time_it(gather_cp<128, 64, 2>, Q, 128, 64 * ROW * 2, cache, idx, 1)};
        res[n++] = {"bulk T=128 R=64 S=2 (1 blk/SM)", time_it(gather_bulk<128, 64, 2>, Q, 128, 64 * ROW * 2, cache, idx, 1)};
        for (int i = 0; i < n; i++)
            printf("ctx %6lld  %-36s %8.1f us  %6.2f TB/s\n", L, res[i].name, res[i].ms * 1e3, bytes / (res[i].ms * 1e-3) / 1e12);
        cudaFree(cache); cudaFree(idx);
    }
    return 0;
}
