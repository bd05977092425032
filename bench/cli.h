/* bench/cli.h — the sub-commands and the option parser they share. Argument parsing only:
 * the work is in src/. */
#ifndef DSA_BENCH_CLI_H
#define DSA_BENCH_CLI_H

#include "sweep.h"
#include "plan.h"

/* Options of plan and run (each command accepts the ones its usage lists). */
typedef struct cli_axes {
    dsa_sweep_opts sweep;
    dsa_ceilings ceil;
    int device_given;
    char list_buf[3][8192]; /* storage for the config items */
} cli_axes;

enum { CLI_PLAN = 1, CLI_RUN = 2 };
/* Parses argv into a; returns 0, or an exit code after printing one line to stderr. */
int cli_parse_axes(int argc, char **argv, int cmd, cli_axes *a);
/* "dsa-bench CMD: msg" on stderr, returns code. */
int cli_error(const char *cmd, int code, const char *msg);
/* The getopt_long failure c (':' or '?') on argument arg (argv[optind - 1]): "option X needs a
 * value", "option 'X' takes no value" or "unknown option 'X'" via cli_error; returns 2. */
int cli_option_error(const char *cmd, int c, const char *arg);

int cmd_models(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_kernels(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_compare(int argc, char **argv);

#endif
