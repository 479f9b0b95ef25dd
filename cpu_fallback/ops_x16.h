/* ops_x16.h: one block of a whole X16 group of 16 ternary rows, decoded into the transposed tile both batched
 * AVX-512 kernels multiply (ops_avx2_matmul.c's vpdpbusd build, ops_amx_matmul.c). Intrinsics: include it only
 * from files compiled with AVX-512 F and BW. */
#ifndef TRN_OPS_X16_H
#define TRN_OPS_X16_H

#include <immintrin.h>

#include "ops_simd.h"

#if !defined(__AVX512F__) || !defined(__AVX512BW__)
#error "ops_x16.h needs AVX-512 F and BW"
#endif

/* The group block holding block b of the X16 group of row r (r a multiple of 16). */
static inline const uint8_t *trn_x16_group_block(const trn_matrix *w, int64_t r, int64_t b) {
    const int64_t nb = w->cols / TRN_QK_K;
    const int64_t group_block = TRN_X16_ROWS * (int64_t)trn_type_get(w->type)->block_bytes;
    return (const uint8_t *)w->data + ((r / TRN_X16_ROWS) * nb + b) * group_block;
}

/* codes[step][row] = the 4 codes (one per byte, 0..2) of weights 4 step .. 4 step + 3 of each of the 16 rows, d[row]
 * = the rows' scales. gb: the group block, 16 code columns (TQ2_0) or 13 (TQ1_0), then the 16 fp16 scales. */

/* TQ2_0: column j's bits 2l are the codes of weights trn_tq2_0_x16_act(j, l) .. + 3 (a shift and a mask). */
static inline void trn_x16_unpack_tq2(const uint8_t *gb, uint32_t codes[TRN_QK_K / 4][TRN_X16_ROWS],
                                      float d[TRN_X16_ROWS]) {
    _mm512_store_ps(d, _mm512_cvtph_ps(_mm256_loadu_si256(
                           (const __m256i *)(gb + TRN_TQ2_0_X16_COLUMNS * TRN_X16_COLUMN_BYTES))));
    for (int j = 0; j < TRN_TQ2_0_X16_COLUMNS; j++) {
        const __m512i column = _mm512_loadu_si512((const void *)(gb + j * TRN_X16_COLUMN_BYTES));
        for (int l = 0; l < 4; l++)
            _mm512_store_si512(codes[trn_tq2_0_x16_act(j, l) / 4],
                               _mm512_and_si512(_mm512_srli_epi32(column, 2 * l), _mm512_set1_epi8(3)));
    }
}

/* Digit n of TQ1_0 code bytes from t = t_n (= q 3^n mod 256): (3 t_n) >> 8, i.e. (t > 85) + (t > 170). */
static inline __m512i trn_tq1_0_digit(__m512i t) {
    const __mmask64 one = _mm512_cmpgt_epu8_mask(t, _mm512_set1_epi8(85));
    const __mmask64 two = _mm512_cmpgt_epu8_mask(t, _mm512_set1_epi8((char)170));
    return _mm512_mask_mov_epi8(_mm512_maskz_mov_epi8(one, _mm512_set1_epi8(1)), two, _mm512_set1_epi8(2));
}

/* TQ1_0: digit n of column j's bytes (t_{n+1} = 3 t_n: two byte adds) codes weights trn_tq1_0_x16_act(j, n) .. + 3. */
static inline void trn_x16_unpack_tq1(const uint8_t *gb, uint32_t codes[TRN_QK_K / 4][TRN_X16_ROWS],
                                      float d[TRN_X16_ROWS]) {
    _mm512_store_ps(d, _mm512_cvtph_ps(_mm256_loadu_si256(
                           (const __m256i *)(gb + TRN_TQ1_0_X16_COLUMNS * TRN_X16_COLUMN_BYTES))));
    for (int j = 0; j < TRN_TQ1_0_X16_COLUMNS; j++) {
        __m512i t = _mm512_loadu_si512((const void *)(gb + j * TRN_X16_COLUMN_BYTES));
        for (int n = 0; n < trn_tq1_0_x16_digits(j); n++) {
            _mm512_store_si512(codes[trn_tq1_0_x16_act(j, n) / 4], trn_tq1_0_digit(t));
            t = _mm512_add_epi8(_mm512_add_epi8(t, t), t);
        }
    }
}

#endif
