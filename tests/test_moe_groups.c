/* tests/test_moe_groups.c — the experts' GEMM shapes (kernels/moe_groups.c), host code that
 * decides how many pointer-array GEMMs kernels/moe.cu launches: every expert with pairs in
 * exactly one group, padded to its group's bucket, groups within the padding bound, and never
 * more groups than distinct buckets (0b476b5 made one group per ~113-row expert). */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "moe_groups.h"

#define MAX_E 256

/* Deterministic counts: mean + spread * (sum of 4 uniforms - 2) / 2 (roughly normal). */
static void fill_counts(int *counts, int ne, int mean, int spread, uint32_t seed)
{
    for (int e = 0; e < ne; e++) {
        double u = 0;
        for (int j = 0; j < 4; j++) {
            seed = seed * 1664525u + 1013904223u;
            u += (seed >> 8) / 16777216.0;
        }
        int c = mean + (int)(spread * (u - 2) / 2);
        counts[e] = c < 0 ? 0 : c;
    }
}

static int distinct_buckets(const int *counts, int ne)
{
    int seen[MAX_E], n = 0;
    for (int e = 0; e < ne; e++) {
        if (counts[e] <= 0) continue;
        int b = dsa_moe_bucket_rows(counts[e]), j = 0;
        while (j < n && seen[j] != b) j++;
        if (j == n) seen[n++] = b;
    }
    return n;
}

/* Checks every property of one grouping; returns its group count. */
static int check_grouping(const char *what, const int *counts, int ne, int pad_div)
{
    int order[MAX_E], start[MAX_E + 1], rows[MAX_E], n_active = -1;
    const int ng = dsa_moe_group_experts(counts, ne, pad_div, order, start, rows, &n_active);
    int active = 0, seen[MAX_E] = {0};
    for (int e = 0; e < ne; e++) active += counts[e] > 0;
    fprintf(stderr, "  %-44s experts %3d, buckets %2d, groups %2d\n", what, active, distinct_buckets(counts, ne), ng);
    CHECK_INT(n_active, active);
    CHECK(ng >= (active > 0) && ng <= active);
    CHECK_INT(start[0], 0);
    CHECK_INT(start[ng], active);
    for (int i = 0; i < active; i++) seen[order[i]]++;
    for (int e = 0; e < ne; e++) {
        CHECK_INT(seen[e], counts[e] > 0); /* each expert with pairs exactly once */
        if (counts[e] <= 0) CHECK_INT(rows[e], 0);
    }
    for (int i = 1; i < active; i++) CHECK(counts[order[i - 1]] <= counts[order[i]]);
    for (int g = 0; g < ng; g++) {
        CHECK(start[g] < start[g + 1]);
        const int r = dsa_moe_bucket_rows(counts[order[start[g + 1] - 1]]);
        long long own = 0;
        for (int i = start[g]; i < start[g + 1]; i++) {
            const int e = order[i];
            CHECK_INT(rows[e], r);
            CHECK(rows[e] >= counts[e] && rows[e] % 16 == 0);
            own += dsa_moe_bucket_rows(counts[e]);
        }
        const long long extra = (long long)r * (start[g + 1] - start[g]) - own;
        if (pad_div > 0) CHECK(extra * pad_div <= own);
        else CHECK_INT(start[g + 1] - start[g], 1);
    }
    if (pad_div > 0) CHECK(ng <= distinct_buckets(counts, ne));
    return ng;
}

static void test_bucket_rows(void)
{
    CHECK_INT(dsa_moe_bucket_rows(1), 16);
    CHECK_INT(dsa_moe_bucket_rows(16), 16);
    CHECK_INT(dsa_moe_bucket_rows(17), 32);
    CHECK_INT(dsa_moe_bucket_rows(113), 128);
    CHECK_INT(dsa_moe_bucket_rows(1024), 1024);
    CHECK_INT(dsa_moe_bucket_rows(1025), 1088); /* 1/16 octave above 1024: steps of 64 */
    CHECK_INT(dsa_moe_bucket_rows(2048), 2048);
    CHECK_INT(dsa_moe_bucket_rows(2049), 2176); /* steps of 128 */
    for (int c = 1; c < 70000; c += 7) {
        const int b = dsa_moe_bucket_rows(c);
        CHECK(b >= c && b % 16 == 0 && (c <= 1024 ? b - c < 16 : (b - c) * 16 < c));
        if (!(b >= c)) break;
    }
}

static void test_groups(void)
{
    int counts[MAX_E];
    /* The case 0b476b5 got wrong: a 1808-token chunk, top-4 over 64 experts, ~113 rows each.
     * Own buckets pad up to 12% there; a bound on all padding gave one group per expert. */
    fill_counts(counts, 64, 113, 60, 1);
    const int small = check_grouping("64 experts, ~113 rows (last chunk of 10K)", counts, 64, 16);
    CHECK(small <= 6);
    /* The 8192-token chunk: ~512 rows, sd ~90 */
    fill_counts(counts, 64, 512, 300, 2);
    const int big = check_grouping("64 experts, ~512 rows (8192-token chunk)", counts, 64, 16);
    CHECK(big >= 4 && big < distinct_buckets(counts, 64));
    fill_counts(counts, 256, 256, 300, 3); /* deepseek-v3.2 / glm-5: 256 experts, top-8 */
    check_grouping("256 experts, ~256 rows", counts, 256, 16);
    fill_counts(counts, 64, 3000, 2000, 4); /* above 1024 rows: 1/16-octave buckets */
    check_grouping("64 experts, ~3000 rows", counts, 64, 16);
    fill_counts(counts, 64, 5, 12, 5); /* many experts without pairs */
    check_grouping("64 experts, ~5 rows, many empty", counts, 64, 16);
    for (int e = 0; e < 64; e++) counts[e] = 100;
    CHECK_INT(check_grouping("64 experts, all 100 rows", counts, 64, 16), 1);
    for (int e = 0; e < 64; e++) counts[e] = 0;
    CHECK_INT(check_grouping("no pairs", counts, 64, 16), 0);
    fill_counts(counts, 64, 512, 300, 6); /* FP8: one group per expert at its own bucket */
    int active = 0;
    for (int e = 0; e < 64; e++) active += counts[e] > 0;
    CHECK_INT(check_grouping("pad_div 0 (FP8 weights)", counts, 64, 0), active);
    /* a tighter bound never gives fewer groups */
    fill_counts(counts, 64, 512, 300, 7);
    CHECK(check_grouping("pad_div 64", counts, 64, 64) >= check_grouping("pad_div 16", counts, 64, 16));
}

int main(void)
{
    test_bucket_rows();
    test_groups();
    return check_done("test_moe_groups");
}
