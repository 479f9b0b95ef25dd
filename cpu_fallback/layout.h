/* layout.h: how the CPU backend lays out ternary weight matrices in memory: the file's row order, and the row groups
 * (X4, X16) that the SIMD kernels read as one sequential stream. Owns trn_matrix (a weight matrix of any type and
 * layout), repacking at load, and where any block's bytes are in any layout. Not the kernels (ops.h). */
#ifndef TRN_LAYOUT_H
#define TRN_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "host/tensor_types.h"

typedef enum {
    TRN_LAYOUT_ROWS = 0, /* as in the file: row after row */
    TRN_LAYOUT_X4 = 1,   /* TQ2_0 repacked at load: rows in groups of four; for each block index b of a group the
                            four blocks' codes (4 x 64 bytes), then their four fp16 scales; rows past the last full
                            group follow in the file layout. One group is read as one sequential stream. */
    TRN_LAYOUT_X16 = 2,  /* TQ1_0 or TQ2_0 repacked at load: rows in groups of sixteen, interleaved four code bytes
                            at a time. For each block index b of a group: column j (j < C, C = code bytes / 4: 13
                            for TQ1_0's qs[48] ++ qh[4], 16 for TQ2_0's qs[64]) is the 16 rows' code bytes
                            4j..4j+3, row after row (64 bytes), then the 16 fp16 scales: 16 x 54 = 864 or 16 x 66
                            = 1056 bytes, the file's size. So one 64-byte column holds a dword of every row and a
                            dword-wise product (vpdpbusd) leaves row k's sum in lane k. Rows past the last full
                            group follow in the file layout. */
} trn_layout;

/* A weight matrix W[rows][cols] of any supported type. */
typedef struct {
    trn_type type;
    const void *data;
    int64_t rows, cols;
    size_t row_bytes;   /* bytes of one row in the file layout */
    trn_layout layout;
} trn_matrix;

#define TRN_X4_GROUP_BLOCK_BYTES (4 * TRN_QK_K / 4 + 4 * 2) /* 264 */
#define TRN_X16_ROWS 16
#define TRN_X16_COLUMN_BYTES (TRN_X16_ROWS * 4) /* 64: one dword of each of the 16 rows */

/* Rows in one group of `layout` (1 for TRN_LAYOUT_ROWS). */
int trn_layout_group_rows(trn_layout layout);
/* Rows of w stored in full groups (the rest follow in the file layout). */
int64_t trn_layout_full_rows(const trn_matrix *w);
/* The bytes that rows [r0, r1) of w lie in, in any layout (whole groups): what a kernel computing those rows
 * reads, in the order it reads them. */
void trn_layout_row_span(const trn_matrix *w, int64_t r0, int64_t r1, const uint8_t **start, size_t *bytes);

/* Writes w (a TQ1_0 or TQ2_0 matrix in the file layout) in `layout` into dst (as many bytes as the file layout)
 * and returns the view. X4 is for TQ2_0 only. */
trn_matrix trn_repack(const trn_matrix *src, trn_layout layout, void *dst);
/* As trn_repack, into `type`: src's own type, or TQ2_0 for a TQ1_0 matrix (the same codes and scales, two bits per
 * weight, so every product gives the same bits; dst holds rows * trn_row_bytes(TQ2_0, cols) bytes). */
trn_matrix trn_repack_as(const trn_matrix *src, trn_type type, trn_layout layout, void *dst);
static inline trn_matrix trn_repack_tq2_0_x4(const trn_matrix *src, void *dst) {
    return trn_repack(src, TRN_LAYOUT_X4, dst);
}
/* Row `row` of W as floats, in any layout (scalar; shared by the tables). */
void trn_get_row_any_layout(const trn_matrix *w, int64_t row, float *dst);

/* One ternary block in the file's bytes. */
typedef union {
    trn_block_tq2_0 tq2_0;
    trn_block_tq1_0 tq1_0;
} trn_ternary_block;
/* Block b of row r of a TQ1_0 or TQ2_0 matrix in any layout, as the file stores it: a pointer into w where the
 * block's bytes are contiguous there, else into *scratch, where they are gathered. */
const trn_ternary_block *trn_ternary_block_at(const trn_matrix *w, int64_t r, int64_t b, trn_ternary_block *scratch);
/* Codes and scale of block b of row r of a TQ2_0 matrix in the file or X4 layout (not X16). */
void trn_tq2_0_block_at(const trn_matrix *w, int64_t r, int64_t b, const uint8_t **qs, trn_fp16 *d);

#endif
