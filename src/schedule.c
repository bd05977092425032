#include "schedule.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int dsa_schedule_from_freq(long n, int n_layers, char *fs, dsa_err *e)
{
    if (n < 1) return dsa_fail(e, DSA_EXIT_USAGE, "index_topk_freq %ld: must be an integer >= 1", n);
    for (int l = 0; l < n_layers; l++) {
        int prev = l - 1 > 0 ? l - 1 : 0;
        fs[l] = prev % n != 0 ? 'S' : 'F';
    }
    fs[n_layers] = 0;
    return 0;
}

int dsa_schedule_from_pattern(const char *p, int n_layers, char *fs, dsa_err *e)
{
    int len = (int)strlen(p);
    if (len != n_layers)
        return dsa_fail(e, DSA_EXIT_USAGE, "index_topk_pattern has %d characters, the model runs %d layers",
                        len, n_layers);
    for (int l = 0; l < len; l++)
        if (p[l] != 'F' && p[l] != 'S')
            return dsa_fail(e, DSA_EXIT_USAGE,
                            "index_topk_pattern: '%c' at layer %d (0-based) is not F or S", p[l], l);
    if (p[0] == 'S')
        return dsa_fail(e, DSA_EXIT_USAGE,
                        "index_topk_pattern starts with S: layer 0 has no earlier F layer to reuse");
    memcpy(fs, p, (size_t)len + 1);
    return 0;
}

static int parse_freq(const char *s, const char *spec, long *n, dsa_err *e)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || s[0] == '+' || s[0] == ' ')
        return dsa_fail(e, DSA_EXIT_USAGE, "config '%s': '%s' is not an integer", spec, s);
    if (v < 1) return dsa_fail(e, DSA_EXIT_USAGE, "config '%s': N = %ld, must be >= 1", spec, v);
    *n = v;
    return 0;
}

int dsa_schedule_resolve(const char *spec, const dsa_model *m, int n_layers, char *fs, dsa_err *e)
{
    long n;
    int rc;
    if (strcmp(spec, "model") == 0) {
        if (m->index_topk_pattern[0])
            return dsa_schedule_from_pattern(m->index_topk_pattern, n_layers, fs, e);
        return dsa_schedule_from_freq(m->index_topk_freq, n_layers, fs, e);
    }
    if (strcmp(spec, "full") == 0) return dsa_schedule_from_freq(1, n_layers, fs, e);
    if (strncmp(spec, "freq:", 5) == 0) {
        if ((rc = parse_freq(spec + 5, spec, &n, e))) return rc;
        return dsa_schedule_from_freq(n, n_layers, fs, e);
    }
    if (strncmp(spec, "1/", 2) == 0) {
        if ((rc = parse_freq(spec + 2, spec, &n, e))) return rc;
        return dsa_schedule_from_freq(n, n_layers, fs, e);
    }
    if (strncmp(spec, "pattern:", 8) == 0)
        return dsa_schedule_from_pattern(spec + 8, n_layers, fs, e);
    return dsa_fail(e, DSA_EXIT_USAGE,
                    "config '%s': expected full, 1/N, freq:N, pattern:F..S or model", spec);
}

int dsa_schedule_count_full(const char *fs)
{
    int n = 0;
    for (; *fs; fs++) n += *fs == 'F';
    return n;
}

int dsa_schedule_source_layer(const char *fs, int l)
{
    while (l > 0 && fs[l] != 'F') l--;
    return l;
}
