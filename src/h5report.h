/* src/h5report.h — the HDF5 report of one run (DESIGN.md §5): a dsa_run (results.h) written to a
 * file and read back. report, plot and compare read files only through dsa_h5_read.
 *
 * Layout, schema "dsa-bench/1". Strings are fixed-length, NUL-terminated UTF-8 (h5py reads them as
 * bytes): a table column is as wide as its char array in results.h (kernel name 96, config 640,
 * fs 513, reason 256 bytes), an attribute as wide as its value plus the NUL. Variable-length
 * strings are never written and the reader refuses them: HDF5 keeps them in the global heap,
 * which has no checksum, so a damaged one crashed HDF5 instead of failing.
 *
 *   /                 attributes: schema, tool_version, git_sha, utc, argv (strings),
 *                     layers_run, shared_weights (int32)
 *   /device           group; one attribute per dsa_device_info field (units are in the names:
 *                     l2_bytes, sm_clock_mhz, copy_gbs, ...)
 *   /model            group; one string attribute per model field, named by its short key and
 *                     written with dsa_model_field_format, read back with dsa_model_set; plus
 *                     name and assumptions, where the field table has no field of that key
 *   /points           group (see below)
 *   /points/table     compound dataset, one row per point: id, phase, context, batch, chunk,
 *                     config, fs, n_full, n_layers, reps, wall_median_ms, wall_min_ms,
 *                     wall_stdev_ms, indexer_ms, indexer_share, tok_s, flops, bytes
 *                     (work of one repetition; 0 when not counted), status (int32),
 *                     status_name ("ok" | "skipped" | "failed"), reason, then the tracing
 *                     columns (results.h): traced_reps, wall_traced_median_ms,
 *                     trace_overhead_pct, coverage, dropped_records, unattributed
 *   /points/<id>/components  compound: name (string), component (enum), median_ms, min_ms,
 *                     stdev_ms, share, kernels
 *   /points/<id>/kernels     compound: rep, layer, component (enum), name, start_ns, end_ns,
 *                     graph_node (uint64), grid[3], block[3]
 *   /points/<id>/samples     1-D double, wall ms per repetition; attribute units = "ms"
 *   /points/<id>/samples_traced  1-D double, wall ms per traced repetition (GPU: CUPTI on;
 *                     empty when the point was not traced); units = "ms". Files written before
 *                     it existed lack it and read back with traced_reps 0
 *
 * <id> is the point's id in decimal. `component` members carry an HDF5 enum type whose names are
 * component.h's vocabulary (h5dump prints the names, h5py gives ints with the mapping). Every
 * compound dataset has a "units" attribute: one string per member, in member order, "" where the
 * member has no unit. Datasets of zero rows are written as such (a skipped point has no kernels).
 * Compound datasets with rows are chunked (about 256 KiB a chunk), byte-shuffled and deflated at
 * level 1, so the 96-byte names cost little (800k kernel rows: 5.3 MB); contiguous when this HDF5
 * has no deflate encoder. The file format is
 * HDF5 1.8's (checksummed metadata), read by every HDF5 >= 1.8 and h5py.
 *
 * Why /points is a group and not the table itself: an HDF5 dataset cannot have children, and each
 * point owns variable-sized arrays (components, kernels, samples, samples_traced). So the
 * one-row-per-point table lives at /points/table and the per-point arrays beside it under
 * /points/<id>/.
 */
#ifndef DSA_H5REPORT_H
#define DSA_H5REPORT_H

#include "err.h"
#include "results.h"

/* Writes run to path + ".tmp", then renames it to path, so a crash never leaves a half file.
 * The schema attribute is always DSA_SCHEMA (run->schema is not consulted). On failure returns
 * DSA_EXIT_RUNTIME with a one-line message, and neither the .tmp nor a new path is left behind
 * (an existing file at path is untouched). */
int dsa_h5_write(const char *path, const dsa_run *run, dsa_err *e);

/* Reads a report into run (overwritten, not freed first; release it with dsa_run_free). On
 * failure returns DSA_EXIT_RUNTIME with a one-line message — missing file, not HDF5 / truncated /
 * corrupt, not a dsa-bench report, unsupported schema — and leaves run zeroed. A damaged file
 * never crashes the reader (tests/test_h5_fuzz.c). HDF5's own error printing is silenced for the
 * duration of both calls, and stays off after a failed read (see dsa_h5_read). */
int dsa_h5_read(const char *path, dsa_run *run, dsa_err *e);

#endif
