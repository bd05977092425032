/* bench/cmd_run.c — dsa-bench run */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "h5report.h"
#include "report.h"

int cmd_run(int argc, char **argv)
{
    cli_axes a;
    int rc = cli_parse_axes(argc, argv, CLI_RUN, &a);
    if (rc) return rc < 0 ? 0 : rc;
    /* the command line, recorded in the report */
    char line[2048] = "dsa-bench";
    for (int i = 0; i < argc; i++) {
        size_t len = strlen(line);
        snprintf(line + len, sizeof line - len, " %s", argv[i]);
    }
    a.sweep.argv = line;
    dsa_run run;
    dsa_err e = {{0}};
    memset(&run, 0, sizeof run);
    rc = dsa_sweep_run(&a.sweep, &run, &e);
    if (!rc) dsa_report_print(stdout, &run, 1, DSA_FMT_TEXT);
    dsa_run_free(&run);
    return rc ? cli_error("run", rc, e.msg) : 0;
}
