/* kernels/ref/mla_cache.c — writes of the MLA latent cache, one token per slot.
 * bf16 rows: 576 values [c_kv (512) | k_pe (64)], copied bit for bit.
 * FP8 rows (FlashMLA's decode layout, DSA_MLA_FP8_TOKEN_BYTES = 656):
 *   bytes [0, 512)   c_kv as e4m3, block b = values [128b, 128b + 128)
 *   bytes [512, 528) 4 fp32 scales, one per block (scale = dsa_fp8_scale(block amax))
 *   bytes [528, 656) k_pe, 64 bf16 copied bit for bit.
 * A negative slot means "no slot" (padding, as vLLM's slot mapping uses -1): the row is
 * skipped. Multi-byte fields are host byte order (little-endian on every target). */
#include <string.h>

#include "ref_internal.h"

enum { FP8_SCALE_OFF = DSA_KV_LORA, FP8_PE_OFF = DSA_KV_LORA + 4 * (DSA_KV_LORA / 128) };
_Static_assert(FP8_PE_OFF + 2 * DSA_ROPE_DIM == DSA_MLA_FP8_TOKEN_BYTES, "FP8 MLA row layout");

int ref_mla_cache_write_bf16(void *ctx, const bf16_t *kv, int ldkv, int n, const int64_t *slot,
                             bf16_t *cache)
{
    REF_REQUIRE(ctx, "mla_cache_write_bf16", n >= 0 && ldkv >= DSA_MLA_DIM);
    REF_REQUIRE(ctx, "mla_cache_write_bf16", n == 0 || (kv && slot && cache));
    for (int r = 0; r < n; r++)
        if (slot[r] >= 0)
            memcpy(cache + (size_t)slot[r] * DSA_MLA_DIM, kv + (size_t)r * ldkv,
                   DSA_MLA_DIM * sizeof(bf16_t));
    return DSA_OK;
}

int ref_mla_cache_write_fp8(void *ctx, const bf16_t *kv, int ldkv, int n, const int64_t *slot,
                            uint8_t *cache, int scale_mode)
{
    REF_REQUIRE(ctx, "mla_cache_write_fp8", n >= 0 && ldkv >= DSA_MLA_DIM);
    REF_REQUIRE(ctx, "mla_cache_write_fp8",
                scale_mode == DSA_SCALE_FP32 || scale_mode == DSA_SCALE_UE8M0);
    REF_REQUIRE(ctx, "mla_cache_write_fp8", n == 0 || (kv && slot && cache));
    float v[128];
    for (int r = 0; r < n; r++) {
        if (slot[r] < 0)
            continue;
        const bf16_t *src = kv + (size_t)r * ldkv;
        uint8_t *dst = cache + (size_t)slot[r] * DSA_MLA_FP8_TOKEN_BYTES;
        for (int b = 0; b < DSA_KV_LORA / 128; b++) {
            for (int i = 0; i < 128; i++)
                v[i] = ref_bf16f(src[b * 128 + i]);
            float scale = ref_quant_e4m3(v, 128, scale_mode, dst + b * 128);
            memcpy(dst + FP8_SCALE_OFF + 4 * b, &scale, 4);
        }
        memcpy(dst + FP8_PE_OFF, src + DSA_KV_LORA, DSA_ROPE_DIM * sizeof(bf16_t));
    }
    return DSA_OK;
}

void ref_mla_fp8_row_to_f32(const uint8_t *row, float *out)
{
    for (int b = 0; b < DSA_KV_LORA / 128; b++) {
        float scale;
        memcpy(&scale, row + FP8_SCALE_OFF + 4 * b, 4);
        for (int i = 0; i < 128; i++)
            out[b * 128 + i] = dsa_e4m3_to_f32(row[b * 128 + i]) * scale;
    }
    for (int i = 0; i < DSA_ROPE_DIM; i++) {
        bf16_t h;
        memcpy(&h, row + FP8_PE_OFF + 2 * i, 2);
        out[DSA_KV_LORA + i] = ref_bf16f(h);
    }
}
