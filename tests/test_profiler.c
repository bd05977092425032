/* tests/test_profiler.c — the profiler without a GPU: the component table from crafted kernel
 * records (sums per repetition, idle, coverage, records per repetition, medians over
 * repetitions), the CUPTI attribution rules fed crafted facts (external correlation, graph nodes
 * by id, by clone and by node index, repetition windows, dropped and unattributed records), the
 * host-timer backend, and the report's component table. tests/gpu_profiler.c checks the same
 * rules against what CUPTI really delivers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "clocks.h"
#include "profiler.h"
#include "report.h"
#include "results.h"
#include "sweep.h"

static dsa_kernel_rec rec(int rep, int layer, int comp, double start_ms, double end_ms)
{
    dsa_kernel_rec k;
    memset(&k, 0, sizeof k);
    k.rep = rep;
    k.layer = layer;
    k.component = comp;
    snprintf(k.name, sizeof k.name, "k_%d", comp);
    k.start_ns = (int64_t)(start_ms * 1e6);
    k.end_ns = (int64_t)(end_ms * 1e6);
    return k;
}

static const dsa_comp_stat *find_comp(const dsa_point *p, int c)
{
    for (int i = 0; i < p->n_comps; i++)
        if (p->comps[i].component == c) return &p->comps[i];
    return NULL;
}

/* Three repetitions of wall 10, 12, 11 ms:
 *   embed      1, 1, 2 ms      (one record a repetition)
 *   q_proj     3, 4, 4 ms      (two records a repetition: 2+1, 3+1, 2+2)
 *   idx_logits 3, 3, 3 ms
 *   busy       7, 8, 9 -> idle 3, 4, 2; coverage 0.7, 0.667, 0.818 -> median 0.7.
 * A record of a repetition that does not exist is copied but not summed. */
static void test_summarise(void)
{
    const double wall[] = {10, 12, 11};
    dsa_kernel_rec r[] = {
        rec(0, -1, DSA_C_EMBED, 0, 1),       rec(1, -1, DSA_C_EMBED, 20, 21),      rec(2, -1, DSA_C_EMBED, 40, 42),
        rec(0, 0, DSA_C_Q_PROJ, 1, 3),       rec(0, 0, DSA_C_Q_PROJ, 3, 4),        rec(1, 0, DSA_C_Q_PROJ, 21, 24),
        rec(1, 0, DSA_C_Q_PROJ, 24, 25),     rec(2, 0, DSA_C_Q_PROJ, 42, 44),      rec(2, 0, DSA_C_Q_PROJ, 44, 46),
        rec(0, 0, DSA_C_IDX_LOGITS, 4, 7),   rec(1, 0, DSA_C_IDX_LOGITS, 25, 28),  rec(2, 0, DSA_C_IDX_LOGITS, 46, 49),
        rec(7, 0, DSA_C_LM_HEAD, 60, 99),
    };
    size_t n = sizeof r / sizeof r[0];
    dsa_point pt;
    dsa_err e = {{0}};
    memset(&pt, 0, sizeof pt);
    CHECK_INT(dsa_point_summarise(&pt, r, n, wall, 3, &e), 0);
    CHECK_INT(pt.n_kernels, n);
    CHECK(pt.kernels && memcmp(pt.kernels, r, sizeof r) == 0);
    CHECK_INT(pt.n_comps, 4); /* embed, q_proj, idx_logits, idle: lm_head's record is of rep 7 */
    for (int i = 1; i < pt.n_comps; i++) CHECK(pt.comps[i - 1].component < pt.comps[i].component);
    const dsa_comp_stat *s = find_comp(&pt, DSA_C_EMBED);
    CHECK(s != NULL);
    if (s) {
        CHECK_NEAR(s->median_ms, 1, 1e-9);
        CHECK_NEAR(s->min_ms, 1, 1e-9);
        CHECK_NEAR(s->stdev_ms, sqrt(1.0 / 3), 1e-9);
        CHECK_NEAR(s->share, 1.0 / 11, 1e-12);
        CHECK_INT(s->kernels, 1);
    }
    s = find_comp(&pt, DSA_C_Q_PROJ);
    CHECK(s != NULL);
    if (s) {
        CHECK_NEAR(s->median_ms, 4, 1e-9);
        CHECK_NEAR(s->min_ms, 3, 1e-9);
        CHECK_NEAR(s->share, 4.0 / 11, 1e-12);
        CHECK_INT(s->kernels, 2);
    }
    s = find_comp(&pt, DSA_C_IDLE);
    CHECK(s != NULL);
    if (s) {
        CHECK_NEAR(s->median_ms, 3, 1e-9);
        CHECK_NEAR(s->min_ms, 2, 1e-9);
        CHECK_NEAR(s->stdev_ms, 1, 1e-9);
        CHECK_INT(s->kernels, 0);
    }
    CHECK(find_comp(&pt, DSA_C_LM_HEAD) == NULL);
    CHECK_NEAR(pt.indexer_ms, 3, 1e-9);
    CHECK_NEAR(pt.indexer_share, 3.0 / 11, 1e-12);
    CHECK_NEAR(pt.coverage, 0.7, 1e-12);

    /* busy above the wall (clocks of two sources): idle is 0, not negative */
    const double short_wall[] = {5, 5, 5};
    CHECK_INT(dsa_point_summarise(&pt, r, n, short_wall, 3, &e), 0);
    s = find_comp(&pt, DSA_C_IDLE);
    CHECK(s && s->median_ms == 0 && s->min_ms == 0);
    CHECK_NEAR(pt.coverage, 8.0 / 5, 1e-12);
    free(pt.comps);
    free(pt.kernels);
}

/* Kernels at once (the MoE experts' GEMMs on side streams): a component's time is the union of
 * its intervals and busy the union of all, never their sum. One repetition, wall 30 ms:
 *   moe_experts [10,14] [11,13] [12,16] [20,21] -> 6 + 1 = 7 ms, 4 kernels
 *   moe_shared  [0,2] [1,3]                     -> 3 ms
 *   busy 10 -> idle 20, coverage 1/3 (the sum of durations would give 13). */
static void test_summarise_overlap(void)
{
    const double wall[] = {30};
    dsa_kernel_rec r[] = {
        rec(0, 1, DSA_C_MOE_EXPERTS, 12, 16), rec(0, 1, DSA_C_MOE_EXPERTS, 10, 14), rec(0, 1, DSA_C_MOE_SHARED, 1, 3),
        rec(0, 1, DSA_C_MOE_EXPERTS, 11, 13), rec(0, 1, DSA_C_MOE_EXPERTS, 20, 21), rec(0, 1, DSA_C_MOE_SHARED, 0, 2),
    };
    dsa_point pt;
    dsa_err e = {{0}};
    memset(&pt, 0, sizeof pt);
    CHECK_INT(dsa_point_summarise(&pt, r, sizeof r / sizeof r[0], wall, 1, &e), 0);
    const dsa_comp_stat *s = find_comp(&pt, DSA_C_MOE_EXPERTS);
    CHECK(s && fabs(s->median_ms - 7) < 1e-9 && s->kernels == 4);
    s = find_comp(&pt, DSA_C_MOE_SHARED);
    CHECK(s && fabs(s->median_ms - 3) < 1e-9 && s->kernels == 2);
    s = find_comp(&pt, DSA_C_IDLE);
    CHECK(s && fabs(s->median_ms - 20) < 1e-9);
    CHECK_NEAR(pt.coverage, 10.0 / 30, 1e-12);
    free(pt.comps);
    free(pt.kernels);
}

static void test_external_ids(void)
{
    int c, l;
    for (int comp = 0; comp < DSA_NCOMP; comp++)
        for (int layer = -1; layer < 100; layer += 37) {
            uint64_t id = dsa_prof_external_id(comp, layer);
            CHECK(id != 0);
            CHECK_INT(dsa_prof_external_decode(id, &c, &l), 0);
            CHECK_INT(c, comp);
            CHECK_INT(l, layer);
        }
    CHECK_INT(dsa_prof_external_decode(0, &c, &l), -1);
    CHECK_INT(dsa_prof_external_decode(12345, &c, &l), -1);
    CHECK_INT(dsa_prof_external_decode(dsa_prof_external_id(0, 0) | DSA_NCOMP, &c, &l), -1);
}

#define G_CAPTURED(i) ((5ULL << 32) | (i)) /* node ids of the captured graph ... */
#define G_EXEC(i) ((9ULL << 32) | (i))     /* ... and of its instantiation: same index */

static dsa_prof_activity act(uint64_t start, uint64_t end, uint64_t node, uint32_t corr)
{
    dsa_prof_activity a = {start, end, node, corr, {132, 2, 1}, {256, 1, 1}};
    return a;
}

/* The facts of one trace, as the CUPTI callbacks would note them (trace_origin 1000):
 *   windows: warm-up at 100, rep 0 at 1000, rep 1 at 2000, end (-1) at 3000;
 *   correlations 11 -> embed, 12 -> q_proj layer 0 (13 never noted);
 *   captured nodes 0 -> attn_norm layer 0, 1 -> idx_topk layer 3; node 0 cloned into the
 *   instantiated graph (node 1's clone was never seen: only its index can place it);
 *   with `clash`, a second graph's node 0 belongs to o_proj: index 0 is then ambiguous. */
static void note_facts(dsa_prof *p, int clash)
{
    p->trace_origin = 1000;
    CHECK_INT(dsa_prof_note_window(p, -1, 100), 0);
    CHECK_INT(dsa_prof_note_window(p, 1, 2000), 0); /* out of order: attribution sorts them */
    CHECK_INT(dsa_prof_note_window(p, 0, 1000), 0);
    CHECK_INT(dsa_prof_note_window(p, -1, 3000), 0);
    CHECK_INT(dsa_prof_note_correlation(p, 11, dsa_prof_external_id(DSA_C_EMBED, -1)), 0);
    CHECK_INT(dsa_prof_note_correlation(p, 12, dsa_prof_external_id(DSA_C_Q_PROJ, 0)), 0);
    CHECK_INT(dsa_prof_note_graph_node(p, G_CAPTURED(0), dsa_prof_external_id(DSA_C_ATTN_NORM, 0)), 0);
    CHECK_INT(dsa_prof_note_graph_node(p, G_CAPTURED(1), dsa_prof_external_id(DSA_C_IDX_TOPK, 3)), 0);
    CHECK_INT(dsa_prof_note_graph_clone(p, G_CAPTURED(0), G_EXEC(0)), 0);
    CHECK_INT(dsa_prof_note_graph_clone(p, G_CAPTURED(7), G_EXEC(7)), 0); /* made outside a bracket */
    if (clash) CHECK_INT(dsa_prof_note_graph_node(p, (6ULL << 32) | 0, dsa_prof_external_id(DSA_C_O_PROJ, 1)), 0);
    char long_name[200];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    struct { dsa_prof_activity a; const char *name; } acts[] = {
        {act(1100, 1200, 0, 11), "embed_kernel"},           /* rep 0, embed */
        {act(1300, 1500, 0, 12), long_name},                /* rep 0, q_proj (cuBLASLt) */
        {act(1600, 1700, 0, 13), "stray_kernel"},           /* rep 0, no bracket */
        {act(2100, 2150, G_EXEC(0), 77), "rmsnorm_kernel"}, /* rep 1, graph: by id (clone) */
        {act(2200, 2400, G_EXEC(1), 77), "topk_kernel"},    /* rep 1, graph: by index only */
        {act(2500, 2600, G_EXEC(5), 12), "unknown_node"},   /* rep 1, graph node nobody made */
        {act(500, 600, 0, 11), "embed_kernel"},             /* warm-up */
        {act(50, 60, 0, 11), "embed_kernel"},               /* before the first window */
        {act(3100, 3200, 0, 11), "embed_kernel"},           /* after the last repetition */
        {act(0, 0, 0, 11), "embed_kernel"},                 /* no timestamps: dropped */
    };
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        CHECK_INT(dsa_prof_note_activity(p, &acts[i].a, acts[i].name), 0);
}

static int count_comp(const dsa_prof *p, int comp)
{
    int n = 0;
    for (size_t i = 0; i < p->n; i++) n += p->recs[i].component == comp;
    return n;
}

static void test_attribution(void)
{
    dsa_prof p;
    dsa_err e = {{0}};
    dsa_prof_init(&p);
    CHECK_INT(p.node_lookup, DSA_PROF_NODE_BY_ID | DSA_PROF_NODE_BY_INDEX);
    note_facts(&p, 0);
    CHECK_INT(dsa_prof_attribute(&p, &e), 0);
    CHECK_INT(p.n, 4);
    CHECK_INT(p.dropped, 1);
    CHECK_INT(p.unattributed, 2); /* the stray kernel and the unknown node */
    if (p.n == 4) {
        const dsa_kernel_rec *k = p.recs;
        CHECK_INT(k[0].rep, 0);
        CHECK_INT(k[0].component, DSA_C_EMBED);
        CHECK_INT(k[0].layer, -1);
        CHECK_STR(k[0].name, "embed_kernel");
        CHECK_INT(k[0].start_ns, 100);
        CHECK_INT(k[0].end_ns, 200);
        CHECK_INT(k[0].graph_node, 0);
        CHECK_INT(k[0].grid[0], 132);
        CHECK_INT(k[0].grid[1], 2);
        CHECK_INT(k[0].block[0], 256);
        CHECK_INT(k[1].component, DSA_C_Q_PROJ);
        CHECK_INT(k[1].layer, 0);
        CHECK_INT(strlen(k[1].name), sizeof k[1].name - 1); /* cut to the field */
        CHECK_INT(k[2].rep, 1);
        CHECK_INT(k[2].component, DSA_C_ATTN_NORM);
        CHECK_INT(k[2].layer, 0);
        CHECK(k[2].graph_node == G_EXEC(0));
        CHECK_INT(k[3].rep, 1);
        CHECK_INT(k[3].component, DSA_C_IDX_TOPK);
        CHECK_INT(k[3].layer, 3);
        CHECK_INT(k[3].start_ns, 1200);
    }
    /* attribution forgets the trace's records, correlations and windows, not the graph */
    CHECK_INT(dsa_prof_attribute(&p, &e), 0);
    CHECK_INT(p.n, 4);

    /* each graph lookup alone: what it attributes of the same records */
    static const struct {
        int lookup, idx_topk, unattributed;
    } alone[] = {{DSA_PROF_NODE_BY_ID, 0, 3}, {DSA_PROF_NODE_BY_INDEX, 1, 2}};
    for (size_t i = 0; i < sizeof alone / sizeof alone[0]; i++) {
        p.n = 0;
        p.dropped = p.unattributed = 0;
        p.node_lookup = alone[i].lookup;
        note_facts(&p, 0);
        CHECK_INT(dsa_prof_attribute(&p, &e), 0);
        CHECK_INT(count_comp(&p, DSA_C_ATTN_NORM), 1);
        CHECK_INT(count_comp(&p, DSA_C_IDX_TOPK), alone[i].idx_topk);
        CHECK_INT(p.unattributed, alone[i].unattributed);
    }
    dsa_prof_free(&p);

    /* an index two brackets claim places nothing; the ids still do */
    dsa_prof_init(&p);
    p.node_lookup = DSA_PROF_NODE_BY_INDEX;
    note_facts(&p, 1);
    CHECK_INT(dsa_prof_attribute(&p, &e), 0);
    CHECK_INT(count_comp(&p, DSA_C_ATTN_NORM), 0);
    CHECK_INT(count_comp(&p, DSA_C_O_PROJ), 0);
    CHECK_INT(count_comp(&p, DSA_C_IDX_TOPK), 1);
    p.n = 0;
    p.node_lookup = DSA_PROF_NODE_BY_ID | DSA_PROF_NODE_BY_INDEX;
    note_facts(&p, 1);
    CHECK_INT(dsa_prof_attribute(&p, &e), 0);
    CHECK_INT(count_comp(&p, DSA_C_ATTN_NORM), 1);
    dsa_prof_free(&p);
}

/* The host-timer backend (--device cpu): one record per bracket of a measured repetition. */
static void test_host_timers(void)
{
    dsa_prof p;
    dsa_prof_init(&p);
    dsa_prof_rep_begin(&p, -1);
    dsa_prof_begin(&p, DSA_C_EMBED, -1);
    dsa_prof_end(&p);
    CHECK_INT(p.n, 0);
    dsa_prof_rep_begin(&p, 2);
    dsa_prof_begin(&p, DSA_C_SPARSE_ATTN, 5);
    dsa_prof_end(&p);
    dsa_prof_end(&p); /* no bracket open: nothing */
    CHECK_INT(p.n, 1);
    if (p.n == 1) {
        CHECK_INT(p.recs[0].rep, 2);
        CHECK_INT(p.recs[0].layer, 5);
        CHECK_INT(p.recs[0].component, DSA_C_SPARSE_ATTN);
        CHECK_STR(p.recs[0].name, "ref_sparse_attn");
        CHECK(p.recs[0].end_ns >= p.recs[0].start_ns && p.recs[0].start_ns >= 0);
    }
    p.host_timers = 0; /* the GPU without CUPTI: brackets (NVTX) but no host-timed records */
    dsa_prof_begin(&p, DSA_C_O_PROJ, 1);
    dsa_prof_end(&p);
    CHECK_INT(p.n, 1);
    CHECK_INT(p.open_comp, -1);
    dsa_prof_begin(NULL, DSA_C_EMBED, 0); /* a NULL profiler is a no-op */
    dsa_prof_end(NULL);
    dsa_prof_rep_begin(NULL, 0);
    dsa_prof_free(&p);
}

static char *report_of(const dsa_run *run, int format)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    dsa_report_print(f, run, 1, format);
    fclose(f);
    return buf;
}

/* A run of one GPU point of 3 repetitions (chunk 8192) for the report tests. */
static dsa_point *report_point(dsa_run *run, const char *model, const char *phase, const char *config, int64_t context,
                               int batch, int n_full, int n_layers, double wall_ms)
{
    memset(run, 0, sizeof *run);
    snprintf(run->model.name, sizeof run->model.name, "%s", model);
    snprintf(run->dev.kind, sizeof run->dev.kind, "cuda");
    dsa_point *p = dsa_run_add_point(run);
    CHECK(p != NULL);
    if (!p) return NULL;
    snprintf(p->phase, sizeof p->phase, "%s", phase);
    snprintf(p->config, sizeof p->config, "%s", config);
    p->context = context, p->batch = batch, p->chunk = 8192;
    p->n_full = n_full, p->n_layers = n_layers, p->reps = 3;
    p->wall_median_ms = wall_ms;
    return p;
}

/* A traced GPU point through the report: the component table, coverage, overhead, indexer. */
static void test_report(void)
{
    dsa_run run;
    dsa_err e = {{0}};
    dsa_point *p = report_point(&run, "glm-4.7-flash-dsa", "decode", "1/4", 200000, 8, 13, 47, 10);
    if (!p) return;
    p->tok_s = 800;
    p->traced_reps = 3;
    p->wall_traced_median_ms = 10.3;
    p->trace_overhead_pct = 3;
    const double wall[] = {10.3, 10.2, 10.4};
    dsa_kernel_rec r[] = {rec(0, 0, DSA_C_IDX_LOGITS, 0, 2), rec(1, 0, DSA_C_IDX_LOGITS, 20, 22),
                          rec(2, 0, DSA_C_IDX_LOGITS, 40, 42), rec(0, 0, DSA_C_MOE_EXPERTS, 2, 10),
                          rec(1, 0, DSA_C_MOE_EXPERTS, 22, 30), rec(2, 0, DSA_C_MOE_EXPERTS, 42, 50)};
    CHECK_INT(dsa_point_summarise(p, r, 6, wall, 3, &e), 0);
    char *text = report_of(&run, DSA_FMT_TEXT);
    CHECK(text != NULL);
    if (text) {
        CHECK(strstr(text, "# glm-4.7-flash-dsa decode context 200000 batch 8 config 1/4 (13/47 F): wall 10.000 ms "
                           "(3 reps), traced 10.300 ms (3 reps), trace overhead +3.00%") != NULL);
        CHECK(strstr(text, "    idx_logits         2.0000    19.42            1\n") != NULL);
        CHECK(strstr(text, "    moe_experts        8.0000    77.67            1\n") != NULL);
        CHECK(strstr(text, "    idle               0.3000     2.91            0\n") != NULL);
        CHECK(strstr(text, "coverage 97.09% (components / wall), idle 2.91%; indexer 19.42% (2.000 ms); dropped "
                           "records 0; unattributed records 0") != NULL);
        if (check_failures) fputs(text, stderr);
    }
    free(text);
    /* --trace on: one traced pass is the wall, so there is no overhead to print */
    p->trace_overhead_pct = NAN;
    text = report_of(&run, DSA_FMT_TEXT);
    CHECK(text && strstr(text, "(13/47 F): wall 10.000 ms (3 reps), traced (one pass: the wall includes tracing; "
                               "overhead not measured)\n") != NULL);
    CHECK(text && !strstr(text, "nan"));
    free(text);
    p->trace_overhead_pct = 3;
    char *json = report_of(&run, DSA_FMT_JSON);
    CHECK(json && strstr(json, "\"trace_overhead_pct\": 3, \"coverage_pct\": 97.0874") != NULL);
    CHECK(json && strstr(json, "\"components\": [{\"component\": \"idx_logits\", \"time_ms\": 2, \"min_ms\": 2, "
                               "\"stdev_ms\": 0, \"share_pct\": 19.4175, \"kernels_per_rep\": 1}") != NULL);
    free(json);
    char *csv = report_of(&run, DSA_FMT_CSV);
    CHECK(csv && strstr(csv, ",traced_reps,wall_traced_ms,trace_overhead_pct,coverage_pct,") != NULL);
    CHECK(csv && strstr(csv, ",lm_head_ms,comm_ms,idle_ms\n") != NULL);
    CHECK(csv && strstr(csv, ",3,10.3,3,97.0874,2,0,0,") != NULL);
    int lines = 0;
    for (const char *c = csv; c && *c; c++) lines += *c == '\n';
    CHECK_INT(lines, 2);
    free(csv);
    dsa_run_free(&run);
}

/* A point with no component but idle (an untraced point of an older file): no component block,
 * no coverage, no "nan" in the text. */
static void test_report_idle_only(void)
{
    dsa_run run;
    dsa_point *p = report_point(&run, "deepseek-v3.2", "prefill", "full", 64000, 1, 4, 4, 1000);
    if (!p) return;
    p->tok_s = 64000;
    p->indexer_ms = p->indexer_share = p->coverage = NAN;
    p->wall_traced_median_ms = p->trace_overhead_pct = NAN;
    p->comps = calloc(1, sizeof *p->comps);
    CHECK(p->comps != NULL);
    if (p->comps) {
        p->n_comps = 1;
        p->comps[0] = (dsa_comp_stat){.component = DSA_C_IDLE, .median_ms = 1000, .share = 1};
    }
    char *text = report_of(&run, DSA_FMT_TEXT);
    CHECK(text && strstr(text, "  deepseek-v3.2          64000     1 full"));
    CHECK(text && !strstr(text, "components per point"));
    CHECK(text && !strstr(text, "coverage"));
    if (check_failures && text) fputs(text, stderr);
    free(text);
    dsa_run_free(&run);
}

/* What dsa_clocks_progress prints for p (caller frees). */
static char *progress_of(const dsa_point *p)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&buf, &len);
    if (!o) return NULL;
    dsa_clocks_progress(o, p);
    fclose(o);
    return buf;
}

/* The SM clock block (src/clocks.h): one row per point that has readings, none without; the
 * throttle reasons by name; csv and json carry the same figures. */
static void test_report_clocks(void)
{
    char buf[96];
    CHECK_STR(dsa_clock_events_str(0, buf, (int)sizeof buf), "none");
    CHECK_STR(dsa_clock_events_str(0x1 | 0x2, buf, (int)sizeof buf), "none"); /* idle, app clocks: not throttling */
    CHECK_STR(dsa_clock_events_str(0x4, buf, (int)sizeof buf), "sw_power_cap");
    CHECK_STR(dsa_clock_events_str(0x4 | 0x40 | 0x1, buf, (int)sizeof buf), "sw_power_cap+hw_thermal");
    CHECK_STR(dsa_clock_events_str(0x4 | 0x8 | 0x20 | 0x40 | 0x80, buf, 20), "sw_power_cap+hw_slo"); /* cut, ended */

    dsa_run run;
    dsa_point *p = report_point(&run, "glm-4.7-flash-dsa", "prefill", "full", 200000, 1, 47, 47, 19551.2);
    if (!p) return;
    p->tok_s = 200000 / 19.5512;
    p->indexer_ms = p->indexer_share = p->coverage = NAN;
    p->wall_traced_median_ms = p->trace_overhead_pct = NAN;
    char *text = report_of(&run, DSA_FMT_TEXT);
    CHECK(text && !strstr(text, "SM clock")); /* not measured: no block */
    free(text);
    char *none = progress_of(p); /* nor a progress part */
    CHECK(none && none[0] == '\0');
    free(none);
    p->sm_clock_begin_mhz = 1980, p->sm_clock_end_mhz = 1845, p->sm_clock_mean_mhz = 1874.27;
    p->sm_clock_min_mhz = 1530, p->throttled_pct = 97.95, p->clock_events = 0x4 | 0x1;
    text = report_of(&run, DSA_FMT_TEXT);
    CHECK(text && strstr(text, "# SM clock while each point ran (NVML, read every 50 ms;"));
    CHECK(text && strstr(text, "   glm-4.7-flash-dsa    prefill full                          200000     1      1980     1845"
                               "      1874     1530       98.0  sw_power_cap\n"));
    if (check_failures && text) fputs(text, stderr);
    free(text);
    char *line = progress_of(p); /* the progress line's clock part, shared by run and kernels */
    CHECK(line && !strcmp(line, "; SM clock 1874 MHz mean, 1530 min, throttled 98%"));
    free(line);
    char *csv = report_of(&run, DSA_FMT_CSV);
    CHECK(csv && strstr(csv, ",unattributed_records,sm_clock_begin_mhz,sm_clock_end_mhz,sm_clock_mean_mhz,"
                             "sm_clock_min_mhz,throttled_pct,clock_events,embed_ms,"));
    CHECK(csv && strstr(csv, ",1980,1845,1874.27,1530,97.95,5,"));
    free(csv);
    char *json = report_of(&run, DSA_FMT_JSON);
    CHECK(json && strstr(json, "\"sm_clock_mean_mhz\": 1874.27, \"sm_clock_min_mhz\": 1530, \"throttled_pct\": 97.95, "
                               "\"clock_events\": 5"));
    free(json);
    dsa_run_free(&run);
}

int main(void)
{
    test_summarise();
    test_summarise_overlap();
    test_external_ids();
    test_attribution();
    test_host_timers();
    test_report();
    test_report_idle_only();
    test_report_clocks();
    return check_done("test_profiler");
}
