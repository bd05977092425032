/* bench/main.c — dsa-bench: sub-command dispatch. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"models", cmd_models, "list the model presets and every field (-m MODEL for one, --set to try overrides)"},
    {"plan", cmd_plan, "memory, FLOPs, bytes and roofline floor per sweep point; no GPU needed"},
    {"run", cmd_run, "run the sweep (prefill and decode) and write an HDF5 report"},
    {"report", cmd_report, "paper-style table from one or more HDF5 reports"},
    {"kernels", cmd_kernels, "time each GPU kernel on its DESIGN.md shapes against the measured ceilings"},
    {"plot", cmd_plot, "gnuplot figures (png, svg, with their .dat and .gp) from one or more HDF5 reports"},
    {"compare", cmd_compare, "compare two reports point by point against the noise; exit 1 if any is slower"},
};

static void usage(FILE *o)
{
    fprintf(o, "usage: dsa-bench COMMAND [options]   (dsa-bench COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(o, "  %-8s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "dsa-bench: no command given (dsa-bench --help lists them)\n");
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "dsa-bench: unknown command '%s' (dsa-bench --help lists them)\n", argv[1]);
    return 2;
}
