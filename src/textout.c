#include "textout.h"

#include <math.h>

void dsa_out_num(FILE *o, int width, int prec, double v)
{
    if (isnan(v)) fprintf(o, " %*s", width, "-");
    else fprintf(o, " %*.*f", width, prec, v);
}

void dsa_out_json_str(FILE *o, const char *s)
{
    fputc('"', o);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(o, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(o, "\\u%04x", *s);
        else fputc(*s, o);
    }
    fputc('"', o);
}

void dsa_out_json_num(FILE *o, double v, int sig)
{
    if (isnan(v) || isinf(v)) fputs("null", o);
    else fprintf(o, "%.*g", sig, v);
}
