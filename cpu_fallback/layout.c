/* layout.c: repacking ternary weight matrices into the grouped layouts and finding any block's bytes in any layout
 * (layout.h). Scalar code, shared by every kernel table. */
#include "layout.h"

#include <stdlib.h>
#include <string.h>

#include "quants.h"

int trn_layout_group_rows(trn_layout layout) {
    return layout == TRN_LAYOUT_X4 ? 4 : layout == TRN_LAYOUT_X16 ? TRN_X16_ROWS : 1;
}

int64_t trn_layout_full_rows(const trn_matrix *w) {
    const int group = trn_layout_group_rows(w->layout);
    return w->layout == TRN_LAYOUT_ROWS ? 0 : w->rows / group * group;
}

void trn_layout_row_span(const trn_matrix *w, int64_t r0, int64_t r1, const uint8_t **start, size_t *bytes) {
    /* a group of rows takes as many bytes as its rows in the file layout, in every layout */
    const int64_t group = trn_layout_group_rows(w->layout), full = trn_layout_full_rows(w);
    const int64_t first = r0 < full ? r0 / group * group : r0;
    const int64_t last = r1 <= full ? (r1 + group - 1) / group * group : r1;
    *start = (const uint8_t *)w->data + (size_t)first * w->row_bytes;
    *bytes = r1 > r0 ? (size_t)((last < w->rows ? last : w->rows) - first) * w->row_bytes : 0;
}

/* A block's bytes are its code bytes (TQ2_0: qs[64]; TQ1_0: qs[48] ++ qh[4]) and then its fp16 scale. In a group
 * block (the blocks of index b of the group's rows), row k's code bytes lie in pieces of `piece` bytes (all of
 * them in X4, four in X16), piece i at i * group * piece + k * piece; the group's scales follow the code bytes. */
typedef struct {
    int group, code_bytes, piece;
    size_t group_block_bytes;
} group_geometry;

static group_geometry geometry(const trn_matrix *w) {
    group_geometry g;
    g.group = trn_layout_group_rows(w->layout);
    g.code_bytes = trn_type_get(w->type)->block_bytes - (int)sizeof(trn_fp16);
    g.piece = w->layout == TRN_LAYOUT_X16 ? 4 : g.code_bytes;
    g.group_block_bytes = (size_t)g.group * (size_t)trn_type_get(w->type)->block_bytes;
    return g;
}

/* Copies the file-layout block `block` of row k of a group block to or from (to_group) its place there. */
static void copy_group_block(const group_geometry *g, uint8_t *group_block, int k, uint8_t *block, int to_group) {
    for (int i = 0; i < g->code_bytes / g->piece; i++) {
        uint8_t *place = group_block + (size_t)(i * g->group + k) * (size_t)g->piece;
        memcpy(to_group ? place : block + i * g->piece, to_group ? block + i * g->piece : place, (size_t)g->piece);
    }
    uint8_t *scale = group_block + g->group * g->code_bytes + 2 * k;
    memcpy(to_group ? scale : block + g->code_bytes, to_group ? block + g->code_bytes : scale, 2);
}

static const uint8_t *group_block_at(const trn_matrix *w, const group_geometry *g, int64_t r, int64_t b) {
    return (const uint8_t *)w->data + ((r / g->group) * (w->cols / TRN_QK_K) + b) * g->group_block_bytes;
}

const trn_ternary_block *trn_ternary_block_at(const trn_matrix *w, int64_t r, int64_t b, trn_ternary_block *scratch) {
    if (r >= trn_layout_full_rows(w))
        return (const trn_ternary_block *)((const uint8_t *)w->data + r * w->row_bytes +
                                           b * trn_type_get(w->type)->block_bytes);
    const group_geometry g = geometry(w);
    copy_group_block(&g, (uint8_t *)group_block_at(w, &g, r, b), (int)(r % g.group), (uint8_t *)scratch, 0);
    return scratch;
}

void trn_tq2_0_block_at(const trn_matrix *w, int64_t r, int64_t b, const uint8_t **qs, trn_fp16 *d) {
    trn_ternary_block scratch;
    const trn_ternary_block *block = trn_ternary_block_at(w, r, b, &scratch);
    *d = block->tq2_0.d;
    if (block != &scratch) {
        *qs = block->tq2_0.qs;
        return;
    }
    if (w->layout != TRN_LAYOUT_X4)
        abort(); /* X16 code bytes are not contiguous: callers use trn_ternary_block_at */
    const group_geometry g = geometry(w);
    *qs = group_block_at(w, &g, r, b) + (r % 4) * g.code_bytes;
}

trn_matrix trn_repack_as(const trn_matrix *src, trn_type type, trn_layout layout, void *dst) {
    if (type != src->type && !(src->type == TRN_TYPE_TQ1_0 && type == TRN_TYPE_TQ2_0))
        abort(); /* the only conversion: TQ1_0 held as TQ2_0 */
    trn_matrix view = *src;
    view.data = dst;
    view.type = type;
    view.row_bytes = trn_row_bytes(type, src->cols);
    view.layout = layout;
    const group_geometry g = geometry(&view);
    const int64_t nb = src->cols / TRN_QK_K, full_rows = trn_layout_full_rows(&view);
    const int src_block_bytes = trn_type_get(src->type)->block_bytes, block_bytes = trn_type_get(type)->block_bytes;
    for (int64_t r = 0; r < src->rows; r++)
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *block = (const uint8_t *)src->data + r * src->row_bytes + b * src_block_bytes;
            trn_block_tq2_0 widened;
            if (type != src->type) { /* the same codes and scale, two bits per weight */
                uint8_t codes[TRN_QK_K];
                trn_tq1_0_block_codes((const trn_block_tq1_0 *)block, codes);
                trn_tq2_0_block_from_codes(codes, ((const trn_block_tq1_0 *)block)->d, &widened);
                block = (const uint8_t *)&widened;
            }
            if (r < full_rows)
                copy_group_block(&g, (uint8_t *)group_block_at(&view, &g, r, b), (int)(r % g.group),
                                 (uint8_t *)block, 1);
            else /* rows past the last full group: the file layout */
                memcpy((uint8_t *)dst + r * view.row_bytes + b * block_bytes, block, (size_t)block_bytes);
        }
    return view;
}

trn_matrix trn_repack(const trn_matrix *src, trn_layout layout, void *dst) {
    return trn_repack_as(src, src->type, layout, dst);
}

void trn_get_row_any_layout(const trn_matrix *w, int64_t row, float *dst) {
    if (w->layout != TRN_LAYOUT_ROWS) {
        for (int64_t b = 0; b < w->cols / TRN_QK_K; b++) {
            trn_ternary_block scratch;
            trn_dequantize_row(w->type, trn_ternary_block_at(w, row, b, &scratch), dst + b * TRN_QK_K, TRN_QK_K);
        }
        return;
    }
    trn_dequantize_row(w->type, (const uint8_t *)w->data + row * w->row_bytes, dst, w->cols);
}
