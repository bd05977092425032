/* src/report.h — the paper-style table of `dsa-bench report` (DESIGN.md §5): per point the
 * time, throughput, speedup over the full-indexer point of the same phase/context/batch, the
 * indexer share, and the Amdahl prediction from the full point's share:
 *   predicted = 1 / ((1 - s) + s * F / layers).
 * Then, per point that has one, its component table (time, share of the wall, records per
 * repetition, idle), the coverage (components / wall), the indexer share, the trace overhead
 * (GPU: the traced repetitions' wall against the untraced) and the dropped and unattributed
 * record counts. json carries the same per point (a "components" array); csv one column per
 * component (<name>_ms). */
#ifndef DSA_REPORT_H
#define DSA_REPORT_H

#include <stdio.h>

#include "results.h"

enum dsa_report_format { DSA_FMT_TEXT = 0, DSA_FMT_MD, DSA_FMT_CSV, DSA_FMT_JSON };

typedef struct dsa_report_row {
    const dsa_run *run;
    const dsa_point *pt;
    const dsa_point *full; /* the reference point, NULL when the sweep has none */
    double time;           /* prefill: s; decode: ms per step */
    double tok_s_req, tok_s_all;
    double speedup_pct, amdahl_pct; /* NAN when there is no full point */
} dsa_report_row;

/* Rows of all runs, in file then point order. *rows is malloc'ed. */
int dsa_report_rows(const dsa_run *runs, int n_runs, dsa_report_row **rows, int *n_rows);
int dsa_report_print(FILE *out, const dsa_run *runs, int n_runs, int format);

#endif
