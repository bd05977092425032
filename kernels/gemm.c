/* kernels/gemm.c — linear layers through cuBLASLt: D = A . W^T (+ residual) (kernels/ops.h).
 *
 * Row-major to cuBLASLt's column-major: D^T[n, m] = W[n, k] . A^T, so cuBLASLt's "A" is the
 * weight (stored k x n, ld k, transa = T), its "B" the activations (stored k x m, ld lda,
 * transb = N), C = residual with beta = 1 (or beta = 0), D stored n x m with ld ldd. Compute and
 * scale type fp32, so the result is rounded to bf16 once, after the residual add (the
 * reference's order). cuBLASLt supports C == D, so the residual may alias D.
 *
 * Plans: one cuBLASLt descriptor set and algorithm per problem, chosen once with
 * cublasLtMatmulAlgoGetHeuristic and cached in ctx->gemm_plans (DSA_GEMM_CACHE entries; when
 * full, an entry chosen by hashing the key is destroyed and rebuilt). The cache key is
 * (m, n, k, lda, ldd, kind, residual | alignment): plan->dtype holds the KIND_* flags below and
 * plan->residual the residual flag plus the operands' guaranteed alignment (capped at 16 B, the
 * TMA granule, so a plan stays valid for any 16-byte aligned pointers). For strided-batched
 * plans the rest of the key (batch count, strides, ld of W) is read back from the cached
 * layouts. A problem cuBLASLt has no algorithm for is cached too (used = 2).
 *
 * FP8 weights (dtype DSA_FP8_E4M3, one fp32 scale per 128x128 block): the activations are first
 * quantised to e4m3 with one scale per 1x128 block (quant_fp8.cu; the reference's numbers), then
 * one block-scaled GEMM: cuBLASLt's A (the weight) in BLK128x128_32F mode, B (the activations)
 * in VEC128_32F mode, fp32 accumulation (no fast accumulation). Scale layouts (as PyTorch's
 * blockwise scaled_mm passes them to cuBLASLt): activations scale[kb * m + row] (rows
 * contiguous); weight scale[nb * round_up(ceil(k/128), 4) + kb], our dsa_weight layout when
 * ceil(k/128) % 4 == 0, otherwise re-strided into scratch first. If cuBLASLt offers no
 * algorithm for the exact problem (suspected case: a row count whose scale vector is not
 * 16-byte aligned, m % 4 != 0), the rows are padded to a multiple of 16 and the GEMM runs into
 * a scratch (residual copied in first, so still one rounding), whose m real rows are copied
 * to D.
 *
 * Besides the ops-table entry dsa_cuda_gemm, internal entry points serve moe.cu and mla_proj.cu
 * (gemm_internal.h): dsa_cuda_gemm_ex (caller-provided FP8 scratch, optional fp32 output, and
 * the stream and cuBLASLt workspace to run on, so that the MoE's per-expert FP8 GEMMs go to the
 * side streams without touching the context), dsa_cuda_gemm_ws_bytes (that scratch's size),
 * dsa_cuda_gemm_heads (bf16 strided-batched, one batch entry per attention head) and
 * dsa_cuda_gemm_ptr_array (bf16 pointer-array batch, also on a given stream). */
#include <stdint.h>
#include <string.h>

#include "cuda_ops.h"

#include "gemm_internal.h"

enum {
    KIND_FP8 = 1,     /* e4m3 operands with block scales */
    KIND_F32_OUT = 2, /* D (and C) fp32 instead of bf16 */
    KIND_W_KN = 4,    /* W stored [k, n] row-major (transa = N) instead of [n, k] */
    KIND_BATCHED = 8,  /* strided batch: batch, strides and ld of W are checked on the layouts */
    KIND_PTR_ARRAY = 16 /* pointer-array batch; the batch count is set on the layouts per call */
};
enum { FP8_BLOCK = 128, FP8_PAD_ROWS = 16, PLAN_NO_ALGO = 2 };

typedef struct lt_problem {
    int kind;
    int m, n, k, batch;
    int lda, ldw, ldd;
    long long sa, sw, sd; /* batch strides in elements (0 when batch == 1) */
    int residual;
    unsigned align;       /* guaranteed alignment of every operand, bytes, <= 16 */
} lt_problem;

static size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

/* Largest power of two <= 16 dividing the address, the leading dimension and the batch
 * stride (all in bytes): what cuBLASLt's MIN_ALIGNMENT preferences ask for. */
static unsigned align_of(const void *p, long long ld_bytes, long long stride_bytes)
{
    uint64_t v = (uint64_t)(uintptr_t)p | (uint64_t)ld_bytes | (uint64_t)stride_bytes;
    unsigned a = 16;
    while (a > 1 && (v & (a - 1))) a >>= 1;
    return a;
}

static unsigned min_u(unsigned a, unsigned b) { return a < b ? a : b; }

static void plan_destroy(dsa_gemm_plan *pl)
{
    if (pl->c) cublasLtMatrixLayoutDestroy(pl->c);
    if (pl->b) cublasLtMatrixLayoutDestroy(pl->b);
    if (pl->a) cublasLtMatrixLayoutDestroy(pl->a);
    if (pl->desc) cublasLtMatmulDescDestroy(pl->desc);
    memset(pl, 0, sizeof *pl);
}

static int layout_matches(cublasLtMatrixLayout_t l, int64_t ld, int32_t batch, int64_t stride)
{
    int64_t v_ld = -1, v_stride = -1;
    int32_t v_batch = -1;
    size_t w;
    if (cublasLtMatrixLayoutGetAttribute(l, CUBLASLT_MATRIX_LAYOUT_LD, &v_ld, sizeof v_ld, &w) ||
        cublasLtMatrixLayoutGetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &v_batch, sizeof v_batch, &w) ||
        cublasLtMatrixLayoutGetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &v_stride, sizeof v_stride, &w))
        return 0;
    return v_ld == ld && v_batch == batch && v_stride == stride;
}

static int plan_matches(const dsa_gemm_plan *pl, const lt_problem *p)
{
    if (!pl->used || pl->m != p->m || pl->n != p->n || pl->k != p->k || pl->lda != p->lda || pl->ldd != p->ldd ||
        pl->dtype != p->kind || pl->residual != (p->residual | (int)(p->align << 1)))
        return 0;
    if (!(p->kind & KIND_BATCHED)) return 1;
    return layout_matches(pl->a, p->ldw, p->batch, p->sw) && layout_matches(pl->b, p->lda, p->batch, p->sa) &&
           layout_matches(pl->c, p->ldd, p->batch, p->sd);
}

static unsigned plan_hash(const lt_problem *p)
{
    uint32_t h = 2166136261u;
    const int batch = (p->kind & KIND_PTR_ARRAY) ? 0 : p->batch; /* a pointer-array plan serves any count */
    const int f[] = {p->kind, p->m, p->n, p->k, p->lda, p->ldd, batch, p->residual, (int)p->align};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) h = (h ^ (uint32_t)f[i]) * 16777619u;
    return h;
}

#define LT_TRY(call, what)                                                                          \
    do {                                                                                            \
        cublasStatus_t st_ = (call);                                                                \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            plan_destroy(pl);                                                                       \
            return dsa_cuda_fail(c, "%s: cuBLASLt %s: %s", op, what, cublasLtGetStatusString(st_)); \
        }                                                                                           \
    } while (0)

/* Builds the descriptors of problem p into the empty slot pl and asks for an algorithm. The
 * FP8 scale pointers of this call are set before the heuristic (they are reset per call). */
static int plan_build(dsa_cuda_ctx *c, const char *op, const lt_problem *p, const float *w_scale,
                      const float *a_scale, dsa_gemm_plan *pl)
{
    const int fp8 = p->kind & KIND_FP8, kn = p->kind & KIND_W_KN;
    const cudaDataType_t tin = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
    const cudaDataType_t tout = (p->kind & KIND_F32_OUT) ? CUDA_R_32F : CUDA_R_16BF;
    const cublasOperation_t ta = kn ? CUBLAS_OP_N : CUBLAS_OP_T, tb = CUBLAS_OP_N;
    memset(pl, 0, sizeof *pl);
    LT_TRY(cublasLtMatmulDescCreate(&pl->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "descriptor");
    LT_TRY(cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "transa");
    LT_TRY(cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "transb");
    if (fp8) {
        const int32_t a_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, b_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
        const void *wsp = w_scale, *asp = a_scale;
        LT_TRY(cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &a_mode, sizeof a_mode), "A scale mode");
        LT_TRY(cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &b_mode, sizeof b_mode), "B scale mode");
        LT_TRY(cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &wsp, sizeof wsp), "A scales");
        LT_TRY(cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &asp, sizeof asp), "B scales");
    }
    LT_TRY(cublasLtMatrixLayoutCreate(&pl->a, tin, kn ? p->n : p->k, kn ? p->k : p->n, p->ldw), "layout of W");
    LT_TRY(cublasLtMatrixLayoutCreate(&pl->b, tin, p->k, p->m, p->lda), "layout of A");
    LT_TRY(cublasLtMatrixLayoutCreate(&pl->c, tout, p->n, p->m, p->ldd), "layout of D");
    if (p->kind & KIND_PTR_ARRAY) {
        const int32_t mode = CUBLASLT_BATCH_MODE_POINTER_ARRAY, batch = p->batch;
        cublasLtMatrixLayout_t ls[3] = {pl->a, pl->b, pl->c};
        for (int i = 0; i < 3; i++) {
            LT_TRY(cublasLtMatrixLayoutSetAttribute(ls[i], CUBLASLT_MATRIX_LAYOUT_BATCH_MODE, &mode, sizeof mode), "batch mode");
            LT_TRY(cublasLtMatrixLayoutSetAttribute(ls[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch), "batch");
        }
    }
    if (p->kind & KIND_BATCHED) {
        const int32_t batch = p->batch;
        const int64_t sw = p->sw, sa = p->sa, sd = p->sd;
        LT_TRY(cublasLtMatrixLayoutSetAttribute(pl->a, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch), "batch");
        LT_TRY(cublasLtMatrixLayoutSetAttribute(pl->b, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch), "batch");
        LT_TRY(cublasLtMatrixLayoutSetAttribute(pl->c, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch), "batch");
        LT_TRY(cublasLtMatrixLayoutSetAttribute(pl->a, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sw, sizeof sw), "stride");
        LT_TRY(cublasLtMatrixLayoutSetAttribute(pl->b, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sa, sizeof sa), "stride");
        LT_TRY(cublasLtMatrixLayoutSetAttribute(pl->c, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sd, sizeof sd), "stride");
    }
    cublasLtMatmulPreference_t pref = NULL;
    LT_TRY(cublasLtMatmulPreferenceCreate(&pref), "preference");
    const uint64_t ws = c->lt_ws_bytes;
    const uint32_t align = p->align;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (!st) st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align, sizeof align);
    if (!st) st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align, sizeof align);
    if (!st) st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align, sizeof align);
    if (!st) st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align, sizeof align);
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    memset(&heur, 0, sizeof heur);
    if (!st) {
        st = cublasLtMatmulAlgoGetHeuristic(c->lt, pl->desc, pl->a, pl->b, pl->c, pl->c, pref, 1, &heur, &found);
        /* "not supported" is an answer (no algorithm), not an error */
        if (st == CUBLAS_STATUS_NOT_SUPPORTED) st = CUBLAS_STATUS_SUCCESS, found = 0;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    LT_TRY(st, "heuristic");
    pl->used = found > 0 ? 1 : PLAN_NO_ALGO;
    pl->algo = heur.algo;
    pl->m = p->m, pl->n = p->n, pl->k = p->k, pl->lda = p->lda, pl->ldd = p->ldd;
    pl->dtype = p->kind;
    pl->residual = p->residual | (int)(p->align << 1);
    return DSA_OK;
}
#undef LT_TRY

/* The cached plan of p, built on first use. */
static int plan_get(dsa_cuda_ctx *c, const char *op, const lt_problem *p, const float *w_scale, const float *a_scale,
                    dsa_gemm_plan **out)
{
    /* Open addressing from the problem's hash: a probe ends at the first unused entry (not
     * cached). Entries are only ever replaced in place, so probe chains keep no holes (except
     * after a failed build, which at worst builds a plan twice). A full scan per GEMM cost
     * ~128 x 256 comparisons per MoE call on the host's critical path after its sync. */
    const unsigned h = plan_hash(p);
    dsa_gemm_plan *slot = NULL;
    for (int i = 0; i < DSA_GEMM_CACHE; i++) {
        dsa_gemm_plan *pl = &c->gemm_plans[(h + (unsigned)i) % DSA_GEMM_CACHE];
        if (!pl->used) {
            slot = pl;
            break;
        }
        if (plan_matches(pl, p)) {
            *out = pl;
            return DSA_OK;
        }
    }
    if (!slot) { /* full: replace one entry (descriptors are not referenced after enqueue) */
        slot = &c->gemm_plans[h % DSA_GEMM_CACHE];
        plan_destroy(slot);
    }
    int rc = plan_build(c, op, p, w_scale, a_scale, slot);
    if (rc) return rc;
    *out = slot;
    return DSA_OK;
}

static int plan_run_on(dsa_cuda_ctx *c, const char *op, dsa_gemm_plan *pl, const void *W, const void *A,
                       const void *residual, void *D, const float *w_scale, const float *a_scale, cudaStream_t stream,
                       void *lt_ws, size_t lt_ws_bytes)
{
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    if (pl->dtype & KIND_FP8) {
        const void *wsp = w_scale, *asp = a_scale;
        st = cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &wsp, sizeof wsp);
        if (!st) st = cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &asp, sizeof asp);
    }
    const float alpha = 1.0f, beta = residual ? 1.0f : 0.0f;
    if (!st)
        st = cublasLtMatmul(c->lt, pl->desc, &alpha, W, pl->a, A, pl->b, &beta, residual ? residual : D, pl->c, D, pl->c,
                            &pl->algo, lt_ws, lt_ws_bytes, stream);
    if (st != CUBLAS_STATUS_SUCCESS)
        return dsa_cuda_fail(c, "%s: cublasLtMatmul (m %d, n %d, k %d): %s", op, pl->m, pl->n, pl->k,
                             cublasLtGetStatusString(st));
    return dsa_cuda_check(c, op);
}

static int plan_run(dsa_cuda_ctx *c, const char *op, dsa_gemm_plan *pl, const void *W, const void *A,
                    const void *residual, void *D, const float *w_scale, const float *a_scale)
{
    return plan_run_on(c, op, pl, W, A, residual, D, w_scale, a_scale, c->stream, c->lt_ws, c->lt_ws_bytes);
}

static int check_weight(dsa_cuda_ctx *c, const char *op, const dsa_weight *W)
{
    if (!W || !W->data) return dsa_cuda_fail(c, "%s: weight is NULL", op);
    if (W->n <= 0 || W->k <= 0) return dsa_cuda_fail(c, "%s: weight shape [%d, %d]", op, W->n, W->k);
    if (W->dtype == DSA_FP8_E4M3) {
        if (!W->scale) return dsa_cuda_fail(c, "%s: FP8 weight without block scales", op);
        if (W->k % 16)
            return dsa_cuda_fail(c, "%s: FP8 weight with k = %d: cuBLASLt needs k to be a multiple of 16", op, W->k);
    } else if (W->dtype != DSA_BF16) {
        return dsa_cuda_fail(c, "%s: weight dtype %d is neither bf16 nor fp8 e4m3", op, W->dtype);
    }
    return DSA_OK;
}

/* FP8 scratch: e4m3 activations (rows padded to 16), their 1x128 scales, the re-strided
 * weight scales when ceil(k/128) % 4 != 0, and (padded fallback only) the padded result. */
typedef struct fp8_ws_layout {
    size_t aq, sa, sw, tmp, total;
    int rows_pad, nkb, nkb4, nbn, ld_tmp;
} fp8_ws_layout;

static fp8_ws_layout fp8_layout(int m, const dsa_weight *W, int with_fallback)
{
    fp8_ws_layout L;
    L.rows_pad = (int)round_up((size_t)m, FP8_PAD_ROWS);
    L.nkb = (W->k + FP8_BLOCK - 1) / FP8_BLOCK;
    L.nkb4 = (int)round_up((size_t)L.nkb, 4);
    L.nbn = (W->n + FP8_BLOCK - 1) / FP8_BLOCK;
    L.ld_tmp = (int)round_up((size_t)W->n, 8); /* 16-byte rows as bf16 or fp32 */
    size_t off = 0;
    L.aq = off, off += round_up((size_t)L.rows_pad * W->k, 256);
    L.sa = off, off += round_up((size_t)L.nkb * L.rows_pad * sizeof(float), 256);
    L.sw = off, off += L.nkb % 4 ? round_up((size_t)L.nbn * L.nkb4 * sizeof(float), 256) : 0;
    L.tmp = off, off += with_fallback ? round_up((size_t)L.rows_pad * L.ld_tmp * sizeof(float), 256) : 0;
    L.total = off;
    return L;
}

static lt_problem fp8_problem(int m, const dsa_weight *W, int ldd, int d_f32, int residual, unsigned align)
{
    lt_problem p;
    memset(&p, 0, sizeof p);
    p.kind = KIND_FP8 | (d_f32 ? KIND_F32_OUT : 0);
    p.m = m, p.n = W->n, p.k = W->k, p.batch = 1;
    p.lda = W->k, p.ldw = W->k, p.ldd = ldd;
    p.residual = residual;
    p.align = align;
    return p;
}

/* Alignment of D (and of the residual, which shares its layout); a NULL D stands for a
 * 16-byte aligned buffer (a caller sizing scratch before it has carved it). */
static unsigned out_align(const void *D, const void *residual, int ldd, int d_f32)
{
    const long long ld_bytes = (long long)ldd * (d_f32 ? 4 : 2);
    unsigned a = D ? align_of(D, ld_bytes, 0) : align_of(NULL, ld_bytes, 0);
    if (residual) a = min_u(a, align_of(residual, ld_bytes, 0));
    return a;
}

/* The plan of the direct FP8 problem (activations quantised to an e4m3 copy with ld = k,
 * which lives in 256-byte aligned scratch). */
static int fp8_direct_plan(dsa_cuda_ctx *c, const char *op, int m, const dsa_weight *W, const void *D, int ldd,
                           int d_f32, const bf16_t *residual, dsa_gemm_plan **pl)
{
    lt_problem p = fp8_problem(m, W, ldd, d_f32, residual != NULL,
                               min_u(align_of(W->data, W->k, 0), out_align(D, residual, ldd, d_f32)));
    return plan_get(c, op, &p, W->scale, W->scale, pl);
}

size_t dsa_cuda_gemm_ws_bytes(void *ctx, int m, const dsa_weight *W, const void *D, int ldd, int d_f32,
                              const bf16_t *residual)
{
    dsa_cuda_ctx *c = ctx;
    if (!W || W->dtype != DSA_FP8_E4M3 || m <= 0 || W->n <= 0 || W->k <= 0) return 0;
    /* A failure to build the plan is reported by the GEMM call itself; here it only means
     * "reserve the fallback too", so the error message is left as it was. */
    dsa_gemm_plan *pl = NULL;
    char saved[sizeof c->err];
    memcpy(saved, c->err, sizeof saved);
    const int direct = fp8_direct_plan(c, "gemm", m, W, D, ldd, d_f32, residual, &pl) == DSA_OK && pl->used == 1;
    memcpy(c->err, saved, sizeof saved);
    return fp8_layout(m, W, !direct).total;
}

int dsa_cuda_gemm_ex(void *ctx, const char *op, const bf16_t *A, int lda, int m, const dsa_weight *W,
                     const bf16_t *residual, void *D, int ldd, int d_f32, void *ws, size_t ws_bytes,
                     cudaStream_t stream, void *lt_ws)
{
    dsa_cuda_ctx *c = ctx;
    int rc = check_weight(c, op, W);
    if (rc) return rc;
    if (m < 0) return dsa_cuda_fail(c, "%s: m = %d is negative", op, m);
    if (lda < W->k || ldd < W->n)
        return dsa_cuda_fail(c, "%s: lda = %d must be >= k = %d and ldd = %d >= n = %d", op, lda, W->k, ldd, W->n);
    if (m == 0) return DSA_OK;
    if (!A || !D) return dsa_cuda_fail(c, "%s: A or D is NULL", op);
    if (d_f32 && residual) return dsa_cuda_fail(c, "%s: an fp32 output takes no residual", op);
    const unsigned align_d = out_align(D, residual, ldd, d_f32);
    dsa_gemm_plan *pl = NULL;

    if (W->dtype == DSA_BF16) {
        lt_problem p;
        memset(&p, 0, sizeof p);
        p.kind = d_f32 ? KIND_F32_OUT : 0;
        p.m = m, p.n = W->n, p.k = W->k, p.batch = 1;
        p.lda = lda, p.ldw = W->k, p.ldd = ldd;
        p.residual = residual != NULL;
        p.align = min_u(min_u(align_of(A, (long long)lda * 2, 0), align_of(W->data, (long long)W->k * 2, 0)), align_d);
        if ((rc = plan_get(c, op, &p, NULL, NULL, &pl))) return rc;
        if (pl->used != 1)
            return dsa_cuda_fail(c, "%s: cuBLASLt has no bf16 algorithm for m %d, n %d, k %d, lda %d, ldd %d", op, m,
                                 W->n, W->k, lda, ldd);
        return plan_run_on(c, op, pl, W->data, A, residual, D, NULL, NULL, stream, lt_ws, c->lt_ws_bytes);
    }

    /* FP8: the direct problem first. */
    if ((rc = fp8_direct_plan(c, op, m, W, D, ldd, d_f32, residual, &pl))) return rc;
    const int direct = pl->used == 1;
    const fp8_ws_layout L = fp8_layout(m, W, !direct);
    if (!ws || ws_bytes < L.total)
        return dsa_cuda_fail(c, "%s: FP8 scratch of %zu bytes, %zu needed", op, ws_bytes, L.total);
    uint8_t *base = ws;
    uint8_t *aq = base + L.aq;
    float *sa = (float *)(base + L.sa);
    void *tmp = base + L.tmp;
    const float *w_scale = W->scale;
    if (L.nkb % 4) {
        float *sw = (float *)(base + L.sw);
        if ((rc = dsa_cuda_pad_block_scales(c, stream, W->scale, L.nbn, L.nkb, L.nkb4, sw))) return rc;
        w_scale = sw;
    }
    if (direct) {
        if ((rc = dsa_cuda_quant_e4m3_rows(c, stream, A, lda, m, m, W->k, aq, sa))) return rc;
        return plan_run_on(c, op, pl, W->data, aq, residual, D, w_scale, sa, stream, lt_ws, c->lt_ws_bytes);
    }
    /* Padded fallback: rows_pad rows (the extra ones quantise as zeros) into a scratch of the
     * output's type, the residual copied in first (beta = 1 in place, so still one rounding);
     * then the m real rows are copied to D. If an fp32 output has no algorithm at all, the
     * scratch is bf16 and widened (one extra rounding of the result). */
    const unsigned align_w = min_u(align_of(W->data, W->k, 0), 16);
    int tmp_f32 = d_f32;
    lt_problem q = fp8_problem(L.rows_pad, W, L.ld_tmp, d_f32, residual != NULL, align_w);
    if ((rc = plan_get(c, op, &q, w_scale, sa, &pl))) return rc;
    if (pl->used != 1 && d_f32) {
        tmp_f32 = 0;
        q = fp8_problem(L.rows_pad, W, L.ld_tmp, 0, 0, align_w);
        if ((rc = plan_get(c, op, &q, w_scale, sa, &pl))) return rc;
    }
    if (pl->used != 1)
        return dsa_cuda_fail(c, "%s: cuBLASLt has no FP8 block-scaled algorithm for m %d (or %d), n %d, k %d", op, m,
                             L.rows_pad, W->n, W->k);
    if ((rc = dsa_cuda_quant_e4m3_rows(c, stream, A, lda, m, L.rows_pad, W->k, aq, sa))) return rc;
    if (residual && (rc = dsa_cuda_copy_rows(c, stream, residual, ldd, 0, m, W->n, tmp, L.ld_tmp, 0))) return rc;
    if ((rc = plan_run_on(c, op, pl, W->data, aq, residual ? tmp : NULL, tmp, w_scale, sa, stream, lt_ws,
                           c->lt_ws_bytes)))
        return rc;
    return dsa_cuda_copy_rows(c, stream, tmp, L.ld_tmp, tmp_f32, m, W->n, D, ldd, d_f32);
}

int dsa_cuda_gemm(void *ctx, const bf16_t *A, int lda, int m, const dsa_weight *W, const bf16_t *residual, bf16_t *D,
                  int ldd)
{
    dsa_cuda_ctx *c = ctx;
    int rc = check_weight(c, "gemm", W);
    if (rc) return rc;
    void *ws = NULL;
    size_t ws_bytes = 0;
    if (W->dtype == DSA_FP8_E4M3 && m > 0 && ldd >= W->n) {
        ws_bytes = dsa_cuda_gemm_ws_bytes(c, m, W, D, ldd, 0, residual);
        if ((rc = dsa_cuda_scratch(c, ws_bytes, &ws))) return rc;
    }
    return dsa_cuda_gemm_ex(c, "gemm", A, lda, m, W, residual, D, ldd, 0, ws, ws_bytes, c->stream, c->lt_ws);
}

int dsa_cuda_gemm_heads(void *ctx, const char *op, int m, int n, int k, int heads, const bf16_t *A, int lda,
                        long long stride_a, const bf16_t *W, int ldw, long long stride_w, int w_is_kn, bf16_t *D,
                        int ldd, long long stride_d)
{
    dsa_cuda_ctx *c = ctx;
    if (m < 0 || n <= 0 || k <= 0 || heads <= 0)
        return dsa_cuda_fail(c, "%s: m = %d, n = %d, k = %d, heads = %d", op, m, n, k, heads);
    if (m == 0) return DSA_OK;
    if (!A || !W || !D) return dsa_cuda_fail(c, "%s: a pointer argument is NULL", op);
    lt_problem p;
    memset(&p, 0, sizeof p);
    p.kind = KIND_BATCHED | (w_is_kn ? KIND_W_KN : 0);
    p.m = m, p.n = n, p.k = k, p.batch = heads;
    p.lda = lda, p.ldw = ldw, p.ldd = ldd;
    p.sa = stride_a, p.sw = stride_w, p.sd = stride_d;
    p.align = min_u(min_u(align_of(A, (long long)lda * 2, stride_a * 2), align_of(W, (long long)ldw * 2, stride_w * 2)),
                    align_of(D, (long long)ldd * 2, stride_d * 2));
    dsa_gemm_plan *pl = NULL;
    int rc = plan_get(c, op, &p, NULL, NULL, &pl);
    if (rc) return rc;
    if (pl->used != 1)
        return dsa_cuda_fail(c, "%s: cuBLASLt has no batched bf16 algorithm for m %d, n %d, k %d, %d heads", op, m, n, k,
                             heads);
    return plan_run(c, op, pl, W, A, NULL, D, NULL, NULL);
}

/* Pointer-array batches (CUBLASLT_BATCH_MODE_POINTER_ARRAY): one plan per (m, n, k, lda, ldd,
 * output type), its algorithm chosen at the first batch count seen; later calls set their
 * count on the cached layouts (the count does not change the kernel cuBLASLt runs, only its
 * grid). The pointers are the caller's to keep 16-byte aligned (checked on the host is not
 * possible: they are in device memory). */
int dsa_cuda_gemm_ptr_array(void *ctx, const char *op, int m, int n, int k, int batch, const void *const *A_ptrs,
                            int lda, const void *const *W_ptrs, void *const *D_ptrs, int ldd, int d_f32,
                            cudaStream_t stream, void *lt_ws, size_t lt_ws_bytes)
{
    dsa_cuda_ctx *c = ctx;
    if (m < 0 || n <= 0 || k <= 0 || batch < 0 || lda < k || ldd < n)
        return dsa_cuda_fail(c, "%s: m = %d, n = %d, k = %d, batch = %d, lda = %d, ldd = %d", op, m, n, k, batch, lda,
                             ldd);
    if (m == 0 || batch == 0) return DSA_OK;
    if (!A_ptrs || !W_ptrs || !D_ptrs) return dsa_cuda_fail(c, "%s: a pointer array is NULL", op);
    if (lda % 8 || ldd % (d_f32 ? 4 : 8) || k % 8)
        return dsa_cuda_fail(c, "%s: lda = %d, ldd = %d and k = %d must keep rows 16-byte aligned", op, lda, ldd, k);
    lt_problem p;
    memset(&p, 0, sizeof p);
    p.kind = KIND_PTR_ARRAY | (d_f32 ? KIND_F32_OUT : 0);
    p.m = m, p.n = n, p.k = k, p.batch = batch; /* the heuristic's count; not part of the key */
    p.lda = lda, p.ldw = k, p.ldd = ldd;
    p.align = 16;
    dsa_gemm_plan *pl = NULL;
    int rc = plan_get(c, op, &p, NULL, NULL, &pl);
    if (rc) return rc;
    const int32_t count = batch;
    cublasLtMatrixLayout_t ls[3] = {pl->a, pl->b, pl->c};
    for (int i = 0; i < 3 && pl->used == 1; i++)
        if (cublasLtMatrixLayoutSetAttribute(ls[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count))
            return dsa_cuda_fail(c, "%s: cuBLASLt batch count %d", op, batch);
    if (pl->used != 1)
        return dsa_cuda_fail(c, "%s: cuBLASLt has no pointer-array bf16 algorithm for m %d, n %d, k %d", op, m, n, k);
    return plan_run_on(c, op, pl, W_ptrs, A_ptrs, NULL, (void *)D_ptrs, NULL, NULL, stream, lt_ws, lt_ws_bytes);
}
