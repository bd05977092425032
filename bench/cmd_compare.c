/* bench/cmd_compare.c — dsa-bench compare BASE.h5 NEW.h5 [--threshold PCT] [--format text|md|json] */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "compare.h"
#include "h5report.h"
#include "report.h"

int cmd_compare(int argc, char **argv)
{
    static const struct option opts[] = {
        {"threshold", 1, 0, 't'}, {"format", 1, 0, 'f'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int format = DSA_FMT_TEXT, c, rc;
    double threshold_pct = 100 * DSA_COMPARE_THRESHOLD;
    dsa_err e = {{0}};
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":t:f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            printf("usage: dsa-bench compare BASE.h5 NEW.h5 [--threshold PCT] [--format text|md|json]\n"
                   "  per point (and per component of run points): new/base median, noise, and a verdict\n"
                   "  SAME, FASTER, SLOWER (|ratio - 1| beyond max(threshold, noise)) or MISSING\n"
                   "  --threshold PCT   smallest change that counts, in %% (%.0f)\n"
                   "  exit status: 1 if a point is SLOWER, 0 otherwise; 2 or 3 for bad input\n",
                   100 * DSA_COMPARE_THRESHOLD);
            return 0;
        case 't':
            if ((rc = dsa_parse_double(optarg, "--threshold", &threshold_pct, &e))) return cli_error("compare", rc, e.msg);
            break;
        case 'f':
            if (!strcmp(optarg, "text")) format = DSA_FMT_TEXT;
            else if (!strcmp(optarg, "md")) format = DSA_FMT_MD;
            else if (!strcmp(optarg, "json")) format = DSA_FMT_JSON;
            else return cli_error("compare", 2, "--format: expected text, md or json");
            break;
        default: return cli_option_error("compare", c, argv[optind - 1]);
        }
    }
    if (argc - optind != 2) return cli_error("compare", 2, "expected two report files (dsa-bench compare BASE.h5 NEW.h5)");
    const char *base_path = argv[optind], *new_path = argv[optind + 1];
    dsa_run base, cand;
    memset(&base, 0, sizeof base);
    memset(&cand, 0, sizeof cand);
    dsa_compare cmp;
    memset(&cmp, 0, sizeof cmp);
    rc = dsa_h5_read(base_path, &base, &e);
    if (!rc) rc = dsa_h5_read(new_path, &cand, &e);
    if (!rc) rc = dsa_compare_runs(&base, &cand, threshold_pct / 100, &cmp, &e);
    if (!rc) {
        if (cmp.warning[0]) fprintf(stderr, "dsa-bench compare: warning: %s\n", cmp.warning);
        dsa_compare_print(stdout, &cmp, &base, base_path, &cand, new_path, format);
        rc = dsa_compare_status(&cmp);
        dsa_compare_free(&cmp);
        dsa_run_free(&base);
        dsa_run_free(&cand);
        return rc;
    }
    dsa_run_free(&base);
    dsa_run_free(&cand);
    return cli_error("compare", rc, e.msg);
}
