/* ops_avx512.c: the AVX-512 table: ternary matrix-vector products with VNNI (vpdpbusd) on sixteen-row groups
 * (TRN_LAYOUT_X16, ops.h), SwiGLU on 16 lanes, attention from ops_attention_avx512.c; every other entry is the AVX2
 * kernel (ops_simd.h): those ops are a small part of a step and gain nothing measurable from 512-bit registers.
 * This file alone is compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni; ops.c hands its table out only
 * where the CPU has those features. Does not own: the X16 repacking (ops_ref.c), the prefill's matrix-matrix
 * kernels (ops_avx2_matmul*.c).
 *
 * In X16 a 64-byte column holds one dword (four code bytes) of each of 16 rows, and the four activations those
 * codes multiply are the same for every row (ops_simd.h), so vpdpbusd with one broadcast activation dword leaves
 * row k's partial sum in int32 lane k: no horizontal sums, no shuffles. Per block the 16 exact integer sums
 * become floats and are scaled in the reference's order, acc += (d_w * d_x) * (float)(isum - sum), so results
 * are bitwise those of matvec_ref (ops_ref.c), each kernel's scalar reference.
 *
 * Shapes: W [rows][cols] (cols a multiple of 256), xq [cols / 256] int8 blocks, dst [rows]. */
#include <immintrin.h>

#include "ops.h"
#include "ops_simd.h"
#include "quants.h"
#define TRN_VEC_AVX512 1
#include "ops_vec.h"

/* acc += u8 codes . the four activations a[0..3] in every dword lane, broadcast by vpdpbusd from memory ({1to16}):
 * GCC does not fold _mm512_set1_epi32 into it, and the separate vpbroadcastd it emits is slower (profiling/README.md,
 * fourth round). */
static inline __m512i dpbusd_act(__m512i acc, __m512i codes, const int8_t *a) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(codes), "m"(*(const int32_t *)a));
    return acc;
}

/* acc[16] += (d_w[16] * d_x) * (float)(isum[16] - sum): the reference's float steps for 16 rows at once. */
static inline __m512 scale_add(__m512 acc, __m512i isum, const uint8_t *scales, const trn_block_q8_act *xb) {
    const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)scales)), _mm512_set1_ps(xb->d));
    return _mm512_add_ps(acc, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(isum, _mm512_set1_epi32(xb->sum)))));
}

/* Stores the lanes of a group's 16 results that fall in [r0, r1). */
static inline void store_group(__m512 acc, int64_t first, float *dst, int64_t r0, int64_t r1) {
    const int64_t lo = TRN_MAX(first, r0), hi = TRN_MIN(first + TRN_X16_ROWS, r1);
    const __mmask16 lanes = (__mmask16)(((1u << (hi - lo)) - 1) << (lo - first));
    _mm512_mask_storeu_ps(dst + first, lanes, acc);
}

/* ---- TQ2_0 ---- */

/* One group block of 16 rows (1056 bytes): 16 columns; field l (bits 2l..2l+1) of each code byte is taken as
 * q & (3 << 2l), i.e. 4^l times the code, without a shift: field l accumulates apart (two accumulators each, to
 * hide vpdpbusd's latency) and is divided by 4^l once per block, exactly (an arithmetic shift of a multiple of
 * 4^l). Codes up to 3 times |q| <= 127 times 64 stay far inside int32. */
static inline __m512i tq2_0_x16_block(const uint8_t *gb, const int8_t *a, int ahead) {
    __m512i s[4][2];
    for (int l = 0; l < 4; l++)
        s[l][0] = s[l][1] = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int j = 0; j < TRN_TQ2_0_X16_COLUMNS; j++) {
        if (ahead) /* a compile-time constant: the prefetching variant only (matvec_ternary_x16) */
            _mm_prefetch((const char *)gb + TRN_X16_COLUMN_BYTES * j + ahead, _MM_HINT_T0);
        const __m512i q = _mm512_loadu_si512(gb + TRN_X16_COLUMN_BYTES * j);
#pragma GCC unroll 4
        for (int l = 0; l < 4; l++)
            s[l][j & 1] = dpbusd_act(s[l][j & 1], _mm512_and_si512(q, _mm512_set1_epi8((char)(3 << 2 * l))),
                                     a + trn_tq2_0_x16_act(j, l));
    }
    __m512i isum = _mm512_add_epi32(s[0][0], s[0][1]);
    for (int l = 1; l < 4; l++)
        isum = _mm512_add_epi32(isum, _mm512_srai_epi32(_mm512_add_epi32(s[l][0], s[l][1]), 2 * l));
    return isum;
}

/* ---- TQ1_0 ---- */

/* One group block of 16 rows (864 bytes): 13 columns of code bytes q. With t_n = q * 3^n mod 256 (t_0 = q,
 * t_{n+1} = 3 t_n: two byte adds), digit n is c_n = (3 t_n - t_{n+1}) / 256 exactly (3 t_n = 256 c_n + t_{n+1}).
 * So sum_n c_n a_n = (3 sum_n t_n a_n - sum_n t_{n+1} a_n) / 256, two vpdpbusd per digit on the bytes as they
 * are (unsigned t times signed a, exact in int32) instead of extracting digits; the division is an exact
 * arithmetic shift once per block. Column 12 (qh) has four digits: its fifth is not a weight and is left out.
 * Four accumulators of each kind hide vpdpbusd's latency. */
static inline __m512i tq1_0_x16_block(const uint8_t *gb, const int8_t *a, int ahead) {
    __m512i s3[4], s1[4];
    for (int k = 0; k < 4; k++)
        s3[k] = s1[k] = _mm512_setzero_si512();
#pragma GCC unroll 13
    for (int j = 0; j < TRN_TQ1_0_X16_COLUMNS; j++) {
        if (ahead)
            _mm_prefetch((const char *)gb + TRN_X16_COLUMN_BYTES * j + ahead, _MM_HINT_T0);
        __m512i t = _mm512_loadu_si512(gb + TRN_X16_COLUMN_BYTES * j);
#pragma GCC unroll 5
        for (int n = 0; n < trn_tq1_0_x16_digits(j); n++) {
            const int8_t *av = a + trn_tq1_0_x16_act(j, n);
            const __m512i next = _mm512_add_epi8(_mm512_add_epi8(t, t), t);
            s3[(5 * j + n) & 3] = dpbusd_act(s3[(5 * j + n) & 3], t, av);
            s1[(5 * j + n) & 3] = dpbusd_act(s1[(5 * j + n) & 3], next, av);
            t = next;
        }
    }
    const __m512i t3 = _mm512_add_epi32(_mm512_add_epi32(s3[0], s3[1]), _mm512_add_epi32(s3[2], s3[3]));
    const __m512i t1 = _mm512_add_epi32(_mm512_add_epi32(s1[0], s1[1]), _mm512_add_epi32(s1[2], s1[3]));
    return _mm512_srai_epi32(_mm512_sub_epi32(_mm512_add_epi32(_mm512_add_epi32(t3, t3), t3), t1), 8);
}

/* ---- the kernels ---- */

/* Rows [r0, r1) of an X16 matrix of either ternary type: full groups here (a group cut by r0 or r1 is computed
 * whole and only its rows in range stored), the rows after them by the AVX2 kernels, one at a time. `ahead`: bytes
 * of the weight stream prefetched ahead of each column, or 0. Which pays depends on the CPU (profiling/README.md):
 * on AMD Zen 4 the hardware prefetchers follow a group's sequential stream and a prefetch per column cost a third
 * of one thread's speed; on Intel Xeon (Sapphire Rapids class) the stream reached ~70% of the read bound without
 * and ~95% with a prefetch 4 KB ahead. Inlined with a constant `ahead` into the two variants below. */
static inline void matvec_ternary_x16(const trn_matrix *w, const trn_block_q8_act *xq, float *dst, int64_t r0,
                                      int64_t r1, int ahead) {
    const int64_t nb = w->cols / TRN_QK_K, full_rows = trn_layout_full_rows(w);
    const int tq1 = w->type == TRN_TYPE_TQ1_0;
    const int columns = tq1 ? TRN_TQ1_0_X16_COLUMNS : TRN_TQ2_0_X16_COLUMNS;
    const size_t group_block = (size_t)TRN_X16_ROWS * (size_t)trn_type_get(w->type)->block_bytes;
    for (int64_t first = r0 / TRN_X16_ROWS * TRN_X16_ROWS; first < TRN_MIN(r1, full_rows); first += TRN_X16_ROWS) {
        const uint8_t *group = (const uint8_t *)w->data + first / TRN_X16_ROWS * nb * group_block;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *gb = group + b * group_block;
            const __m512i isum = tq1 ? tq1_0_x16_block(gb, xq[b].q, ahead) : tq2_0_x16_block(gb, xq[b].q, ahead);
            acc = scale_add(acc, isum, gb + columns * TRN_X16_COLUMN_BYTES, &xq[b]);
        }
        store_group(acc, first, dst, r0, r1);
    }
    if (r1 > full_rows)
        trn_avx2_matvec(w, NULL, xq, dst, TRN_MAX(r0, full_rows), r1);
}

enum { X16_PREFETCH_AHEAD = 4096 };

static void matvec_avx512(const trn_matrix *w, const float *x, const trn_block_q8_act *xq, float *dst, int64_t r0,
                          int64_t r1) {
    if (xq && w->layout == TRN_LAYOUT_X16 && (w->type == TRN_TYPE_TQ2_0 || w->type == TRN_TYPE_TQ1_0))
        matvec_ternary_x16(w, xq, dst, r0, r1, 0);
    else
        trn_avx2_matvec(w, x, xq, dst, r0, r1);
}

static void matvec_avx512_prefetch(const trn_matrix *w, const float *x, const trn_block_q8_act *xq, float *dst,
                                   int64_t r0, int64_t r1) {
    if (xq && w->layout == TRN_LAYOUT_X16 && (w->type == TRN_TYPE_TQ2_0 || w->type == TRN_TYPE_TQ1_0))
        matvec_ternary_x16(w, xq, dst, r0, r1, X16_PREFETCH_AHEAD);
    else
        trn_avx2_matvec(w, x, xq, dst, r0, r1);
}

/* trn_avx2_swiglu on 16 lanes: the same operations per element, so the same results, in less time (measured in
 * profiling/README.md, Prefill). */
static void swiglu_avx512(const float *gate, const float *up, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + TRN_VEC_W <= n; i += TRN_VEC_W) {
        const vec g = v_load(gate + i);
        const vec silu = _mm512_div_ps(g, v_add(v_set1(1.0f), exp_w(v_sub(_mm512_setzero_ps(), g))));
        v_store(dst + i, v_mul(silu, v_load(up + i)));
    }
    if (i < n)
        trn_avx2_swiglu(gate + i, up + i, dst + i, n - i);
}

/* matmul (ops.h): the vpdpbusd tiles for ternary matrices with int8 activations, matvec per token otherwise. */
static void matmul_avx512(const trn_matrix *w, const float *x, int64_t ld_x, const trn_block_q8_act *xq,
                          int64_t ld_xq, float *dst, int64_t ld_dst, int64_t n_tok, trn_rows *rows) {
    if (xq && trn_type_get(w->type)->is_ternary)
        trn_matmul_tq_dpbusd(w, xq, ld_xq, dst, ld_dst, n_tok, rows);
    else
        trn_matmul_by_matvec(matvec_avx512, w, x, ld_x, xq, ld_xq, dst, ld_dst, n_tok, rows);
}

/* A table of this file's kernels: every entry but the name, matvec and the batched kernel is shared. */
#define X16_TABLE(table_name, matvec_fn, matmul_fn, peak_fn, kernel_name, split_tokens)                          \
    {                                                                                                           \
        .name = table_name, .tq2_0_layout = TRN_LAYOUT_X16, .tq1_0_layout = TRN_LAYOUT_X16,                     \
        .quantize_act = trn_avx2_quantize_act, .matvec = matvec_fn, .get_row = trn_avx2_get_row,                \
        .rmsnorm = trn_avx2_rmsnorm, .rope = trn_avx2_rope,                                                     \
        .attention = trn_avx512_attention, /* ops_attention.c with 16 lanes: the AVX2 build's results */          \
        .swiglu = swiglu_avx512, .matmul = matmul_fn, .matmul_peak = peak_fn, .matmul_kernel = kernel_name,     \
        .add = trn_avx2_add, .matmul_split_tokens = split_tokens,                                               \
    }
static const trn_cpu_ops avx512_ops =
    X16_TABLE("avx512", matvec_avx512, matmul_avx512, trn_matmul_tq_dpbusd_peak, "vpdpbusd", TRN_MATMUL_TILE_TOKENS);
static const trn_cpu_ops avx512_prefetch_ops =
    X16_TABLE("avx512", matvec_avx512_prefetch, matmul_avx512, trn_matmul_tq_dpbusd_peak, "vpdpbusd",
              TRN_MATMUL_TILE_TOKENS);

const trn_cpu_ops *trn_cpu_ops_avx512_table(int prefetch) { return prefetch ? &avx512_prefetch_ops : &avx512_ops; }

#if defined(TRN_HAVE_AMX)
/* The amx tables: the prefetching AVX-512 table (AMX CPUs are Intel's) whose matmul runs ternary matrices with int8
 * activations on AMX tiles (ops_amx_matmul.c), the instructions or their scalar emulator, and other products per
 * token through the table's matvec. */
static void matmul_amx(const trn_matrix *w, const float *x, int64_t ld_x, const trn_block_q8_act *xq, int64_t ld_xq,
                       float *dst, int64_t ld_dst, int64_t n_tok, trn_rows *rows) {
    if (xq && trn_type_get(w->type)->is_ternary)
        trn_matmul_tq_amx(w, xq, ld_xq, dst, ld_dst, n_tok, rows);
    else
        trn_matmul_by_matvec(matvec_avx512_prefetch, w, x, ld_x, xq, ld_xq, dst, ld_dst, n_tok, rows);
}

static void matmul_amx_emulated(const trn_matrix *w, const float *x, int64_t ld_x, const trn_block_q8_act *xq,
                                int64_t ld_xq, float *dst, int64_t ld_dst, int64_t n_tok, trn_rows *rows) {
    if (xq && trn_type_get(w->type)->is_ternary)
        trn_matmul_tq_amx_emulated(w, xq, ld_xq, dst, ld_dst, n_tok, rows);
    else
        trn_matmul_by_matvec(matvec_avx512_prefetch, w, x, ld_x, xq, ld_xq, dst, ld_dst, n_tok, rows);
}

static const trn_cpu_ops amx_ops =
    X16_TABLE("amx", matvec_avx512_prefetch, matmul_amx, trn_matmul_tq_amx_peak, "amx tdpbsud", 0);
/* no matmul_peak: the emulator's speed bounds nothing */
static const trn_cpu_ops amx_emulated_ops =
    X16_TABLE("amx-emulated", matvec_avx512_prefetch, matmul_amx_emulated, NULL, "amx tdpbsud, emulated tiles", 0);

const trn_cpu_ops *trn_cpu_ops_amx_table(int emulated) { return emulated ? &amx_emulated_ops : &amx_ops; }
#endif
#undef X16_TABLE
