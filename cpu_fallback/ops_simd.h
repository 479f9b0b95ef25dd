/* ops_simd.h: internal to cpu_fallback/: what the SIMD kernel files (ops_avx2.c, ops_avx512.c) and ops.c share.
 *
 * - the tables' getters (ops.c hands them out after checking the CPU);
 * - the AVX2 entries the AVX-512 table reuses where 512-bit registers gain nothing (defined in ops_avx2.c);
 * - the X16 geometry of the ternary kernels: which four activations go with the codes in one dword of a column;
 * - where a row's blocks are, and storing a group's 16 row results into the rows a call owns.
 * No intrinsics here: ops.c includes it without any -m flag. */
#ifndef TRN_OPS_SIMD_H
#define TRN_OPS_SIMD_H

#include "host/common.h"
#include "ops.h"

const trn_cpu_ops *trn_cpu_ops_avx2_table(void);   /* ops_avx2.c */
const trn_cpu_ops *trn_cpu_ops_avx512_table(int prefetch); /* ops_avx512.c: with or without weight prefetch */
const trn_cpu_ops *trn_cpu_ops_amx_table(int emulated);   /* ops_avx512.c: AMX tiles or their emulator */

/* ops_avx2.c, with the semantics of the trn_cpu_ops entries of the same names. */
void trn_avx2_quantize_act(const float *x, trn_block_q8_act *xq, int64_t n);
void trn_avx2_matvec(const trn_matrix *w, const float *x, const trn_block_q8_act *xq, float *dst, int64_t r0,
                     int64_t r1);
void trn_avx2_get_row(const trn_matrix *w, int64_t row, float *dst);
void trn_avx2_rmsnorm(const float *x, const float *weight, float *dst, int64_t n, float eps, int64_t begin,
                      int64_t end);
void trn_avx2_rope(const float *src, float *dst, int n_heads, int head_dim, const float *cos_sin);
/* ops_attention.c, built with AVX2 (trn_avx2_attention) and with AVX-512 (trn_avx512_attention, ops_attention_avx512.c) */
void trn_avx2_attention(const float *q, int n_q, const float *k_cache, const float *v_cache, int64_t v_stride,
                        int n_pos, int head_dim, float *scores, float *out);
void trn_avx512_attention(const float *q, int n_q, const float *k_cache, const float *v_cache, int64_t v_stride,
                          int n_pos, int head_dim, float *scores, float *out);
void trn_avx2_swiglu(const float *gate, const float *up, float *dst, int64_t n);
void trn_avx2_add(const float *a, const float *b, float *dst, int64_t n);

#ifndef TRN_PF_AHEAD
#define TRN_PF_AHEAD 2048 /* bytes of a sequential weight stream prefetched ahead of use */
#endif

/* ---- X16 geometry (ops.h, TRN_LAYOUT_X16) ---------------------------------------------------------------
 * Column j of a group block holds code bytes 4j..4j+3 of each row. The activations that multiply those four
 * bytes' codes are four consecutive ones of the block, the same for every row, so one broadcast dword serves
 * all 16 rows. */

#define TRN_TQ2_0_X16_COLUMNS 16 /* qs[64] / 4 */
#define TRN_TQ1_0_X16_COLUMNS 13 /* (qs[48] ++ qh[4]) / 4 */

/* TQ2_0: bits 2l..2l+1 of qs byte 32h + m are weight 128h + 32l + m (tensor_types.h). */
static inline int trn_tq2_0_x16_act(int j, int l) { return 128 * (j / 8) + 32 * l + 4 * (j % 8); }

/* TQ1_0: digit n of qs byte m < 32 is weight 32n + m, of qs byte 32 + m is 160 + 16n + m, of qh byte m is
 * 240 + 4n + m (tensor_types.h). */
static inline int trn_tq1_0_x16_act(int j, int n) {
    return j < 8 ? 32 * n + 4 * j : j < 12 ? 160 + 16 * n + 4 * (j - 8) : 240 + 4 * n;
}
/* Digits that carry weights in the bytes of column j: five, but four in qh (column 12). */
static inline int trn_tq1_0_x16_digits(int j) { return j < 12 ? 5 : 4; }

/* Row r's bytes where the row lies in the file layout (any row of TRN_LAYOUT_ROWS, rows after the last full group
 * otherwise), else NULL: then trn_ternary_block_at gathers each of its blocks. */
static inline const uint8_t *trn_file_row(const trn_matrix *w, int64_t r) {
    return r >= trn_layout_full_rows(w) ? (const uint8_t *)w->data + r * w->row_bytes : NULL;
}

/* dst[r] = sums[r - first] for the rows r of the group starting at `first` that lie in [r0, r1). */
static inline void trn_store_group_rows(const float *sums, int group, int64_t first, float *dst, int64_t r0,
                                        int64_t r1) {
    for (int64_t r = TRN_MAX(first, r0); r < TRN_MIN(first + group, r1); r++)
        dst[r] = sums[r - first];
}

#endif
