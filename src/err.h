/* src/err.h — status codes and the error message a library call hands back to the CLI. */
#ifndef DSA_ERR_H
#define DSA_ERR_H

enum { DSA_EXIT_OK = 0, DSA_EXIT_SLOWER = 1, DSA_EXIT_USAGE = 2, DSA_EXIT_RUNTIME = 3 };

typedef struct dsa_err {
    char msg[512];
} dsa_err;

/* Formats the message into e (when non-NULL) and returns code, so callers write
 * `return dsa_fail(e, DSA_EXIT_USAGE, "bad context '%s'", s);`. */
int dsa_fail(dsa_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
