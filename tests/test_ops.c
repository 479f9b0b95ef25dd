/* test_ops.c: every AVX2 kernel against the scalar reference (ops.h), on the shapes of Trinity-1.1B and on
 * odd ones (stories260K's 172-wide rows, row counts that are not multiples of four).
 *
 * Ternary matrix-vector products must agree bitwise across kernels, layouts and row splits (their block sums
 * are exact integers and the float steps run in one order); float-activation kernels must agree within a
 * normalized error of 1e-6 (only the summation order differs). Where the CPU has no AVX2 the comparisons
 * are skipped with a message and the reference checks still run. Tolerances are normalized squared errors
 * (sum (a-b)^2 / sum b^2): 1e-10 to 1e-12 for float ops, i.e. a relative RMS error of 1e-5 to 1e-6. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_fallback/ops.h"
#include "cpu_fallback/quants.h"
#include "host/common.h"
#include "test_util.h"

static uint64_t rng_state = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) * (2.0 / 16777216.0) - 1.0);
}


/* A random matrix of `type`, rows x cols, made by quantizing random floats (ternary: {-1,0,1} times a
 * per-row scale) or, for Q4_K/Q6_K which Trinity does not write, random blocks with sane scales. */
static trn_matrix make_matrix(trn_type type, int64_t rows, int64_t cols) {
    const size_t row_bytes = trn_row_bytes(type, cols);
    uint8_t *data = trn_alloc(row_bytes * (size_t)rows);
    float *row = malloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *dst = data + r * row_bytes;
        if (type == TRN_TYPE_Q4_K || type == TRN_TYPE_Q6_K) {
            for (size_t i = 0; i < row_bytes; i++)
                dst[i] = (uint8_t)(rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull) >> 7;
            for (int64_t b = 0; b < cols / TRN_QK_K; b++) {
                if (type == TRN_TYPE_Q4_K) {
                    trn_block_q4_k *blk = (trn_block_q4_k *)dst + b;
                    blk->d = trn_f32_to_fp16(0.01f + 0.01f * frand());
                    blk->dmin = trn_f32_to_fp16(0.01f + 0.01f * frand());
                } else {
                    ((trn_block_q6_k *)dst + b)->d = trn_f32_to_fp16(0.01f + 0.005f * frand());
                }
            }
            continue;
        }
        const trn_type_traits *traits = trn_type_get(type);
        const float scale = 0.5f + 0.5f * fabsf(frand());
        for (int64_t i = 0; i < cols; i++)
            row[i] = traits->is_ternary ? scale * (float)((int)(3.0f * (frand() + 1.0f) / 2.0f) - 1) : frand();
        CHECK(trn_quantize_row(type, row, dst, cols));
    }
    free(row);
    return (trn_matrix){type, data, rows, cols, row_bytes, TRN_LAYOUT_ROWS};
}

static void check_quantize_act(const trn_cpu_ops *fast, int64_t n) {
    float *x = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        x[i] = 3.0f * frand();
    x[0] = 0.5f; /* exact rounding ties appear once d is known; the kernels must round them alike */
    trn_block_q8_act *a = trn_alloc((size_t)(n / TRN_QK_K) * sizeof(trn_block_q8_act));
    trn_block_q8_act *b = trn_alloc((size_t)(n / TRN_QK_K) * sizeof(trn_block_q8_act));
    trn_cpu_ops_ref()->quantize_act(x, a, n);
    fast->quantize_act(x, b, n);
    CHECK_MSG(memcmp(a, b, (size_t)(n / TRN_QK_K) * sizeof(trn_block_q8_act)) == 0, "quantize_act n=%lld",
              (long long)n);
    /* the reference itself: each value within half a step of d * q, and sum == sum(q) */
    int ok = 1;
    for (int64_t blk = 0; blk < n / TRN_QK_K; blk++) {
        int32_t sum = 0;
        for (int i = 0; i < TRN_QK_K; i++) {
            sum += a[blk].q[i];
            ok &= fabsf(x[blk * TRN_QK_K + i] - a[blk].d * a[blk].q[i]) <= 0.5f * a[blk].d * 1.0001f;
        }
        ok &= sum == a[blk].sum;
    }
    CHECK_MSG(ok, "quantize_act reference error bound, n=%lld", (long long)n);
    free(x);
    trn_free(a);
    trn_free(b);
}

/* One matrix shape and type: reference vs fast, row splits, X4 layout, and (for ternary) the exact-math bound. */
static void check_matvec(const trn_cpu_ops *fast, trn_type type, int64_t rows, int64_t cols) {
    trn_matrix w = make_matrix(type, rows, cols);
    float *x = malloc((size_t)cols * sizeof(float));
    for (int64_t i = 0; i < cols; i++)
        x[i] = frand();
    const int64_t nb = TRN_MAX(cols / TRN_QK_K, 1);
    trn_block_q8_act *xq = trn_alloc((size_t)nb * sizeof(trn_block_q8_act));
    const int ternary = trn_type_get(type)->is_ternary;
    if (ternary)
        trn_cpu_ops_ref()->quantize_act(x, xq, cols);
    float *ref = calloc((size_t)rows, sizeof(float)), *out = calloc((size_t)rows, sizeof(float));
    float *exact = calloc((size_t)rows, sizeof(float)), *row = malloc((size_t)cols * sizeof(float));
    trn_cpu_ops_ref()->matvec(&w, x, xq, ref, 0, rows);
    /* The reference against float math on the dequantized weights, row by row, within a worst-case bound:
     * int8 activations move each x[i] by at most d/2 of its block; float rounding adds a relative 1e-5. */
    int rows_within = 1;
    for (int64_t r = 0; r < rows; r++) {
        trn_dequantize_row(type, (const uint8_t *)w.data + r * w.row_bytes, row, cols);
        double acc = 0, magnitude = 0, quant = 0;
        for (int64_t i = 0; i < cols; i++) {
            acc += (double)row[i] * x[i];
            magnitude += fabs((double)row[i] * x[i]);
            if (ternary)
                quant += fabs((double)row[i]) * 0.5 * xq[i / TRN_QK_K].d;
        }
        exact[r] = (float)acc;
        const double bound = 1.001 * quant + 1e-5 * magnitude + 1e-30;
        if (fabs((double)ref[r] - acc) > bound) {
            rows_within = 0;
            fprintf(stderr, "%s %lldx%lld row %lld: reference %.9g, float math %.9g, bound %.3g\n", trn_type_name(type),
                    (long long)rows, (long long)cols, (long long)r, ref[r], acc, bound);
        }
    }
    CHECK_MSG(rows_within, "%s %lldx%lld: the reference is off the float math", trn_type_name(type), (long long)rows,
              (long long)cols);
    if (fast) {
        fast->matvec(&w, x, xq, out, 0, rows);
        if (ternary)
            CHECK_MSG(memcmp(ref, out, (size_t)rows * sizeof(float)) == 0, "%s %lldx%lld: avx2 differs from reference",
                      trn_type_name(type), (long long)rows, (long long)cols);
        else
            CHECK_MSG(test_nmse(out, ref, rows) <= 1e-10, "%s %lldx%lld: avx2 vs reference nmse %.3g",
                      trn_type_name(type), (long long)rows, (long long)cols, test_nmse(out, ref, rows));
        /* rows split as the threads split them (multiples of four) give the same numbers */
        float *split = calloc((size_t)rows, sizeof(float));
        const int64_t cut = rows / 8 * 4;
        fast->matvec(&w, x, xq, split, 0, cut);
        fast->matvec(&w, x, xq, split, cut, rows);
        CHECK_MSG(memcmp(split, out, (size_t)rows * sizeof(float)) == 0, "%s %lldx%lld: split at %lld differs",
                  trn_type_name(type), (long long)rows, (long long)cols, (long long)cut);
        free(split);
    }
    if (ternary) { /* float activations (--act f32): close to the float math in both tables, in both layouts */
        float *f32_ref = calloc((size_t)rows, sizeof(float)), *f32_fast = calloc((size_t)rows, sizeof(float));
        trn_cpu_ops_ref()->matvec(&w, x, NULL, f32_ref, 0, rows);
        CHECK_MSG(test_nmse(f32_ref, exact, rows) <= 1e-12, "%s %lldx%lld f32 activations: reference vs float math "
                  "nmse %.3g", trn_type_name(type), (long long)rows, (long long)cols, test_nmse(f32_ref, exact, rows));
        void *packed = type == TRN_TYPE_TQ2_0 ? trn_alloc(w.row_bytes * (size_t)rows) : NULL;
        trn_matrix view = packed ? trn_repack_tq2_0_x4(&w, packed) : w;
        (fast ? fast : trn_cpu_ops_ref())->matvec(&view, x, NULL, f32_fast, 0, rows);
        CHECK_MSG(test_nmse(f32_fast, f32_ref, rows) <= 1e-12, "%s %lldx%lld f32 activations: %s vs reference nmse %.3g",
                  trn_type_name(type), (long long)rows, (long long)cols, fast ? "avx2" : "x4 layout",
                  test_nmse(f32_fast, f32_ref, rows));
        trn_free(packed);
        free(f32_ref);
        free(f32_fast);
    }
    if (type == TRN_TYPE_TQ2_0) { /* the repacked layout gives bitwise the same in both tables */
        void *packed = trn_alloc(w.row_bytes * (size_t)rows);
        trn_matrix x4 = trn_repack_tq2_0_x4(&w, packed);
        memset(out, 0, (size_t)rows * sizeof(float));
        trn_cpu_ops_ref()->matvec(&x4, x, xq, out, 0, rows);
        CHECK_MSG(memcmp(ref, out, (size_t)rows * sizeof(float)) == 0, "tq2_0 x4 %lldx%lld: reference differs",
                  (long long)rows, (long long)cols);
        if (fast) {
            memset(out, 0, (size_t)rows * sizeof(float));
            fast->matvec(&x4, x, xq, out, 0, rows);
            CHECK_MSG(memcmp(ref, out, (size_t)rows * sizeof(float)) == 0, "tq2_0 x4 %lldx%lld: avx2 differs",
                      (long long)rows, (long long)cols);
        }
        /* get_row of the repacked matrix returns the file's rows */
        float *a = malloc((size_t)cols * sizeof(float)), *b = malloc((size_t)cols * sizeof(float));
        for (int64_t r = 0; r < rows; r += TRN_MAX(rows / 5, 1)) {
            trn_cpu_ops_ref()->get_row(&w, r, a);
            (fast ? fast : trn_cpu_ops_ref())->get_row(&x4, r, b);
            CHECK_MSG(memcmp(a, b, (size_t)cols * sizeof(float)) == 0, "tq2_0 x4 get_row %lld", (long long)r);
        }
        free(a);
        free(b);
        trn_free(packed);
    }
    if (fast && (type == TRN_TYPE_F16 || type == TRN_TYPE_F32)) {
        float *a = malloc((size_t)cols * sizeof(float)), *b = malloc((size_t)cols * sizeof(float));
        trn_cpu_ops_ref()->get_row(&w, rows - 1, a);
        fast->get_row(&w, rows - 1, b);
        CHECK_MSG(memcmp(a, b, (size_t)cols * sizeof(float)) == 0, "%s get_row", trn_type_name(type));
        free(a);
        free(b);
    }
    free(x);
    free(ref);
    free(out);
    free(exact);
    free(row);
    trn_free(xq);
    trn_free((void *)w.data);
}

static void check_vector_ops(const trn_cpu_ops *fast, int64_t n) {
    const trn_cpu_ops *ref = trn_cpu_ops_ref();
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4), *w = malloc((size_t)n * 4);
    float *r = malloc((size_t)n * 4), *f = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) {
        a[i] = 4.0f * frand();
        b[i] = 2.0f * frand();
        w[i] = 1.0f + 0.2f * frand();
    }
    a[0] = -90.0f; /* silu far in the negative tail (exp clamps) */
    ref->rmsnorm(a, w, r, n, 1e-5f);
    fast->rmsnorm(a, w, f, n, 1e-5f);
    CHECK_MSG(test_nmse(f, r, n) <= 1e-10, "rmsnorm n=%lld nmse %.3g", (long long)n, test_nmse(f, r, n));
    ref->swiglu(a, b, r, n);
    fast->swiglu(a, b, f, n);
    CHECK_MSG(test_nmse(f, r, n) <= 1e-12, "swiglu n=%lld nmse %.3g", (long long)n, test_nmse(f, r, n));
    ref->add(a, b, r, n);
    fast->add(a, b, f, n);
    CHECK_MSG(memcmp(f, r, (size_t)n * 4) == 0, "add n=%lld", (long long)n);
    /* rmsnorm output has unit RMS before the weight */
    ref->rmsnorm(a, b, r, n, 0.0f);
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)(r[i] / b[i]) * (r[i] / b[i]);
    CHECK_MSG(fabs(ss / n - 1.0) < 1e-4, "rmsnorm reference: mean square %.6f", ss / n);
    free(a);
    free(b);
    free(w);
    free(r);
    free(f);
}

static void check_rope(const trn_cpu_ops *fast, int n_heads, int head_dim, int pos) {
    const int n = n_heads * head_dim;
    float *x = malloc((size_t)n * 4), *r = malloc((size_t)n * 4), *f = malloc((size_t)n * 4);
    float *cs = malloc((size_t)head_dim * 4);
    for (int i = 0; i < n; i++)
        x[i] = frand();
    for (int i = 0; i < head_dim / 2; i++) {
        const double angle = pos * pow(10000.0, -2.0 * i / head_dim);
        cs[2 * i] = (float)cos(angle);
        cs[2 * i + 1] = (float)sin(angle);
    }
    trn_cpu_ops_ref()->rope(x, r, n_heads, head_dim, cs);
    /* a rotation keeps each pair's length */
    int ok = 1;
    for (int i = 0; i < n; i += 2)
        ok &= fabsf(hypotf(r[i], r[i + 1]) - hypotf(x[i], x[i + 1])) < 1e-5f;
    CHECK_MSG(ok, "rope reference keeps pair norms (head_dim %d)", head_dim);
    if (fast) {
        fast->rope(x, f, n_heads, head_dim, cs);
        CHECK_MSG(test_nmse(f, r, n) <= 1e-12, "rope head_dim %d pos %d nmse %.3g", head_dim, pos, test_nmse(f, r, n));
        memcpy(f, x, (size_t)n * 4); /* in place */
        fast->rope(f, f, n_heads, head_dim, cs);
        CHECK_MSG(test_nmse(f, r, n) <= 1e-12, "rope in place head_dim %d", head_dim);
    }
    free(x);
    free(r);
    free(f);
    free(cs);
}

static void check_attention(const trn_cpu_ops *fast, int n_pos, int head_dim, int stride) {
    float *q = malloc((size_t)head_dim * 4), *k = malloc((size_t)n_pos * stride * 4), *v = malloc((size_t)n_pos * stride * 4);
    float *scores = malloc((size_t)n_pos * 4), *r = malloc((size_t)head_dim * 4), *f = malloc((size_t)head_dim * 4);
    for (int i = 0; i < head_dim; i++)
        q[i] = 2.0f * frand();
    for (int i = 0; i < n_pos * stride; i++) {
        k[i] = 2.0f * frand();
        v[i] = frand();
    }
    trn_cpu_ops_ref()->attention_head(q, k, v, stride, n_pos, head_dim, scores, r);
    /* with one position the output is that position's value */
    if (n_pos == 1)
        CHECK_MSG(test_nmse(r, v, head_dim) <= 1e-12, "attention over one position returns v");
    if (fast) {
        fast->attention_head(q, k, v, stride, n_pos, head_dim, scores, f);
        CHECK_MSG(test_nmse(f, r, head_dim) <= 1e-11, "attention n_pos %d head_dim %d nmse %.3g", n_pos, head_dim,
                  test_nmse(f, r, head_dim));
    }
    free(q);
    free(k);
    free(v);
    free(scores);
    free(r);
    free(f);
}

/* Batched matrix products (matmul, the prefill kernel) against the same table's matrix-vector product run per
 * token: bitwise equal for every type (ternary with int8 activations is the kernels' promise; other types and
 * float activations go through matvec). Token counts of 1, odd ones and more than the AVX2 kernel's 64-token tile;
 * row ranges split off a multiple of four; padded row strides (padding must stay untouched); both TQ2_0 layouts.
 * For ternary int8 the scalar and AVX2 matmul are also compared with each other. */
static void check_matmul(const trn_cpu_ops *fast, trn_type type, int64_t rows, int64_t cols, int64_t n_tok, int int8,
                         int x4) {
    const trn_matrix file = make_matrix(type, rows, cols);
    void *packed = x4 ? trn_alloc(file.row_bytes * (size_t)rows) : NULL;
    const trn_matrix w = x4 ? trn_repack_tq2_0_x4(&file, packed) : file;
    const int64_t nb = TRN_MAX(cols / TRN_QK_K, 1), ld_x = cols + 3, ld_xq = nb + 1, ld_dst = rows + 5;
    const int ternary = trn_type_get(type)->is_ternary;
    float *x = malloc((size_t)(n_tok * ld_x) * sizeof(float));
    trn_block_q8_act *xq = int8 && ternary ? trn_alloc((size_t)(n_tok * ld_xq) * sizeof(trn_block_q8_act)) : NULL;
    for (int64_t i = 0; i < n_tok * ld_x; i++)
        x[i] = frand();
    for (int64_t t = 0; xq && t < n_tok; t++)
        trn_cpu_ops_ref()->quantize_act(x + t * ld_x, xq + t * ld_xq, cols);
    const size_t dst_bytes = (size_t)(n_tok * ld_dst) * sizeof(float);
    float *want = malloc(dst_bytes), *got = malloc(dst_bytes), *ref_got = malloc(dst_bytes);
    const trn_cpu_ops *tables[2] = {trn_cpu_ops_ref(), fast};
    const int64_t cut = rows / 3; /* generally not a multiple of four */
    for (int i = 0; i < 2 && tables[i]; i++) {
        const trn_cpu_ops *ops = tables[i];
        for (size_t k = 0; k < dst_bytes / sizeof(float); k++)
            want[k] = got[k] = -7.0f; /* a sentinel: padding must keep it, every element must be written */
        for (int64_t t = 0; t < n_tok; t++)
            ops->matvec(&w, x + t * ld_x, xq ? xq + t * ld_xq : NULL, want + t * ld_dst, 0, rows);
        ops->matmul(&w, x, ld_x, xq, ld_xq, got, ld_dst, n_tok, 0, cut);
        ops->matmul(&w, x, ld_x, xq, ld_xq, got, ld_dst, n_tok, cut, rows);
        CHECK_MSG(memcmp(want, got, dst_bytes) == 0, "%s matmul %s%s %lldx%lld, %lld tokens, act %s: differs from "
                  "matvec per token", ops->name, trn_type_name(type), x4 ? " x4" : "", (long long)rows, (long long)cols,
                  (long long)n_tok, xq ? "int8" : "f32");
        if (i == 0)
            memcpy(ref_got, got, dst_bytes);
        else if (xq)
            CHECK_MSG(memcmp(ref_got, got, dst_bytes) == 0, "%s%s %lldx%lld, %lld tokens: avx2 matmul differs from the "
                      "scalar one", trn_type_name(type), x4 ? " x4" : "", (long long)rows, (long long)cols,
                      (long long)n_tok);
    }
#if defined(TRN_HAVE_AVX2)
    /* both builds of the batched ternary kernel, whichever the table picks on this CPU */
    typedef void (*tq_kernel)(const trn_matrix *, const trn_block_q8_act *, int64_t, float *, int64_t, int64_t, int64_t,
                              int64_t);
    struct { const char *name; tq_kernel kernel; int usable; } variants[] = {
        {"vpmaddubsw", trn_matmul_tq_maddubs, fast != NULL},
#if defined(TRN_HAVE_VNNI)
        {"vpdpbusd", trn_matmul_tq_dpbusd, trn_matmul_tq_dpbusd_supported()},
#endif
    };
    for (size_t v = 0; xq && v < TRN_ARRAY_LEN(variants); v++) {
        if (!variants[v].usable)
            continue;
        for (size_t k = 0; k < dst_bytes / sizeof(float); k++)
            got[k] = -7.0f;
        variants[v].kernel(&w, xq, ld_xq, got, ld_dst, n_tok, 0, cut);
        variants[v].kernel(&w, xq, ld_xq, got, ld_dst, n_tok, cut, rows);
        CHECK_MSG(memcmp(ref_got, got, dst_bytes) == 0, "%s%s %lldx%lld, %lld tokens: the %s kernel differs from the "
                  "scalar matmul", trn_type_name(type), x4 ? " x4" : "", (long long)rows, (long long)cols,
                  (long long)n_tok, variants[v].name);
    }
#endif
    /* not vacuous: some outputs are non-zero */
    int nonzero = 0;
    for (int64_t r = 0; r < rows; r++)
        nonzero |= ref_got[(n_tok - 1) * ld_dst + r] != 0.0f;
    CHECK_MSG(nonzero, "%s %lldx%lld matmul: all outputs zero", trn_type_name(type), (long long)rows, (long long)cols);
    free(x);
    free(want);
    free(got);
    free(ref_got);
    trn_free(xq);
    trn_free(packed);
    trn_free((void *)file.data);
}

int main(void) {
    const trn_cpu_ops *fast = trn_cpu_ops_avx2();
    if (!fast)
        fprintf(stderr, "note: no AVX2 on this CPU (or not compiled in): comparisons against AVX2 are skipped, "
                        "reference checks run\n");
    static const int64_t act_sizes[] = {256, 2048, 5632};
    for (size_t i = 0; i < TRN_ARRAY_LEN(act_sizes) && fast; i++)
        check_quantize_act(fast, act_sizes[i]);

    /* Trinity-1.1B shapes (rows x cols) and odd ones */
    static const int64_t ternary_shapes[][2] = {{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}, {1000, 2048},
                                                {1, 256}, {3, 512}, {7, 768}, {13, 256}};
    for (size_t i = 0; i < TRN_ARRAY_LEN(ternary_shapes); i++) {
        check_matvec(fast, TRN_TYPE_TQ2_0, ternary_shapes[i][0], ternary_shapes[i][1]);
        check_matvec(fast, TRN_TYPE_TQ1_0, ternary_shapes[i][0], ternary_shapes[i][1]);
    }
    static const int64_t float_shapes[][2] = {{64, 64}, {172, 64}, {64, 172}, {37, 2048}, {1, 8}, {5, 3}};
    for (size_t i = 0; i < TRN_ARRAY_LEN(float_shapes); i++) {
        check_matvec(fast, TRN_TYPE_F32, float_shapes[i][0], float_shapes[i][1]);
        check_matvec(fast, TRN_TYPE_F16, float_shapes[i][0], float_shapes[i][1]);
        check_matvec(fast, TRN_TYPE_BF16, float_shapes[i][0], float_shapes[i][1]);
    }
    static const int64_t q8_shapes[][2] = {{64, 64}, {172, 160}, {33, 2048}};
    for (size_t i = 0; i < TRN_ARRAY_LEN(q8_shapes); i++)
        check_matvec(fast, TRN_TYPE_Q8_0, q8_shapes[i][0], q8_shapes[i][1]);
    static const int64_t k_shapes[][2] = {{5, 256}, {32, 2048}};
    for (size_t i = 0; i < TRN_ARRAY_LEN(k_shapes); i++) {
        check_matvec(fast, TRN_TYPE_Q4_K, k_shapes[i][0], k_shapes[i][1]);
        check_matvec(fast, TRN_TYPE_Q6_K, k_shapes[i][0], k_shapes[i][1]);
    }
    static const int64_t vec_sizes[] = {1, 7, 64, 172, 2048, 5632};
    for (size_t i = 0; i < TRN_ARRAY_LEN(vec_sizes) && fast; i++)
        check_vector_ops(fast, vec_sizes[i]);
    check_rope(fast, 32, 64, 0);
    check_rope(fast, 32, 64, 1777);
    check_rope(fast, 8, 8, 5);   /* stories260K: head size 8 */
    check_rope(fast, 3, 6, 9);   /* a head size that is not a multiple of 8 */
    check_attention(fast, 1, 64, 256);
    check_attention(fast, 13, 64, 256);
    check_attention(fast, 300, 64, 256);
    check_attention(fast, 9, 8, 32);
    check_attention(fast, 5, 6, 6);
    /* rows x cols x tokens: one token, odd counts, 16 + 8 and 16 + 16 + 5 token groups, more than a 64-token tile */
    static const int64_t matmul_shapes[][3] = {{13, 256, 1}, {7, 768, 3}, {64, 512, 65}, {1000, 2048, 5}, {37, 2048, 2},
                                               {40, 512, 24}, {24, 1024, 37}};
    for (size_t i = 0; i < TRN_ARRAY_LEN(matmul_shapes); i++) {
        const int64_t rows = matmul_shapes[i][0], cols = matmul_shapes[i][1], n_tok = matmul_shapes[i][2];
        check_matmul(fast, TRN_TYPE_TQ2_0, rows, cols, n_tok, 1, 0);
        check_matmul(fast, TRN_TYPE_TQ2_0, rows, cols, n_tok, 1, 1);
        check_matmul(fast, TRN_TYPE_TQ1_0, rows, cols, n_tok, 1, 0);
    }
    check_matmul(fast, TRN_TYPE_TQ2_0, 13, 512, 3, 0, 1); /* float activations */
    check_matmul(fast, TRN_TYPE_TQ1_0, 13, 512, 3, 0, 0);
    check_matmul(fast, TRN_TYPE_F32, 172, 64, 3, 0, 0);
    check_matmul(fast, TRN_TYPE_F16, 37, 2048, 2, 0, 0);
    check_matmul(fast, TRN_TYPE_Q8_0, 33, 2048, 3, 0, 0);
    check_matmul(fast, TRN_TYPE_Q4_K, 5, 256, 3, 0, 0);
    return test_finish("test_ops");
}
