/* kernels/ref/topk.c — exact top-k per row.
 * Row r has len = len0 + r * len_step valid scores, clipped to [0, ld_scores]; the output row
 * holds the indices of its min(k, len) best, ordered by (score descending, index ascending),
 * then -1. -inf is an ordinary (lowest) score and is selected when fewer than k better ones
 * exist within len; NaN (never produced by the logits) ranks below -inf. */
#include <math.h>
#include <stdlib.h>

#include "ref_internal.h"

typedef struct cand {
    float s;
    int32_t i;
} cand;

static int cand_cmp(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    int na = isnan(a->s), nb = isnan(b->s);
    if (na != nb)
        return na ? 1 : -1;
    if (!na && a->s != b->s)
        return a->s > b->s ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i); /* ties: lower index first */
}

int ref_topk(void *ctx, const float *scores, int rows, int ld_scores, int len0, int len_step,
             int k, int32_t *out)
{
    REF_REQUIRE(ctx, "topk", rows >= 0 && ld_scores >= 0 && k >= 0);
    REF_REQUIRE(ctx, "topk", rows == 0 || k == 0 || (scores && out));
    if (rows == 0 || k == 0)
        return DSA_OK;
    cand *c = malloc((size_t)(ld_scores > 0 ? ld_scores : 1) * sizeof *c);
    if (!c)
        return ref_fail(ctx, "topk: out of memory");
    for (int r = 0; r < rows; r++) {
        long long len = (long long)len0 + (long long)r * len_step;
        len = len < 0 ? 0 : len > ld_scores ? ld_scores : len;
        const float *row = scores + (size_t)r * ld_scores;
        for (int s = 0; s < len; s++)
            c[s] = (cand){row[s], s};
        /* A full sort is the plainest exact answer; the reference runs tiny shapes only. */
        qsort(c, (size_t)len, sizeof *c, cand_cmp);
        int32_t *o = out + (size_t)r * k;
        for (int j = 0; j < k; j++)
            o[j] = j < len ? c[j].i : -1;
    }
    free(c);
    return DSA_OK;
}
