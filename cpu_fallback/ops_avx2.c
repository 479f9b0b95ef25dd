/* ops_avx2.c: the AVX2/FMA/F16C kernels of every CPU op. This file alone is compiled with -mavx2 -mfma
 * -mf16c; ops.c hands its table out only where the CPU has those features. The AVX-512 table (ops_avx512.c)
 * reuses the entries declared in ops_simd.h.
 *
 * Ternary matrix-vector products (the bulk of a ternary model's time) work on groups of rows so one set of
 * activation loads serves several weight streams: sixteen-row groups (X16, the table's layout), TQ2_0 codes
 * unpacked with shifts and masks, TQ1_0 base-3 digits extracted with byte adds and compares (the backend holds
 * TQ1_0 matrices as TQ2_0 for this table, ops.h; the TQ1_0 kernels serve other callers and tests); TQ2_0 in
 * four-row groups (X4), the table's layout until X16 measured faster, for callers that repack so. Codes are
 * multiplied with int8 activations by vpmaddubsw, summed exactly per block in integers, and scaled in the same
 * order as the reference, so results are bitwise identical. Each kernel's scalar reference is matvec_ref
 * (ops_ref.c). */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "ops_simd.h"
#include "ops_vec.h"
#include "quants.h"

/* ---- helpers ---- */

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static float dot_f32_avx2(const float *x, const float *y, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        sum += x[i] * y[i];
    return sum;
}

/* ---- activations ---- */

void trn_avx2_quantize_act(const float *x, trn_block_q8_act *xq, int64_t n) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / TRN_QK_K; b++) {
        const float *xb = x + b * TRN_QK_K;
        __m256 vmax = _mm256_setzero_ps();
        for (int i = 0; i < TRN_QK_K; i += 8)
            vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign_mask, _mm256_loadu_ps(xb + i)));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m);
        const float d = amax / 127.0f;
        const float id = d > 0.0f ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i sum = _mm256_setzero_si256();
        for (int i = 0; i < TRN_QK_K; i += 32) {
            __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i), vid));
            __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 8), vid));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 16), vid));
            __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 24), vid));
            sum = _mm256_add_epi32(sum, _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
            /* pack 32 int32 -> 32 int8; packs interleave 128-bit lanes, the permute restores order */
            __m256i w01 = _mm256_packs_epi32(i0, i1);
            __m256i w23 = _mm256_packs_epi32(i2, i3);
            __m256i bytes = _mm256_packs_epi16(w01, w23);
            bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(xq[b].q + i), bytes);
        }
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s = _mm_hadd_epi32(s, s);
        s = _mm_hadd_epi32(s, s);
        xq[b].d = d;
        xq[b].sum = _mm_cvtsi128_si32(s);
    }
}

/* ---- ternary matrix-vector ---- */

/* Four row sums of 8 int32 lanes each -> one __m128i [r0, r1, r2, r3]. */
static inline __m128i hsum4_epi32(__m256i s0, __m256i s1, __m256i s2, __m256i s3) {
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* TQ1_0 digits (quants.c, tq1_digit): digit n of a code byte q is (t * 3) >> 8 for t = q * 3^n mod 256, that is
 * (t > 85) + (t > 170). The kernels keep ts = t ^ 0x80, which a signed byte compare orders as t; and as
 * (3t mod 256) ^ 0x80 = 3 ts mod 256, the next digit's ts is 3 ts: two byte adds. */
static inline __m256i tq1_ts(__m256i q) { return _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80)); }
static inline __m256i tq1_next(__m256i ts) { return _mm256_add_epi8(_mm256_add_epi8(ts, ts), ts); }
static inline __m256i tq1_digit(__m256i ts) {
    const __m256i gt85 = _mm256_cmpgt_epi8(ts, _mm256_set1_epi8((char)(85 ^ 0x80)));
    const __m256i gt170 = _mm256_cmpgt_epi8(ts, _mm256_set1_epi8((char)(170 ^ 0x80)));
    return _mm256_sub_epi8(_mm256_setzero_si256(), _mm256_add_epi8(gt85, gt170));
}

/* The 256 codes of a TQ1_0 block in the file's bytes, in weight order (tensor_types.h): qs[0..31] in one
 * register, qs[32..47] and qh[0..3] in another. */
static inline void tq1_block_codes_avx2(const trn_block_tq1_0 *block, uint8_t codes[TRN_QK_K]) {
    int32_t qh;
    memcpy(&qh, block->qh, 4);
    __m256i ts0 = tq1_ts(_mm256_loadu_si256((const __m256i *)block->qs));
    __m256i ts1 = tq1_ts(_mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(block->qs + 32))), _mm_cvtsi32_si128(qh), 1));
    for (int n = 0; n < 5; n++) {
        _mm256_storeu_si256((__m256i *)(codes + 32 * n), tq1_digit(ts0));
        const __m256i d1 = tq1_digit(ts1);
        _mm_storeu_si128((__m128i *)(codes + 160 + 16 * n), _mm256_castsi256_si128(d1));
        if (n < 4) {
            const int32_t h = _mm_cvtsi128_si32(_mm256_extracti128_si256(d1, 1));
            memcpy(codes + 240 + 4 * n, &h, 4);
        }
        ts0 = tq1_next(ts0);
        ts1 = tq1_next(ts1);
    }
}

static inline __m256i codes_block_dot16(const uint8_t *codes, const __m256i a[8]) {
    __m256i acc = _mm256_setzero_si256();
    for (int i = 0; i < 8; i++)
        acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)(codes + 32 * i)), a[i]));
    return acc;
}

/* Sum over one half block (128 weights) of code * q for the 32 code bytes at qs, as int16 lanes. */
static inline __m256i tq2_half_dot16(const uint8_t *qs, __m256i a0, __m256i a1, __m256i a2, __m256i a3) {
    const __m256i mask = _mm256_set1_epi8(3);
    const __m256i q = _mm256_loadu_si256((const __m256i *)qs);
    __m256i t = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(q, mask), a0),
                                 _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 2), mask), a1));
    t = _mm256_add_epi16(t, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), mask), a2));
    return _mm256_add_epi16(t, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 6), mask), a3));
}

/* The float step of one block of an X16 group: i0, i1 the sixteen rows' integer sums (rows 0-7, 8-15, one per lane),
 * scales the group block's sixteen fp16 scales: acc += (d_w * d_x) * (float)(isum - sum), the reference's order. */
static inline void x16_block_add(__m256i i0, __m256i i1, const uint8_t *scales, const trn_block_q8_act *x,
                                 __m256 *acc0, __m256 *acc1) {
    const __m256i sum = _mm256_set1_epi32(x->sum);
    const __m256 dx = _mm256_set1_ps(x->d);
    const __m256 sc0 = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)scales)), dx);
    const __m256 sc1 = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scales + 16))), dx);
    *acc0 = _mm256_add_ps(*acc0, _mm256_mul_ps(sc0, _mm256_cvtepi32_ps(_mm256_sub_epi32(i0, sum))));
    *acc1 = _mm256_add_ps(*acc1, _mm256_mul_ps(sc1, _mm256_cvtepi32_ps(_mm256_sub_epi32(i1, sum))));
}

/* TQ2_0 rows [r0, r1), one at a time, in any layout (rows outside full groups, or a range not starting on one). */
static void matvec_tq2_0_rows_avx2(const trn_matrix *w, const trn_block_q8_act *xq, float *dst, int64_t r0,
                                   int64_t r1) {
    const int64_t nb = w->cols / TRN_QK_K;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *file_row = trn_file_row(w, r);
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            trn_ternary_block scratch;
            const trn_block_tq2_0 *block =
                file_row ? (const trn_block_tq2_0 *)file_row + b : &trn_ternary_block_at(w, r, b, &scratch)->tq2_0;
            const uint8_t *qs = block->qs;
            __m256i s = _mm256_setzero_si256();
            for (int half = 0; half < 2; half++) {
                const int8_t *a = xq[b].q + 128 * half;
                s = _mm256_add_epi16(s, tq2_half_dot16(qs + 32 * half, _mm256_loadu_si256((const __m256i *)a),
                                                       _mm256_loadu_si256((const __m256i *)(a + 32)),
                                                       _mm256_loadu_si256((const __m256i *)(a + 64)),
                                                       _mm256_loadu_si256((const __m256i *)(a + 96))));
            }
            s = _mm256_madd_epi16(s, ones);
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            s4 = _mm_hadd_epi32(s4, s4);
            s4 = _mm_hadd_epi32(s4, s4);
            acc += (trn_fp16_to_f32(block->d) * xq[b].d) * (float)(_mm_cvtsi128_si32(s4) - xq[b].sum);
        }
        dst[r] = acc;
    }
}

/* TQ2_0 in the X4 layout: a group of four rows is one sequential stream of 264-byte group blocks. For each
 * half block the four activation vectors are loaded once and serve all four rows; each row's block sum stays
 * in int16 lanes (exact) until one vpmaddwd. */
static void matvec_tq2_0_x4_avx2(const trn_matrix *w, const trn_block_q8_act *xq, float *dst, int64_t r0,
                                 int64_t r1) {
    const int64_t nb = w->cols / TRN_QK_K;
    const int64_t full_rows = w->layout == TRN_LAYOUT_X4 ? w->rows / 4 * 4 : 0;
    const __m256i ones = _mm256_set1_epi16(1), mask = _mm256_set1_epi8(3);
    int64_t r = r0;
    for (; r + 4 <= r1 && r + 4 <= full_rows && r % 4 == 0; r += 4) {
        const uint8_t *group = (const uint8_t *)w->data + (r / 4) * nb * TRN_X4_GROUP_BLOCK_BYTES;
        __m128 acc = _mm_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *gb = group + b * TRN_X4_GROUP_BLOCK_BYTES;
            _mm_prefetch((const char *)gb + TRN_PF_AHEAD, _MM_HINT_T0);
            _mm_prefetch((const char *)gb + TRN_PF_AHEAD + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)gb + TRN_PF_AHEAD + 128, _MM_HINT_T0);
            _mm_prefetch((const char *)gb + TRN_PF_AHEAD + 192, _MM_HINT_T0);
            /* Field l of a half block's 32 bytes, in each row k, into row k's running sum s[k]. The empty asm keeps
             * the four running sums in registers: without it GCC re-associates the unrolled sums into a tree whose
             * 32 products spill to the stack (a fifth of the instructions; 11-16% slower on a Zen 3 core). */
            __m256i s[4];
            for (int k = 0; k < 4; k++)
                s[k] = _mm256_setzero_si256();
            for (int half = 0; half < 2; half++)
                for (int l = 0; l < 4; l++) {
                    const __m256i a = _mm256_loadu_si256((const __m256i *)(xq[b].q + 128 * half + 32 * l));
                    for (int k = 0; k < 4; k++) {
                        const __m256i q = _mm256_loadu_si256((const __m256i *)(gb + 64 * k + 32 * half));
                        const __m256i field = _mm256_and_si256(l ? _mm256_srli_epi16(q, 2 * l) : q, mask);
                        s[k] = _mm256_add_epi16(s[k], _mm256_maddubs_epi16(field, a));
                        __asm__("" : "+x"(s[k]));
                    }
                }
            const __m128i isum = _mm_sub_epi32(
                hsum4_epi32(_mm256_madd_epi16(s[0], ones), _mm256_madd_epi16(s[1], ones), _mm256_madd_epi16(s[2], ones),
                            _mm256_madd_epi16(s[3], ones)),
                _mm_set1_epi32(xq[b].sum));
            const __m128 dw = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(gb + 256)));
            const __m128 scale = _mm_mul_ps(dw, _mm_set1_ps(xq[b].d));
            acc = _mm_add_ps(acc, _mm_mul_ps(scale, _mm_cvtepi32_ps(isum)));
        }
        _mm_storeu_ps(dst + r, acc);
    }
    matvec_tq2_0_rows_avx2(w, xq, dst, r, r1);
}

/* TQ2_0 in the X16 layout (ops.h): a group of sixteen rows is one sequential stream of 1056-byte group blocks, 16
 * columns of 16 rows x 4 code bytes, then 16 scales. A column is two registers (rows 0-7, 8-15) whose dword lanes
 * are rows; field l of column j, (q >> 2l) & 3, holds the codes of weights trn_tq2_0_x16_act(j, l) .. + 3 of every
 * row, which one broadcast dword of activations multiplies by vpmaddubsw. Each row's sums stay in the int16 pair of
 * its lane for half a block (32 products of pairs of at most 3 * 127 each: at most 24384, exact), then one
 * vpmaddwd per register: lane k ends as row k's isum with no horizontal sums, which the X4 kernel pays per block of
 * four rows. Rows of [r0, r1) are stored; rows outside full groups go one at a time. */
static void matvec_tq2_0_x16_avx2(const trn_matrix *w, const trn_block_q8_act *xq, float *dst, int64_t r0,
                                  int64_t r1) {
    const int64_t nb = w->cols / TRN_QK_K, full_rows = trn_layout_full_rows(w);
    const size_t group_block = TRN_X16_ROWS * sizeof(trn_block_tq2_0);
    const __m256i ones = _mm256_set1_epi16(1), mask = _mm256_set1_epi8(3);
    for (int64_t first = r0 / TRN_X16_ROWS * TRN_X16_ROWS; first < TRN_MIN(r1, full_rows); first += TRN_X16_ROWS) {
        const uint8_t *group = (const uint8_t *)w->data + first / TRN_X16_ROWS * nb * group_block;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *gb = group + b * group_block;
            const int8_t *a = xq[b].q;
            __m256i i0 = _mm256_setzero_si256(), i1 = i0;
            for (int half = 0; half < 2; half++) { /* columns 8 half .. 8 half + 7: weights 128 half .. + 127 */
                const uint8_t *gh = gb + 8 * TRN_X16_COLUMN_BYTES * half;
                const int8_t *ah = a + 128 * half; /* constant offsets from gh and ah in the unrolled loop */
                __m256i s0 = _mm256_setzero_si256(), s1 = s0;
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    _mm_prefetch((const char *)gh + TRN_X16_COLUMN_BYTES * j + TRN_PF_AHEAD, _MM_HINT_T0);
                    const __m256i q0 = _mm256_loadu_si256((const __m256i *)(gh + TRN_X16_COLUMN_BYTES * j));
                    const __m256i q1 = _mm256_loadu_si256((const __m256i *)(gh + TRN_X16_COLUMN_BYTES * j + 32));
#pragma GCC unroll 4
                    for (int l = 0; l < 4; l++) {
                        int32_t act;
                        memcpy(&act, ah + trn_tq2_0_x16_act(j, l), 4);
                        const __m256i av = _mm256_set1_epi32(act);
                        s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(
                                                      _mm256_and_si256(l ? _mm256_srli_epi16(q0, 2 * l) : q0, mask), av));
                        s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(
                                                      _mm256_and_si256(l ? _mm256_srli_epi16(q1, 2 * l) : q1, mask), av));
                        __asm__("" : "+x"(s0), "+x"(s1)); /* as in the X4 kernel: no re-associated tree */
                    }
                }
                i0 = _mm256_add_epi32(i0, _mm256_madd_epi16(s0, ones));
                i1 = _mm256_add_epi32(i1, _mm256_madd_epi16(s1, ones));
            }
            x16_block_add(i0, i1, gb + TRN_TQ2_0_X16_COLUMNS * TRN_X16_COLUMN_BYTES, &xq[b], &acc0, &acc1);
        }
        float sums[TRN_X16_ROWS];
        _mm256_storeu_ps(sums, acc0);
        _mm256_storeu_ps(sums + 8, acc1);
        trn_store_group_rows(sums, TRN_X16_ROWS, first, dst, r0, r1);
    }
    if (r1 > full_rows)
        matvec_tq2_0_rows_avx2(w, xq, dst, TRN_MAX(r0, full_rows), r1);
}

/* TQ1_0, one row at a time (the file layout, and rows outside full groups): each block's base-3 digits are
 * unpacked into codes, then multiplied as for TQ2_0. */
static void matvec_tq1_0_avx2(const trn_matrix *w, const trn_block_q8_act *xq, float *dst, int64_t r0, int64_t r1) {
    const int64_t nb = w->cols / TRN_QK_K;
    const __m256i ones = _mm256_set1_epi16(1);
    _Alignas(32) uint8_t codes[TRN_QK_K];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *file_row = trn_file_row(w, r);
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            __m256i a[8];
            for (int i = 0; i < 8; i++)
                a[i] = _mm256_loadu_si256((const __m256i *)(xq[b].q + 32 * i));
            trn_ternary_block scratch;
            const trn_block_tq1_0 *block =
                file_row ? (const trn_block_tq1_0 *)file_row + b : &trn_ternary_block_at(w, r, b, &scratch)->tq1_0;
            tq1_block_codes_avx2(block, codes);
            __m256i s = _mm256_madd_epi16(codes_block_dot16(codes, a), ones);
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            s4 = _mm_hadd_epi32(s4, s4);
            s4 = _mm_hadd_epi32(s4, s4);
            acc += (trn_fp16_to_f32(block->d) * xq[b].d) * (float)(_mm_cvtsi128_si32(s4) - xq[b].sum);
        }
        dst[r] = acc;
    }
}

/* TQ1_0 in the X16 layout (ops.h): a group of sixteen rows is one sequential stream of 864-byte group blocks,
 * 13 columns of 16 rows x 4 code bytes, then 16 scales. A column is two registers (rows 0-7, 8-15) whose dword
 * lanes are rows. For each digit n, one broadcast dword of activations (trn_tq1_0_x16_act) multiplies every
 * row's four digits by vpmaddubsw; each row's block sum stays in the int16 pair of its lane (64 products of
 * pairs of at most 2 * 127 each: at most 32512, exact) until one vpmaddwd, so lane k ends as row k's isum.
 * Rows of [r0, r1) are stored; rows outside full groups go one at a time. */
static void matvec_tq1_0_x16_avx2(const trn_matrix *w, const trn_block_q8_act *xq, float *dst, int64_t r0,
                                  int64_t r1) {
    const int64_t nb = w->cols / TRN_QK_K, full_rows = trn_layout_full_rows(w);
    const size_t group_block = TRN_X16_ROWS * sizeof(trn_block_tq1_0);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t first = r0 / TRN_X16_ROWS * TRN_X16_ROWS; first < TRN_MIN(r1, full_rows); first += TRN_X16_ROWS) {
        const uint8_t *group = (const uint8_t *)w->data + first / TRN_X16_ROWS * nb * group_block;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *gb = group + b * group_block;
            const int8_t *a = xq[b].q;
            __m256i s0 = _mm256_setzero_si256(), s1 = s0;
#pragma GCC unroll 13
            for (int j = 0; j < TRN_TQ1_0_X16_COLUMNS; j++) {
                _mm_prefetch((const char *)gb + TRN_X16_COLUMN_BYTES * j + TRN_PF_AHEAD, _MM_HINT_T0);
                __m256i ts0 = tq1_ts(_mm256_loadu_si256((const __m256i *)(gb + TRN_X16_COLUMN_BYTES * j)));
                __m256i ts1 = tq1_ts(_mm256_loadu_si256((const __m256i *)(gb + TRN_X16_COLUMN_BYTES * j + 32)));
#pragma GCC unroll 5
                for (int n = 0; n < trn_tq1_0_x16_digits(j); n++) {
                    int32_t act;
                    memcpy(&act, a + trn_tq1_0_x16_act(j, n), 4);
                    const __m256i av = _mm256_set1_epi32(act);
                    s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(tq1_digit(ts0), av));
                    s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(tq1_digit(ts1), av));
                    ts0 = tq1_next(ts0);
                    ts1 = tq1_next(ts1);
                }
            }
            x16_block_add(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones),
                          gb + TRN_TQ1_0_X16_COLUMNS * TRN_X16_COLUMN_BYTES, &xq[b], &acc0, &acc1);
        }
        float sums[TRN_X16_ROWS];
        _mm256_storeu_ps(sums, acc0);
        _mm256_storeu_ps(sums + 8, acc1);
        trn_store_group_rows(sums, TRN_X16_ROWS, first, dst, r0, r1);
    }
    if (r1 > full_rows)
        matvec_tq1_0_avx2(w, xq, dst, TRN_MAX(r0, full_rows), r1);
}

/* ---- float-family matrix-vector ---- */

static float row_dot_f16(const trn_fp16 *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8))), _mm256_loadu_ps(x + i + 8), a1);
    }
    float sum = hsum_ps(_mm256_add_ps(a0, a1));
    for (; i < n; i++)
        sum += trn_fp16_to_f32(w[i]) * x[i];
    return sum;
}

static float row_dot_bf16(const trn_bf16 *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i wi = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + i))), 16);
        a0 = _mm256_fmadd_ps(_mm256_castsi256_ps(wi), _mm256_loadu_ps(x + i), a0);
    }
    float sum = hsum_ps(a0);
    for (; i < n; i++)
        sum += trn_bf16_to_f32(w[i]) * x[i];
    return sum;
}

static float row_dot_q8_0(const trn_block_q8_0 *blocks, const float *x, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / TRN_QK8_0; b++) {
        const float *xb = x + b * TRN_QK8_0;
        __m256 s = _mm256_setzero_ps();
        for (int i = 0; i < TRN_QK8_0; i += 8) {
            __m256 wq = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blocks[b].qs + i))));
            s = _mm256_fmadd_ps(wq, _mm256_loadu_ps(xb + i), s);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(trn_fp16_to_f32(blocks[b].d)), s, acc);
    }
    return hsum_ps(acc);
}

/* Ternary rows with float activations: each block's codes are unpacked, widened to floats and multiplied
 * with x by FMA; one sum per block, scaled by the block's d. */
static void matvec_ternary_f32_avx2(const trn_matrix *w, const float *x, float *dst, int64_t r0, int64_t r1) {
    const int64_t nb = w->cols / TRN_QK_K;
    _Alignas(32) uint8_t codes[TRN_QK_K];
    const __m256i one = _mm256_set1_epi32(1);
    for (int64_t r = r0; r < r1; r++) {
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            float d;
            trn_ternary_block scratch;
            const trn_ternary_block *block = trn_ternary_block_at(w, r, b, &scratch);
            if (w->type == TRN_TYPE_TQ2_0) {
                const uint8_t *qs = block->tq2_0.qs;
                const __m256i mask = _mm256_set1_epi8(3);
                for (int half = 0; half < 2; half++) { /* codes of weights 128 half + 32 l + m */
                    const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * half));
                    for (int l = 0; l < 4; l++)
                        _mm256_store_si256((__m256i *)(codes + 128 * half + 32 * l),
                                           _mm256_and_si256(_mm256_srli_epi16(q, 2 * l), mask));
                }
                d = trn_fp16_to_f32(block->tq2_0.d);
            } else {
                tq1_block_codes_avx2(&block->tq1_0, codes);
                d = trn_fp16_to_f32(block->tq1_0.d);
            }
            const float *xb = x + b * TRN_QK_K;
            __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
            for (int i = 0; i < TRN_QK_K; i += 16) {
                __m256i c0 = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(codes + i))), one);
                __m256i c1 = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(codes + i + 8))), one);
                s0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c0), _mm256_loadu_ps(xb + i), s0);
                s1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c1), _mm256_loadu_ps(xb + i + 8), s1);
            }
            acc += d * hsum_ps(_mm256_add_ps(s0, s1));
        }
        dst[r] = acc;
    }
}

void trn_avx2_matvec(const trn_matrix *w, const float *x, const trn_block_q8_act *xq, float *dst, int64_t r0,
                     int64_t r1) {
    if ((w->type == TRN_TYPE_TQ2_0 || w->type == TRN_TYPE_TQ1_0) && !xq) {
        matvec_ternary_f32_avx2(w, x, dst, r0, r1);
        return;
    }
    if (w->type == TRN_TYPE_TQ2_0) { /* any layout: rows outside X16 or X4 groups go one at a time */
        if (w->layout == TRN_LAYOUT_X16)
            matvec_tq2_0_x16_avx2(w, xq, dst, r0, r1);
        else
            matvec_tq2_0_x4_avx2(w, xq, dst, r0, r1);
        return;
    }
    if (w->type == TRN_TYPE_TQ1_0) { /* any layout: rows outside X16 groups go one at a time */
        if (w->layout == TRN_LAYOUT_X16)
            matvec_tq1_0_x16_avx2(w, xq, dst, r0, r1);
        else
            matvec_tq1_0_avx2(w, xq, dst, r0, r1);
        return;
    }
    if (w->type == TRN_TYPE_Q4_K || w->type == TRN_TYPE_Q6_K) {
        trn_matvec_via_dequant(w, x, dst, r0, r1, dot_f32_avx2);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const void *row = (const uint8_t *)w->data + r * w->row_bytes;
        switch (w->type) {
        case TRN_TYPE_F32: dst[r] = dot_f32_avx2(row, x, w->cols); break;
        case TRN_TYPE_F16: dst[r] = row_dot_f16(row, x, w->cols); break;
        case TRN_TYPE_BF16: dst[r] = row_dot_bf16(row, x, w->cols); break;
        case TRN_TYPE_Q8_0: dst[r] = row_dot_q8_0(row, x, w->cols); break;
        default: break;
        }
    }
}

void trn_avx2_get_row(const trn_matrix *w, int64_t row, float *dst) {
    const void *src = (const uint8_t *)w->data + row * w->row_bytes;
    if (w->type == TRN_TYPE_F16 && w->layout == TRN_LAYOUT_ROWS) {
        const trn_fp16 *h = src;
        int64_t i = 0;
        for (; i + 8 <= w->cols; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
        for (; i < w->cols; i++)
            dst[i] = trn_fp16_to_f32(h[i]);
        return;
    }
    trn_get_row_any_layout(w, row, dst);
}

/* ---- vector ops ---- */

void trn_avx2_rmsnorm(const float *x, const float *weight, float *dst, int64_t n, float eps, int64_t begin,
                      int64_t end) {
    const float ss = dot_f32_avx2(x, x, n);
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    const __m256 vs = _mm256_set1_ps(scale);
    int64_t i = begin;
    for (; i + 8 <= end; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), _mm256_loadu_ps(weight + i)));
    for (; i < end; i++)
        dst[i] = x[i] * scale * weight[i];
}

void trn_avx2_rope(const float *src, float *dst, int n_heads, int head_dim, const float *cos_sin) {
    for (int h = 0; h < n_heads; h++) {
        const float *s = src + h * head_dim;
        float *d = dst + h * head_dim;
        int i = 0;
        for (; i + 8 <= head_dim; i += 8) {
            __m256 x = _mm256_loadu_ps(s + i);            /* x0 x1 | x0' x1' ... */
            __m256 cs = _mm256_loadu_ps(cos_sin + i);     /* c  s  | c'  s'  ... */
            __m256 c = _mm256_moveldup_ps(cs);            /* c  c  */
            __m256 sn = _mm256_movehdup_ps(cs);           /* s  s  */
            __m256 swapped = _mm256_permute_ps(x, 0xb1);  /* x1 x0 */
            /* even: x0 c - x1 s; odd: x1 c + x0 s */
            __m256 out = _mm256_addsub_ps(_mm256_mul_ps(x, c), _mm256_mul_ps(swapped, sn));
            _mm256_storeu_ps(d + i, out);
        }
        for (; i < head_dim; i += 2) {
            const float c = cos_sin[i], sn = cos_sin[i + 1], x0 = s[i], x1 = s[i + 1];
            d[i] = x0 * c - x1 * sn;
            d[i + 1] = x0 * sn + x1 * c;
        }
    }
}

/* ---- attention: ops_attention.c ---- */

/* ---- elementwise ---- */

void trn_avx2_swiglu(const float *gate, const float *up, float *dst, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp_w(_mm256_sub_ps(_mm256_setzero_ps(), g)); /* ops_vec.h */
        __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(dst + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++)
        dst[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

void trn_avx2_add(const float *a, const float *b, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < n; i++)
        dst[i] = a[i] + b[i];
}

/* matmul (ops.h): the vpmaddubsw tiles for ternary matrices with int8 activations, matvec per token otherwise. */
static void matmul_avx2(const trn_matrix *w, const float *x, int64_t ld_x, const trn_block_q8_act *xq, int64_t ld_xq,
                        float *dst, int64_t ld_dst, int64_t n_tok, trn_rows *rows) {
    if (xq && trn_type_get(w->type)->is_ternary)
        trn_matmul_tq_maddubs(w, xq, ld_xq, dst, ld_dst, n_tok, rows);
    else
        trn_matmul_by_matvec(trn_avx2_matvec, w, x, ld_x, xq, ld_xq, dst, ld_dst, n_tok, rows);
}

static const trn_cpu_ops avx2_ops = {
    .name = "avx2",
    .tq2_0_layout = TRN_LAYOUT_X16,
    .tq1_0_layout = TRN_LAYOUT_X16,
    .tq1_0_as_tq2_0 = 1, /* its TQ2_0 kernel, reading 22% more bytes, is ~1.6x its TQ1_0 one (ops.h) */
    .quantize_act = trn_avx2_quantize_act,
    .matvec = trn_avx2_matvec,
    .get_row = trn_avx2_get_row,
    .rmsnorm = trn_avx2_rmsnorm,
    .rope = trn_avx2_rope,
    .attention = trn_avx2_attention,
    .swiglu = trn_avx2_swiglu,
    .add = trn_avx2_add,
    .matmul = matmul_avx2,
    .matmul_peak = trn_matmul_tq_maddubs_peak,
    .matmul_kernel = "vpmaddubsw",
    .matmul_split_tokens = 0, /* rows: split by tokens it was no faster (cpu_fallback/README.md) */
};

const trn_cpu_ops *trn_cpu_ops_avx2_table(void) { return &avx2_ops; }
