/* kernels/moe_groups.c — the experts' GEMM shapes for kernels/moe.cu's pointer-array GEMMs.
 *
 * One pointer-array GEMM runs all experts of one shape, so the fewer distinct shapes, the fewer
 * launches (the host's launches, ~7-9 us each, are what the GPU waits on between MoE GEMMs).
 * At glm-4.7-flash's ~512 rows per expert in an 8192-token chunk, one GEMM per bucket (multiples
 * of 16 rows) launched 20 per phase (a217eb1's 10K trace, layer 5); grouping experts of
 * neighbouring counts, 9 (0396d73), for a few percent more padded rows.
 *
 * The bound is on the rows a group adds beyond its members' own buckets, not on all padding:
 * an expert's own bucket already pads up to 15 rows, 12% of a ~113-row expert (the 1808-token
 * last chunk of a 10K prefill), and a bound on all padding (0b476b5) put every such expert in a
 * group of its own: 74 expert GEMM launches for that chunk's layer against 12 with one group per
 * bucket, a 10K prefill 12% slower (0.5165 s against 0.461 s, sweeps of 0396d73 and a217eb1). */
#include "moe_groups.h"

int dsa_moe_bucket_rows(int count)
{
    /* Multiples of 16 keep FP8 scale vectors 16-byte aligned; above 1024 rows, 1/16-octave
     * steps pad at most 6.25% and keep the distinct shapes (~16 per octave and matrix) few
     * enough that their cuBLASLt plans stay cached (DSA_GEMM_CACHE). Quarter-octave steps wasted
     * ~12% of the experts' GEMMs at ~512 rows, where half the experts land just above 512. */
    if (count <= 1024) return count <= 16 ? 16 : (count + 15) / 16 * 16;
    int p = 1024;
    while (p <= count / 2) p *= 2; /* p <= count < 2p */
    const int step = p / 16;
    return (count + step - 1) / step * step;
}

int dsa_moe_group_experts(const int *counts, int n_experts, int pad_div, int *order, int *group_start,
                          int *rows_of, int *n_active)
{
    int n = 0;
    for (int e = 0; e < n_experts; e++) { /* insertion by count, ties by expert id: few experts */
        rows_of[e] = counts[e] > 0 ? dsa_moe_bucket_rows(counts[e]) : 0;
        if (counts[e] <= 0) continue;
        int i = n++;
        for (; i > 0 && counts[order[i - 1]] > counts[e]; i--) order[i] = order[i - 1];
        order[i] = e;
    }
    *n_active = n;
    int n_groups = 0;
    long long own = 0; /* the current group's rows at its members' own buckets */
    for (int i = 0; i < n; i++) {
        const long long mine = rows_of[order[i]];
        const int start = n_groups ? group_start[n_groups - 1] : 0;
        /* ascending counts: this member's bucket is the group's rows if it joins */
        const long long extra = mine * (i - start + 1) - (own + mine);
        if (n_groups == 0 || pad_div <= 0 || extra * pad_div > own + mine) {
            group_start[n_groups++] = i;
            own = 0;
        }
        own += mine;
    }
    group_start[n_groups] = n;
    for (int g = 0; g < n_groups; g++) {
        const int rows = rows_of[order[group_start[g + 1] - 1]];
        for (int i = group_start[g]; i < group_start[g + 1]; i++) rows_of[order[i]] = rows;
    }
    return n_groups;
}
