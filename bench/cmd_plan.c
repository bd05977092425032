/* bench/cmd_plan.c — dsa-bench plan */
#include <stdio.h>

#include "cli.h"
#include "schedule.h"

int cmd_plan(int argc, char **argv)
{
    cli_axes a;
    int rc = cli_parse_axes(argc, argv, CLI_PLAN, &a);
    if (rc) return rc < 0 ? 0 : rc;
    dsa_sweep_opts *s = &a.sweep;
    dsa_plan_opts po = {.layers = s->layers ? s->layers : s->model.n_layers, .shared_weights = s->shared_weights,
                        .weight_fp8 = s->weight_fp8, .fused_indexer = s->fused_indexer, .ceil = a.ceil};
    double mem = (s->mem_gib > 0 ? s->mem_gib : 141.0) * 1024.0 * 1024.0 * 1024.0;
    dsa_err e = {{0}};
    printf("# plan: %s, %d of %d layers, %s weights (%s)\n", s->model.name, po.layers, s->model.n_layers,
           s->shared_weights ? "shared" : "per-layer", s->weight_fp8 ? "fp8 128x128 blocks" : "bf16");
    /* resolve every schedule first, so a bad config fails before any output */
    char fs[DSA_MAX_LIST][DSA_MAX_LAYERS + 1];
    for (int g = 0; g < s->n_configs; g++)
        if ((rc = dsa_schedule_resolve(s->configs[g], &s->model, po.layers, fs[g], &e))) return cli_error("plan", rc, e.msg);
    for (int ph = 0; ph < s->n_phases; ph++)
        for (int c = 0; c < s->n_contexts; c++) {
            int nb = s->phases[ph] == DSA_PREFILL ? 1 : s->n_batches;
            for (int b = 0; b < nb; b++)
                for (int g = 0; g < s->n_configs; g++) {
                    dsa_plan p;
                    if ((rc = dsa_plan_point(&s->model, &po, fs[g], s->phases[ph], s->contexts[c], (int)s->batches[b],
                                             s->chunk, &p, &e)))
                        return cli_error("plan", rc, e.msg);
                    dsa_plan_print(stdout, &s->model, &po, s->configs[g], fs[g], &p, mem);
                }
        }
    return 0;
}
