/* The synthetic-data generators on the GPU produce exactly the reference's values (the CPU and
 * GPU runs must see the same weights), and the e4m3 filler never emits a NaN code. */
#include "gpu_harness.h"
#include "cuda_ops.h"

int main(void)
{
    gpu_env env;
    int rc = gpu_env_init(&env);
    if (rc) return rc;
    const size_t sizes[] = {1, 255, 256, 100003};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        mirror b = mirror_new(&env, n * 2), f = mirror_new(&env, n * 4);
        env.ref.fill_bf16(env.ref.ctx, b.h, n, 42 + i, 0.75f);
        env.ref.fill_f32(env.ref.ctx, f.h, n, 7 + i, 3.0f);
        CHECK_INT(env.gpu.fill_bf16(env.gpu.ctx, b.d, n, 42 + i, 0.75f), 0);
        CHECK_INT(env.gpu.fill_f32(env.gpu.ctx, f.d, n, 7 + i, 3.0f), 0);
        void *gb = mirror_down(&env, &b), *gf = mirror_down(&env, &f);
        int same = !memcmp(gb, b.h, n * 2) && !memcmp(gf, f.h, n * 4);
        printf("fill n=%zu: %s\n", n, same ? "bit-identical ok" : "FAIL");
        CHECK(same);
        free(gb), free(gf);
        mirror_free(&env, &b), mirror_free(&env, &f);
    }
    size_t n = 1 << 20;
    mirror q = mirror_new(&env, n);
    CHECK_INT(dsa_cuda_fill_e4m3(env.gpu.ctx, q.d, n, 5), 0);
    uint8_t *h = mirror_down(&env, &q);
    size_t nan = 0, hist[256] = {0};
    for (size_t i = 0; i < n; i++) nan += (h[i] & 0x7f) == 0x7f, hist[h[i]]++;
    CHECK_INT(nan, 0);
    CHECK(hist[0x01] > 0 && hist[0xfe] > 0); /* both signs, small and large codes */
    printf("fill_e4m3: %zu NaN codes in %zu\n", nan, n);
    /* through the ops table: the reference's filler gives the same codes */
    env.ref.fill_e4m3(env.ref.ctx, q.h, n, 5);
    int same = !memcmp(h, q.h, n);
    printf("fill_e4m3 n=%zu: %s\n", n, same ? "bit-identical ok" : "FAIL");
    CHECK(same);
    free(h);
    mirror_free(&env, &q);
    gpu_env_fini(&env);
    return check_done("gpu_fill");
}
