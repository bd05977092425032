#include "profiler.h"

#include <nvtx3/nvToolsExt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t dsa_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void dsa_prof_init(dsa_prof *p)
{
    memset(p, 0, sizeof *p);
    p->open_comp = -1;
    p->origin_ns = dsa_now_ns();
}

void dsa_prof_free(dsa_prof *p)
{
    free(p->recs);
    memset(p, 0, sizeof *p);
}

void dsa_prof_begin(dsa_prof *p, int component, int layer)
{
    if (!p) return;
    nvtxRangePushA(dsa_component_name(component));
    p->open_comp = component;
    p->open_layer = layer;
    p->open_start_ns = dsa_now_ns();
}

void dsa_prof_end(dsa_prof *p)
{
    if (!p || p->open_comp < 0) return;
    int64_t end = dsa_now_ns();
    nvtxRangePop();
    if (p->rep >= 0) {
        if (p->n == p->cap) {
            size_t cap = p->cap ? 2 * p->cap : 1024;
            dsa_kernel_rec *r = realloc(p->recs, cap * sizeof *r);
            if (!r) {
                p->oom = 1;
                p->open_comp = -1;
                return;
            }
            p->recs = r;
            p->cap = cap;
        }
        dsa_kernel_rec *k = &p->recs[p->n++];
        memset(k, 0, sizeof *k);
        k->rep = p->rep;
        k->layer = p->open_layer;
        k->component = p->open_comp;
        snprintf(k->name, sizeof k->name, "ref_%s", dsa_component_name(p->open_comp));
        k->start_ns = p->open_start_ns - p->origin_ns;
        k->end_ns = end - p->origin_ns;
    }
    p->open_comp = -1;
}
