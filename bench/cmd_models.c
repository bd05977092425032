/* bench/cmd_models.c — dsa-bench models [-m MODEL] [--set KEY=VALUE]... */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"

int cmd_models(int argc, char **argv)
{
    static const struct option opts[] = {{"model", 1, 0, 'm'}, {"set", 1, 0, 's'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *one = NULL, *sets[64];
    int n_sets = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:h", opts, NULL)) != -1) {
        if (c == 'h') {
            printf("usage: dsa-bench models [-m PRESET|config.json] [--set KEY=VALUE]...\n");
            return 0;
        }
        if (c == 'm') one = optarg;
        else if (c == 's' && n_sets < 64) sets[n_sets++] = optarg;
        else return cli_option_error("models", c, argv[optind - 1]);
    }
    if (optind < argc) return cli_error("models", 2, "unexpected argument (use -m MODEL)");
    dsa_model list[16];
    int n = 0, rc;
    dsa_err e = {{0}};
    if (one) {
        if ((rc = dsa_model_load(one, &list[0], &e))) return cli_error("models", rc, e.msg);
        n = 1;
    } else
        for (int i = 0; i < dsa_model_preset_count() && i < 16; i++) list[n++] = *dsa_model_preset_at(i);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n_sets; k++)
            if ((rc = dsa_model_set_kv(&list[i], sets[k], &e))) return cli_error("models", rc, e.msg);
    for (int i = 0; i < n; i++)
        if ((rc = dsa_model_validate(&list[i], &e))) return cli_error("models", rc, e.msg);
    dsa_models_print(stdout, list, n);
    return 0;
}
