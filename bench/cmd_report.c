/* bench/cmd_report.c — dsa-bench report FILE.h5... [--format text|md|csv|json] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "h5report.h"
#include "paper.h"
#include "report.h"

int cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {{"format", 1, 0, 'f'}, {"side-by-side", 1, 0, 'S'}, {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    int format = DSA_FMT_TEXT, c, side_by_side = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:h", opts, NULL)) != -1) {
        if (c == 'h') {
            printf("usage: dsa-bench report FILE.h5... [--format text|md|csv|json] [--side-by-side paper]\n"
                   "  --side-by-side paper   the IndexCache paper's speedups and indexer shares beside the measured ones\n");
            return 0;
        }
        if (c == 'S') { /* --side-by-side: only the paper's figures are known */
            if (strcmp(optarg, "paper")) return cli_error("report", 2, "--side-by-side: expected paper");
            side_by_side = 1;
            continue;
        }
        if (c != 'f') return cli_option_error("report", c, argv[optind - 1]);
        if (!strcmp(optarg, "text")) format = DSA_FMT_TEXT;
        else if (!strcmp(optarg, "md")) format = DSA_FMT_MD;
        else if (!strcmp(optarg, "csv")) format = DSA_FMT_CSV;
        else if (!strcmp(optarg, "json")) format = DSA_FMT_JSON;
        else return cli_error("report", 2, "--format: expected text, md, csv or json");
    }
    int n = argc - optind;
    if (n < 1) return cli_error("report", 2, "no report file given (dsa-bench report FILE.h5...)");
    dsa_run *runs = calloc((size_t)n, sizeof *runs);
    if (!runs) return cli_error("report", 3, "out of memory");
    int rc = 0;
    dsa_err e = {{0}};
    for (int i = 0; i < n && !rc; i++) rc = dsa_h5_read(argv[optind + i], &runs[i], &e);
    if (!rc && side_by_side && dsa_paper_side_by_side(stdout, runs, n, format)) rc = dsa_fail(&e, 3, "out of memory");
    else if (!rc && !side_by_side) dsa_report_print(stdout, runs, n, format);
    for (int i = 0; i < n; i++) dsa_run_free(&runs[i]);
    free(runs);
    return rc ? cli_error("report", rc, e.msg) : 0;
}
