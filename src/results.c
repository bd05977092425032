/* src/results.c — ownership of a dsa_run's arrays (see results.h). */
#include "results.h"

#include <stdlib.h>
#include <string.h>

void dsa_run_free(dsa_run *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_points; i++) {
        free(r->points[i].samples);
        free(r->points[i].samples_traced);
        free(r->points[i].comps);
        free(r->points[i].kernels);
    }
    free(r->points);
    memset(r, 0, sizeof *r);
}

/* Grows the array by one: a run has tens of points, so no capacity field is needed. Pointers to
 * earlier points are invalidated, as with any realloc. */
dsa_point *dsa_run_add_point(dsa_run *r)
{
    dsa_point *grown = realloc(r->points, ((size_t)r->n_points + 1) * sizeof *grown);
    if (!grown) return NULL;
    r->points = grown;
    dsa_point *p = &grown[r->n_points];
    memset(p, 0, sizeof *p);
    p->id = r->n_points++;
    return p;
}
