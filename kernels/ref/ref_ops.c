/* kernels/ref/ref_ops.c — the reference's operation table: context, error message, host
 * "device" memory, and the table itself. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_internal.h"

int ref_fail(void *ctx, const char *fmt, ...)
{
    if (ctx) {
        ref_ctx *c = ctx;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, sizeof c->err, fmt, ap);
        va_end(ap);
    }
    return DSA_EOP;
}

static const char *ref_last_error(void *ctx)
{
    return ctx ? ((ref_ctx *)ctx)->err : "cpu reference: no context";
}

int ref_alloc(void *ctx, void **p, size_t bytes)
{
    REF_REQUIRE(ctx, "alloc", p != NULL);
    *p = calloc(1, bytes ? bytes : 1); /* zero-filled; never NULL for 0 bytes */
    if (!*p)
        return ref_fail(ctx, "alloc: out of host memory (%zu bytes)", bytes);
    return DSA_OK;
}

void ref_release(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

int ref_upload(void *ctx, void *dst, const void *src, size_t bytes)
{
    REF_REQUIRE(ctx, "upload", bytes == 0 || (dst && src));
    if (bytes)
        memmove(dst, src, bytes);
    return DSA_OK;
}

int ref_download(void *ctx, void *dst, const void *src, size_t bytes)
{
    REF_REQUIRE(ctx, "download", bytes == 0 || (dst && src));
    if (bytes)
        memmove(dst, src, bytes);
    return DSA_OK;
}

int ref_sync(void *ctx)
{
    (void)ctx; /* every reference op completes before it returns */
    return DSA_OK;
}

int dsa_ref_ops_init(dsa_ops *ops)
{
    memset(ops, 0, sizeof *ops);
    ref_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return DSA_EOP;
    ops->name = "cpu";
    ops->ctx = c;
    ops->last_error = ref_last_error;
    ops->alloc = ref_alloc;
    ops->release = ref_release;
    ops->upload = ref_upload;
    ops->download = ref_download;
    ops->sync = ref_sync;
    ops->fill_bf16 = ref_fill_bf16;
    ops->fill_f32 = ref_fill_f32;
    ops->fill_e4m3 = ref_fill_e4m3;
    ops->embed = ref_embed;
    ops->rmsnorm = ref_rmsnorm;
    ops->layernorm = ref_layernorm;
    ops->gemm = ref_gemm;
    ops->rope = ref_rope;
    ops->swiglu = ref_swiglu;
    ops->mla_cache_write_bf16 = ref_mla_cache_write_bf16;
    ops->mla_cache_write_fp8 = ref_mla_cache_write_fp8;
    ops->idx_prep_q = ref_idx_prep_q;
    ops->idx_prep_k = ref_idx_prep_k;
    ops->idx_logits_prefill = ref_idx_logits_prefill;
    ops->idx_logits_decode = ref_idx_logits_decode;
    ops->topk = ref_topk;
    ops->idx_fused_prefill = ref_idx_fused_prefill;
    ops->idx_fused_decode = ref_idx_fused_decode;
    ops->mla_absorb = ref_mla_absorb;
    ops->sparse_attn_prefill = ref_sparse_attn_prefill;
    ops->sparse_attn_decode = ref_sparse_attn_decode;
    ops->mla_out = ref_mla_out;
    ops->moe_router = ref_moe_router;
    ops->moe_experts = ref_moe_experts;
    return DSA_OK;
}

void dsa_ref_ops_fini(dsa_ops *ops)
{
    if (!ops)
        return;
    free(ops->ctx);
    ops->ctx = NULL;
}
