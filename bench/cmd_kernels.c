/* bench/cmd_kernels.c — dsa-bench kernels [-k NAME,...] [-c CTX,...] [--heads N,...] [-b B,...] [-o FILE.h5] */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "h5report.h"
#include "kbench.h"

static void usage(void)
{
    printf("usage: dsa-bench kernels [-k NAME,...] [-c CTX,...] [--heads N,...] [-b B,...] [--max-time S] [--no-hold] [-o FILE.h5]\n"
           "  each kernel on its default shapes (DESIGN.md §7); -c/--heads/-b replace a kernel's own axis values\n"
           "  --no-hold: time the host's launch cost too (by default the stream is held while an op is queued)\n"
           "  kernels:");
    for (const char *const *n = dsa_kbench_names(); *n; n++) printf(" %s", *n);
    printf("\n");
}

int cmd_kernels(int argc, char **argv)
{
    static const struct option opts[] = {{"kernel", 1, 0, 'k'}, {"context", 1, 0, 'c'}, {"heads", 1, 0, 'H'},
                                         {"batch", 1, 0, 'b'}, {"max-time", 1, 0, 'T'}, {"no-hold", 0, 0, 'N'}, {"output", 1, 0, 'o'},
                                         {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    dsa_kbench_opts o;
    memset(&o, 0, sizeof o);
    static char kbuf[4096];
    char *items[DSA_MAX_LIST];
    dsa_err e = {{0}};
    int c, rc;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":k:c:b:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(); return 0;
        case 'k':
            if ((rc = dsa_split_list(optarg, "-k", kbuf, sizeof kbuf, items, &o.n_kernels, &e))) return cli_error("kernels", rc, e.msg);
            for (int i = 0; i < o.n_kernels; i++) o.kernels[i] = items[i];
            break;
        case 'c':
            if ((rc = dsa_parse_count_list(optarg, "-c", o.contexts, &o.n_contexts, &e))) return cli_error("kernels", rc, e.msg);
            break;
        case 'H':
            if ((rc = dsa_parse_count_list(optarg, "--heads", o.heads, &o.n_heads, &e))) return cli_error("kernels", rc, e.msg);
            break;
        case 'b':
            if ((rc = dsa_parse_count_list(optarg, "-b", o.batches, &o.n_batches, &e))) return cli_error("kernels", rc, e.msg);
            break;
        case 'T':
            if ((rc = dsa_parse_double(optarg, "--max-time", &o.max_time_s, &e))) return cli_error("kernels", rc, e.msg);
            break;
        case 'N': o.no_hold = 1; break;
        case 'o': o.out_path = optarg; break;
        default: return cli_option_error("kernels", c, argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_error("kernels", 2, "unexpected argument");
    char line[2048] = "dsa-bench";
    for (int i = 0; i < argc; i++) {
        size_t len = strlen(line);
        snprintf(line + len, sizeof line - len, " %s", argv[i]);
    }
    o.argv = line;
    dsa_run run;
    memset(&run, 0, sizeof run);
    rc = dsa_kbench_run(&o, &run, &e);
    dsa_run_free(&run);
    return rc ? cli_error("kernels", rc, e.msg) : 0;
}
