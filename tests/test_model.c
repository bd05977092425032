/* Presets, --set, and config.json parsing of DeepSeek-V3.2-like and GLM-5-like files. */
#include <stddef.h>
#include <stdlib.h>

#include "check.h"
#include "model.h"
#include "schedule.h"

static char path[1024];
static const char *data(const char *name)
{
    const char *dir = getenv("DSA_TEST_DATA");
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "data", name);
    return path;
}

int main(void)
{
    dsa_model m;
    dsa_err e = {{0}};
    /* every preset is valid, and the table's numbers are DESIGN.md §1's */
    for (int i = 0; i < dsa_model_preset_count(); i++) CHECK_INT(dsa_model_validate(dsa_model_preset_at(i), &e), 0);
    CHECK_INT(dsa_model_load("glm-4.7-flash-dsa", &m, &e), 0);
    CHECK_INT(m.n_layers, 47); CHECK_INT(m.hidden, 2048); CHECK_INT(m.heads, 20); CHECK_INT(m.q_lora, 768);
    CHECK_INT(m.nope, 192); CHECK_INT(m.v, 256); CHECK_INT(m.idx_heads, 32); CHECK_INT(m.topk, 2048);
    CHECK_INT(m.n_routed, 64); CHECK_INT(m.n_active, 4); CHECK_INT(m.moe_inter, 1536); CHECK_INT(m.vocab, 154880);
    CHECK_INT(m.idx_rope_half, 0);
    CHECK_INT(dsa_model_load("deepseek-v3.2", &m, &e), 0);
    CHECK_INT(m.idx_rope_half, 1); CHECK_INT(m.n_layers, 61); CHECK_INT(m.dense_inter, 18432);
    CHECK_INT(dsa_model_load("tiny", &m, &e), 0);
    CHECK_INT(m.topk, 64); CHECK_INT(m.kv_lora, 512); CHECK_INT(m.idx_dim, 128);

    /* --set by short and by config.json name; every field survives format -> set */
    CHECK_INT(dsa_model_set_kv(&m, "topk=128", &e), 0);
    CHECK_INT(m.topk, 128);
    CHECK_INT(dsa_model_set_kv(&m, "index_n_heads=8", &e), 0);
    CHECK_INT(m.idx_heads, 8);
    CHECK_INT(dsa_model_set_kv(&m, "idx_rope=interleaved", &e), 0);
    CHECK_INT(m.idx_rope_half, 0);
    dsa_model back;
    memset(&back, 0, sizeof back);
    for (int i = 0; i < dsa_model_field_count(); i++) {
        char v[1024];
        dsa_model_field_format(&m, i, v, sizeof v);
        CHECK_INT(dsa_model_set(&back, dsa_model_field_at(i)->key, v, &e), 0);
    }
    back.assumptions[0] = m.assumptions[0] = 0;
    CHECK(memcmp(&back, &m, offsetof(dsa_model, assumptions)) == 0);
    CHECK_INT(dsa_model_set_kv(&m, "nosuch=1", &e), DSA_EXIT_USAGE);
    CHECK(strstr(e.msg, "unknown model field 'nosuch'") != NULL);
    CHECK_INT(dsa_model_set_kv(&m, "topk=12x", &e), DSA_EXIT_USAGE);
    CHECK(strstr(e.msg, "'12x' is not an integer") != NULL);
    CHECK_INT(dsa_model_set_kv(&m, "topk", &e), DSA_EXIT_USAGE);
    CHECK_INT(dsa_model_set_kv(&m, "fp8_scale=ue9m0", &e), DSA_EXIT_USAGE);
    CHECK_INT(dsa_model_set_kv(&m, "kv_lora=256", &e), 0);
    CHECK_INT(dsa_model_validate(&m, &e), DSA_EXIT_USAGE);
    CHECK(strstr(e.msg, "kv_lora = 256") != NULL);

    /* a DeepSeek-V3.2-like config.json */
    CHECK_INT(dsa_model_load(data("deepseek-v3.2-config.json"), &m, &e), 0);
    CHECK_INT(m.n_layers, 61); CHECK_INT(m.hidden, 7168); CHECK_INT(m.heads, 128); CHECK_INT(m.q_lora, 1536);
    CHECK_INT(m.nope, 128); CHECK_INT(m.v, 128); CHECK_INT(m.idx_heads, 64); CHECK_INT(m.topk, 2048);
    CHECK_INT(m.n_routed, 256); CHECK_INT(m.n_active, 8); CHECK_INT(m.n_shared, 1); CHECK_INT(m.first_dense, 3);
    CHECK_INT(m.n_group, 8); CHECK_INT(m.topk_group, 4); CHECK_INT(m.norm_topk, 1); CHECK_INT(m.vocab, 129280);
    CHECK_NEAR(m.routed_scale, 2.5, 0); CHECK_NEAR(m.rms_eps, 1e-6, 0);
    CHECK_INT(m.idx_rope_half, 1); CHECK_INT(m.fp8_ue8m0, 1); CHECK_INT(m.index_topk_freq, 4);
    char fs[DSA_MAX_LAYERS + 1];
    CHECK_INT(dsa_schedule_resolve("model", &m, 61, fs, &e), 0);
    CHECK_INT(dsa_schedule_count_full(fs), 16); /* 0 and 1 + 4k for k = 0..14 */

    /* a GLM-5-like config.json with its searched pattern */
    CHECK_INT(dsa_model_load(data("glm-5-config.json"), &m, &e), 0);
    CHECK_INT(m.n_layers, 78); CHECK_INT(m.hidden, 6144); CHECK_INT(m.heads, 64); CHECK_INT(m.nope, 192);
    CHECK_INT(m.v, 256); CHECK_INT(m.idx_heads, 32); CHECK_INT(m.dense_inter, 12288); CHECK_INT(m.vocab, 154880);
    CHECK_INT(m.idx_rope_half, 0); CHECK_INT(m.fp8_ue8m0, 0);
    CHECK_INT((int)strlen(m.index_topk_pattern), 78);
    CHECK_INT(dsa_schedule_resolve("model", &m, 78, fs, &e), 0);
    CHECK_INT(dsa_schedule_count_full(fs), 40);

    /* bad files: usage errors naming the file and the problem */
    CHECK_INT(dsa_model_load(data("truncated-config.json"), &m, &e), DSA_EXIT_USAGE);
    CHECK(strstr(e.msg, "not a JSON object") != NULL);
    CHECK_INT(dsa_model_load(data("llama-config.json"), &m, &e), DSA_EXIT_USAGE);
    CHECK(strstr(e.msg, "missing field 'num_hidden_layers'") != NULL);
    CHECK_INT(dsa_model_load("no-such-model", &m, &e), DSA_EXIT_USAGE);
    CHECK(strstr(e.msg, "not a preset") != NULL);
    return check_done("test_model");
}
