/* test_ops.c: every kernel of the AVX2 and AVX-512 tables against the scalar reference (ops.h), on the shapes of
 * Trinity-1.1B and on odd ones (stories260K's 172-wide rows, one row, row counts that are not multiples of four
 * or sixteen), and the table selection (names, TRN_KERNELS).
 *
 * Ternary matrix-vector products must agree bitwise across tables, layouts (file, X4, X16; TQ1_0 also held as
 * TQ2_0, trn_repack_as) and row splits (their block sums are exact integers and the float steps run in one order),
 * also on bytes the quantizer never writes; float-activation kernels must agree within a normalized error of 1e-6
 * (only the summation order differs).
 * Where the CPU (or build) lacks a table its comparisons are skipped with a message and the rest still runs.
 * Tolerances are normalized squared errors (sum (a-b)^2 / sum b^2): 1e-10 to 1e-12 for float ops, i.e. a
 * relative RMS error of 1e-5 to 1e-6. */
#define _POSIX_C_SOURCE 200809L
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

/* The SIMD tables this CPU and build run ("avx2", "avx512"); the others are skipped with a message. */
static const trn_cpu_ops *fast_tables[2];
static int n_fast;
/* The AVX-512 table's other variant (weight prefetch on or off, the one this CPU's vendor does not get), or NULL. */
static const trn_cpu_ops *avx512_other;

static const trn_layout all_layouts[] = {TRN_LAYOUT_ROWS, TRN_LAYOUT_X4, TRN_LAYOUT_X16};

/* w in `layout` (a copy the caller frees with trn_free(view.data) unless layout is the file's). */
static trn_matrix in_layout(const trn_matrix *w, trn_layout layout) {
    return layout == TRN_LAYOUT_ROWS ? *w : trn_repack(w, layout, trn_alloc(w->row_bytes * (size_t)w->rows));
}

/* Whether block `blk` of row r of `view` (w held in view's type and layout) has w's codes and scale: the file's
 * bytes where the type is w's, the same codes and scale where a TQ1_0 matrix is held as TQ2_0. */
static int same_block(const trn_matrix *w, const trn_matrix *view, int64_t r, int64_t blk) {
    trn_ternary_block scratch;
    const trn_ternary_block *held = trn_ternary_block_at(view, r, blk, &scratch);
    const uint8_t *file = (const uint8_t *)w->data + r * w->row_bytes + blk * trn_type_get(w->type)->block_bytes;
    if (view->type == w->type)
        return memcmp(held, file, (size_t)trn_type_get(w->type)->block_bytes) == 0;
    uint8_t codes[TRN_QK_K], held_codes[TRN_QK_K];
    trn_tq1_0_block_codes((const trn_block_tq1_0 *)file, codes);
    trn_tq2_0_block_codes(&held->tq2_0, held_codes);
    return memcmp(codes, held_codes, TRN_QK_K) == 0 && held->tq2_0.d == ((const trn_block_tq1_0 *)file)->d;
}

/* Every table's ternary product of w (in every layout, and a TQ1_0 matrix also held as TQ2_0 in every layout, over
 * the whole range and over row ranges cut anywhere, also inside a group) against ref, bitwise; get_row and the block
 * accessor against the file layout. */
static void check_ternary_layouts(const trn_matrix *w, const float *x, const trn_block_q8_act *xq, const float *ref,
                                  const char *what) {
    const int64_t rows = w->rows, cols = w->cols;
    float *out = malloc((size_t)rows * sizeof(float)), *split = malloc((size_t)rows * sizeof(float));
    float *a = malloc((size_t)cols * sizeof(float)), *b = malloc((size_t)cols * sizeof(float));
    const size_t n_views = TRN_ARRAY_LEN(all_layouts) * (w->type == TRN_TYPE_TQ1_0 ? 2 : 1);
    for (size_t l = 0; l < n_views; l++) {
        const trn_layout layout = all_layouts[l % TRN_ARRAY_LEN(all_layouts)];
        const trn_matrix view = l < TRN_ARRAY_LEN(all_layouts)
                                    ? in_layout(w, layout)
                                    : trn_repack_as(w, TRN_TYPE_TQ2_0, layout,
                                                    trn_alloc(trn_row_bytes(TRN_TYPE_TQ2_0, cols) * (size_t)rows));
        /* the accessor gives the file's codes and scale for every block of every row */
        int same_blocks = 1;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t blk = 0; blk < cols / TRN_QK_K; blk++)
                same_blocks &= same_block(w, &view, r, blk);
        CHECK_MSG(same_blocks, "%s layout %d as %s: trn_ternary_block_at differs from the file's blocks", what,
                  (int)view.layout, trn_type_name(view.type));
        const trn_cpu_ops *tables[4] = {trn_cpu_ops_ref(), fast_tables[0], fast_tables[1], NULL};
        tables[1 + n_fast] = avx512_other;
        for (int t = 0; t < 1 + n_fast + (avx512_other != NULL); t++) {
            const trn_cpu_ops *ops = tables[t];
            memset(out, 0, (size_t)rows * sizeof(float));
            ops->matvec(&view, x, xq, out, 0, rows);
            CHECK_MSG(memcmp(ref, out, (size_t)rows * sizeof(float)) == 0,
                      "%s layout %d as %s: %s differs from the reference", what, (int)view.layout,
                      trn_type_name(view.type), ops->name);
            /* ranges as threads take them (multiples of four) and cut anywhere else: the same numbers */
            const int64_t cuts[] = {rows / 8 * 4, rows / 3 + 1, 17, rows - 1};
            for (size_t c = 0; c < TRN_ARRAY_LEN(cuts); c++) {
                if (cuts[c] <= 0 || cuts[c] >= rows)
                    continue;
                /* each call writes its own rows only (threads share dst): the other part keeps a sentinel */
                for (int part = 0; part < 2; part++) {
                    const int64_t lo = part ? cuts[c] : 0, hi = part ? rows : cuts[c];
                    for (int64_t r = 0; r < rows; r++)
                        split[r] = -1234.5f;
                    ops->matvec(&view, x, xq, split, lo, hi);
                    int untouched = 1;
                    for (int64_t r = 0; r < rows; r++)
                        untouched &= (r >= lo && r < hi) || split[r] == -1234.5f;
                    CHECK_MSG(untouched, "%s layout %d: %s rows [%lld, %lld) wrote outside its range", what,
                              (int)view.layout, ops->name, (long long)lo, (long long)hi);
                }
                ops->matvec(&view, x, xq, split, 0, cuts[c]);
                CHECK_MSG(memcmp(split, out, (size_t)rows * sizeof(float)) == 0, "%s layout %d: %s split at %lld differs",
                          what, (int)view.layout, ops->name, (long long)cuts[c]);
            }
            /* get_row returns the file's rows */
            for (int64_t r = 0; r < rows; r += TRN_MAX(rows / 5, 1)) {
                trn_cpu_ops_ref()->get_row(w, r, a);
                ops->get_row(&view, r, b);
                CHECK_MSG(memcmp(a, b, (size_t)cols * sizeof(float)) == 0, "%s layout %d: %s get_row %lld", what,
                          (int)view.layout, ops->name, (long long)r);
            }
        }
        if (view.data != w->data)
            trn_free((void *)view.data);
    }
    free(out);
    free(split);
    free(a);
    free(b);
}

/* One matrix shape and type: the reference against float math (ternary: within the int8 bound), every table
 * against the reference (ternary: bitwise, in every layout and row split), float activations for ternary. */
static void check_matvec(trn_type type, int64_t rows, int64_t cols) {
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
    char what[64];
    snprintf(what, sizeof(what), "%s %lldx%lld", trn_type_name(type), (long long)rows, (long long)cols);
    if (ternary) {
        check_ternary_layouts(&w, x, xq, ref, what);
        /* float activations (--act f32): close to the float math in every table and layout */
        float *f32_ref = calloc((size_t)rows, sizeof(float)), *f32_fast = calloc((size_t)rows, sizeof(float));
        trn_cpu_ops_ref()->matvec(&w, x, NULL, f32_ref, 0, rows);
        CHECK_MSG(test_nmse(f32_ref, exact, rows) <= 1e-12, "%s f32 activations: reference vs float math nmse %.3g", what,
                  test_nmse(f32_ref, exact, rows));
        const trn_cpu_ops *tables[3] = {trn_cpu_ops_ref(), fast_tables[0], fast_tables[1]};
        for (size_t l = 0; l < TRN_ARRAY_LEN(all_layouts); l++) {
            const trn_matrix view = in_layout(&w, all_layouts[l]);
            for (int t = 0; t < 1 + n_fast; t++) {
                tables[t]->matvec(&view, x, NULL, f32_fast, 0, rows);
                CHECK_MSG(test_nmse(f32_fast, f32_ref, rows) <= 1e-12, "%s f32 activations, layout %d: %s vs reference "
                          "nmse %.3g", what, (int)view.layout, tables[t]->name, test_nmse(f32_fast, f32_ref, rows));
            }
            if (view.data != w.data)
                trn_free((void *)view.data);
        }
        free(f32_ref);
        free(f32_fast);
    }
    for (int t = 0; t < n_fast && !ternary; t++) {
        const trn_cpu_ops *fast = fast_tables[t];
        fast->matvec(&w, x, xq, out, 0, rows);
        CHECK_MSG(test_nmse(out, ref, rows) <= 1e-10, "%s: %s vs reference nmse %.3g", what, fast->name,
                  test_nmse(out, ref, rows));
        /* rows split as the threads split them give the same numbers */
        float *split = calloc((size_t)rows, sizeof(float));
        const int64_t cut = rows / 8 * 4;
        fast->matvec(&w, x, xq, split, 0, cut);
        fast->matvec(&w, x, xq, split, cut, rows);
        CHECK_MSG(memcmp(split, out, (size_t)rows * sizeof(float)) == 0, "%s: %s split at %lld differs", what, fast->name,
                  (long long)cut);
        free(split);
        if (type == TRN_TYPE_F16 || type == TRN_TYPE_F32) {
            float *a = malloc((size_t)cols * sizeof(float)), *b = malloc((size_t)cols * sizeof(float));
            trn_cpu_ops_ref()->get_row(&w, rows - 1, a);
            fast->get_row(&w, rows - 1, b);
            CHECK_MSG(memcmp(a, b, (size_t)cols * sizeof(float)) == 0, "%s get_row (%s)", trn_type_name(type), fast->name);
            free(a);
            free(b);
        }
    }
    free(x);
    free(ref);
    free(out);
    free(exact);
    free(row);
    trn_free(xq);
    trn_free((void *)w.data);
}

/* Ternary rows of arbitrary bytes (codes the quantizer never writes: TQ2_0's code 3, TQ1_0 bytes that are not
 * ceil(256 v / 243), whose digits quants.c still defines) with sane scales: every table, every layout, bitwise. */
static void check_ternary_any_bytes(trn_type type, int64_t rows, int64_t cols) {
    const size_t row_bytes = trn_row_bytes(type, cols);
    const int block_bytes = trn_type_get(type)->block_bytes;
    uint8_t *data = trn_alloc(row_bytes * (size_t)rows);
    for (size_t i = 0; i < row_bytes * (size_t)rows; i++)
        data[i] = (uint8_t)((rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull) >> 56);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < cols / TRN_QK_K; b++) {
            const trn_fp16 d = trn_f32_to_fp16(0.5f + 0.25f * frand());
            memcpy(data + r * row_bytes + (b + 1) * block_bytes - 2, &d, 2);
        }
    if (type == TRN_TYPE_TQ1_0) /* every byte value appears */
        for (int v = 0; v < 256 && v < (int)(row_bytes - 2); v++)
            data[v + 2 * (v / (block_bytes - 2))] = (uint8_t)v;
    const trn_matrix w = {type, data, rows, cols, row_bytes, TRN_LAYOUT_ROWS};
    float *x = malloc((size_t)cols * sizeof(float)), *ref = malloc((size_t)rows * sizeof(float));
    for (int64_t i = 0; i < cols; i++)
        x[i] = frand();
    x[3] = 40.0f; /* one large value: other activations of its block quantize small */
    trn_block_q8_act *xq = trn_alloc((size_t)(cols / TRN_QK_K) * sizeof(trn_block_q8_act));
    trn_cpu_ops_ref()->quantize_act(x, xq, cols);
    trn_cpu_ops_ref()->matvec(&w, x, xq, ref, 0, rows);
    char what[64];
    snprintf(what, sizeof(what), "%s %lldx%lld, arbitrary bytes", trn_type_name(type), (long long)rows, (long long)cols);
    check_ternary_layouts(&w, x, xq, ref, what);
    free(x);
    free(ref);
    trn_free(xq);
    trn_free(data);
}

/* trn_sustained_rate (the tables' matmul_peak): one warm-up call not counted, then chunks until the time has passed
 * (at least one), the rate over the counted ones; and every table's probe gives a rate. */
static long counted_rounds;
static int32_t count_rounds(const void *ctx, long rounds) {
    (void)ctx;
    counted_rounds += rounds;
    return (int32_t)rounds;
}

static void check_sustained_macs(void) {
    counted_rounds = 0;
    double rate = trn_sustained_rate(count_rounds, NULL, 8, 1000.0, 0.0);
    CHECK_MSG(counted_rounds == 16 && rate > 0, "no time asked: a warm-up and one chunk, %ld rounds, rate %g",
              counted_rounds, rate);
    counted_rounds = 0;
    const double start = trn_time_s();
    rate = trn_sustained_rate(count_rounds, NULL, 8, 1000.0, 0.02);
    const double took = trn_time_s() - start;
    CHECK_MSG(took >= 0.02 && counted_rounds > 16 && rate > 0 && rate <= (counted_rounds - 8) * 1000.0 / 0.02,
              "0.02 s asked: %g s, %ld rounds, rate %g", took, counted_rounds, rate);
    for (int t = 0; t < n_fast; t++)
        if (fast_tables[t]->matmul_peak) {
            rate = fast_tables[t]->matmul_peak(0.001);
            CHECK_MSG(rate > 1e6 && rate < 1e15, "%s matmul_peak: %g multiply-adds/s", fast_tables[t]->name, rate);
        }
}

/* Table selection: names, availability, the order of preference and TRN_KERNELS. */
static void check_tables(void) {
    CHECK(trn_cpu_ops_by_name("scalar") == trn_cpu_ops_ref());
    CHECK(trn_cpu_ops_by_name("auto") == trn_cpu_ops_best());
    CHECK(trn_cpu_ops_by_name("avx2") == trn_cpu_ops_avx2());
    CHECK(trn_cpu_ops_by_name("avx512") == trn_cpu_ops_avx512());
    CHECK(trn_cpu_ops_by_name("sse9") == NULL && trn_cpu_ops_by_name(NULL) == NULL);
    CHECK(trn_cpu_ops_by_name("amx") == trn_cpu_ops_amx(NULL));
    CHECK(trn_cpu_ops_by_name("amx-emulated") == trn_cpu_ops_amx_emulated());
    const char *why = NULL;
    CHECK_MSG(trn_cpu_ops_amx(&why) != NULL || (why && *why), "no AMX table and no reason given");
#if defined(TRN_HAVE_AMX)
    CHECK_MSG(!trn_cpu_ops_avx512() == !trn_cpu_ops_amx_emulated(), "the emulated AMX table goes with the AVX-512 one");
#endif
    for (int e = 0; e < 2; e++) { /* the AMX tables are the AVX-512 one but for the batched kernel */
        const trn_cpu_ops *amx = e ? trn_cpu_ops_amx_emulated() : trn_cpu_ops_amx(NULL);
        if (amx)
            CHECK_MSG(trn_cpu_ops_avx512() && amx->tq2_0_layout == TRN_LAYOUT_X16 &&
                      amx->tq1_0_layout == TRN_LAYOUT_X16 && amx->matmul && amx->matmul_kernel &&
                      (amx->matmul_peak == NULL) == e, "%s table", amx->name);
    }
    /* amx is chosen by name only until it has run on AMX hardware (cpu_fallback/ops.h) */
    const trn_cpu_ops *expect = trn_cpu_ops_avx512() ? trn_cpu_ops_avx512()
                                : trn_cpu_ops_avx2() ? trn_cpu_ops_avx2()
                                                     : trn_cpu_ops_ref();
    CHECK_MSG(trn_cpu_ops_best() == expect, "best table is %s", trn_cpu_ops_best()->name);
    if (trn_cpu_ops_avx512())
        CHECK_MSG(trn_cpu_ops_avx2() != NULL, "the AVX-512 table reuses AVX2 kernels");
    const char *requested;
    setenv("TRN_KERNELS", "scalar", 1);
    CHECK(trn_cpu_ops_for_backend(NULL, &requested) == trn_cpu_ops_ref() && strcmp(requested, "scalar") == 0);
    setenv("TRN_KERNELS", "avx2", 1);
    CHECK(trn_cpu_ops_for_backend(NULL, &requested) == trn_cpu_ops_avx2());
    CHECK(trn_cpu_ops_for_backend("scalar", &requested) == trn_cpu_ops_ref()); /* the configuration wins */
    setenv("TRN_KERNELS", "bogus", 1);
    CHECK(trn_cpu_ops_for_backend(NULL, &requested) == NULL && strcmp(requested, "bogus") == 0);
    CHECK(trn_cpu_ops_for_backend("", &requested) == NULL && strcmp(requested, "bogus") == 0); /* "" as NULL */
    unsetenv("TRN_KERNELS");
    CHECK(trn_cpu_ops_for_backend(NULL, &requested) == trn_cpu_ops_best() && strcmp(requested, "auto") == 0);
    CHECK(trn_cpu_ops_for_backend("sse9", &requested) == NULL && strcmp(requested, "sse9") == 0);
    /* the layouts the tables ask for: the reference none, the SIMD tables grouped ones */
    CHECK(trn_cpu_ops_ref()->tq2_0_layout == TRN_LAYOUT_ROWS && trn_cpu_ops_ref()->tq1_0_layout == TRN_LAYOUT_ROWS);
    for (int t = 0; t < n_fast; t++)
        CHECK_MSG(fast_tables[t]->tq1_0_layout == TRN_LAYOUT_X16 && fast_tables[t]->tq2_0_layout != TRN_LAYOUT_ROWS,
                  "%s table layouts", fast_tables[t]->name);
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
    ref->rmsnorm(a, w, r, n, 1e-5f, 0, n);
    fast->rmsnorm(a, w, f, n, 1e-5f, 0, n);
    CHECK_MSG(test_nmse(f, r, n) <= 1e-10, "rmsnorm n=%lld nmse %.3g", (long long)n, test_nmse(f, r, n));
    /* in ranges, as threads take a row: bitwise the whole call's values, nothing written outside the range */
    for (int64_t i = 0; i < n; i++)
        r[i] = -7.0f;
    const int64_t cut = n / 3 / 8 * 8 + 8 < n ? n / 3 / 8 * 8 + 8 : n;
    fast->rmsnorm(a, w, r, n, 1e-5f, 0, cut);
    CHECK_MSG(cut == n || r[cut] == -7.0f, "rmsnorm n=%lld wrote past its range", (long long)n);
    fast->rmsnorm(a, w, r, n, 1e-5f, cut, n);
    CHECK_MSG(memcmp(f, r, (size_t)n * 4) == 0, "rmsnorm n=%lld in two ranges differs from one call", (long long)n);
    ref->swiglu(a, b, r, n);
    fast->swiglu(a, b, f, n);
    CHECK_MSG(test_nmse(f, r, n) <= 1e-12, "swiglu n=%lld nmse %.3g", (long long)n, test_nmse(f, r, n));
    const trn_cpu_ops *avx2 = trn_cpu_ops_avx2(); /* the same operations per element at any width: same bits */
    if (avx2 && fast != avx2) {
        avx2->swiglu(a, b, r, n);
        CHECK_MSG(memcmp(f, r, (size_t)n * 4) == 0, "swiglu n=%lld: the %s table differs from avx2", (long long)n,
                  fast->name);
    }
    ref->add(a, b, r, n);
    fast->add(a, b, f, n);
    CHECK_MSG(memcmp(f, r, (size_t)n * 4) == 0, "add n=%lld", (long long)n);
    /* rmsnorm output has unit RMS before the weight */
    ref->rmsnorm(a, b, r, n, 0.0f, 0, n);
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

/* Attention of n_q query heads that share one KV head: the table against the scalar reference (normalized error),
 * every head bitwise the same whether computed alone, with its whole group or with the group cut in two (the
 * backend's thread split cuts groups anywhere), and the AVX-512 table bitwise the AVX2 one. K is drawn as rows of
 * `stride` floats and handed over in the entry's blocks of 16 positions (ops.h); V as the rows. */
static void check_attention(const trn_cpu_ops *fast, int n_pos, int head_dim, int stride, int n_q) {
    const size_t head_bytes = (size_t)n_q * (size_t)head_dim * sizeof(float);
    float *q = malloc(head_bytes), *rows = malloc((size_t)n_pos * stride * 4), *v = malloc((size_t)n_pos * stride * 4);
    float *k = calloc((size_t)TRN_K_FLOATS(n_pos, head_dim), sizeof(float));
    float *scores = malloc((size_t)TRN_ATTENTION_SCRATCH(n_pos, head_dim) * sizeof(float));
    float *r = malloc(head_bytes), *f = malloc(head_bytes), *parts = malloc(head_bytes);
    for (int i = 0; i < n_q * head_dim; i++)
        q[i] = 2.0f * frand();
    for (int i = 0; i < n_pos * stride; i++) {
        rows[i] = 2.0f * frand();
        v[i] = frand();
    }
    for (int t = 0; t < n_pos; t++)
        for (int d = 0; d < head_dim; d++)
            k[trn_k_index(t, d, head_dim)] = rows[t * stride + d];
    trn_cpu_ops_ref()->attention(q, n_q, k, v, stride, n_pos, head_dim, scores, r);
    /* with one position each head's output is that position's value */
    for (int h = 0; n_pos == 1 && h < n_q; h++)
        CHECK_MSG(test_nmse(r + h * head_dim, v, head_dim) <= 1e-12, "attention over one position returns v");
    if (fast) {
        fast->attention(q, n_q, k, v, stride, n_pos, head_dim, scores, f);
        CHECK_MSG(test_nmse(f, r, (int64_t)n_q * head_dim) <= 1e-11, "attention n_pos %d head_dim %d n_q %d nmse %.3g",
                  n_pos, head_dim, n_q, test_nmse(f, r, (int64_t)n_q * head_dim));
        for (int h = 0; h < n_q; h++)
            fast->attention(q + h * head_dim, 1, k, v, stride, n_pos, head_dim, scores, parts + h * head_dim);
        CHECK_MSG(memcmp(parts, f, head_bytes) == 0, "attention n_pos %d head_dim %d: %d heads together differ from "
                  "one at a time", n_pos, head_dim, n_q);
        const int cut = n_q / 3 + 1;
        if (cut < n_q) {
            fast->attention(q, cut, k, v, stride, n_pos, head_dim, scores, parts);
            fast->attention(q + cut * head_dim, n_q - cut, k, v, stride, n_pos, head_dim, scores, parts + cut * head_dim);
            CHECK_MSG(memcmp(parts, f, head_bytes) == 0, "attention n_pos %d head_dim %d: %d heads cut after %d differ",
                      n_pos, head_dim, n_q, cut);
        }
        const trn_cpu_ops *avx2 = trn_cpu_ops_avx2();
        if (avx2 && avx2 != fast) {
            avx2->attention(q, n_q, k, v, stride, n_pos, head_dim, scores, parts);
            CHECK_MSG(memcmp(parts, f, head_bytes) == 0, "attention n_pos %d head_dim %d n_q %d: the %s table differs "
                      "from the avx2 one", n_pos, head_dim, n_q, fast->name);
        }
    }
    free(q);
    free(rows);
    free(k);
    free(v);
    free(scores);
    free(r);
    free(f);
    free(parts);
}

/* Rows [r0, r1) for matmul as several ranges, the last first: 16-row pieces from the back (the backend's threads
 * claim whole 16-row units; r1 may cut the last), down to r0, which need not be a multiple of 16. */
typedef struct {
    trn_rows base;
    int64_t r0, r1;
} backwards_rows;

static int backwards_next(trn_rows *s, int64_t *r0, int64_t *r1) {
    backwards_rows *b = (backwards_rows *)s;
    if (b->r0 >= b->r1)
        return 0;
    *r1 = b->r1;
    *r0 = b->r1 = TRN_MAX(b->r0, (b->r1 - 1) / 16 * 16);
    return 1;
}

static backwards_rows backwards_from(int64_t r0, int64_t r1) { return (backwards_rows){{backwards_next, 0, 0}, r0, r1}; }

/* Batched matrix products (matmul, the prefill kernel) against the same table's matrix-vector product run per
 * token: bitwise equal for every type (ternary with int8 activations is the kernels' promise; other types and
 * float activations go through matvec). Token counts of 1, odd ones and more than the AVX2 kernel's 64-token tile;
 * row ranges split off a multiple of four, the second part handed over as 16-row ranges from the back; padded row strides (padding must stay untouched); both TQ2_0 layouts.
 * For ternary int8 the scalar and AVX2 matmul are also compared with each other. */
static void check_matmul(const trn_cpu_ops *fast, trn_type type, int64_t rows, int64_t cols, int64_t n_tok, int int8,
                         trn_layout layout) {
    const trn_matrix file = make_matrix(type, rows, cols);
    const int x4 = layout != TRN_LAYOUT_ROWS; /* repacked */
    void *packed = x4 ? trn_alloc(file.row_bytes * (size_t)rows) : NULL;
    const trn_matrix w = x4 ? trn_repack(&file, layout, packed) : file;
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
    /* with the AVX-512 table, the AMX tables too (their matmul entries: the tile kernel, emulated or not) */
    const int amx = fast && fast == trn_cpu_ops_avx512();
    const trn_cpu_ops *tables[4] = {trn_cpu_ops_ref(), fast, amx ? trn_cpu_ops_amx_emulated() : NULL,
                                    amx ? trn_cpu_ops_amx(NULL) : NULL};
    const int64_t cut = rows / 3; /* generally not a multiple of four */
    for (int i = 0; i < 4; i++) {
        if (!tables[i])
            continue;
        const trn_cpu_ops *ops = tables[i];
        for (size_t k = 0; k < dst_bytes / sizeof(float); k++)
            want[k] = got[k] = -7.0f; /* a sentinel: padding must keep it, every element must be written */
        for (int64_t t = 0; t < n_tok; t++)
            ops->matvec(&w, x + t * ld_x, xq ? xq + t * ld_xq : NULL, want + t * ld_dst, 0, rows);
        trn_rows head = trn_rows_range(0, cut);
        backwards_rows tail = backwards_from(cut, rows);
        ops->matmul(&w, x, ld_x, xq, ld_xq, got, ld_dst, n_tok, &head);
        ops->matmul(&w, x, ld_x, xq, ld_xq, got, ld_dst, n_tok, &tail.base);
        CHECK_MSG(memcmp(want, got, dst_bytes) == 0, "%s matmul %s%s %lldx%lld, %lld tokens, act %s: differs from "
                  "matvec per token", ops->name, trn_type_name(type), layout == TRN_LAYOUT_X16 ? " x16" : x4 ? " x4" : "", (long long)rows, (long long)cols,
                  (long long)n_tok, xq ? "int8" : "f32");
        if (i == 0)
            memcpy(ref_got, got, dst_bytes);
        else if (xq)
            CHECK_MSG(memcmp(ref_got, got, dst_bytes) == 0, "%s%s %lldx%lld, %lld tokens: %s matmul differs from the "
                      "scalar one", trn_type_name(type), layout == TRN_LAYOUT_X16 ? " x16" : x4 ? " x4" : "", (long long)rows, (long long)cols,
                      (long long)n_tok, ops->name);
    }
#if defined(TRN_HAVE_AVX2)
    /* both builds of the batched ternary kernel, whichever the table picks on this CPU */
    typedef void (*tq_kernel)(const trn_matrix *, const trn_block_q8_act *, int64_t, float *, int64_t, int64_t,
                              trn_rows *);
    struct { const char *name; tq_kernel kernel; int usable; } variants[] = {
        {"vpmaddubsw", trn_matmul_tq_maddubs, fast != NULL},
#if defined(TRN_HAVE_AVX512)
        {"vpdpbusd", trn_matmul_tq_dpbusd, trn_cpu_ops_avx512() != NULL},
#endif
#if defined(TRN_HAVE_AMX)
        {"amx tdpbsud (emulated tiles)", trn_matmul_tq_amx_emulated, trn_cpu_ops_amx_emulated() != NULL},
        {"amx tdpbsud", trn_matmul_tq_amx, trn_cpu_ops_amx(NULL) != NULL},
#endif
    };
    for (size_t v = 0; xq && v < TRN_ARRAY_LEN(variants); v++) {
        if (!variants[v].usable)
            continue;
        for (size_t k = 0; k < dst_bytes / sizeof(float); k++)
            got[k] = -7.0f;
        trn_rows head = trn_rows_range(0, cut);
        backwards_rows tail = backwards_from(cut, rows);
        variants[v].kernel(&w, xq, ld_xq, got, ld_dst, n_tok, &head);
        variants[v].kernel(&w, xq, ld_xq, got, ld_dst, n_tok, &tail.base);
        CHECK_MSG(memcmp(ref_got, got, dst_bytes) == 0, "%s%s %lldx%lld, %lld tokens: the %s kernel differs from the "
                  "scalar matmul", trn_type_name(type), layout == TRN_LAYOUT_X16 ? " x16" : x4 ? " x4" : "", (long long)rows, (long long)cols,
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
    static const char *simd_names[] = {"avx2", "avx512"};
    for (size_t i = 0; i < TRN_ARRAY_LEN(simd_names); i++) {
        const trn_cpu_ops *ops = trn_cpu_ops_by_name(simd_names[i]);
        if (ops)
            fast_tables[n_fast++] = ops;
        else
            printf("note: no %s kernels on this CPU (or not compiled in): its comparisons are skipped, the others run\n",
                   simd_names[i]);
    }
    if (trn_cpu_ops_avx512()) {
        avx512_other = trn_cpu_ops_avx512_variant(trn_cpu_ops_avx512() != trn_cpu_ops_avx512_variant(1));
        CHECK(avx512_other && avx512_other != trn_cpu_ops_avx512());
        printf("avx512 table: weight prefetch %s on this CPU; the other variant is checked too\n",
               trn_cpu_ops_avx512() == trn_cpu_ops_avx512_variant(1) ? "on" : "off");
    }
    const char *no_amx = NULL;
    if (trn_cpu_ops_amx(&no_amx))
        printf("AMX available on this CPU: the amx table and its tile kernel are checked on real tiles (and emulated)\n");
    else if (trn_cpu_ops_amx_emulated())
        printf("AMX not available on this CPU: real-tile checks skipped (emulator checked): %s\n", no_amx);
    else
        printf("note: no AMX kernel, its comparisons are skipped: %s\n", no_amx);
    check_tables();
    check_sustained_macs();
    static const int64_t act_sizes[] = {256, 2048, 5632};
    for (int t = 0; t < n_fast; t++)
        for (size_t i = 0; i < TRN_ARRAY_LEN(act_sizes); i++)
            check_quantize_act(fast_tables[t], act_sizes[i]);

    /* Trinity-1.1B shapes (rows x cols: q/o, k/v, gate/up, down, the LM head) and odd ones (one row, row counts
     * that are not multiples of 4 or 16, a group and a bit) */
    static const int64_t ternary_shapes[][2] = {{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048},
                                                {1000, 2048}, {1, 256}, {3, 512}, {7, 768}, {13, 256}, {16, 256},
                                                {17, 512}, {37, 1280}, {64, 256}};
    for (size_t i = 0; i < TRN_ARRAY_LEN(ternary_shapes); i++) {
        check_matvec(TRN_TYPE_TQ2_0, ternary_shapes[i][0], ternary_shapes[i][1]);
        check_matvec(TRN_TYPE_TQ1_0, ternary_shapes[i][0], ternary_shapes[i][1]);
    }
    check_ternary_any_bytes(TRN_TYPE_TQ2_0, 37, 512);
    check_ternary_any_bytes(TRN_TYPE_TQ1_0, 37, 512);
    check_ternary_any_bytes(TRN_TYPE_TQ1_0, 16, 1280);
    static const int64_t float_shapes[][2] = {{64, 64}, {172, 64}, {64, 172}, {37, 2048}, {1, 8}, {5, 3}};
    for (size_t i = 0; i < TRN_ARRAY_LEN(float_shapes); i++) {
        check_matvec(TRN_TYPE_F32, float_shapes[i][0], float_shapes[i][1]);
        check_matvec(TRN_TYPE_F16, float_shapes[i][0], float_shapes[i][1]);
        check_matvec(TRN_TYPE_BF16, float_shapes[i][0], float_shapes[i][1]);
    }
    static const int64_t q8_shapes[][2] = {{64, 64}, {172, 160}, {33, 2048}};
    for (size_t i = 0; i < TRN_ARRAY_LEN(q8_shapes); i++)
        check_matvec(TRN_TYPE_Q8_0, q8_shapes[i][0], q8_shapes[i][1]);
    static const int64_t k_shapes[][2] = {{5, 256}, {32, 2048}};
    for (size_t i = 0; i < TRN_ARRAY_LEN(k_shapes); i++) {
        check_matvec(TRN_TYPE_Q4_K, k_shapes[i][0], k_shapes[i][1]);
        check_matvec(TRN_TYPE_Q6_K, k_shapes[i][0], k_shapes[i][1]);
    }
    static const int64_t vec_sizes[] = {1, 7, 23, 64, 172, 2048, 5632}; /* tails of 8 and of 16 lanes */
    for (int t = 0; t < TRN_MAX(n_fast, 1); t++) { /* without a SIMD table: the reference's own checks */
        const trn_cpu_ops *fast = n_fast ? fast_tables[t] : NULL;
        for (size_t i = 0; i < TRN_ARRAY_LEN(vec_sizes) && fast; i++)
            check_vector_ops(fast, vec_sizes[i]);
        check_rope(fast, 32, 64, 0);
        check_rope(fast, 32, 64, 1777);
        check_rope(fast, 8, 8, 5); /* stories260K: head size 8 */
        check_rope(fast, 3, 6, 9); /* a head size that is not a multiple of 8 */
        for (int n_q = 1; n_q <= 12; n_q += n_q < 3 ? 1 : n_q < 8 ? 5 : 4) { /* 1, 2, 3, 8, 12 heads per KV head */
            check_attention(fast, 1, 64, 256, n_q);
            check_attention(fast, 13, 64, 256, n_q);
            check_attention(fast, 32, 64, 256, n_q); /* whole blocks of 16 positions */
            check_attention(fast, 300, 64, 256, n_q);
            check_attention(fast, 9, 8, 32, n_q);
            check_attention(fast, 5, 6, 6, n_q);
            check_attention(fast, 37, 96, 128, n_q); /* a 64-wide block of values, then 8-wide ones */
            check_attention(fast, 70, 128, 256, n_q);
            check_attention(fast, 21, 320, 320, n_q); /* a large head_dim */
        }
        /* rows x cols x tokens: one token, odd counts, groups of 4 (2, 3, 4, 16 + 4), of 8 (5, 6, 8, 16 + 8,
         * 16 + 16 + 5), a group of 16 with 14 tokens, more than a 64-token tile, whole 16-token groups (32, 128) and
         * several 64-token tiles and a part (300); the vpmaddubsw build's groups of 6 with a rest of 2 (8, 32) or 4
         * (14, 37, every 64-token tile), some partly padding (1-5, 20, 37); rows in partial 16-row tiles (7, 13, 35,
         * 37); every layout a table may repack into */
        static const int64_t matmul_shapes[][3] = {{13, 256, 1}, {7, 768, 3},    {64, 512, 65},  {1000, 2048, 5},
                                                   {37, 2048, 2}, {40, 512, 24},  {24, 1024, 37}, {48, 1280, 4},
                                                   {32, 256, 20}, {40, 768, 8},   {35, 512, 6},   {48, 512, 14},
                                                   {33, 512, 32}, {16, 256, 128}, {20, 512, 300}};
        for (size_t i = 0; i < TRN_ARRAY_LEN(matmul_shapes); i++) {
            const int64_t rows = matmul_shapes[i][0], cols = matmul_shapes[i][1], n_tok = matmul_shapes[i][2];
            check_matmul(fast, TRN_TYPE_TQ2_0, rows, cols, n_tok, 1, TRN_LAYOUT_ROWS);
            check_matmul(fast, TRN_TYPE_TQ2_0, rows, cols, n_tok, 1, TRN_LAYOUT_X4);
            check_matmul(fast, TRN_TYPE_TQ2_0, rows, cols, n_tok, 1, TRN_LAYOUT_X16);
            check_matmul(fast, TRN_TYPE_TQ1_0, rows, cols, n_tok, 1, TRN_LAYOUT_ROWS);
            check_matmul(fast, TRN_TYPE_TQ1_0, rows, cols, n_tok, 1, TRN_LAYOUT_X16);
        }
        check_matmul(fast, TRN_TYPE_TQ2_0, 13, 512, 3, 0, TRN_LAYOUT_X4); /* float activations */
        check_matmul(fast, TRN_TYPE_TQ2_0, 21, 512, 3, 0, TRN_LAYOUT_X16);
        check_matmul(fast, TRN_TYPE_TQ1_0, 13, 512, 3, 0, TRN_LAYOUT_X16);
        check_matmul(fast, TRN_TYPE_F32, 172, 64, 3, 0, TRN_LAYOUT_ROWS);
        check_matmul(fast, TRN_TYPE_F16, 37, 2048, 2, 0, TRN_LAYOUT_ROWS);
        check_matmul(fast, TRN_TYPE_Q8_0, 33, 2048, 3, 0, TRN_LAYOUT_ROWS);
        check_matmul(fast, TRN_TYPE_Q4_K, 5, 256, 3, 0, TRN_LAYOUT_ROWS);
    }
    return test_finish("test_ops");
}
