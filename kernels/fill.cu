// kernels/fill.cu — deterministic synthetic data, the formula of kernels/ops.h:
// u(seed, i) = ((splitmix64(seed ^ splitmix64(i)) >> 40) * 2^-23) - 1, value = scale * u.
// Written independently of the reference (kernels/ref/numerics.c); the GPU test compares them.
#include <cuda_bf16.h>

#include "cuda_ops.h"

namespace {

__device__ __forceinline__ uint64_t splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

__device__ __forceinline__ float uniform(uint64_t seed, uint64_t i)
{
    // 24 random bits times 2^-23 is exact in fp32, so the subtraction is too.
    return (float)(splitmix64(seed ^ splitmix64(i)) >> 40) * (1.0f / 8388608.0f) - 1.0f;
}

template <typename T> __device__ __forceinline__ T convert(float v);
template <> __device__ __forceinline__ float convert<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 convert<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename T>
__global__ void fill_uniform(T *dst, size_t n, uint64_t seed, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = convert<T>(scale * uniform(seed, i));
}

template <typename T> int launch(void *ctx, T *dst, size_t n, uint64_t seed, float scale, const char *op)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (n == 0) return DSA_OK;
    size_t blocks = (n + 255) / 256;
    unsigned grid = (unsigned)(blocks < (size_t)c->sms * 32 ? blocks : (size_t)c->sms * 32);
    fill_uniform<T><<<grid, 256, 0, c->stream>>>(dst, n, seed, scale);
    return dsa_cuda_check(c, op);
}

} // namespace

extern "C" int dsa_cuda_fill_bf16(void *ctx, bf16_t *dst, size_t n, uint64_t seed, float scale)
{
    return launch(ctx, reinterpret_cast<__nv_bfloat16 *>(dst), n, seed, scale, "fill_bf16");
}

extern "C" int dsa_cuda_fill_f32(void *ctx, float *dst, size_t n, uint64_t seed, float scale)
{
    return launch(ctx, dst, n, seed, scale, "fill_f32");
}

namespace {

// Valid e4m3 codes only (never the NaN codes 0x7f / 0xff): random sign and magnitude code.
__global__ void fill_e4m3_codes(uint8_t *dst, size_t n, uint64_t seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t r = (uint32_t)(splitmix64(seed ^ splitmix64(i)) >> 32);
        uint32_t mag = r % 0x7f; // 0 .. 0x7e
        dst[i] = (uint8_t)(mag | ((r >> 16) & 0x80));
    }
}

} // namespace

extern "C" int dsa_cuda_fill_e4m3(void *ctx, uint8_t *dst, size_t n, uint64_t seed)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (n == 0) return DSA_OK;
    size_t blocks = (n + 255) / 256;
    unsigned grid = (unsigned)(blocks < (size_t)c->sms * 32 ? blocks : (size_t)c->sms * 32);
    fill_e4m3_codes<<<grid, 256, 0, c->stream>>>(dst, n, seed);
    return dsa_cuda_check(c, "fill_e4m3");
}
