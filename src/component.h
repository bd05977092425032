/* src/component.h — the fixed vocabulary of timed components (DESIGN.md §4): HDF5 names,
 * table columns and plot legends all come from here. */
#ifndef DSA_COMPONENT_H
#define DSA_COMPONENT_H

enum dsa_component {
    DSA_C_EMBED, DSA_C_ATTN_NORM, DSA_C_Q_PROJ, DSA_C_KV_PROJ, DSA_C_IDX_PROJ, DSA_C_IDX_LOGITS,
    DSA_C_IDX_TOPK, DSA_C_IDX_FUSED, DSA_C_MLA_ABSORB, DSA_C_SPARSE_ATTN, DSA_C_MLA_OUT,
    DSA_C_O_PROJ, DSA_C_FFN_NORM, DSA_C_MOE_ROUTER, DSA_C_MOE_EXPERTS, DSA_C_MOE_SHARED,
    DSA_C_DENSE_FFN, DSA_C_FINAL_NORM, DSA_C_LM_HEAD, DSA_C_COMM, DSA_C_IDLE,
    DSA_NCOMP
};

const char *dsa_component_name(int c);     /* "idx_logits"; NULL when out of range */
int dsa_component_from_name(const char *s); /* -1 when unknown */
int dsa_component_is_indexer(int c);       /* idx_proj, idx_logits, idx_topk, idx_fused */

#endif
