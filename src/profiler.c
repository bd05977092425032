/* src/profiler.c — host timers, NVTX ranges, and the CUPTI attribution of profiler.h. */
#include "profiler.h"

#include <cupti.h>
#include <dlfcn.h>
#include <nvtx3/nvToolsExt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NAME_LEN sizeof(((dsa_kernel_rec *)0)->name)
#define BUFFER_BYTES (8u << 20) /* one CUPTI activity buffer (DESIGN.md §4) */
#define AMBIGUOUS UINT64_MAX    /* a node index that two brackets claim */
#define EXTERNAL_MARK (1ULL << 48)

int64_t dsa_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- a uint64 -> uint64 hash map (open addressing; a value of 0 means absent) ------------ */

typedef struct u64map {
    uint64_t *keys; /* key + 1; 0 = empty slot */
    uint64_t *vals;
    size_t cap, n;
} u64map;

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t map_get(const u64map *m, uint64_t key)
{
    if (!m->cap || key == UINT64_MAX) return 0;
    for (size_t i = mix64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == 0) return 0;
        if (m->keys[i] == key + 1) return m->vals[i];
    }
}

static int map_put(u64map *m, uint64_t key, uint64_t val);

static int map_grow(u64map *m)
{
    u64map bigger = {0};
    bigger.cap = m->cap ? 2 * m->cap : 1024;
    bigger.keys = calloc(bigger.cap, sizeof *bigger.keys);
    bigger.vals = malloc(bigger.cap * sizeof *bigger.vals);
    if (!bigger.keys || !bigger.vals) {
        free(bigger.keys);
        free(bigger.vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) map_put(&bigger, m->keys[i] - 1, m->vals[i]);
    free(m->keys);
    free(m->vals);
    *m = bigger;
    return 0;
}

/* Inserts or overwrites. -1 when out of memory. */
static int map_put(u64map *m, uint64_t key, uint64_t val)
{
    if (key == UINT64_MAX) return 0; /* not representable; never an id CUPTI hands out */
    if (2 * (m->n + 1) > m->cap && map_grow(m)) return -1;
    size_t i = mix64(key) & (m->cap - 1);
    while (m->keys[i] && m->keys[i] != key + 1) i = (i + 1) & (m->cap - 1);
    if (!m->keys[i]) m->n++;
    m->keys[i] = key + 1;
    m->vals[i] = val;
    return 0;
}

static void map_clear(u64map *m)
{
    if (m->cap) memset(m->keys, 0, m->cap * sizeof *m->keys);
    m->n = 0;
}

static void map_free(u64map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- the attribution tables --------------------------------------------------------------- */

typedef struct raw_act {
    dsa_prof_activity a;
    uint32_t name; /* index into names */
} raw_act;

typedef struct window {
    uint64_t start;
    int32_t rep;
} window;

struct dsa_prof_tables {
    u64map corr;       /* correlationId -> external id (this trace) */
    u64map nodes;      /* graph node id -> external id (kept across traces) */
    u64map node_index; /* low 32 bits of a node id -> external id, or AMBIGUOUS */
    u64map name_ptr;   /* CUPTI's kernel name pointer -> name index + 1 */
    u64map name_hash;  /* hash of a name -> name index + 1 */
    char (*names)[NAME_LEN];
    size_t n_names, cap_names;
    raw_act *acts;
    size_t n_acts, cap_acts;
    window *wins;
    size_t n_wins, cap_wins;
};

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *p = realloc(*arr, c * elem);
    if (!p) return -1;
    *arr = p;
    *cap = c;
    return 0;
}

static dsa_prof_tables *tables(dsa_prof *p)
{
    if (!p->tab && !(p->tab = calloc(1, sizeof *p->tab))) p->oom = 1;
    return p->tab;
}

static void tables_free(dsa_prof_tables *t)
{
    if (!t) return;
    map_free(&t->corr);
    map_free(&t->nodes);
    map_free(&t->node_index);
    map_free(&t->name_ptr);
    map_free(&t->name_hash);
    free(t->names);
    free(t->acts);
    free(t->wins);
    free(t);
}

static int oom(dsa_prof *p)
{
    p->oom = 1;
    return -1;
}

uint64_t dsa_prof_external_id(int component, int layer)
{
    return EXTERNAL_MARK | (uint64_t)(uint32_t)(layer + 1) << 8 | (uint64_t)(component & 0xff);
}

int dsa_prof_external_decode(uint64_t id, int *component, int *layer)
{
    if ((id >> 40) != EXTERNAL_MARK >> 40 || (int)(id & 0xff) >= DSA_NCOMP) return -1;
    *component = (int)(id & 0xff);
    *layer = (int)(uint32_t)(id >> 8) - 1;
    return 0;
}

int dsa_prof_note_window(dsa_prof *p, int rep, uint64_t start)
{
    dsa_prof_tables *t = tables(p);
    if (!t || grow((void **)&t->wins, &t->cap_wins, t->n_wins + 1, sizeof *t->wins)) return oom(p);
    t->wins[t->n_wins++] = (window){start, rep};
    return 0;
}

int dsa_prof_note_correlation(dsa_prof *p, uint32_t correlation, uint64_t external_id)
{
    dsa_prof_tables *t = tables(p);
    return t && !map_put(&t->corr, correlation, external_id) ? 0 : oom(p);
}

static int note_index(dsa_prof *p, uint64_t node_id, uint64_t external_id)
{
    dsa_prof_tables *t = p->tab;
    uint64_t index = node_id & 0xffffffffu, had = map_get(&t->node_index, index);
    if (had == external_id || had == AMBIGUOUS) return 0;
    return map_put(&t->node_index, index, had ? AMBIGUOUS : external_id) ? oom(p) : 0;
}

int dsa_prof_note_graph_node(dsa_prof *p, uint64_t node_id, uint64_t external_id)
{
    dsa_prof_tables *t = tables(p);
    if (!t || map_put(&t->nodes, node_id, external_id)) return oom(p);
    return note_index(p, node_id, external_id);
}

int dsa_prof_note_graph_clone(dsa_prof *p, uint64_t original_id, uint64_t clone_id)
{
    dsa_prof_tables *t = tables(p);
    if (!t) return -1;
    uint64_t ext = map_get(&t->nodes, original_id);
    return ext ? dsa_prof_note_graph_node(p, clone_id, ext) : 0; /* made outside a bracket */
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* The index of `name` (cut to NAME_LEN - 1) in the name table, added when new; -1 when out of
 * memory. Names repeat (every repetition runs the same kernels), so records store an index. */
static long intern_name(dsa_prof *p, const char *name)
{
    dsa_prof_tables *t = p->tab;
    char cut[NAME_LEN];
    snprintf(cut, sizeof cut, "%s", name);
    uint64_t h = hash_name(cut), got = map_get(&t->name_hash, h);
    if (got && strcmp(t->names[got - 1], cut) == 0) return (long)(got - 1);
    if (grow((void **)&t->names, &t->cap_names, t->n_names + 1, sizeof *t->names)) return oom(p);
    memcpy(t->names[t->n_names], cut, sizeof cut);
    /* on a hash collision the first name keeps the slot; the second is stored unindexed */
    if (!got && map_put(&t->name_hash, h, t->n_names + 1)) return oom(p);
    return (long)t->n_names++;
}

static int add_activity(dsa_prof *p, const dsa_prof_activity *a, long name)
{
    dsa_prof_tables *t = p->tab;
    if (name < 0 || grow((void **)&t->acts, &t->cap_acts, t->n_acts + 1, sizeof *t->acts)) return oom(p);
    t->acts[t->n_acts++] = (raw_act){*a, (uint32_t)name};
    return 0;
}

int dsa_prof_note_activity(dsa_prof *p, const dsa_prof_activity *a, const char *name)
{
    if (!tables(p)) return -1;
    return add_activity(p, a, intern_name(p, name));
}

static int cmp_window(const void *x, const void *y)
{
    const window *a = x, *b = y;
    return (a->start > b->start) - (a->start < b->start);
}

/* The repetition of a record that started at `start`: the last window starting at or before it;
 * -1 before the first window or in a warm-up window. */
static int window_rep(const dsa_prof_tables *t, uint64_t start)
{
    size_t lo = 0, hi = t->n_wins; /* first window starting after `start` */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->wins[mid].start <= start) lo = mid + 1;
        else hi = mid;
    }
    return lo ? t->wins[lo - 1].rep : -1;
}

static int append_rec(dsa_prof *p, const dsa_kernel_rec *k)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 1024;
        dsa_kernel_rec *r = realloc(p->recs, cap * sizeof *r);
        if (!r) return oom(p);
        p->recs = r;
        p->cap = cap;
    }
    p->recs[p->n++] = *k;
    return 0;
}

int dsa_prof_attribute(dsa_prof *p, dsa_err *e)
{
    dsa_prof_tables *t = p->tab;
    if (p->oom) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory for kernel records");
    if (!t) return 0;
    qsort(t->wins, t->n_wins, sizeof *t->wins, cmp_window);
    for (size_t i = 0; i < t->n_acts; i++) {
        const dsa_prof_activity *a = &t->acts[i].a;
        if (a->start == 0 && a->end == 0) { /* CUPTI could not time it: as good as lost */
            p->dropped++;
            continue;
        }
        int rep = window_rep(t, a->start);
        if (rep < 0) continue;
        /* Inside a graph the correlationId is the graph launch's: only the node says. */
        uint64_t ext = 0;
        if (a->graph_node) {
            if (p->node_lookup & DSA_PROF_NODE_BY_ID) ext = map_get(&t->nodes, a->graph_node);
            if (!ext && (p->node_lookup & DSA_PROF_NODE_BY_INDEX)) {
                ext = map_get(&t->node_index, a->graph_node & 0xffffffffu);
                if (ext == AMBIGUOUS) ext = 0;
            }
        } else {
            ext = map_get(&t->corr, a->correlation);
        }
        dsa_kernel_rec k;
        memset(&k, 0, sizeof k);
        if (!ext || dsa_prof_external_decode(ext, &k.component, &k.layer)) {
            if (!p->unattributed++)
                snprintf(p->first_unattributed, sizeof p->first_unattributed, "%.96s (graph node %#llx, correlation %u)",
                         t->names[t->acts[i].name], (unsigned long long)a->graph_node, (unsigned)a->correlation);
            continue;
        }
        k.rep = rep;
        memcpy(k.name, t->names[t->acts[i].name], sizeof k.name);
        k.start_ns = (int64_t)(a->start - p->trace_origin);
        k.end_ns = (int64_t)(a->end - p->trace_origin);
        k.graph_node = a->graph_node;
        memcpy(k.grid, a->grid, sizeof k.grid);
        memcpy(k.block, a->block, sizeof k.block);
        if (append_rec(p, &k)) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory for kernel records");
    }
    t->n_acts = t->n_wins = 0;
    map_clear(&t->corr);
    return 0;
}

/* ---- brackets ------------------------------------------------------------------------------ */

void dsa_prof_init(dsa_prof *p)
{
    memset(p, 0, sizeof *p);
    p->open_comp = -1;
    p->origin_ns = dsa_now_ns();
    p->host_timers = 1;
    p->node_lookup = DSA_PROF_NODE_BY_ID | DSA_PROF_NODE_BY_INDEX;
}

void dsa_prof_free(dsa_prof *p)
{
    dsa_prof_cupti_detach(p);
    tables_free(p->tab);
    free(p->recs);
    memset(p, 0, sizeof *p);
    p->open_comp = -1;
}

void dsa_prof_begin(dsa_prof *p, int component, int layer)
{
    if (!p) return;
    nvtxRangePushA(dsa_component_name(component));
    p->open_comp = component;
    p->open_layer = layer;
    p->open_pushed = 0;
    if (p->cupti) {
        if (p->tracing)
            p->open_pushed = cuptiActivityPushExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0,
                                                                    dsa_prof_external_id(component, layer)) ==
                             CUPTI_SUCCESS;
        return;
    }
    p->open_start_ns = dsa_now_ns();
}

void dsa_prof_end(dsa_prof *p)
{
    if (!p || p->open_comp < 0) return;
    int64_t end = dsa_now_ns();
    nvtxRangePop();
    if (p->cupti) {
        if (p->open_pushed) cuptiActivityPopExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, NULL);
        p->open_pushed = 0;
        p->open_comp = -1;
        return;
    }
    if (p->rep >= 0 && p->host_timers) {
        dsa_kernel_rec k;
        memset(&k, 0, sizeof k);
        k.rep = p->rep;
        k.layer = p->open_layer;
        k.component = p->open_comp;
        snprintf(k.name, sizeof k.name, "ref_%s", dsa_component_name(p->open_comp));
        k.start_ns = p->open_start_ns - p->origin_ns;
        k.end_ns = end - p->origin_ns;
        append_rec(p, &k);
    }
    p->open_comp = -1;
}

/* ---- CUPTI ---------------------------------------------------------------------------------- */

typedef char *(*demangle_fn)(const char *mangled, char *buf, size_t *len, int *status);

/* The library's one global: CUPTI calls back without a usable user pointer (buffers) or from
 * inside CUDA calls (graph nodes), and must find the attached profiler. */
static struct {
    pthread_mutex_t mu;
    int registered; /* activity buffer callbacks */
    int subscribed; /* graph-node resource callbacks */
    CUpti_SubscriberHandle sub;
    dsa_prof *attached;
    demangle_fn demangle; /* libstdc++'s, when loaded (cuBLASLt brings it) */
    int demangle_looked;
} g_cupti = {PTHREAD_MUTEX_INITIALIZER, 0, 0, NULL, NULL, NULL, 0};

static const char *cupti_str(CUptiResult r)
{
    const char *s = NULL;
    return cuptiGetResultString(r, &s) == CUPTI_SUCCESS && s ? s : "unknown CUPTI error";
}

/* "_ZN3cub...": demangled when libstdc++ is loaded (dlsym, so no link dependency), without the
 * leading "void "; else as given. Called once per distinct kernel (name_ptr caches it). */
static long kernel_name(dsa_prof *p, const char *mangled)
{
    dsa_prof_tables *t = p->tab;
    uint64_t got = map_get(&t->name_ptr, (uint64_t)(uintptr_t)mangled);
    if (got) return (long)(got - 1);
    if (!g_cupti.demangle_looked) {
        void *sym = dlsym(RTLD_DEFAULT, "__cxa_demangle");
        memcpy(&g_cupti.demangle, &sym, sizeof sym);
        g_cupti.demangle_looked = 1;
    }
    const char *name = mangled ? mangled : "(unnamed kernel)";
    char *plain = NULL;
    int status = -1;
    if (g_cupti.demangle && name[0] == '_' && name[1] == 'Z') plain = g_cupti.demangle(name, NULL, NULL, &status);
    const char *use = plain && status == 0 ? plain : name;
    if (strncmp(use, "void ", 5) == 0) use += 5;
    long idx = intern_name(p, use);
    free(plain);
    if (idx >= 0 && map_put(&t->name_ptr, (uint64_t)(uintptr_t)mangled, (uint64_t)idx + 1)) return oom(p);
    return idx;
}

static const char *memcpy_name(int kind)
{
    switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "[CUDA memcpy HtoD]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "[CUDA memcpy DtoH]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "[CUDA memcpy DtoD]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOH: return "[CUDA memcpy HtoH]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP: return "[CUDA memcpy PtoP]";
    default: return "[CUDA memcpy]";
    }
}

/* One CUPTI record into the attached profiler's tables (g_cupti.mu held). */
static void take_record(dsa_prof *p, const CUpti_Activity *rec)
{
    dsa_prof_activity a;
    memset(&a, 0, sizeof a);
    switch (rec->kind) {
    case CUPTI_ACTIVITY_KIND_KERNEL:
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
        a = (dsa_prof_activity){k->start, k->end, k->graphNodeId, k->correlationId,
                                {k->gridX, k->gridY, k->gridZ}, {k->blockX, k->blockY, k->blockZ}};
        add_activity(p, &a, kernel_name(p, k->name));
        break;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
        const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)rec;
        a.start = m->start, a.end = m->end, a.graph_node = m->graphNodeId, a.correlation = m->correlationId;
        add_activity(p, &a, intern_name(p, memcpy_name(m->copyKind)));
        break;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
        const CUpti_ActivityMemset4 *m = (const CUpti_ActivityMemset4 *)rec;
        a.start = m->start, a.end = m->end, a.graph_node = m->graphNodeId, a.correlation = m->correlationId;
        add_activity(p, &a, intern_name(p, "[CUDA memset]"));
        break;
    }
    case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
        const CUpti_ActivityExternalCorrelation *x = (const CUpti_ActivityExternalCorrelation *)rec;
        if (x->externalKind == CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0)
            dsa_prof_note_correlation(p, x->correlationId, x->externalId);
        break;
    }
    default: /* API records: enabled only so that external correlation records exist */
        break;
    }
}

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records)
{
    *buffer = aligned_alloc(8, BUFFER_BYTES); /* NULL: CUPTI drops and counts the records */
    *size = *buffer ? BUFFER_BYTES : 0;
    *max_records = 0;
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid)
{
    (void)size;
    size_t dropped = 0;
    /* CUPTI calls stay outside the mutex: a resource callback may hold CUPTI's locks while it
     * waits for ours. Parsing the buffer is ours alone. */
    if (cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) != CUPTI_SUCCESS) dropped = 0;
    pthread_mutex_lock(&g_cupti.mu);
    dsa_prof *p = g_cupti.attached;
    CUpti_Activity *rec = NULL;
    if (p && tables(p))
        while (valid && cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) take_record(p, rec);
    if (p) p->dropped += (int64_t)dropped;
    pthread_mutex_unlock(&g_cupti.mu);
    free(buffer);
}

/* Graph nodes: created while a graph is captured (the open bracket owns it), cloned when the
 * graph is instantiated (the clone inherits its original's bracket). */
static void CUPTIAPI on_resource(void *user, CUpti_CallbackDomain domain, CUpti_CallbackId cbid, const void *data)
{
    (void)user;
    if (domain != CUPTI_CB_DOMAIN_RESOURCE || !data) return;
    const CUpti_GraphData *gd = ((const CUpti_ResourceData *)data)->resourceDescriptor;
    uint64_t node = 0, original = 0;
    if (!gd || cuptiGetGraphNodeId(gd->node, &node) != CUPTI_SUCCESS) return;
    if (cbid == CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED &&
        cuptiGetGraphNodeId(gd->originalNode, &original) != CUPTI_SUCCESS)
        return;
    pthread_mutex_lock(&g_cupti.mu);
    dsa_prof *p = g_cupti.attached;
    if (p && cbid == CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED && p->open_comp >= 0)
        dsa_prof_note_graph_node(p, node, dsa_prof_external_id(p->open_comp, p->open_layer));
    else if (p && cbid == CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED)
        dsa_prof_note_graph_clone(p, original, node);
    pthread_mutex_unlock(&g_cupti.mu);
}

int dsa_prof_cupti_attach(dsa_prof *p, dsa_err *e)
{
    CUptiResult r;
    if (!tables(p)) return dsa_fail(e, DSA_EXIT_RUNTIME, "out of host memory");
    pthread_mutex_lock(&g_cupti.mu);
    int busy = g_cupti.attached && g_cupti.attached != p;
    pthread_mutex_unlock(&g_cupti.mu);
    if (busy) return dsa_fail(e, DSA_EXIT_RUNTIME, "CUPTI: another profiler is attached");
    if (!g_cupti.registered) {
        if ((r = cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed)) != CUPTI_SUCCESS)
            return dsa_fail(e, DSA_EXIT_RUNTIME, "CUPTI: cannot register activity buffers: %s", cupti_str(r));
        g_cupti.registered = 1;
    }
    if (!g_cupti.subscribed) {
        r = cuptiSubscribe(&g_cupti.sub, on_resource, NULL);
        p->cupti_held = r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED;
        if (p->cupti_held)
            return dsa_fail(e, DSA_EXIT_RUNTIME,
                            "CUPTI is in use by another tool (Nsight Systems, compute-sanitizer?): per-component "
                            "times need it");
        if (r != CUPTI_SUCCESS) return dsa_fail(e, DSA_EXIT_RUNTIME, "CUPTI: cannot subscribe: %s", cupti_str(r));
        if ((r = cuptiEnableCallback(1, g_cupti.sub, CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED)) !=
                CUPTI_SUCCESS ||
            (r = cuptiEnableCallback(1, g_cupti.sub, CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED)) !=
                CUPTI_SUCCESS) {
            cuptiUnsubscribe(g_cupti.sub);
            return dsa_fail(e, DSA_EXIT_RUNTIME, "CUPTI: cannot enable the graph node callbacks: %s", cupti_str(r));
        }
        g_cupti.subscribed = 1;
    }
    pthread_mutex_lock(&g_cupti.mu);
    g_cupti.attached = p;
    pthread_mutex_unlock(&g_cupti.mu);
    p->cupti = 1;
    return 0;
}

static const CUpti_ActivityKind trace_kinds[] = {
    CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION, CUPTI_ACTIVITY_KIND_RUNTIME, CUPTI_ACTIVITY_KIND_DRIVER,
    CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,    CUPTI_ACTIVITY_KIND_MEMCPY,  CUPTI_ACTIVITY_KIND_MEMSET,
};
#define N_TRACE_KINDS (int)(sizeof trace_kinds / sizeof trace_kinds[0])

static void disable_kinds(int n)
{
    for (int i = n - 1; i >= 0; i--) cuptiActivityDisable(trace_kinds[i]);
}

void dsa_prof_cupti_detach(dsa_prof *p)
{
    if (!p || !p->cupti) return;
    if (p->tracing) { /* an error path: stop collecting, deliver and forget what was collected */
        disable_kinds(N_TRACE_KINDS);
        cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
        p->tracing = 0;
    }
    pthread_mutex_lock(&g_cupti.mu);
    if (g_cupti.attached == p) g_cupti.attached = NULL;
    pthread_mutex_unlock(&g_cupti.mu);
    p->cupti = 0;
}

int dsa_prof_trace_start(dsa_prof *p, dsa_err *e)
{
    if (!p->cupti) return dsa_fail(e, DSA_EXIT_RUNTIME, "CUPTI tracing without an attached profiler");
    CUptiResult r;
    size_t stale = 0;
    pthread_mutex_lock(&g_cupti.mu);
    p->tab->n_acts = p->tab->n_wins = 0;
    map_clear(&p->tab->corr);
    pthread_mutex_unlock(&g_cupti.mu);
    for (int i = 0; i < N_TRACE_KINDS; i++)
        if ((r = cuptiActivityEnable(trace_kinds[i])) != CUPTI_SUCCESS) {
            disable_kinds(i);
            return dsa_fail(e, DSA_EXIT_RUNTIME, "CUPTI: cannot enable activity kind %d: %s", (int)trace_kinds[i],
                            cupti_str(r));
        }
    /* error checks after every launch would double the API records for nothing */
    cuptiActivityEnableRuntimeApi(CUPTI_RUNTIME_TRACE_CBID_cudaGetLastError_v3020, 0);
    cuptiActivityEnableRuntimeApi(CUPTI_RUNTIME_TRACE_CBID_cudaPeekAtLastError_v3020, 0);
    cuptiActivityGetNumDroppedRecords(NULL, 0, &stale); /* resets the global count */
    if ((r = cuptiGetTimestamp(&p->trace_origin)) != CUPTI_SUCCESS) {
        disable_kinds(N_TRACE_KINDS);
        return dsa_fail(e, DSA_EXIT_RUNTIME, "CUPTI: no timestamp: %s", cupti_str(r));
    }
    p->dropped = p->unattributed = 0;
    p->first_unattributed[0] = '\0';
    p->tracing = 1;
    return 0;
}

int dsa_prof_trace_stop(dsa_prof *p, dsa_err *e)
{
    if (!p->cupti || !p->tracing) return dsa_fail(e, DSA_EXIT_RUNTIME, "CUPTI tracing was not started");
    /* the last repetition has synchronised: every record is complete; the second flush takes what
     * arrived while disabling */
    CUptiResult r = cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    disable_kinds(N_TRACE_KINDS);
    p->tracing = 0;
    CUptiResult r2 = cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(NULL, 0, &dropped) != CUPTI_SUCCESS) dropped = 0;
    if (r != CUPTI_SUCCESS || r2 != CUPTI_SUCCESS)
        return dsa_fail(e, DSA_EXIT_RUNTIME, "CUPTI: cannot flush the activity buffers: %s",
                        cupti_str(r != CUPTI_SUCCESS ? r : r2));
    pthread_mutex_lock(&g_cupti.mu);
    p->dropped += (int64_t)dropped;
    int rc = dsa_prof_attribute(p, e);
    pthread_mutex_unlock(&g_cupti.mu);
    return rc;
}

void dsa_prof_rep_begin(dsa_prof *p, int rep)
{
    if (!p) return;
    p->rep = rep;
    uint64_t now;
    if (p->cupti && p->tracing && cuptiGetTimestamp(&now) == CUPTI_SUCCESS) {
        pthread_mutex_lock(&g_cupti.mu);
        dsa_prof_note_window(p, rep, now);
        pthread_mutex_unlock(&g_cupti.mu);
    }
}
