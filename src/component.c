#include "component.h"

#include <string.h>

static const char *const names[DSA_NCOMP] = {
    "embed",      "attn_norm",   "q_proj",      "kv_proj",    "idx_proj",    "idx_logits",
    "idx_topk",   "idx_fused",   "mla_absorb",  "sparse_attn", "mla_out",    "o_proj",
    "ffn_norm",   "moe_router",  "moe_experts", "moe_shared", "dense_ffn",   "final_norm",
    "lm_head",    "comm",        "idle",
};

const char *dsa_component_name(int c) { return c >= 0 && c < DSA_NCOMP ? names[c] : NULL; }

int dsa_component_from_name(const char *s)
{
    for (int c = 0; c < DSA_NCOMP; c++)
        if (strcmp(s, names[c]) == 0) return c;
    return -1;
}

int dsa_component_is_indexer(int c)
{
    return c == DSA_C_IDX_PROJ || c == DSA_C_IDX_LOGITS || c == DSA_C_IDX_TOPK ||
           c == DSA_C_IDX_FUSED;
}
