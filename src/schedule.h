/* src/schedule.h — IndexCache Full/Shared layer schedules (DESIGN.md §2), bit for bit as the
 * reference SGLang patch: layer l is S iff max(l-1, 0) % N != 0. */
#ifndef DSA_SCHEDULE_H
#define DSA_SCHEDULE_H

#include "err.h"
#include "model.h"

/* spec: "full" | "freq:N" | "1/N" | "pattern:STRING" | "model" (the model's own
 * index_topk_pattern, else its index_topk_freq). Writes n_layers chars of 'F'/'S' and a NUL
 * into fs (n_layers + 1 bytes). Usage error (2) naming the problem on bad input. */
int dsa_schedule_resolve(const char *spec, const dsa_model *m, int n_layers, char *fs,
                         dsa_err *e);
int dsa_schedule_from_freq(long n, int n_layers, char *fs, dsa_err *e);
int dsa_schedule_from_pattern(const char *pattern, int n_layers, char *fs, dsa_err *e);
int dsa_schedule_count_full(const char *fs);
/* The F layer whose indices S layer l reuses: the nearest preceding F layer (l itself if F). */
int dsa_schedule_source_layer(const char *fs, int l);

#endif
