/* src/args.h — parsing of the CLI's value syntax (comma lists, k/Ki suffixes). No policy here:
 * bench/ decides which flag takes what. */
#ifndef DSA_ARGS_H
#define DSA_ARGS_H

#include <stdint.h>

#include "err.h"

#define DSA_MAX_LIST 64

/* "200k" = 200000, "64Ki" = 65536, "512" = 512; > 0. `what` names the flag in errors. */
int dsa_parse_count(const char *s, const char *what, int64_t *out, dsa_err *e);
/* Comma list of counts, 1..DSA_MAX_LIST items. */
int dsa_parse_count_list(const char *s, const char *what, int64_t *out, int *n, dsa_err *e);
/* Non-negative decimal number (GiB, TFLOP/s...). */
int dsa_parse_double(const char *s, const char *what, double *out, dsa_err *e);
/* Splits a comma list into at most DSA_MAX_LIST pointers into `buf` (a copy of s); empty
 * items are a usage error. */
int dsa_split_list(const char *s, const char *what, char *buf, int buflen, char **items,
                   int *n, dsa_err *e);

#endif
