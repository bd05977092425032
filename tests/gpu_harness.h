/* tests/gpu_harness.h — what the GPU tests share: both ops tables (CUDA and the C reference),
 * buffers mirrored on host and device, and the error measures. Every kernel is run through
 * its dsa_ops member with the same arguments the reference gets, so a test is
 *   ref.op(ref.ctx, host...);  gpu.op(gpu.ctx, device...);  compare. */
#ifndef DSA_TEST_GPU_HARNESS_H
#define DSA_TEST_GPU_HARNESS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cuda_ctx.h"
#include "ref.h"

typedef struct gpu_env {
    dsa_ops gpu, ref;
} gpu_env;

/* 0, or 77 (skip) when there is no GPU. */
/* A deterministic host-side random stream (xorshift64) for a test's inputs. */
typedef struct test_rng {
    uint64_t s; /* any non-zero seed */
} test_rng;

static inline uint32_t test_rnd(test_rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (uint32_t)(r->s >> 32);
}

static inline float test_rnd_unit(test_rng *r) { return (float)(test_rnd(r) >> 8) * (1.0f / 16777216.0f); } /* [0, 1) */

/* A valid e4m3 code, any sign and magnitude (the NaN codes become +-448). */
static inline uint8_t test_rnd_e4m3(test_rng *r)
{
    uint8_t b = (uint8_t)test_rnd(r);
    if ((b & 0x7F) == 0x7F) b ^= 1;
    return b;
}

static inline void test_fill_e4m3(test_rng *r, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = test_rnd_e4m3(r);
}

static int gpu_env_init(gpu_env *env)
{
    char err[256];
    if (dsa_cuda_ops_init(&env->gpu, 0, err, sizeof err)) {
        printf("skipped: %s\n", err);
        return 77;
    }
    if (dsa_ref_ops_init(&env->ref)) {
        fprintf(stderr, "cannot set up the reference\n");
        exit(1);
    }
    return 0;
}

static void gpu_env_fini(gpu_env *env)
{
    dsa_cuda_ops_fini(&env->gpu);
    dsa_ref_ops_fini(&env->ref);
}

/* Host copy h and device copy d of the same bytes. */
typedef struct mirror {
    void *h, *d;
    size_t bytes;
} mirror;

static void gpu_die(gpu_env *env, const char *what)
{
    fprintf(stderr, "%s: %s\n", what, env->gpu.last_error(env->gpu.ctx));
    exit(1);
}

/* Die with the op's message when a GPU (gpu_ok) or reference (ref_ok) op failed, or a CUDA
 * runtime call (cuda_ok); host allocations that cannot fail quietly (xmalloc, zeroed). */
static inline void gpu_ok(gpu_env *env, int rc, const char *what)
{
    if (rc) gpu_die(env, what);
}

static inline void ref_ok(gpu_env *env, int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "%s (reference): %s\n", what, env->ref.last_error(env->ref.ctx));
        exit(1);
    }
}

static inline void cuda_ok(cudaError_t st, const char *what)
{
    if (st != cudaSuccess) {
        fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(st));
        exit(1);
    }
}

static inline void *xmalloc(size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of host memory\n");
        exit(1);
    }
    return p;
}

/* Host memory is poisoned (0xA5) so an unwritten output cannot pass as a right one. */
static mirror mirror_new(gpu_env *env, size_t bytes)
{
    mirror m = {malloc(bytes ? bytes : 1), NULL, bytes};
    if (!m.h) { fprintf(stderr, "out of host memory\n"); exit(1); }
    memset(m.h, 0xA5, bytes);
    if (env->gpu.alloc(env->gpu.ctx, &m.d, bytes ? bytes : 1)) gpu_die(env, "alloc");
    if (bytes && env->gpu.upload(env->gpu.ctx, m.d, m.h, bytes)) gpu_die(env, "upload");
    return m;
}

static void mirror_up(gpu_env *env, mirror *m)
{
    if (m->bytes && env->gpu.upload(env->gpu.ctx, m->d, m->h, m->bytes)) gpu_die(env, "upload");
}

/* A mirror holding a copy of `bytes` host bytes, on the device too. */
static mirror mirror_copy(gpu_env *env, const void *src, size_t bytes)
{
    mirror m = mirror_new(env, bytes);
    memcpy(m.h, src, bytes);
    mirror_up(env, &m);
    return m;
}

/* Device -> a fresh host buffer (caller frees). Syncs, and checks the stream for errors. */
static void *mirror_down(gpu_env *env, const mirror *m)
{
    void *h = malloc(m->bytes ? m->bytes : 1);
    if (!h) { fprintf(stderr, "out of host memory\n"); exit(1); }
    if (m->bytes && env->gpu.download(env->gpu.ctx, h, m->d, m->bytes)) gpu_die(env, "download");
    return h;
}

static void mirror_free(gpu_env *env, mirror *m)
{
    free(m->h);
    env->gpu.release(env->gpu.ctx, m->d);
    m->h = m->d = NULL;
}

/* Random bf16 / fp32 contents, the same on host and device. */
static mirror mirror_rand_bf16(gpu_env *env, size_t n, uint64_t seed, float scale)
{
    mirror m = mirror_new(env, n * sizeof(bf16_t));
    env->ref.fill_bf16(env->ref.ctx, m.h, n, seed, scale);
    mirror_up(env, &m);
    return m;
}

static mirror mirror_rand_f32(gpu_env *env, size_t n, uint64_t seed, float scale)
{
    mirror m = mirror_new(env, n * sizeof(float));
    env->ref.fill_f32(env->ref.ctx, m.h, n, seed, scale);
    mirror_up(env, &m);
    return m;
}

/* A linear layer's weight mirrored on host and device. bf16: uniform * k^-0.5. FP8: random e4m3
 * codes of uniform values in [-2, 2), one positive scale per 128x128 block around k^-0.5 / 2. */
typedef struct test_weight {
    mirror data, scale;
    dsa_weight h, d; /* the same weight with host / device pointers */
} test_weight;

static inline test_weight test_weight_new(gpu_env *env, int n, int k, int fp8, uint64_t seed)
{
    test_weight w;
    memset(&w, 0, sizeof w);
    if (!fp8) {
        w.data = mirror_rand_bf16(env, (size_t)n * k, seed, 1.0f / sqrtf((float)k));
    } else {
        w.data = mirror_new(env, (size_t)n * k);
        uint8_t *q = w.data.h;
        for (size_t i = 0; i < (size_t)n * k; i++) q[i] = dsa_f32_to_e4m3(2.0f * dsa_rand_uniform(seed, i));
        mirror_up(env, &w.data);
        const int nbn = (n + 127) / 128, nkb = (k + 127) / 128;
        w.scale = mirror_new(env, (size_t)nbn * nkb * 4);
        float *s = w.scale.h;
        for (int i = 0; i < nbn * nkb; i++)
            s[i] = (0.75f + 0.25f * dsa_rand_uniform(seed ^ 0x9e37u, i)) * 0.5f / sqrtf((float)k);
        mirror_up(env, &w.scale);
    }
    dsa_weight base = {fp8 ? DSA_FP8_E4M3 : DSA_BF16, n, k, NULL, NULL};
    w.h = base, w.d = base;
    w.h.data = w.data.h, w.d.data = w.data.d;
    if (fp8) w.h.scale = w.scale.h, w.d.scale = w.scale.d;
    return w;
}

static inline void test_weight_free(gpu_env *env, test_weight *w)
{
    mirror_free(env, &w->data);
    if (w->scale.h) mirror_free(env, &w->scale);
}

/* ||a - b|| / ||b|| over n bf16 or fp32 values; NaN or Inf anywhere in a gives +inf. */
static double rel_err_bf16(const bf16_t *a, const bf16_t *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double x = dsa_bf16_to_f32(a[i]), y = dsa_bf16_to_f32(b[i]);
        if (!isfinite(x)) return INFINITY;
        num += (x - y) * (x - y);
        den += y * y;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double rel_err_f32(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isinf(b[i]) && a[i] == b[i]) continue; /* -inf where both mask */
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Prints one result line and counts a failure when err > tol (NaN fails too). */
static void expect_close(const char *what, double err, double tol)
{
    int ok = err <= tol;
    printf("%-60s rel err %.3e (tol %.1e) %s\n", what, err, tol, ok ? "ok" : "FAIL");
    if (!ok) check_failures++;
}

#endif
