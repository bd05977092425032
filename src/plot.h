/* src/plot.h — `dsa-bench plot` (DESIGN.md §5): gnuplot figures from one or more reports.
 *
 * For each figure NAME it writes NAME.dat (the numbers, a fixed-width table with '#' headers and
 * units) and NAME.gp (the gnuplot script that draws it), then runs gnuplot, which renders
 * NAME.png (pngcairo) and NAME.svg. `cd DIR && gnuplot NAME.gp` redraws a figure by hand.
 *
 * Which figures: run files (phases prefill/decode) give speedup_prefill, speedup_decode,
 * indexer_share, breakdown_prefill and breakdown_decode; `kernels` files give kernels_roofline;
 * two files of the same kind give compare (the second against the first). A figure the data
 * cannot support (no decode points, no component times, no full-indexer point) is skipped
 * with a reason, logged, and is not an error. */
#ifndef DSA_PLOT_H
#define DSA_PLOT_H

#include <stdio.h>

#include "err.h"
#include "results.h"

typedef struct dsa_plot_opts {
    const char *out_dir; /* created when missing; an existing non-directory is a usage error */
    const char *gnuplot; /* the program; NULL: $GNUPLOT, else "gnuplot" searched on $PATH */
    int render;          /* 0: write the .dat and .gp files only (no gnuplot needed) */
    FILE *log;           /* one line per figure made or skipped, and why; NULL: quiet */
} dsa_plot_opts;

/* Draws every figure the runs support into o->out_dir. names[i] is the file runs[i] was read
 * from (it labels compare). Files are written to NAME.tmp* and renamed once complete, so no
 * figure is ever half-written under its final name; other files in the folder are left alone.
 * Returns 0; DSA_EXIT_USAGE for a bad folder; DSA_EXIT_RUNTIME when gnuplot is missing or fails,
 * a file cannot be written, or no figure at all could be made. Each with a one-line message. */
int dsa_plot(const dsa_run *runs, const char *const *names, int n_runs, const dsa_plot_opts *o, dsa_err *e);

/* The gnuplot program to run (o->gnuplot, $GNUPLOT, or the first executable "gnuplot" on
 * $PATH) into path; DSA_EXIT_RUNTIME with a message when there is none. */
int dsa_plot_find_gnuplot(const dsa_plot_opts *o, char *path, size_t size, dsa_err *e);

#endif
