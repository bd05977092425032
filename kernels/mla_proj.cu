// kernels/mla_proj.cu — MLA's per-head projections around the latent attention
// (kernels/ops.h mla_absorb / mla_out, oracle kernels/ref/mla.c). w_kvb [heads, nope + v, 512]:
// rows [0, nope) of head h are W_UK[h] (nope x 512), rows [nope, nope + v) are W_UV[h] (v x 512).
//
// Both are one cuBLASLt strided-batched bf16 GEMM with batch = heads (gemm.c's
// dsa_cuda_gemm_heads; fp32 accumulation, one rounding to bf16):
//   absorb: q_lat[r, h, :] = q_nope[r, h, :] . W_UK[h]: m = rows, n = 512, k = nope; W_UK is
//           [k, n] row-major (transa = N, ld 512, head stride (nope + v) * 512); A rows are
//           strided by heads * (nope + 64), head stride nope + 64; D rows by heads * 576, head
//           stride 576, so the GEMM writes columns [0, 512) of each head's 576-long query row
//           and a copy kernel moves q_pe (64 values) to columns [512, 576).
//   out:    o[r, h*v + j] = out_lat[r, h, :] . W_UV[h][j, :]: m = rows, n = v, k = 512; W_UV is
//           [n, k] row-major (transa = T, ld 512); A rows strided by heads * 512, head stride 512;
//           D rows by heads * v, head stride v.
#include <stdint.h>

#include "cuda_ops.h"

#include "gemm_internal.h"

namespace {

// One thread per 16 bytes of q_pe (8 chunks per head); 256 threads = 32 heads' q_pe per block.
constexpr int QPE_THREADS = 256;
constexpr int QPE_CHUNKS = DSA_ROPE_DIM / 8;

template <bool VEC>
__global__ void __launch_bounds__(QPE_THREADS)
copy_q_pe(const uint16_t *__restrict__ q, int dq, int nope, long long vectors, uint16_t *__restrict__ query)
{
    const long long i = (long long)blockIdx.x * QPE_THREADS + threadIdx.x;
    if (i >= vectors * QPE_CHUNKS) return;
    const long long vec = i / QPE_CHUNKS; // (row, head) index
    const int ch = (int)(i % QPE_CHUNKS);
    const uint16_t *src = q + vec * dq + nope + 8 * ch;
    uint16_t *dst = query + vec * DSA_MLA_DIM + DSA_KV_LORA + 8 * ch;
    if (VEC) {
        *reinterpret_cast<uint4 *>(dst) = __ldg(reinterpret_cast<const uint4 *>(src));
    } else {
#pragma unroll
        for (int j = 0; j < 8; j++) dst[j] = src[j];
    }
}

int check_args(dsa_cuda_ctx *c, const char *op, int n, int heads, int nope, int v, const void *in, const void *w,
               const void *out)
{
    if (n < 0 || heads <= 0 || nope <= 0 || v <= 0)
        return dsa_cuda_fail(c, "%s: n = %d, heads = %d, nope = %d, v = %d (n >= 0, the others > 0)", op, n, heads, nope, v);
    if (n > 0 && (!in || !w || !out)) return dsa_cuda_fail(c, "%s: a pointer argument is NULL", op);
    return DSA_OK;
}

} // namespace

extern "C" int dsa_cuda_mla_absorb(void *ctx, const bf16_t *q, int n, int heads, int nope, int v, const bf16_t *w_kvb,
                                   bf16_t *query)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    int rc = check_args(c, "mla_absorb", n, heads, nope, v, q, w_kvb, query);
    if (rc || n == 0) return rc;
    const int dq = nope + DSA_ROPE_DIM;
    rc = dsa_cuda_gemm_heads(c, "mla_absorb", n, DSA_KV_LORA, nope, heads, q, heads * dq, dq, w_kvb, DSA_KV_LORA,
                             (long long)(nope + v) * DSA_KV_LORA, 1, query, heads * DSA_MLA_DIM, DSA_MLA_DIM);
    if (rc) return rc;
    const long long vectors = (long long)n * heads;
    const long long blocks = (vectors * QPE_CHUNKS + QPE_THREADS - 1) / QPE_THREADS;
    const bool vec = dq % 8 == 0 && nope % 8 == 0 && ((uintptr_t)q | (uintptr_t)query) % 16 == 0;
    if (vec)
        copy_q_pe<true><<<(unsigned)blocks, QPE_THREADS, 0, c->stream>>>(q, dq, nope, vectors, query);
    else
        copy_q_pe<false><<<(unsigned)blocks, QPE_THREADS, 0, c->stream>>>(q, dq, nope, vectors, query);
    return dsa_cuda_check(c, "mla_absorb: q_pe copy");
}

extern "C" int dsa_cuda_mla_out(void *ctx, const bf16_t *out_lat, int n, int heads, int nope, int v, const bf16_t *w_kvb,
                                bf16_t *o)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    int rc = check_args(c, "mla_out", n, heads, nope, v, out_lat, w_kvb, o);
    if (rc || n == 0) return rc;
    return dsa_cuda_gemm_heads(c, "mla_out", n, v, DSA_KV_LORA, heads, out_lat, heads * DSA_KV_LORA, DSA_KV_LORA,
                               w_kvb + (size_t)nope * DSA_KV_LORA, DSA_KV_LORA, (long long)(nope + v) * DSA_KV_LORA, 0, o,
                               heads * v, v);
}
