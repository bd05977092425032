/* src/textout.h — the small formatting pieces report, compare and paper share: fixed-width
 * numbers that print '-' for a missing value, and JSON strings and numbers. */
#ifndef DSA_TEXTOUT_H
#define DSA_TEXTOUT_H

#include <stdio.h>

/* " %*.*f", or " %*s" of "-" when v is NaN (a point or value that was not measured). */
void dsa_out_num(FILE *o, int width, int prec, double v);
/* A JSON string literal: quotes, backslashes and control characters escaped. */
void dsa_out_json_str(FILE *o, const char *s);
/* A JSON number with `sig` significant digits; null for NaN and infinities (JSON has neither). */
void dsa_out_json_num(FILE *o, double v, int sig);

#endif
