#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int dsa_parse_count(const char *s, const char *what, int64_t *out, dsa_err *e)
{
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9') return dsa_fail(e, DSA_EXIT_USAGE, "%s: '%s' is not a count (e.g. 512, 200k, 64Ki)", what, s);
    long long v = strtoll(s, &end, 10);
    long long mul = 1;
    if (strcmp(end, "k") == 0) mul = 1000;
    else if (strcmp(end, "Ki") == 0) mul = 1024;
    else if (*end) return dsa_fail(e, DSA_EXIT_USAGE, "%s: '%s' is not a count (suffixes: k = 1000, Ki = 1024)", what, s);
    if (errno || v <= 0 || v > INT32_MAX / mul)
        return dsa_fail(e, DSA_EXIT_USAGE, "%s: '%s' is out of range (1 .. %d)", what, s, INT32_MAX);
    *out = v * mul;
    return 0;
}

int dsa_split_list(const char *s, const char *what, char *buf, int buflen, char **items, int *n,
                   dsa_err *e)
{
    if ((int)strlen(s) >= buflen) return dsa_fail(e, DSA_EXIT_USAGE, "%s: list too long", what);
    strcpy(buf, s);
    *n = 0;
    for (char *p = buf;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        if (!*p) return dsa_fail(e, DSA_EXIT_USAGE, "%s: empty item in '%s'", what, s);
        if (*n == DSA_MAX_LIST) return dsa_fail(e, DSA_EXIT_USAGE, "%s: more than %d items", what, DSA_MAX_LIST);
        items[(*n)++] = p;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

int dsa_parse_count_list(const char *s, const char *what, int64_t *out, int *n, dsa_err *e)
{
    char buf[4096], *items[DSA_MAX_LIST];
    int rc = dsa_split_list(s, what, buf, sizeof buf, items, n, e);
    for (int i = 0; !rc && i < *n; i++) rc = dsa_parse_count(items[i], what, &out[i], e);
    return rc;
}

int dsa_parse_double(const char *s, const char *what, double *out, dsa_err *e)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v <= 0)
        return dsa_fail(e, DSA_EXIT_USAGE, "%s: '%s' is not a positive number", what, s);
    *out = v;
    return 0;
}
