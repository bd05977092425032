/* src/model.h — model shapes: presets (DESIGN.md §1), Hugging Face config.json, --set. */
#ifndef DSA_MODEL_H
#define DSA_MODEL_H

#include "err.h"

#define DSA_MAX_LAYERS 512

typedef struct dsa_model {
    char name[64];
    int n_layers, hidden, heads, q_lora, kv_lora, nope, rope, v;
    int idx_heads, idx_dim, topk;
    int n_routed, n_active, n_shared, moe_inter, first_dense, dense_inter, vocab;
    int n_group, topk_group, norm_topk;
    int idx_rope_half;  /* 1: DeepSeek-V3.2 (half split), 0: GLM (interleaved) */
    int fp8_ue8m0;      /* 1: scales rounded up to powers of two (DeepSeek-V3.2) */
    double rope_theta, rms_eps, routed_scale;
    int index_topk_freq;                    /* 1 = every layer F */
    char index_topk_pattern[DSA_MAX_LAYERS + 1]; /* "" = none; overrides the freq */
    char assumptions[512];                  /* which values are assumed, for `models` */
} dsa_model;

/* Field table, so `models`, --set, config.json and the HDF5 /model group share one list. */
enum dsa_field_type { DSA_FIELD_INT, DSA_FIELD_DOUBLE, DSA_FIELD_STRING, DSA_FIELD_ENUM };
typedef struct dsa_model_field {
    const char *key;    /* short name used by --set, `models` and HDF5 */
    const char *hf_key; /* config.json name, NULL when it has none */
    int type;
    const char *doc;
} dsa_model_field;

int dsa_model_field_count(void);
const dsa_model_field *dsa_model_field_at(int i);
/* Text of field i of m ("2048", "ue8m0", ...). */
void dsa_model_field_format(const dsa_model *m, int i, char *buf, int len);
/* Set a field by short or HF key from text; usage error naming key and value. */
int dsa_model_set(dsa_model *m, const char *key, const char *value, dsa_err *e);
/* "key=value" */
int dsa_model_set_kv(dsa_model *m, const char *kv, dsa_err *e);

int dsa_model_preset_count(void);
const dsa_model *dsa_model_preset_at(int i);
/* `spec` is a preset name or the path of a config.json. */
int dsa_model_load(const char *spec, dsa_model *m, dsa_err *e);
int dsa_model_from_json(const char *path, dsa_model *m, dsa_err *e);
/* Usage error when shapes are impossible (non-positive sizes, topk_group > n_group, ...). */
int dsa_model_validate(const dsa_model *m, dsa_err *e);


#include <stdio.h>
/* Every field of every model as a table: one row per field, one column per model, then the
 * assumptions of each. */
void dsa_models_print(FILE *o, const dsa_model *models, int n);
#endif
