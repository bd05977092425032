/* IndexCache F/S schedules against strings written out by hand from DESIGN.md §2 and the
 * reference patch (layer l is S iff max(l-1, 0) % N != 0). */
#include <stdlib.h>

#include "check.h"
#include "schedule.h"

#define GLM5_PATTERN "FFSFSSSFSSFFFSSSFFFSFSSSSSSFFSFFSFFSSFFFFFFSFFFFFSFFSSSSSSFSFFFSFSSSFSFFSFFSSS"

static char buf[DSA_MAX_LAYERS + 1];

static const char *repeat(const char *head, const char *unit, int times, const char *tail)
{
    static char s[DSA_MAX_LAYERS + 1];
    strcpy(s, head);
    for (int i = 0; i < times; i++) strcat(s, unit);
    strcat(s, tail);
    return s;
}

static void expect(const char *spec, int layers, const char *want, int want_full)
{
    dsa_model m = *dsa_model_preset_at(0);
    dsa_err e = {{0}};
    int rc = dsa_schedule_resolve(spec, &m, layers, buf, &e);
    CHECK_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s: %s\n", spec, e.msg);
    CHECK_STR(buf, want);
    CHECK_INT(dsa_schedule_count_full(buf), want_full);
}

static void expect_error(const char *spec, int layers, const char *needle)
{
    dsa_model m = *dsa_model_preset_at(0);
    dsa_err e = {{0}};
    CHECK_INT(dsa_schedule_resolve(spec, &m, layers, buf, &e), DSA_EXIT_USAGE);
    if (!strstr(e.msg, needle)) {
        fprintf(stderr, "  %s: message '%s' lacks '%s'\n", spec, e.msg, needle);
        check_failures++;
    }
}

int main(void)
{
    char want[DSA_MAX_LAYERS + 1];
    /* 47 layers (the 30B model) */
    memset(want, 'F', 47), want[47] = 0;
    expect("full", 47, want, 47);
    expect("freq:1", 47, want, 47);
    expect("1/1", 47, want, 47);
    expect("1/2", 47, repeat("FF", "SF", 22, "S"), 24);
    expect("freq:3", 47, repeat("F", "FSS", 15, "F"), 17);
    expect("1/4", 47, repeat("F", "FSSS", 11, "FS"), 13);
    CHECK_STR(repeat("F", "FSSS", 11, "FS"),
              "FFSSSFSSSFSSSFSSSFSSSFSSSFSSSFSSSFSSSFSSSFSSSFS"); /* F = {0,1,5,9,...,45} */
    /* 78 layers (GLM-5) */
    memset(want, 'F', 78), want[78] = 0;
    expect("full", 78, want, 78);
    expect("1/2", 78, repeat("FF", "SF", 38, ""), 40);
    expect("1/3", 78, repeat("F", "FSS", 25, "FS"), 27);
    expect("freq:4", 78, repeat("F", "FSSS", 19, "F"), 21);
    expect("pattern:" GLM5_PATTERN, 78, GLM5_PATTERN, 40);
    /* the model's own fields */
    dsa_model m = *dsa_model_preset_at(0);
    dsa_err e = {{0}};
    m.index_topk_freq = 4;
    CHECK_INT(dsa_schedule_resolve("model", &m, 47, buf, &e), 0);
    CHECK_INT(dsa_schedule_count_full(buf), 13);
    strcpy(m.index_topk_pattern, "FS");
    CHECK_INT(dsa_schedule_resolve("model", &m, 2, buf, &e), 0); /* pattern overrides freq */
    CHECK_STR(buf, "FS");
    /* S layers reuse the nearest F layer before them */
    CHECK_INT(dsa_schedule_source_layer("FFSSFS", 3), 1);
    CHECK_INT(dsa_schedule_source_layer("FFSSFS", 5), 4);
    CHECK_INT(dsa_schedule_source_layer("FFSSFS", 4), 4);
    /* bad input: usage errors that name the problem */
    expect_error("1/0", 47, "must be >= 1");
    expect_error("freq:-2", 47, "must be >= 1");
    expect_error("freq:abc", 47, "'abc' is not an integer");
    expect_error("1/2.5", 47, "'2.5' is not an integer");
    expect_error("freq:", 47, "is not an integer");
    expect_error("2/4", 47, "expected full, 1/N");
    expect_error("half", 47, "expected full, 1/N");
    expect_error("pattern:FFS", 47, "has 3 characters, the model runs 47 layers");
    expect_error("pattern:FFXS", 4, "'X' at layer 2 (0-based) is not F or S");
    expect_error("pattern:FfSS", 4, "'f' at layer 1");
    expect_error("pattern:SFFF", 4, "starts with S");
    return check_done("test_schedule");
}
