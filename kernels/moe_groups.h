/* kernels/moe_groups.h — how the routed experts of one MoE call share GEMM shapes (host code,
 * kernels/moe_groups.c; used by kernels/moe.cu, tested on the CPU by tests/test_moe_groups.c). */
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/* Rows given to an expert with `count` pairs (count >= 1): a multiple of 16 up to 1024, then
 * 1/16-octave steps. */
int dsa_moe_bucket_rows(int count);

/* Sorts the experts with pairs by count (ties by expert id) into order[0 .. *n_active) and
 * partitions that order into groups: group g is order[group_start[g] .. group_start[g + 1]),
 * every member padded to the rows of the group's largest count (rows_of[e]; 0 for an expert
 * without pairs). A group grows while its rows beyond its members' own buckets stay within
 * 1/pad_div of those buckets, so experts of one bucket always share a group and there are never
 * more groups than distinct buckets. pad_div <= 0: one group per expert, each at its own bucket.
 * order and rows_of hold n_experts entries, group_start n_experts + 1. Returns the group count. */
int dsa_moe_group_experts(const int *counts, int n_experts, int pad_div, int *order, int *group_start,
                          int *rows_of, int *n_active);

#ifdef __cplusplus
}
#endif
