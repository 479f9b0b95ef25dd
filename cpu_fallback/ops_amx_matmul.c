/* ops_amx_matmul.c: the batched (prefill) ternary matrix-matrix kernel on AMX tiles, the `amx` table's matmul (ops.h).
 * Compiled with the AVX-512 table's flags and -mamx-tile -mamx-int8: trn_matmul_tq_amx and trn_matmul_tq_amx_peak,
 * used only where trn_amx_usable (amx.h) says the CPU and OS allow it. Compiled a second time by
 * ops_amx_matmul_emulated.c with TRN_AMX_EMULATE (AVX-512 flags only): trn_matmul_tq_amx_emulated, the same code
 * with every tile operation done by amx.c's scalar emulator, which the tests run on CPUs without AMX.
 *
 * The vpdpbusd kernel (ops_avx2_matmul.c) multiplies a tile of 16 rows' codes by one token at a time; here one
 * tdpbsud multiplies 16 rows by 16 tokens over 64 weights:
 *   C[t][k] += sum over p < 16, i < 4 of s8(A[t][4p + i]) * u8(B[p][4k + i])
 * - A (tokens x weights): 16 tokens' int8 activations for weights 64s..64s+63 of a block (K-step s), a row per
 *   token, loaded straight from a dense copy of the activations ([block][token][256], dense_acts).
 * - B (4-weight steps x rows): step 16s + p of the 16 rows, four codes (0..2, unsigned) of row k in dword k: the
 *   codes transposed as the vpdpbusd kernel forms them and as the X16 layout stores them (one 64-byte column per
 *   step), so X16 groups go into B with a shift and a mask and no transpose.
 * - C (tokens x rows): int32; after the block's 4 K-steps, C[t][k] = sum(code * q) of row k's block for token t.
 * tdpbsud multiplies signed bytes of A by unsigned bytes of B, so the sums are the exact integers every other kernel
 * forms (codes 0..2 times int8 activations, at most 256 x 2 x 127 in magnitude), with no correction. Block scales
 * differ per block, so each block's C is stored and turned into floats before the next: isum - sum (the -1 offset of
 * the codes), then acc += (d_w * d_x) * (float)(isum - sum), block by block from 0, the matrix-vector kernels' float
 * steps in their order. So every output is bitwise what matvec gives, and what the vpdpbusd kernel gives.
 *
 * Tile registers (all 16 rows x 64 bytes): tmm0..3 B of the block's four K-steps (loaded once per block and row tile,
 * used by every token group), tmm4, tmm5 C and tmm6, tmm7 A of two token groups at a time.
 *
 * Shapes: W [rows][cols] (cols a multiple of 256); xq [n_tok][ld_xq] int8 blocks; dst [n_tok][ld_dst] floats. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "amx.h"
#include "host/common.h"
#include "ops.h"
#include "ops_simd.h"
#include "ops_x16.h"
#include "quants.h"

#if !defined(TRN_TILE_DPBSUD)
#error "ops_amx_matmul.c: compile with -mamx-tile -mamx-int8, or define TRN_AMX_EMULATE (amx.h)"
#endif

#if defined(TRN_AMX_EMULATE)
#define TRN_MATMUL_AMX trn_matmul_tq_amx_emulated
#else
#define TRN_MATMUL_AMX trn_matmul_tq_amx
#endif

enum {
    TILE_ROWS = 16,             /* weight rows per tile: C's columns, B's dwords */
    GROUP_TOKENS = 16,          /* tokens per tile: C's and A's rows */
    TILE_TOKENS = 64,           /* tokens whose activations are copied together (a multiple of GROUP_TOKENS) */
    STEPS = TRN_QK_K / 4,       /* 4-weight steps per block */
    K_STEP_BYTES = 64,          /* weights per tdpbsud: A's bytes per row */
    K_STEPS = TRN_QK_K / K_STEP_BYTES,
};

/* One block of a tile: step j (weights 4j..4j+3), row k at codes[j][k] (4 codes, one per byte); the rows' scales.
 * Rows 16s..16s+15 of codes are K-step s's B tile (64 bytes per row). */
typedef struct {
    _Alignas(64) uint32_t codes[STEPS][TILE_ROWS];
    _Alignas(64) float d[TILE_ROWS];
} tile_block;

/* Block b of the next tile's rows into L2, a whole tile ahead of use (whole X16 groups; other layouts row by row). */
static void prefetch_next_tile(const trn_matrix *w, int64_t r, int64_t b) {
    const int64_t next = r + TILE_ROWS, nb = w->cols / TRN_QK_K;
    const int block_bytes = trn_type_get(w->type)->block_bytes;
    if (w->layout == TRN_LAYOUT_X16 && next % TRN_X16_ROWS == 0 && next + TRN_X16_ROWS <= trn_layout_full_rows(w)) {
        const size_t group_block = (size_t)TRN_X16_ROWS * (size_t)block_bytes;
        for (size_t i = 0; i < group_block + 64; i += 64)
            _mm_prefetch((const char *)w->data + ((next / TRN_X16_ROWS) * nb + b) * group_block + i, _MM_HINT_T1);
        return;
    }
    if (w->layout != TRN_LAYOUT_ROWS)
        return;
    for (int64_t row = next; row < TRN_MIN(next + TILE_ROWS, w->rows); row++)
        for (int i = 0; i < block_bytes + 64; i += 64)
            _mm_prefetch((const char *)w->data + row * w->row_bytes + b * block_bytes + i, _MM_HINT_T1);
}

/* Block b of rows r..r+n_rows-1 (n_rows <= TILE_ROWS; rows n_rows.. keep zero codes and scales) into tb: whole X16
 * groups from their columns; anything else (the file layout, X4 groups, rows after the last full group, a partial
 * tile) decoded row by row by the scalar reference into `rows` (weight order), then transposed dword by dword. */
static void unpack_tile(const trn_matrix *w, int64_t r, int n_rows, int64_t b, uint8_t rows[TILE_ROWS][TRN_QK_K],
                        tile_block *tb) {
    if (w->layout == TRN_LAYOUT_X16 && n_rows == TILE_ROWS && r % TRN_X16_ROWS == 0 &&
        r + TILE_ROWS <= trn_layout_full_rows(w)) {
        if (w->type == TRN_TYPE_TQ2_0)
            trn_x16_unpack_tq2(trn_x16_group_block(w, r, b), tb->codes, tb->d);
        else
            trn_x16_unpack_tq1(trn_x16_group_block(w, r, b), tb->codes, tb->d);
        return;
    }
    for (int k = 0; k < n_rows; k++) {
        trn_ternary_block scratch;
        const trn_ternary_block *block = trn_ternary_block_at(w, r + k, b, &scratch);
        if (w->type == TRN_TYPE_TQ2_0) {
            trn_tq2_0_block_codes(&block->tq2_0, rows[k]);
            tb->d[k] = trn_fp16_to_f32(block->tq2_0.d);
        } else {
            trn_tq1_0_block_codes(&block->tq1_0, rows[k]);
            tb->d[k] = trn_fp16_to_f32(block->tq1_0.d);
        }
    }
    for (int j = 0; j < STEPS; j++)
        for (int k = 0; k < TILE_ROWS; k++)
            memcpy(&tb->codes[j][k], rows[k] + 4 * j, 4);
}

/* acc[k] += (d[k] * x->d) * (float)(sums[k] - x->sum) for the tile's 16 rows: the vpdpbusd kernel's add_block. */
static inline void add_block(float acc[TILE_ROWS], const int32_t sums[TILE_ROWS], const float d[TILE_ROWS],
                             const trn_block_q8_act *x) {
    const __m512i isum = _mm512_sub_epi32(_mm512_load_si512(sums), _mm512_set1_epi32(x->sum));
    const __m512 term = _mm512_mul_ps(_mm512_mul_ps(_mm512_load_ps(d), _mm512_set1_ps(x->d)), _mm512_cvtepi32_ps(isum));
    _mm512_storeu_ps(acc, _mm512_add_ps(_mm512_loadu_ps(acc), term));
}

/* Palette 1, every tile 16 rows of 64 bytes. */
static void config_tiles(trn_amx_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->palette = 1;
    for (int t = 0; t < TRN_AMX_TILES; t++) {
        cfg->rows[t] = TRN_AMX_MAX_ROWS;
        cfg->colsb[t] = TRN_AMX_MAX_COLSB;
    }
}

/* C tile c += the A tiles of one token group (a: its first token's block, rows 256 bytes apart) times B, over the
 * block's four K-steps (B of step s in tmm s); A passes through tile `at`. */
#define GROUP_BLOCK(c, at, a) \
    do { \
        TRN_TILE_LOAD(at, (a), TRN_QK_K); \
        TRN_TILE_DPBSUD(c, at, 0); \
        TRN_TILE_LOAD(at, (a) + K_STEP_BYTES, TRN_QK_K); \
        TRN_TILE_DPBSUD(c, at, 1); \
        TRN_TILE_LOAD(at, (a) + 2 * K_STEP_BYTES, TRN_QK_K); \
        TRN_TILE_DPBSUD(c, at, 2); \
        TRN_TILE_LOAD(at, (a) + 3 * K_STEP_BYTES, TRN_QK_K); \
        TRN_TILE_DPBSUD(c, at, 3); \
    } while (0)

/* dst rows r..r+n_rows-1 (n_rows <= TILE_ROWS) for nt tokens (nt <= TILE_TOKENS) whose activations are in q
 * ([nb][nt_padded][256], nt_padded = nt rounded up to GROUP_TOKENS, zero past nt) and whose scales and sums are in
 * xq. Tiles configured by the caller. */
static void tile(const trn_matrix *w, int64_t r, int n_rows, const int8_t *q, int64_t nt_padded,
                 const trn_block_q8_act *xq, int64_t ld_xq, int64_t nt, float *dst, int64_t ld_dst) {
    _Alignas(64) uint8_t rows[TILE_ROWS][TRN_QK_K];
    _Alignas(64) int32_t sums[2][GROUP_TOKENS][TILE_ROWS];
    _Alignas(64) float acc[TILE_TOKENS][TILE_ROWS];
    tile_block tb;
    memset(rows, 0, sizeof(rows));
    memset(&tb, 0, sizeof(tb));
    memset(acc, 0, sizeof(acc));
    const int64_t groups = nt_padded / GROUP_TOKENS;
    for (int64_t b = 0; b < w->cols / TRN_QK_K; b++) {
        prefetch_next_tile(w, r, b);
        unpack_tile(w, r, n_rows, b, rows, &tb);
        TRN_TILE_LOAD(0, tb.codes[0 * 16], sizeof(tb.codes[0]));
        TRN_TILE_LOAD(1, tb.codes[1 * 16], sizeof(tb.codes[0]));
        TRN_TILE_LOAD(2, tb.codes[2 * 16], sizeof(tb.codes[0]));
        TRN_TILE_LOAD(3, tb.codes[3 * 16], sizeof(tb.codes[0]));
        const int8_t *a = q + b * nt_padded * TRN_QK_K;
        for (int64_t g = 0; g < groups; g += 2) {
            const int pair = g + 1 < groups;
            const int8_t *a0 = a + g * GROUP_TOKENS * TRN_QK_K;
            TRN_TILE_ZERO(4);
            GROUP_BLOCK(4, 6, a0);
            if (pair) {
                TRN_TILE_ZERO(5);
                GROUP_BLOCK(5, 7, a0 + GROUP_TOKENS * TRN_QK_K);
            }
            TRN_TILE_STORE(4, sums[0], sizeof(sums[0][0]));
            if (pair)
                TRN_TILE_STORE(5, sums[1], sizeof(sums[0][0]));
            for (int64_t t = g * GROUP_TOKENS; t < TRN_MIN(nt, (g + 1 + pair) * GROUP_TOKENS); t++)
                add_block(acc[t], sums[t / GROUP_TOKENS - g][t % GROUP_TOKENS], tb.d, xq + t * ld_xq + b);
        }
    }
    for (int64_t t = 0; t < nt; t++)
        memcpy(dst + t * ld_dst + r, acc[t], (size_t)n_rows * sizeof(float));
}

void TRN_MATMUL_AMX(const trn_matrix *w, const trn_block_q8_act *xq, int64_t ld_xq, float *dst, int64_t ld_dst,
                    int64_t n_tok, trn_rows *rows) {
    const int64_t nb = w->cols / TRN_QK_K, n_tiles = (n_tok + TILE_TOKENS - 1) / TILE_TOKENS;
    const int64_t all_padded = (n_tok + GROUP_TOKENS - 1) / GROUP_TOKENS * GROUP_TOKENS; /* every tile's, summed */
    int8_t *q = aligned_alloc(64, (size_t)(nb * all_padded) * TRN_QK_K);
    if (!q)
        abort(); /* at most a few MB; the backend checked memory at prepare */
    for (int64_t i = 0; i < n_tiles; i++) { /* tile i's A tiles at offset i * nb * TILE_TOKENS, once for all ranges */
        const int64_t t0 = i * TILE_TOKENS, nt = TRN_MIN(TILE_TOKENS, n_tok - t0);
        const int64_t padded = (nt + GROUP_TOKENS - 1) / GROUP_TOKENS * GROUP_TOKENS;
        trn_matmul_dense_acts(q + (size_t)(nb * t0) * TRN_QK_K, xq + t0 * ld_xq, ld_xq, nb, nt, padded);
    }
    trn_amx_config cfg;
    config_tiles(&cfg);
    TRN_TILE_CONFIG(&cfg);
    int64_t r0, r1;
    while (rows->next(rows, &r0, &r1))
        for (int64_t i = 0; i < n_tiles; i++) {
            const int64_t t0 = i * TILE_TOKENS, nt = TRN_MIN(TILE_TOKENS, n_tok - t0);
            const int64_t padded = (nt + GROUP_TOKENS - 1) / GROUP_TOKENS * GROUP_TOKENS;
            for (int64_t r = r0; r < r1; r += TILE_ROWS) /* A tiles: 16 rows 256 bytes apart */
                tile(w, r, (int)TRN_MIN(TILE_ROWS, r1 - r), q + (size_t)(nb * t0) * TRN_QK_K, padded, xq + t0 * ld_xq,
                     ld_xq, nt, dst + t0 * ld_dst, ld_dst);
        }
    TRN_TILE_RELEASE();
    free(q);
}

#if !defined(TRN_AMX_EMULATE)
enum {
    PEAK_DPBSUD_PER_ROUND = 64,
    PEAK_MACS_PER_DPBSUD = GROUP_TOKENS * TILE_ROWS * K_STEP_BYTES, /* 16 x 16 x 64 */
};

/* The tile multiply alone, `rounds` times: four independent accumulators (tmm0..3) over two A tiles (tmm4, 5) and
 * two B tiles (tmm6, 7) held in the registers, PEAK_DPBSUD_PER_ROUND tdpbsud per round. Tiles configured. */
static int32_t peak_rounds(long rounds) {
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < PEAK_DPBSUD_PER_ROUND / 4; i++) {
            TRN_TILE_DPBSUD(0, 4, 6);
            TRN_TILE_DPBSUD(1, 4, 7);
            TRN_TILE_DPBSUD(2, 5, 6);
            TRN_TILE_DPBSUD(3, 5, 7);
        }
    _Alignas(64) int32_t c[GROUP_TOKENS][TILE_ROWS];
    TRN_TILE_STORE(0, c, sizeof(c[0]));
    return c[0][0];
}

static int32_t run_peak(const void *ctx, long rounds) {
    (void)ctx;
    return peak_rounds(rounds);
}

/* matmul_peak (ops.h) of the amx table: int8 multiply-adds per second of tdpbsud on the calling thread, sustained
 * over `seconds`. */
double trn_matmul_tq_amx_peak(double seconds) {
    _Alignas(64) int8_t a[GROUP_TOKENS][K_STEP_BYTES];
    _Alignas(64) uint8_t bt[K_STEP_BYTES / 4][TILE_ROWS * 4];
    for (int i = 0; i < (int)sizeof(a); i++) {
        ((int8_t *)a)[i] = (int8_t)(i * 37 % 255 - 127);
        ((uint8_t *)bt)[i] = (uint8_t)(i % 3);
    }
    trn_amx_config cfg;
    config_tiles(&cfg);
    TRN_TILE_CONFIG(&cfg);
    TRN_TILE_ZERO(0);
    TRN_TILE_ZERO(1);
    TRN_TILE_ZERO(2);
    TRN_TILE_ZERO(3);
    TRN_TILE_LOAD(4, a, sizeof(a[0]));
    TRN_TILE_LOAD(5, a, sizeof(a[0]));
    TRN_TILE_LOAD(6, bt, sizeof(bt[0]));
    TRN_TILE_LOAD(7, bt, sizeof(bt[0]));
    const double rate =
        trn_sustained_rate(run_peak, NULL, 64, PEAK_DPBSUD_PER_ROUND * PEAK_MACS_PER_DPBSUD, seconds);
    TRN_TILE_RELEASE();
    return rate;
}
#endif
