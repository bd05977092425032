/* bench/cmd_plot.c — dsa-bench plot FILE.h5... -o DIR [--no-render] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "h5report.h"
#include "plot.h"

static void usage(void)
{
    printf("usage: dsa-bench plot FILE.h5... -o DIR [--no-render]\n"
           "  gnuplot figures of the reports, each as DIR/NAME.png, .svg, and the .dat and .gp that draw it:\n"
           "  run files: speedup_prefill, speedup_decode, indexer_share, breakdown_prefill, breakdown_decode;\n"
           "  kernels files: kernels_roofline; two files of one kind: compare (the second against the first).\n"
           "  gnuplot is taken from $GNUPLOT, else $PATH; --no-render writes the .dat and .gp only.\n");
}

int cmd_plot(int argc, char **argv)
{
    static const struct option opts[] = {{"output", 1, 0, 'o'}, {"no-render", 0, 0, 'n'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    dsa_plot_opts o = {.render = 1, .log = stderr};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(); return 0;
        case 'o': o.out_dir = optarg; break;
        case 'n': o.render = 0; break;
        default: return cli_option_error("plot", c, argv[optind - 1]);
        }
    }
    int n = argc - optind;
    if (n < 1) return cli_error("plot", 2, "no report file given (dsa-bench plot FILE.h5... -o DIR)");
    if (!o.out_dir || !*o.out_dir) return cli_error("plot", 2, "no output folder given (-o DIR)");
    dsa_run *runs = calloc((size_t)n, sizeof *runs);
    if (!runs) return cli_error("plot", 3, "out of memory");
    int rc = 0;
    dsa_err e = {{0}};
    for (int i = 0; i < n && !rc; i++) rc = dsa_h5_read(argv[optind + i], &runs[i], &e);
    if (!rc) rc = dsa_plot(runs, (const char *const *)(argv + optind), n, &o, &e);
    for (int i = 0; i < n; i++) dsa_run_free(&runs[i]);
    free(runs);
    return rc ? cli_error("plot", rc, e.msg) : 0;
}
