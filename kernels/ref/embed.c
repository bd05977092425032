/* kernels/ref/embed.c — token embedding lookup: out[r, :] = table[tokens[r], :]. */
#include <string.h>

#include "ref_internal.h"

int ref_embed(void *ctx, const int32_t *tokens, int n, const bf16_t *table, int hidden,
              bf16_t *out)
{
    REF_REQUIRE(ctx, "embed", n >= 0 && hidden > 0);
    REF_REQUIRE(ctx, "embed", n == 0 || (tokens && table && out));
    for (int r = 0; r < n; r++) {
        /* The vocabulary size is not passed, so only the lower bound can be checked. */
        if (tokens[r] < 0)
            return ref_fail(ctx, "embed: token %d of row %d is negative", tokens[r], r);
        memcpy(out + (size_t)r * hidden, table + (size_t)tokens[r] * hidden,
               (size_t)hidden * sizeof(bf16_t));
    }
    return DSA_OK;
}
