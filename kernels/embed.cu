// kernels/embed.cu — token embedding lookup: out[r, :] = table[tokens[r], :].
// A pure copy: one block per row, 16-byte loads and stores when the rows allow it.
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_ops.h"

namespace {

// 128 threads x 16 bytes = 2 KB per step: hidden 2048..7168 takes 2..4 steps per row, enough
// loads in flight per block for a copy; smaller rows just leave threads idle.
constexpr int EMBED_THREADS = 128;

// The vocabulary size is not an argument, so a bad token cannot be range-checked here, and a
// negative one cannot be reported without a sync (the reference fails on it). Its row is
// written as NaN so that the error shows downstream instead of reading out of bounds.
constexpr uint16_t BF16_QNAN = 0x7fc0;

template <bool VEC16>
__global__ void __launch_bounds__(EMBED_THREADS)
embed_rows(const int32_t *__restrict__ tokens, const uint16_t *__restrict__ table, int hidden,
           uint16_t *__restrict__ out)
{
    const int r = blockIdx.x;
    const int32_t tok = tokens[r];
    uint16_t *dst = out + (size_t)r * hidden;
    if (VEC16) {
        const int chunks = hidden / 8;
        uint4 *d4 = reinterpret_cast<uint4 *>(dst);
        if (tok < 0) {
            const uint32_t nan2 = (uint32_t)BF16_QNAN * 0x10001u;
            for (int i = threadIdx.x; i < chunks; i += EMBED_THREADS) d4[i] = make_uint4(nan2, nan2, nan2, nan2);
            return;
        }
        const uint4 *s4 = reinterpret_cast<const uint4 *>(table + (size_t)tok * hidden);
        for (int i = threadIdx.x; i < chunks; i += EMBED_THREADS) d4[i] = __ldg(s4 + i);
    } else {
        if (tok < 0) {
            for (int i = threadIdx.x; i < hidden; i += EMBED_THREADS) dst[i] = BF16_QNAN;
            return;
        }
        const uint16_t *src = table + (size_t)tok * hidden;
        for (int i = threadIdx.x; i < hidden; i += EMBED_THREADS) dst[i] = src[i];
    }
}

} // namespace

extern "C" int dsa_cuda_embed(void *ctx, const int32_t *tokens, int n, const bf16_t *table, int hidden, bf16_t *out)
{
    dsa_cuda_ctx *c = (dsa_cuda_ctx *)ctx;
    if (n < 0) return dsa_cuda_fail(c, "embed: n = %d is negative", n);
    if (hidden <= 0) return dsa_cuda_fail(c, "embed: hidden = %d must be positive", hidden);
    if (n == 0) return DSA_OK;
    if (!tokens || !table || !out) return dsa_cuda_fail(c, "embed: tokens, table or out is NULL");
    const bool vec = hidden % 8 == 0 && ((uintptr_t)table | (uintptr_t)out) % 16 == 0;
    if (vec)
        embed_rows<true><<<n, EMBED_THREADS, 0, c->stream>>>(tokens, table, hidden, out);
    else
        embed_rows<false><<<n, EMBED_THREADS, 0, c->stream>>>(tokens, table, hidden, out);
    return dsa_cuda_check(c, "embed");
}
