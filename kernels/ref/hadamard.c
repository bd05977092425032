/* kernels/ref/hadamard.c — the indexer's 128-point Hadamard transform. */
#include <math.h>

#include "ref_internal.h"

void dsa_hadamard128(float *v)
{
    /* Butterflies over strides 1, 2, ..., 64 give the Sylvester (natural) order,
     * H[i][j] = (-1)^popcount(i & j). Done in double so the oracle adds no rounding of its own
     * beyond the final fp32 store. */
    double t[128];
    for (int i = 0; i < 128; i++)
        t[i] = v[i];
    for (int h = 1; h < 128; h *= 2)
        for (int i = 0; i < 128; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                double a = t[j], b = t[j + h];
                t[j] = a + b;
                t[j + h] = a - b;
            }
    double s = 1.0 / sqrt(128.0);
    for (int i = 0; i < 128; i++)
        v[i] = (float)(t[i] * s);
}
