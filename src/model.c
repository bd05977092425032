/* src/model.c — presets, the field table, config.json (cJSON) and --set. */
#include "model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GLM_ASSUMED "indexer 32x128, topk 2048 and fp32 FP8 scales assumed from GLM-5; " \
                    "routed_scale, rope_theta from GLM-4.7-Flash"

/* Presets of DESIGN.md §1. */
static const dsa_model presets[] = {
    {.name = "glm-4.7-flash-dsa", .n_layers = 47, .hidden = 2048, .heads = 20, .q_lora = 768,
     .kv_lora = 512, .nope = 192, .rope = 64, .v = 256, .idx_heads = 32, .idx_dim = 128,
     .topk = 2048, .n_routed = 64, .n_active = 4, .n_shared = 1, .moe_inter = 1536,
     .first_dense = 1, .dense_inter = 10240, .vocab = 154880, .n_group = 1, .topk_group = 1,
     .norm_topk = 1, .idx_rope_half = 0, .fp8_ue8m0 = 0, .rope_theta = 1e6, .rms_eps = 1e-5,
     .routed_scale = 1.8, .index_topk_freq = 1,
     .assumptions = "the paper's \"30B DSA model\": GLM-4.7-Flash shapes; " GLM_ASSUMED},
    {.name = "deepseek-v3.2", .n_layers = 61, .hidden = 7168, .heads = 128, .q_lora = 1536,
     .kv_lora = 512, .nope = 128, .rope = 64, .v = 128, .idx_heads = 64, .idx_dim = 128,
     .topk = 2048, .n_routed = 256, .n_active = 8, .n_shared = 1, .moe_inter = 2048,
     .first_dense = 3, .dense_inter = 18432, .vocab = 129280, .n_group = 8, .topk_group = 4,
     .norm_topk = 1, .idx_rope_half = 1, .fp8_ue8m0 = 1, .rope_theta = 10000, .rms_eps = 1e-6,
     .routed_scale = 2.5, .index_topk_freq = 1,
     .assumptions = "none (published config); YaRN rope scaling not modelled"},
    {.name = "glm-5", .n_layers = 78, .hidden = 6144, .heads = 64, .q_lora = 2048,
     .kv_lora = 512, .nope = 192, .rope = 64, .v = 256, .idx_heads = 32, .idx_dim = 128,
     .topk = 2048, .n_routed = 256, .n_active = 8, .n_shared = 1, .moe_inter = 2048,
     .first_dense = 3, .dense_inter = 12288, .vocab = 154880, .n_group = 1, .topk_group = 1,
     .norm_topk = 1, .idx_rope_half = 0, .fp8_ue8m0 = 0, .rope_theta = 1e6, .rms_eps = 1e-5,
     .routed_scale = 2.5, .index_topk_freq = 1,
     .assumptions = "routed_scale, rope_theta, rms_eps assumed from GLM-4.7-Flash"},
    {.name = "tiny", .n_layers = 4, .hidden = 256, .heads = 4, .q_lora = 64, .kv_lora = 512,
     .nope = 32, .rope = 64, .v = 32, .idx_heads = 4, .idx_dim = 128, .topk = 64,
     .n_routed = 8, .n_active = 2, .n_shared = 1, .moe_inter = 128, .first_dense = 1,
     .dense_inter = 512, .vocab = 1024, .n_group = 2, .topk_group = 1, .norm_topk = 1,
     .idx_rope_half = 1, .fp8_ue8m0 = 0, .rope_theta = 10000, .rms_eps = 1e-6,
     .routed_scale = 1.0, .index_topk_freq = 1,
     .assumptions = "test shapes: real kv_lora/rope/index dims, everything else shrunk; "
                    "2 expert groups so grouped routing runs"},
};

int dsa_model_preset_count(void) { return (int)(sizeof presets / sizeof presets[0]); }
const dsa_model *dsa_model_preset_at(int i)
{
    return i >= 0 && i < dsa_model_preset_count() ? &presets[i] : NULL;
}

/* One row per config field; offset into dsa_model. ENUM fields are ints with two names. */
typedef struct field_def {
    dsa_model_field pub;
    size_t offset;
    const char *enum_names[2]; /* value 0, value 1 */
} field_def;

#define F_INT(k, hf, member, doc) {{k, hf, DSA_FIELD_INT, doc}, offsetof(dsa_model, member), {0}}
#define F_DBL(k, hf, member, doc) {{k, hf, DSA_FIELD_DOUBLE, doc}, offsetof(dsa_model, member), {0}}
static const field_def fields[] = {
    {{"name", NULL, DSA_FIELD_STRING, "model name"}, offsetof(dsa_model, name), {0}},
    F_INT("layers", "num_hidden_layers", n_layers, "decoder layers (all DSA)"),
    F_INT("hidden", "hidden_size", hidden, "hidden size"),
    F_INT("heads", "num_attention_heads", heads, "attention heads"),
    F_INT("q_lora", "q_lora_rank", q_lora, "query LoRA rank"),
    F_INT("kv_lora", "kv_lora_rank", kv_lora, "KV latent rank (512 in every real model)"),
    F_INT("nope", "qk_nope_head_dim", nope, "query/key non-rope head dim"),
    F_INT("rope", "qk_rope_head_dim", rope, "rope head dim (64)"),
    F_INT("v", "v_head_dim", v, "value head dim"),
    F_INT("idx_heads", "index_n_heads", idx_heads, "indexer heads"),
    F_INT("idx_dim", "index_head_dim", idx_dim, "indexer head dim (128)"),
    F_INT("topk", "index_topk", topk, "tokens selected per query"),
    F_INT("experts", "n_routed_experts", n_routed, "routed experts"),
    F_INT("active", "num_experts_per_tok", n_active, "routed experts per token"),
    F_INT("shared", "n_shared_experts", n_shared, "shared experts"),
    F_INT("moe_inter", "moe_intermediate_size", moe_inter, "expert intermediate size"),
    F_INT("first_dense", "first_k_dense_replace", first_dense, "leading dense-FFN layers"),
    F_INT("dense_inter", "intermediate_size", dense_inter, "dense FFN intermediate size"),
    F_INT("vocab", "vocab_size", vocab, "vocabulary"),
    F_INT("n_group", "n_group", n_group, "expert groups (grouped routing)"),
    F_INT("topk_group", "topk_group", topk_group, "expert groups kept per token"),
    F_INT("norm_topk", "norm_topk_prob", norm_topk, "normalise routing weights (0/1)"),
    F_DBL("routed_scale", "routed_scaling_factor", routed_scale, "routing weight scale"),
    F_DBL("rope_theta", "rope_theta", rope_theta, "RoPE base"),
    F_DBL("rms_eps", "rms_norm_eps", rms_eps, "RMSNorm epsilon"),
    {{"idx_rope", NULL, DSA_FIELD_ENUM, "indexer RoPE: interleaved (GLM) | half (DeepSeek)"},
     offsetof(dsa_model, idx_rope_half), {"interleaved", "half"}},
    {{"fp8_scale", NULL, DSA_FIELD_ENUM, "FP8 scales: fp32 | ue8m0 (powers of two)"},
     offsetof(dsa_model, fp8_ue8m0), {"fp32", "ue8m0"}},
    F_INT("index_topk_freq", "index_topk_freq", index_topk_freq, "IndexCache: F every N layers"),
    {{"index_topk_pattern", "index_topk_pattern", DSA_FIELD_STRING,
      "IndexCache: F/S per layer, overrides the freq"},
     offsetof(dsa_model, index_topk_pattern), {0}},
};
#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

int dsa_model_field_count(void) { return N_FIELDS; }
const dsa_model_field *dsa_model_field_at(int i)
{
    return i >= 0 && i < N_FIELDS ? &fields[i].pub : NULL;
}

static size_t string_cap(const field_def *f)
{
    return f->offset == offsetof(dsa_model, name) ? sizeof(((dsa_model *)0)->name)
                                                  : sizeof(((dsa_model *)0)->index_topk_pattern);
}

void dsa_model_field_format(const dsa_model *m, int i, char *buf, int len)
{
    const field_def *f = &fields[i];
    const char *p = (const char *)m + f->offset;
    switch (f->pub.type) {
    case DSA_FIELD_INT: snprintf(buf, len, "%d", *(const int *)p); break;
    case DSA_FIELD_DOUBLE: snprintf(buf, len, "%.17g", *(const double *)p); break;
    case DSA_FIELD_STRING: snprintf(buf, len, "%s", p); break;
    case DSA_FIELD_ENUM: snprintf(buf, len, "%s", f->enum_names[*(const int *)p ? 1 : 0]); break;
    }
}

static int find_field(const char *key)
{
    for (int i = 0; i < N_FIELDS; i++)
        if (strcmp(key, fields[i].pub.key) == 0 ||
            (fields[i].pub.hf_key && strcmp(key, fields[i].pub.hf_key) == 0))
            return i;
    return -1;
}

int dsa_model_set(dsa_model *m, const char *key, const char *value, dsa_err *e)
{
    int i = find_field(key);
    if (i < 0) return dsa_fail(e, DSA_EXIT_USAGE, "unknown model field '%s' (see `dsa-bench models`)", key);
    const field_def *f = &fields[i];
    char *p = (char *)m + f->offset, *end;
    switch (f->pub.type) {
    case DSA_FIELD_INT: {
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < INT_MIN || v > INT_MAX)
            return dsa_fail(e, DSA_EXIT_USAGE, "model field %s: '%s' is not an integer", key, value);
        *(int *)p = (int)v;
        break;
    }
    case DSA_FIELD_DOUBLE: {
        errno = 0;
        double v = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(v))
            return dsa_fail(e, DSA_EXIT_USAGE, "model field %s: '%s' is not a number", key, value);
        *(double *)p = v;
        break;
    }
    case DSA_FIELD_STRING:
        if (strlen(value) >= string_cap(f))
            return dsa_fail(e, DSA_EXIT_USAGE, "model field %s: value is longer than %zu characters",
                            key, string_cap(f) - 1);
        strcpy(p, value);
        break;
    case DSA_FIELD_ENUM:
        if (strcmp(value, f->enum_names[0]) == 0) *(int *)p = 0;
        else if (strcmp(value, f->enum_names[1]) == 0) *(int *)p = 1;
        else
            return dsa_fail(e, DSA_EXIT_USAGE, "model field %s: '%s' is not %s or %s", key, value,
                            f->enum_names[0], f->enum_names[1]);
        break;
    }
    return 0;
}

int dsa_model_set_kv(dsa_model *m, const char *kv, dsa_err *e)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) return dsa_fail(e, DSA_EXIT_USAGE, "--set '%s': expected key=value", kv);
    char key[64];
    size_t n = (size_t)(eq - kv);
    if (n >= sizeof key) return dsa_fail(e, DSA_EXIT_USAGE, "--set '%s': key too long", kv);
    memcpy(key, kv, n);
    key[n] = 0;
    return dsa_model_set(m, key, eq + 1, e);
}

static char *read_file(const char *path, dsa_err *e, int *rc)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        *rc = dsa_fail(e, DSA_EXIT_USAGE, "model '%s': not a preset and cannot open it as a "
                       "config.json: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(fp); *rc = dsa_fail(e, DSA_EXIT_RUNTIME, "out of memory"); return NULL; }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, 4096, fp);
        len += got;
        if (got < 4096) break;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) { free(buf); *rc = dsa_fail(e, DSA_EXIT_RUNTIME, "%s: read error", path); return NULL; }
    buf[len] = 0;
    return buf;
}

/* Fields a config.json must have; the others keep the nearest preset's values. */
static const char *const required_hf[] = {
    "hidden_size", "num_hidden_layers", "num_attention_heads", "q_lora_rank", "kv_lora_rank",
    "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "index_n_heads", "index_head_dim",
    "index_topk", "n_routed_experts", "num_experts_per_tok", "moe_intermediate_size",
    "intermediate_size", "vocab_size",
};

int dsa_model_from_json(const char *path, dsa_model *m, dsa_err *e)
{
    int rc = 0;
    char *text = read_file(path, e, &rc);
    if (!text) return rc;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return dsa_fail(e, DSA_EXIT_USAGE, "%s: not a JSON object (config.json expected)", path);
    }
    for (size_t i = 0; i < sizeof required_hf / sizeof required_hf[0]; i++)
        if (!cJSON_GetObjectItemCaseSensitive(root, required_hf[i])) {
            cJSON_Delete(root);
            return dsa_fail(e, DSA_EXIT_USAGE, "%s: missing field '%s' (not a DSA model config?)",
                            path, required_hf[i]);
        }
    /* Defaults for what a config may leave out: DeepSeek-V3.2 conventions if its model_type
     * says deepseek (half-split indexer RoPE), GLM's otherwise. */
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    int deepseek = cJSON_IsString(mt) && strstr(mt->valuestring, "deepseek");
    *m = presets[deepseek ? 1 : 2];
    m->index_topk_pattern[0] = 0;
    m->first_dense = 0;
    m->n_shared = 0;
    m->n_group = 1;
    m->topk_group = 1;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(m->assumptions, sizeof m->assumptions,
             "from %s; idx_rope %s and fp8_scale %s assumed from model_type", path,
             deepseek ? "half" : "interleaved", deepseek ? "ue8m0" : "fp32");
    snprintf(m->name, sizeof m->name, "%.63s", base);

    for (int i = 0; i < N_FIELDS; i++) {
        const char *hk = fields[i].pub.hf_key;
        if (!hk) continue;
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, hk);
        if (!it || cJSON_IsNull(it)) continue;
        char val[DSA_MAX_LAYERS + 64];
        if (cJSON_IsBool(it)) snprintf(val, sizeof val, "%d", cJSON_IsTrue(it) ? 1 : 0);
        else if (cJSON_IsNumber(it)) {
            if (fields[i].pub.type == DSA_FIELD_INT && it->valuedouble != floor(it->valuedouble)) {
                cJSON_Delete(root);
                return dsa_fail(e, DSA_EXIT_USAGE, "%s: field '%s' = %g is not an integer", path,
                                hk, it->valuedouble);
            }
            snprintf(val, sizeof val, "%.17g", it->valuedouble);
        } else if (cJSON_IsString(it))
            snprintf(val, sizeof val, "%s", it->valuestring);
        else {
            cJSON_Delete(root);
            return dsa_fail(e, DSA_EXIT_USAGE, "%s: field '%s' has the wrong JSON type", path, hk);
        }
        int r = dsa_model_set(m, hk, val, e);
        if (r) {
            char inner[sizeof e->msg];
            snprintf(inner, sizeof inner, "%s", e ? e->msg : "");
            cJSON_Delete(root);
            return dsa_fail(e, r, "%s: %s", path, inner);
        }
    }
    /* DeepSeek-V3.2 ships block-FP8 weights with scale_fmt "ue8m0". */
    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    const cJSON *fmt = qc ? cJSON_GetObjectItemCaseSensitive(qc, "scale_fmt") : NULL;
    if (cJSON_IsString(fmt)) m->fp8_ue8m0 = strcmp(fmt->valuestring, "ue8m0") == 0;
    cJSON_Delete(root);
    return dsa_model_validate(m, e);
}

int dsa_model_load(const char *spec, dsa_model *m, dsa_err *e)
{
    for (int i = 0; i < dsa_model_preset_count(); i++)
        if (strcmp(spec, presets[i].name) == 0) {
            *m = presets[i];
            return 0;
        }
    return dsa_model_from_json(spec, m, e);
}

int dsa_model_validate(const dsa_model *m, dsa_err *e)
{
    struct { const char *key; int v; } pos[] = {
        {"layers", m->n_layers}, {"hidden", m->hidden}, {"heads", m->heads},
        {"q_lora", m->q_lora}, {"nope", m->nope}, {"v", m->v}, {"idx_heads", m->idx_heads},
        {"topk", m->topk}, {"experts", m->n_routed}, {"active", m->n_active},
        {"moe_inter", m->moe_inter}, {"dense_inter", m->dense_inter}, {"vocab", m->vocab},
        {"n_group", m->n_group}, {"topk_group", m->topk_group},
        {"index_topk_freq", m->index_topk_freq},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v < 1) return dsa_fail(e, DSA_EXIT_USAGE, "model field %s = %d must be >= 1", pos[i].key, pos[i].v);
    /* The kernels are specialised to the dimensions every real DSA model shares. */
    if (m->kv_lora != 512) return dsa_fail(e, DSA_EXIT_USAGE, "kv_lora = %d: only 512 is supported (every DSA model uses 512)", m->kv_lora);
    if (m->rope != 64) return dsa_fail(e, DSA_EXIT_USAGE, "rope = %d: only 64 is supported (every DSA model uses 64)", m->rope);
    if (m->idx_dim != 128) return dsa_fail(e, DSA_EXIT_USAGE, "idx_dim = %d: only 128 is supported (every DSA model uses 128)", m->idx_dim);
    if (m->n_layers > DSA_MAX_LAYERS) return dsa_fail(e, DSA_EXIT_USAGE, "layers = %d: at most %d", m->n_layers, DSA_MAX_LAYERS);
    if (m->n_shared < 0 || m->first_dense < 0) return dsa_fail(e, DSA_EXIT_USAGE, "shared and first_dense must be >= 0");
    if (m->first_dense > m->n_layers) return dsa_fail(e, DSA_EXIT_USAGE, "first_dense = %d exceeds layers = %d", m->first_dense, m->n_layers);
    if (m->n_active > m->n_routed) return dsa_fail(e, DSA_EXIT_USAGE, "active = %d exceeds experts = %d", m->n_active, m->n_routed);
    if (m->n_routed % m->n_group) return dsa_fail(e, DSA_EXIT_USAGE, "experts = %d is not a multiple of n_group = %d", m->n_routed, m->n_group);
    if (m->topk_group > m->n_group) return dsa_fail(e, DSA_EXIT_USAGE, "topk_group = %d exceeds n_group = %d", m->topk_group, m->n_group);
    if (m->n_active > m->topk_group * (m->n_routed / m->n_group))
        return dsa_fail(e, DSA_EXIT_USAGE, "active = %d exceeds the experts in topk_group groups", m->n_active);
    if (!(m->rms_eps > 0) || !(m->rope_theta > 0)) return dsa_fail(e, DSA_EXIT_USAGE, "rms_eps and rope_theta must be > 0");
    return 0;
}

void dsa_models_print(FILE *o, const dsa_model *ms, int n)
{
    fprintf(o, "# %-20s %-24s", "field", "config.json key");
    for (int j = 0; j < n; j++) fprintf(o, " %18s", ms[j].name);
    fprintf(o, "  description\n");
    for (int i = 0; i < N_FIELDS; i++) {
        const field_def *f = &fields[i];
        if (f->offset == offsetof(dsa_model, name)) continue;
        fprintf(o, "  %-20s %-24s", f->pub.key, f->pub.hf_key ? f->pub.hf_key : "-");
        for (int j = 0; j < n; j++) {
            char v[DSA_MAX_LAYERS + 8];
            dsa_model_field_format(&ms[j], i, v, sizeof v);
            fprintf(o, " %18s", v[0] ? v : "-");
        }
        fprintf(o, "  %s\n", f->pub.doc);
    }
    for (int j = 0; j < n; j++) fprintf(o, "# %s: assumptions: %s\n", ms[j].name, ms[j].assumptions);
}
