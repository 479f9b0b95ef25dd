/* ops_avx2_matmul.c: the batched (prefill) ternary matrix-matrix kernel behind the SIMD tables' `matmul` entries
 * (ops.h). Compiled with the same flags as ops_avx2.c (-mavx2 -mfma -mf16c): the vpmaddubsw build,
 * trn_matmul_tq_maddubs, the AVX2 table's; compiled a second time by ops_avx512_matmul.c, with TRN_MATMUL_DPBUSD
 * defined and the AVX-512 flags: the vpdpbusd build, trn_matmul_tq_dpbusd, the AVX-512 table's. It knows no table:
 * each table's entry calls its build for ternary matrices with int8 activations. The scalar reference is matmul_ref
 * in ops_ref.c.
 *
 * A matrix-vector product reads every weight byte once per token; this kernel reads it once per batch and is bound
 * by integer multiply-adds instead. Rows go in tiles of TILE_ROWS = 16 (one per 32-bit lane: two 256-bit vectors
 * in the vpmaddubsw build, one 512-bit vector in the vpdpbusd build). For each 256-weight block the tile's codes are
 * held so that a step's codes hold, for 4 consecutive weights, the 4 codes of each row (dword k = row k):
 * multiplied by a token's 4 int8 activations broadcast to every dword, each lane accumulates its own row, so a block
 * ends with the rows' sums in the lanes, without horizontal reductions. Per step (4 weights, all rows, one token):
 * two vpmaddubsw + vpaddw into int16 lanes (widened by vpmaddwd every 32 steps, before 32 x 762 could leave int16:
 * codes <= 3, |q| <= 127), or one vpdpbusd into int32 lanes. Tokens go in groups whose accumulators stay in
 * registers for 32 steps or a whole block: 6 tokens with the 16 registers of the vpmaddubsw build (12 sums; 4 or 2
 * where fewer are left), 16 with the 32 of the vpdpbusd build (8 or 4 where no more are left).
 *
 * The vpdpbusd build keeps sixteen independent vpdpbusd chains in every group (8 tokens: two steps at a time; 4:
 * four), starts each token's chains at -x->sum (neg_sum), and, on whole X16 groups of rows, decodes a block's codes
 * in the block's first token group as it multiplies them (group_block_x16, group_block_x16_tq1), storing them in the
 * tile buffer only for the groups that follow; elsewhere unpack_tile fills the buffer first. A tile's first block
 * adds its terms to zeros and its last stores the results straight into dst (add_block).
 *
 * The sums are exact integers and the float steps are the matrix-vector kernels', per element in the same order:
 * acc += (d_w * d_x) * (float)(isum - sum) block by block, from 0. So every output is bitwise what matvec gives.
 *
 * Shapes: W [rows][cols] (cols a multiple of 256); xq [n_tok][ld_xq] int8 blocks; dst [n_tok][ld_dst] floats. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "host/common.h"
#include "ops.h"
#include "ops_simd.h"
#include "quants.h"
#if defined(TRN_MATMUL_DPBUSD)
#include "ops_x16.h"
#endif

#if defined(TRN_MATMUL_DPBUSD)
#define TRN_MATMUL_TQ trn_matmul_tq_dpbusd
#define TRN_MATMUL_PEAK trn_matmul_tq_dpbusd_peak
enum { TILE_ROWS = 16, WIDE_GROUP = 16, QUARTER_GROUP = 4 };
#else
#define TRN_MATMUL_TQ trn_matmul_tq_maddubs
#define TRN_MATMUL_PEAK trn_matmul_tq_maddubs_peak
/* WIDE_GROUP: what the token count is padded to; groups are of 6 tokens (4 or 2 for what is left) */
enum { TILE_ROWS = 16, WIDE_GROUP = 8, TOKEN_GROUP = 6 };
#endif

enum {
    TILE_TOKENS = TRN_MATMUL_TILE_TOKENS, /* tokens whose activations are copied together (a multiple of WIDE_GROUP) */
    STEPS = TRN_QK_K / 4, /* 4-weight steps per block */
    GROUP = 8,            /* tokens per group where no more than GROUP are left */
};

/* One block of a tile: step j (weights 4j..4j+3), row k at codes[j][k] (4 codes, one per byte); the rows' scales. */
typedef struct {
    _Alignas(64) uint32_t codes[STEPS][TILE_ROWS];
    _Alignas(64) float d[TILE_ROWS];
} tile_block;

/* Codes (0..3) of 256 weights from their 64 TQ2_0 code bytes, in weight order: weight 128h + 32l + m is bits
 * 2l..2l+1 of byte 32h + m (tensor_types.h). */
static inline void unpack_tq2_0(const uint8_t *qs, uint8_t codes[TRN_QK_K]) {
    const __m256i mask = _mm256_set1_epi8(3);
    for (int half = 0; half < 2; half++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * half));
        for (int l = 0; l < 4; l++)
            _mm256_store_si256((__m256i *)(codes + 128 * half + 32 * l),
                               _mm256_and_si256(_mm256_srli_epi16(q, 2 * l), mask));
    }
}

/* r[k] = dwords 0..7 of row k -> c[i] = dword i of rows 0..7 (an 8x8 transpose of dwords). */
static inline void transpose8(const __m256i r[8], __m256i c[8]) {
    __m256i t[8], u[8];
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_epi32(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_epi32(r[k], r[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        u[k] = _mm256_unpacklo_epi64(t[k], t[k + 2]);
        u[k + 1] = _mm256_unpackhi_epi64(t[k], t[k + 2]);
        u[k + 2] = _mm256_unpacklo_epi64(t[k + 1], t[k + 3]);
        u[k + 3] = _mm256_unpackhi_epi64(t[k + 1], t[k + 3]);
    }
    for (int i = 0; i < 4; i++) { /* dword i from the low 128-bit halves, 4 + i from the high ones */
        c[i] = _mm256_permute2x128_si256(u[i], u[4 + i], 0x20);
        c[4 + i] = _mm256_permute2x128_si256(u[i], u[4 + i], 0x31);
    }
}

/* Block b of the tile of rows next..next+TILE_ROWS-1 (those below w->rows) into L2. A tile's work on one block
 * takes microseconds, so this comes a whole tile ahead of use; without it about a tenth of the time went to
 * waiting for memory (measured on the synthetic Trinity-1.1B model). */
static void prefetch_tile(const trn_matrix *w, int64_t next, int64_t b) {
    const int64_t nb = w->cols / TRN_QK_K;
    if (w->layout == TRN_LAYOUT_X4) { /* whole groups: TILE_ROWS / 4 group blocks of 264 bytes */
        for (int64_t g = next / 4; g < TRN_MIN(next + TILE_ROWS, w->rows) / 4; g++)
            for (int i = 0; i < TRN_X4_GROUP_BLOCK_BYTES + 64; i += 64)
                _mm_prefetch((const char *)w->data + (g * nb + b) * TRN_X4_GROUP_BLOCK_BYTES + i, _MM_HINT_T1);
        return;
    }
    const int block_bytes = trn_type_get(w->type)->block_bytes;
    /* the X16 group at or after next (tiles of whole groups start on one) */
    const int64_t group = (next + TRN_X16_ROWS - 1) / TRN_X16_ROWS;
    if (w->layout == TRN_LAYOUT_X16 && next % TILE_ROWS == 0 && (group + 1) * TRN_X16_ROWS <= trn_layout_full_rows(w)) {
        const size_t group_block = (size_t)TRN_X16_ROWS * (size_t)block_bytes;
        for (size_t i = 0; i < group_block + 64; i += 64)
            _mm_prefetch((const char *)w->data + (group * nb + b) * group_block + i, _MM_HINT_T1);
        return;
    }
    for (int64_t row = next; row < TRN_MIN(next + TILE_ROWS, w->rows); row++)
        for (int i = 0; i < block_bytes + 64; i += 64)
            _mm_prefetch((const char *)w->data + row * w->row_bytes + b * block_bytes + i, _MM_HINT_T1);
}

/* Block b of a whole tile of TQ2_0 rows in X4 groups (r a multiple of 4, TILE_ROWS / 4 whole groups), read from
 * the group blocks straight into the transpose: the packed code bytes are transposed first, p[i] = bytes 4i..4i+3
 * of a half block for 8 rows, whose bits 2l are the codes of weights 128 half + 32 l + 4i .. + 3, i.e. of step
 * 32 half + 8 l + i. (The shifts move bits across bytes, but the mask keeps each byte's own two bits.) */
static void unpack_x4(const trn_matrix *w, int64_t r, int64_t b, tile_block *tb) {
    const int64_t nb = w->cols / TRN_QK_K;
    const uint8_t *g[TILE_ROWS / 4];
    for (int i = 0; i < TILE_ROWS / 4; i++) {
        g[i] = (const uint8_t *)w->data + ((r / 4 + i) * nb + b) * TRN_X4_GROUP_BLOCK_BYTES;
        _mm_storeu_ps(tb->d + 4 * i, _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(g[i] + 4 * (TRN_QK_K / 4)))));
    }
    for (int half = 0; half < 2; half++) {
        __m256i p[TILE_ROWS / 8][8];
        for (int e = 0; e < TILE_ROWS / 8; e++) { /* rows 8e..8e+7 */
            __m256i q[8];
            for (int k = 0; k < 8; k++)
                q[k] = _mm256_loadu_si256((const __m256i *)(g[2 * e + k / 4] + (k % 4) * (TRN_QK_K / 4) + 32 * half));
            transpose8(q, p[e]);
        }
        for (int i = 0; i < 8; i++)
            for (int l = 0; l < 4; l++) {
                uint32_t *step = tb->codes[32 * half + 8 * l + i];
#if defined(TRN_MATMUL_DPBUSD)
                const __m512i packed = _mm512_inserti64x4(_mm512_castsi256_si512(p[0][i]), p[1][i], 1);
                _mm512_store_si512(step, _mm512_and_si512(_mm512_srli_epi32(packed, 2 * l), _mm512_set1_epi8(3)));
#else
                for (int e = 0; e < TILE_ROWS / 8; e++)
                    _mm256_store_si256((__m256i *)(step + 8 * e), _mm256_and_si256(_mm256_srli_epi32(p[e][i], 2 * l),
                                                                                   _mm256_set1_epi8(3)));
#endif
            }
    }
}

#if !defined(TRN_MATMUL_DPBUSD)
/* Block b of the 16-row tile at r (r a multiple of 16, its X16 group of TQ2_0 rows whole): column j's field l,
 * (q >> 2l) & 3, holds step trn_tq2_0_x16_act(j, l) / 4 with dword k = row k, the tile's own order: no transpose
 * (the 64-byte column as two 256-bit halves, rows 0-7 and 8-15). */
static void unpack_x16_tq2(const trn_matrix *w, int64_t r, int64_t b, tile_block *tb) {
    const int64_t nb = w->cols / TRN_QK_K;
    const size_t group_block = (size_t)TRN_X16_ROWS * sizeof(trn_block_tq2_0);
    const uint8_t *gb = (const uint8_t *)w->data + (size_t)((r / TRN_X16_ROWS) * nb + b) * group_block;
    const __m256i mask = _mm256_set1_epi8(3);
    for (int e = 0; e < 2; e++)
        _mm256_store_ps(tb->d + 8 * e, _mm256_cvtph_ps(_mm_loadu_si128(
                                           (const __m128i *)(gb + TRN_TQ2_0_X16_COLUMNS * TRN_X16_COLUMN_BYTES) + e)));
    for (int j = 0; j < TRN_TQ2_0_X16_COLUMNS; j++)
        for (int e = 0; e < 2; e++) {
            const __m256i column = _mm256_loadu_si256((const __m256i *)(gb + j * TRN_X16_COLUMN_BYTES) + e);
            for (int l = 0; l < 4; l++)
                _mm256_store_si256((__m256i *)(tb->codes[trn_tq2_0_x16_act(j, l) / 4] + 8 * e),
                                   _mm256_and_si256(l ? _mm256_srli_epi32(column, 2 * l) : column, mask));
        }
}
#endif

/* Block b of rows r..r+n_rows-1 (n_rows <= TILE_ROWS; the others get zero codes and scales) into tb: whole X4
 * groups through unpack_x4, whole X16 groups through trn_x16_unpack_tq2 or _tq1 (ops_x16.h) in the vpdpbusd build,
 * whole TQ2_0 X16 groups through unpack_x16_tq2 in the vpmaddubsw build;
 * anything else (the file layout, rows off the groups, a partial tile, TQ1_0 without VNNI) decoded row by row into
 * `rows`, then transposed 8 rows at a time. */
static void unpack_tile(const trn_matrix *w, int64_t r, int n_rows, int64_t b, uint8_t rows[TILE_ROWS][TRN_QK_K],
                        tile_block *tb) {
    if (w->type == TRN_TYPE_TQ2_0 && w->layout == TRN_LAYOUT_X4 && n_rows == TILE_ROWS && r % 4 == 0 &&
        r + TILE_ROWS <= w->rows / 4 * 4) {
        unpack_x4(w, r, b, tb);
        return;
    }
    const int whole_x16 = w->layout == TRN_LAYOUT_X16 && n_rows == TILE_ROWS && r % TRN_X16_ROWS == 0 &&
                          r + TILE_ROWS <= trn_layout_full_rows(w);
    if (whole_x16 && w->type == TRN_TYPE_TQ2_0) {
#if defined(TRN_MATMUL_DPBUSD)
        trn_x16_unpack_tq2(trn_x16_group_block(w, r, b), tb->codes, tb->d);
#else
        unpack_x16_tq2(w, r, b, tb);
#endif
        return;
    }
#if defined(TRN_MATMUL_DPBUSD)
    if (whole_x16 && w->type == TRN_TYPE_TQ1_0) {
        trn_x16_unpack_tq1(trn_x16_group_block(w, r, b), tb->codes, tb->d);
        return;
    }
#endif
    for (int k = 0; k < n_rows; k++) { /* any layout, block by block as the file stores it */
        trn_ternary_block scratch;
        const trn_ternary_block *block = trn_ternary_block_at(w, r + k, b, &scratch);
        if (w->type == TRN_TYPE_TQ2_0) {
            unpack_tq2_0(block->tq2_0.qs, rows[k]);
            tb->d[k] = trn_fp16_to_f32(block->tq2_0.d);
        } else { /* TQ1_0: base-3 digits decoded by the scalar reference, once per block for every token */
            trn_tq1_0_block_codes(&block->tq1_0, rows[k]);
            tb->d[k] = trn_fp16_to_f32(block->tq1_0.d);
        }
    }
    for (int k = n_rows; k < TILE_ROWS; k++) { /* a partial tile: zero codes and scales past its rows */
        memset(rows[k], 0, TRN_QK_K);
        tb->d[k] = 0.0f;
    }
    for (int k0 = 0; k0 < TILE_ROWS; k0 += 8)
        for (int jb = 0; jb < STEPS / 8; jb++) {
            __m256i c[8];
            for (int k = 0; k < 8; k++) /* row k0 + k, steps 8 jb .. 8 jb + 7 */
                c[k] = _mm256_load_si256((const __m256i *)(rows[k0 + k] + 32 * jb));
            transpose8(c, c);
            for (int i = 0; i < 8; i++)
                _mm256_store_si256((__m256i *)(tb->codes[8 * jb + i] + k0), c[i]);
        }
}

/* One group of n tokens (QUARTER_GROUP, GROUP or WIDE_GROUP) through block b: the tile rows' block sums against the
 * tokens' 256 activations at a + t * TRN_QK_K, then, for the first n_valid tokens, acc[t][k] += (d[k] * x_t->d) *
 * (float)(sum - x_t->sum) with x_t = x + t * ld_xq, the token's block of int8 activations. */
#if defined(TRN_MATMUL_DPBUSD)
/* Where a group's block results go: token t's sum is in[16 t ..] + term (in: the group's rows of acc, or zeros in
 * the tile's first block), stored to out + 16 t (the group's rows of acc), or, in the tile's last block (`last`, a
 * constant where inlined), to out + t * ld (the group's first token's row in dst, lanes `rows`). */
typedef struct {
    const float *in;
    float *out;
    int64_t ld;
    __mmask16 rows;
} tile_out;

/* Always inlined, so that `last` is a constant in each copy. */
#define GROUP_INLINE static inline __attribute__((always_inline))

/* sums already hold isum - x->sum: the chains start at -x->sum (neg_sum), so the integer sums need no subtraction. */
GROUP_INLINE void add_block(__m512i sums, const float d[TILE_ROWS], const trn_block_q8_act *x, const tile_out *out,
                            int t, int last) {
    const __m512 term = _mm512_mul_ps(_mm512_mul_ps(_mm512_load_ps(d), _mm512_set1_ps(x->d)), _mm512_cvtepi32_ps(sums));
    const __m512 sum = _mm512_add_ps(_mm512_loadu_ps(out->in + t * TILE_ROWS), term);
    if (last)
        _mm512_mask_storeu_ps(out->out + t * out->ld, out->rows, sum);
    else
        _mm512_storeu_ps(out->out + t * TILE_ROWS, sum);
}

/* acc += codes . the token's 4 activations broadcast from memory inside vpdpbusd ({1to16}): GCC does not fold
 * _mm512_set1_epi32 into it, and a separate broadcast costs about a fifth of the speed. */
#define DPBUSD(acc, t) __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(c), "m"(*(const int32_t *)(x + (t) * TRN_QK_K)))
/* One 4-weight step for 16 (8) tokens: the codes c times token t's activations at x + 256 t, into s0..s15 (s7). */
#define NARROW_STEP() \
    do { \
        DPBUSD(s0, 0); DPBUSD(s1, 1); DPBUSD(s2, 2); DPBUSD(s3, 3); DPBUSD(s4, 4); DPBUSD(s5, 5); DPBUSD(s6, 6); \
        DPBUSD(s7, 7); \
    } while (0)
#define WIDE_STEP() \
    do { \
        NARROW_STEP(); \
        DPBUSD(s8, 8); DPBUSD(s9, 9); DPBUSD(s10, 10); DPBUSD(s11, 11); DPBUSD(s12, 12); DPBUSD(s13, 13); \
        DPBUSD(s14, 14); DPBUSD(s15, 15); \
    } while (0)
/* Step j + 1 for 8 tokens into the second set of chains, s8..s15 (token t in s(8 + t)). */
#define NARROW_STEP_HI() \
    do { \
        DPBUSD(s8, 0); DPBUSD(s9, 1); DPBUSD(s10, 2); DPBUSD(s11, 3); DPBUSD(s12, 4); DPBUSD(s13, 5); DPBUSD(s14, 6); \
        DPBUSD(s15, 7); \
    } while (0)
/* One step for 4 tokens into the chains of set k (token t in s(4k + t)). */
#define QUARTER_STEP_0() do { DPBUSD(s0, 0); DPBUSD(s1, 1); DPBUSD(s2, 2); DPBUSD(s3, 3); } while (0)
#define QUARTER_STEP_1() do { DPBUSD(s4, 0); DPBUSD(s5, 1); DPBUSD(s6, 2); DPBUSD(s7, 3); } while (0)
#define QUARTER_STEP_2() do { DPBUSD(s8, 0); DPBUSD(s9, 1); DPBUSD(s10, 2); DPBUSD(s11, 3); } while (0)
#define QUARTER_STEP_3() do { DPBUSD(s12, 0); DPBUSD(s13, 1); DPBUSD(s14, 2); DPBUSD(s15, 3); } while (0)
/* The four sets of a 4-token group's chains added into s0..s3, the two of an 8-token group's into s0..s7. */
#define FOLD_QUARTER() \
    do { \
        s0 = _mm512_add_epi32(_mm512_add_epi32(s0, s4), _mm512_add_epi32(s8, s12)); \
        s1 = _mm512_add_epi32(_mm512_add_epi32(s1, s5), _mm512_add_epi32(s9, s13)); \
        s2 = _mm512_add_epi32(_mm512_add_epi32(s2, s6), _mm512_add_epi32(s10, s14)); \
        s3 = _mm512_add_epi32(_mm512_add_epi32(s3, s7), _mm512_add_epi32(s11, s15)); \
    } while (0)
#define FOLD_NARROW() \
    do { \
        s0 = _mm512_add_epi32(s0, s8); s1 = _mm512_add_epi32(s1, s9); s2 = _mm512_add_epi32(s2, s10); \
        s3 = _mm512_add_epi32(s3, s11); s4 = _mm512_add_epi32(s4, s12); s5 = _mm512_add_epi32(s5, s13); \
        s6 = _mm512_add_epi32(s6, s14); s7 = _mm512_add_epi32(s7, s15); \
    } while (0)
#define ADD_BLOCK(t) if ((t) < n_valid) add_block(s##t, tb->d, xb + (t) * ld_xq, out, t, last)
/* The sixteen chains s0..s15: tokens 0..7's start at their negated block sums, s8..s15 at zero (DECLARE_CHAINS_8);
 * START_WIDE_HI starts s8..s15 at tokens 8..15's, for the wide group. */
#define DECLARE_CHAINS_8()                                                                                             \
    const __m512i z = _mm512_setzero_si512();                                                                         \
    __m512i s0 = _mm512_set1_epi32(neg_sum[0]), s1 = _mm512_set1_epi32(neg_sum[1]);                                  \
    __m512i s2 = _mm512_set1_epi32(neg_sum[2]), s3 = _mm512_set1_epi32(neg_sum[3]);                                  \
    __m512i s4 = _mm512_set1_epi32(neg_sum[4]), s5 = _mm512_set1_epi32(neg_sum[5]);                                  \
    __m512i s6 = _mm512_set1_epi32(neg_sum[6]), s7 = _mm512_set1_epi32(neg_sum[7]);                                  \
    __m512i s8 = z, s9 = z, s10 = z, s11 = z, s12 = z, s13 = z, s14 = z, s15 = z
#define START_WIDE_HI()                                                                                                \
    do {                                                                                                               \
        s8 = _mm512_set1_epi32(neg_sum[8]), s9 = _mm512_set1_epi32(neg_sum[9]);                                       \
        s10 = _mm512_set1_epi32(neg_sum[10]), s11 = _mm512_set1_epi32(neg_sum[11]);                                   \
        s12 = _mm512_set1_epi32(neg_sum[12]), s13 = _mm512_set1_epi32(neg_sum[13]);                                   \
        s14 = _mm512_set1_epi32(neg_sum[14]), s15 = _mm512_set1_epi32(neg_sum[15]);                                   \
    } while (0)
/* neg_sum[t]: -x_t->sum (0 for padding tokens), where token t's chain starts. Every group keeps sixteen independent
 * vpdpbusd chains (two ports of five-cycle latency need ten): sixteen tokens one step at a time, eight tokens two
 * steps at a time (even steps into s0..s7, odd ones into s8..s15), four tokens four steps at a time (step j + i
 * into s(4i)..s(4i + 3)); the chains of a token are added at the end (exact integers: the order does not matter). */
GROUP_INLINE void group_block(const tile_block *tb, const int8_t *a, const int32_t *neg_sum, int n, int n_valid,
                              const trn_block_q8_act *xb, int64_t ld_xq, const tile_out *out, int last) {
    const __m512i z = _mm512_setzero_si512();
    __m512i s0 = _mm512_set1_epi32(neg_sum[0]), s1 = _mm512_set1_epi32(neg_sum[1]);
    __m512i s2 = _mm512_set1_epi32(neg_sum[2]), s3 = _mm512_set1_epi32(neg_sum[3]);
    __m512i s4 = z, s5 = z, s6 = z, s7 = z, s8 = z, s9 = z, s10 = z, s11 = z, s12 = z, s13 = z, s14 = z, s15 = z;
    if (n == WIDE_GROUP) {
        s4 = _mm512_set1_epi32(neg_sum[4]), s5 = _mm512_set1_epi32(neg_sum[5]);
        s6 = _mm512_set1_epi32(neg_sum[6]), s7 = _mm512_set1_epi32(neg_sum[7]);
        START_WIDE_HI();
        for (int j = 0; j < STEPS; j++) {
            const __m512i c = _mm512_load_si512(tb->codes[j]);
            const int8_t *x = a + 4 * j;
            WIDE_STEP();
        }
    } else if (n == QUARTER_GROUP) {
        for (int j = 0; j < STEPS; j += 4) {
            __m512i c = _mm512_load_si512(tb->codes[j]);
            const int8_t *x = a + 4 * j;
            DPBUSD(s0, 0); DPBUSD(s1, 1); DPBUSD(s2, 2); DPBUSD(s3, 3);
            c = _mm512_load_si512(tb->codes[j + 1]);
            x += 4;
            DPBUSD(s4, 0); DPBUSD(s5, 1); DPBUSD(s6, 2); DPBUSD(s7, 3);
            c = _mm512_load_si512(tb->codes[j + 2]);
            x += 4;
            DPBUSD(s8, 0); DPBUSD(s9, 1); DPBUSD(s10, 2); DPBUSD(s11, 3);
            c = _mm512_load_si512(tb->codes[j + 3]);
            x += 4;
            DPBUSD(s12, 0); DPBUSD(s13, 1); DPBUSD(s14, 2); DPBUSD(s15, 3);
        }
        s0 = _mm512_add_epi32(_mm512_add_epi32(s0, s4), _mm512_add_epi32(s8, s12));
        s1 = _mm512_add_epi32(_mm512_add_epi32(s1, s5), _mm512_add_epi32(s9, s13));
        s2 = _mm512_add_epi32(_mm512_add_epi32(s2, s6), _mm512_add_epi32(s10, s14));
        s3 = _mm512_add_epi32(_mm512_add_epi32(s3, s7), _mm512_add_epi32(s11, s15));
    } else {
        s4 = _mm512_set1_epi32(neg_sum[4]), s5 = _mm512_set1_epi32(neg_sum[5]);
        s6 = _mm512_set1_epi32(neg_sum[6]), s7 = _mm512_set1_epi32(neg_sum[7]);
        for (int j = 0; j < STEPS; j += 2) {
            __m512i c = _mm512_load_si512(tb->codes[j]);
            const int8_t *x = a + 4 * j;
            NARROW_STEP();
            c = _mm512_load_si512(tb->codes[j + 1]);
            x += 4;
            NARROW_STEP_HI();
        }
        s0 = _mm512_add_epi32(s0, s8);
        s1 = _mm512_add_epi32(s1, s9);
        s2 = _mm512_add_epi32(s2, s10);
        s3 = _mm512_add_epi32(s3, s11);
        s4 = _mm512_add_epi32(s4, s12);
        s5 = _mm512_add_epi32(s5, s13);
        s6 = _mm512_add_epi32(s6, s14);
        s7 = _mm512_add_epi32(s7, s15);
    }
    ADD_BLOCK(0); ADD_BLOCK(1); ADD_BLOCK(2); ADD_BLOCK(3); ADD_BLOCK(4); ADD_BLOCK(5); ADD_BLOCK(6); ADD_BLOCK(7);
    ADD_BLOCK(8); ADD_BLOCK(9); ADD_BLOCK(10); ADD_BLOCK(11); ADD_BLOCK(12); ADD_BLOCK(13); ADD_BLOCK(14);
    ADD_BLOCK(15);
}

/* The first group (n = WIDE_GROUP, GROUP or QUARTER_GROUP tokens) of block b of a whole X16 group of TQ2_0 rows,
 * unpacking as it goes: column j's field l, (q >> 2l) & 3, holds the codes of step 32 (j / 8) + 8 l + j % 8 (as in
 * trn_x16_unpack_tq2), multiplied at once by the group's activations of that step and, where `keep` (other groups
 * follow), stored into tb for them; the scales go to tb->d. Otherwise as group_block: sixteen chains (8 tokens: even fields
 * into s0..s7, odd ones into s8..s15; 4 tokens: field l into s(4l)..s(4l + 3)), the same exact sums, the same float
 * steps. */
#define X16_FIELD(l, STEP) \
    do { \
        const __m512i c = _mm512_and_si512((l) ? _mm512_srli_epi32(column, 2 * (l)) : column, mask); \
        if (keep) \
            _mm512_store_si512(tb->codes[32 * (j / 8) + 8 * (l) + j % 8], c); \
        const int8_t *x = a + 128 * (j / 8) + 32 * (l) + 4 * (j % 8); \
        STEP(); \
    } while (0)
GROUP_INLINE void group_block_x16(const uint8_t *gb, tile_block *tb, int keep, const int8_t *a,
                                  const int32_t *neg_sum, int n, int n_valid, const trn_block_q8_act *xb,
                                  int64_t ld_xq, const tile_out *out, int last) {
    const int columns = TRN_QK_K / 4 / 4;
    const __m512i mask = _mm512_set1_epi8(3);
    _mm512_store_ps(tb->d, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(gb + columns * TRN_X16_COLUMN_BYTES))));
    DECLARE_CHAINS_8();
    if (n == WIDE_GROUP) {
        START_WIDE_HI();
        for (int j = 0; j < columns; j++) {
            const __m512i column = _mm512_loadu_si512((const void *)(gb + j * TRN_X16_COLUMN_BYTES));
            X16_FIELD(0, WIDE_STEP);
            X16_FIELD(1, WIDE_STEP);
            X16_FIELD(2, WIDE_STEP);
            X16_FIELD(3, WIDE_STEP);
        }
    } else if (n == GROUP) { /* eight tokens: even fields into s0..s7, odd ones into s8..s15 */
        for (int j = 0; j < columns; j++) {
            const __m512i column = _mm512_loadu_si512((const void *)(gb + j * TRN_X16_COLUMN_BYTES));
            X16_FIELD(0, NARROW_STEP);
            X16_FIELD(1, NARROW_STEP_HI);
            X16_FIELD(2, NARROW_STEP);
            X16_FIELD(3, NARROW_STEP_HI);
        }
        FOLD_NARROW();
    } else { /* four tokens (their chains s4..s7 start at 0: neg_sum is 0 past the tokens): field l into set l */
        for (int j = 0; j < columns; j++) {
            const __m512i column = _mm512_loadu_si512((const void *)(gb + j * TRN_X16_COLUMN_BYTES));
            X16_FIELD(0, QUARTER_STEP_0);
            X16_FIELD(1, QUARTER_STEP_1);
            X16_FIELD(2, QUARTER_STEP_2);
            X16_FIELD(3, QUARTER_STEP_3);
        }
        FOLD_QUARTER();
    }
    ADD_BLOCK(0); ADD_BLOCK(1); ADD_BLOCK(2); ADD_BLOCK(3); ADD_BLOCK(4); ADD_BLOCK(5); ADD_BLOCK(6); ADD_BLOCK(7);
    ADD_BLOCK(8); ADD_BLOCK(9); ADD_BLOCK(10); ADD_BLOCK(11); ADD_BLOCK(12); ADD_BLOCK(13); ADD_BLOCK(14);
    ADD_BLOCK(15);
}

/* As group_block_x16 for a whole X16 group of TQ1_0 rows: column j's digit n (trn_tq1_0_digit of t_n) holds the codes
 * of step trn_tq1_0_x16_act(j, n) / 4 (as in trn_x16_unpack_tq1); with eight tokens even digits go into s0..s7, odd
 * ones into s8..s15; with four, digit n into set n % 4. */
#define TQ1_DIGIT(act, STEP) \
    do { \
        const __m512i c = trn_tq1_0_digit(t); \
        if (keep) \
            _mm512_store_si512(tb->codes[(act) / 4], c); \
        const int8_t *x = a + (act); \
        STEP(); \
        t = _mm512_add_epi8(_mm512_add_epi8(t, t), t); \
    } while (0)
/* Columns 0..7 (digit n of qs byte 4j + i: weight 32 n + 4 j + i), 8..11 (160 + 16 n + 4 (j - 8) + i) and 12 (qh,
 * four digits: 240 + 4 n + i), digit n with steps S(n % 4). */
#define TQ1_COLUMNS(S0, S1, S2, S3) \
    do { \
        for (int j = 0; j < 8; j++) { \
            __m512i t = _mm512_loadu_si512((const void *)(gb + j * TRN_X16_COLUMN_BYTES)); \
            TQ1_DIGIT(4 * j, S0); TQ1_DIGIT(32 + 4 * j, S1); TQ1_DIGIT(64 + 4 * j, S2); \
            TQ1_DIGIT(96 + 4 * j, S3); TQ1_DIGIT(128 + 4 * j, S0); \
        } \
        for (int j = 8; j < 12; j++) { \
            __m512i t = _mm512_loadu_si512((const void *)(gb + j * TRN_X16_COLUMN_BYTES)); \
            TQ1_DIGIT(160 + 4 * (j - 8), S0); TQ1_DIGIT(176 + 4 * (j - 8), S1); \
            TQ1_DIGIT(192 + 4 * (j - 8), S2); TQ1_DIGIT(208 + 4 * (j - 8), S3); \
            TQ1_DIGIT(224 + 4 * (j - 8), S0); \
        } \
        __m512i t = _mm512_loadu_si512((const void *)(gb + 12 * TRN_X16_COLUMN_BYTES)); \
        TQ1_DIGIT(240, S0); TQ1_DIGIT(244, S1); TQ1_DIGIT(248, S2); TQ1_DIGIT(252, S3); \
    } while (0)
GROUP_INLINE void group_block_x16_tq1(const uint8_t *gb, tile_block *tb, int keep, const int8_t *a,
                                      const int32_t *neg_sum, int n, int n_valid, const trn_block_q8_act *xb,
                                      int64_t ld_xq, const tile_out *out, int last) {
    _mm512_store_ps(tb->d, _mm512_cvtph_ps(_mm256_loadu_si256(
                               (const __m256i *)(gb + TRN_TQ1_0_X16_COLUMNS * TRN_X16_COLUMN_BYTES))));
    DECLARE_CHAINS_8();
    if (n == WIDE_GROUP) {
        START_WIDE_HI();
        TQ1_COLUMNS(WIDE_STEP, WIDE_STEP, WIDE_STEP, WIDE_STEP);
    } else if (n == GROUP) {
        TQ1_COLUMNS(NARROW_STEP, NARROW_STEP_HI, NARROW_STEP, NARROW_STEP_HI);
        FOLD_NARROW();
    } else {
        TQ1_COLUMNS(QUARTER_STEP_0, QUARTER_STEP_1, QUARTER_STEP_2, QUARTER_STEP_3);
        FOLD_QUARTER();
    }
    ADD_BLOCK(0); ADD_BLOCK(1); ADD_BLOCK(2); ADD_BLOCK(3); ADD_BLOCK(4); ADD_BLOCK(5); ADD_BLOCK(6); ADD_BLOCK(7);
    ADD_BLOCK(8); ADD_BLOCK(9); ADD_BLOCK(10); ADD_BLOCK(11); ADD_BLOCK(12); ADD_BLOCK(13); ADD_BLOCK(14);
    ADD_BLOCK(15);
}

/* The wide group's inner loop alone (16 tokens' activations in L1, one code vector), `rounds` times: 1024 vpdpbusd
 * of 64 multiply-adds each per round. */
static __m512i peak_rounds(const int8_t *a, long rounds) {
    const __m512i c = _mm512_set1_epi8(1);
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    __m512i s8 = s0, s9 = s0, s10 = s0, s11 = s0, s12 = s0, s13 = s0, s14 = s0, s15 = s0;
    for (long r = 0; r < rounds; r++)
        for (int j = 0; j < STEPS; j++) {
            const int8_t *x = a + 4 * j;
            WIDE_STEP();
        }
    const __m512i t0 = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3)),
                                        _mm512_add_epi32(_mm512_add_epi32(s4, s5), _mm512_add_epi32(s6, s7)));
    const __m512i t1 = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(s8, s9), _mm512_add_epi32(s10, s11)),
                                        _mm512_add_epi32(_mm512_add_epi32(s12, s13), _mm512_add_epi32(s14, s15)));
    return _mm512_add_epi32(t0, t1);
}
enum { PEAK_MACS_PER_ROUND = STEPS * WIDE_GROUP * TILE_ROWS * 4 };
#define PEAK_FOLD(v) _mm512_reduce_add_epi32(v)
#else
/* acc[k] += (d[k] * x->d) * (float)(isum_k - x->sum) for the tile's 16 rows: isum of rows 0-7 in lo, 8-15 in hi. */
static inline void add_block(float acc[TILE_ROWS], __m256i lo, __m256i hi, const float d[TILE_ROWS],
                             const trn_block_q8_act *x) {
    const __m256i sum = _mm256_set1_epi32(x->sum);
    const __m256 dx = _mm256_set1_ps(x->d);
    const __m256 t_lo =
        _mm256_mul_ps(_mm256_mul_ps(_mm256_load_ps(d), dx), _mm256_cvtepi32_ps(_mm256_sub_epi32(lo, sum)));
    const __m256 t_hi =
        _mm256_mul_ps(_mm256_mul_ps(_mm256_load_ps(d + 8), dx), _mm256_cvtepi32_ps(_mm256_sub_epi32(hi, sum)));
    _mm256_storeu_ps(acc, _mm256_add_ps(_mm256_loadu_ps(acc), t_lo));
    _mm256_storeu_ps(acc + 8, _mm256_add_ps(_mm256_loadu_ps(acc + 8), t_hi));
}

/* One 4-weight step for token t: rows 0-7's codes (ymm12) and rows 8-15's (ymm13) times the token's 4 activations
 * at x + 256 t, broadcast, added to its int16 sums l<t>, h<t>. Per step a token costs one broadcast for two
 * vpmaddubsw: with six tokens, 12 vpmaddubsw, 12 vpaddw, 6 broadcasts and 2 loads (8 rows x 8 tokens took 8
 * broadcasts and 8 vpaddw per 8 vpmaddubsw, and ran 1.2-1.4x slower on a Zen 3 VM whose cores' pipes were
 * shared). In asm: from intrinsics GCC rotated the twelve sums through the registers, with up to ten moves per
 * step, or spilled one. */
#define STEP_TOKEN_ASM(t, offset) \
    "vpbroadcastd " #offset "(%[x]), %%ymm14\n\t" \
    "vpmaddubsw %%ymm14, %%ymm12, %%ymm15\n\t" \
    "vpaddw %%ymm15, %[l" #t "], %[l" #t "]\n\t" \
    "vpmaddubsw %%ymm14, %%ymm13, %%ymm14\n\t" \
    "vpaddw %%ymm14, %[h" #t "], %[h" #t "]\n\t"
#define STEP_CODES_ASM "vmovdqa (%[c]), %%ymm12\n\tvmovdqa 32(%[c]), %%ymm13\n\t"
#define STEP_SUMS_2 [l0] "+x"(l0), [h0] "+x"(h0), [l1] "+x"(l1), [h1] "+x"(h1)
#define STEP_SUMS_4 STEP_SUMS_2, [l2] "+x"(l2), [h2] "+x"(h2), [l3] "+x"(l3), [h3] "+x"(h3)
#define STEP_SUMS_6 STEP_SUMS_4, [l4] "+x"(l4), [h4] "+x"(h4), [l5] "+x"(l5), [h5] "+x"(h5)
#define STEP_IN(c_rows, j, n) \
    [c] "r"((c_rows)[j]), [x] "r"(a + 4 * (j)), "m"(*(const uint8_t(*)[TILE_ROWS * 4])(c_rows)[j]), \
        "m"(*(const int8_t(*)[(n) * TRN_QK_K])a)
#define STEP_CLOBBERS "xmm12", "xmm13", "xmm14", "xmm15"
/* Steps j0 .. j0 + 31 for n tokens (6, 4 or 2: a constant where inlined) whose activations are at a + 256 t, from
 * c_rows (16 rows' codes per step), into l0..l5 (rows 0-7) and h0..h5 (rows 8-15). */
#define TOKEN_STEPS(c_rows, j0, n) \
    for (int j = (j0); j < (j0) + 32; j++) { \
        if ((n) == 6) \
            __asm__(STEP_CODES_ASM STEP_TOKEN_ASM(0, 0) STEP_TOKEN_ASM(1, 256) STEP_TOKEN_ASM(2, 512) \
                        STEP_TOKEN_ASM(3, 768) STEP_TOKEN_ASM(4, 1024) STEP_TOKEN_ASM(5, 1280) \
                    : STEP_SUMS_6 : STEP_IN(c_rows, j, 6) : STEP_CLOBBERS); \
        else if ((n) == 4) \
            __asm__(STEP_CODES_ASM STEP_TOKEN_ASM(0, 0) STEP_TOKEN_ASM(1, 256) STEP_TOKEN_ASM(2, 512) \
                        STEP_TOKEN_ASM(3, 768) \
                    : STEP_SUMS_4 : STEP_IN(c_rows, j, 4) : STEP_CLOBBERS); \
        else \
            __asm__(STEP_CODES_ASM STEP_TOKEN_ASM(0, 0) STEP_TOKEN_ASM(1, 256) : STEP_SUMS_2 : STEP_IN(c_rows, j, 2) \
                    : STEP_CLOBBERS); \
    }
/* The tile's block sums for n tokens (6, 4 or 2) whose activations are at a + 256 t, added by add_block to acc for
 * the first n_valid: two runs of 32 steps (each token's int16 sums stay within 32 x 762: codes <= 3, |q| <= 127),
 * each widened by vpmaddwd into int32 lanes; the first run's wait in memory (the second needs every register),
 * the second's go straight into add_block. One function per n, not inlined into the tile's loops, so that nothing
 * else competes with the twelve accumulators for the sixteen registers (inlined, GCC spilled one and added register
 * moves). */
static inline __attribute__((always_inline)) void block_sums(const tile_block *tb, const int8_t *a, int n,
                                                             int n_valid, float (*acc)[TILE_ROWS],
                                                             const trn_block_q8_act *xb, int64_t ld_xq) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i first[TOKEN_GROUP][2];
    for (int j0 = 0; j0 < STEPS; j0 += 32) {
        __m256i l0 = _mm256_setzero_si256(), l1 = l0, l2 = l0, l3 = l0, l4 = l0, l5 = l0;
        __m256i h0 = l0, h1 = l0, h2 = l0, h3 = l0, h4 = l0, h5 = l0;
        TOKEN_STEPS(tb->codes, j0, n);
        const __m256i l[TOKEN_GROUP] = {l0, l1, l2, l3, l4, l5}, h[TOKEN_GROUP] = {h0, h1, h2, h3, h4, h5};
        if (j0 == 0) {
            for (int t = 0; t < n; t++) { /* lanes 2k, 2k + 1 (row k) -> int32 lane k */
                first[t][0] = _mm256_madd_epi16(l[t], ones);
                first[t][1] = _mm256_madd_epi16(h[t], ones);
            }
            __asm__("" : "+m"(first)); /* kept in memory through the second run */
        } else {
            for (int t = 0; t < n_valid; t++)
                add_block(acc[t], _mm256_add_epi32(first[t][0], _mm256_madd_epi16(l[t], ones)),
                          _mm256_add_epi32(first[t][1], _mm256_madd_epi16(h[t], ones)), tb->d, xb + t * ld_xq);
        }
    }
}
#define BLOCK_SUMS_FOR(N) \
    static __attribute__((noinline)) void block_sums_##N(const tile_block *tb, const int8_t *a, int n_valid, \
                                                         float (*acc)[TILE_ROWS], const trn_block_q8_act *xb, \
                                                         int64_t ld_xq) { \
        block_sums(tb, a, N, n_valid, acc, xb, ld_xq); \
    }
BLOCK_SUMS_FOR(6)
BLOCK_SUMS_FOR(4)
BLOCK_SUMS_FOR(2)

/* The group's inner loop alone (6 tokens' activations in L1, the codes of one block), `rounds` times: 64 steps of
 * 12 vpmaddubsw (32 multiply-adds each) and their vpaddw per round. */
static __m256i peak_rounds(const int8_t *a, long rounds) {
    _Alignas(64) uint32_t codes[STEPS][TILE_ROWS];
    memset(codes, 1, sizeof(codes));
    __m256i l0 = _mm256_setzero_si256(), l1 = l0, l2 = l0, l3 = l0, l4 = l0, l5 = l0;
    __m256i h0 = l0, h1 = l0, h2 = l0, h3 = l0, h4 = l0, h5 = l0;
    for (long r = 0; r < rounds; r++) {
        TOKEN_STEPS(codes, 0, TOKEN_GROUP);
        TOKEN_STEPS(codes, 32, TOKEN_GROUP);
    }
    const __m256i l = _mm256_add_epi16(_mm256_add_epi16(_mm256_add_epi16(l0, l1), _mm256_add_epi16(l2, l3)),
                                       _mm256_add_epi16(l4, l5));
    const __m256i h = _mm256_add_epi16(_mm256_add_epi16(_mm256_add_epi16(h0, h1), _mm256_add_epi16(h2, h3)),
                                       _mm256_add_epi16(h4, h5));
    return _mm256_add_epi16(l, h);
}
enum { PEAK_MACS_PER_ROUND = STEPS * TOKEN_GROUP * TILE_ROWS * 4 };
#define PEAK_FOLD(v) _mm256_extract_epi32(v, 0)
#endif

/* peak_rounds as trn_sustained_rate runs it: ctx is the activations. */
static int32_t run_peak(const void *ctx, long rounds) { return PEAK_FOLD(peak_rounds(ctx, rounds)); }

/* matmul_peak (ops.h) of this build: the group loop alone, sustained over `seconds`. */
double TRN_MATMUL_PEAK(double seconds) {
    _Alignas(64) int8_t a[WIDE_GROUP * TRN_QK_K];
    for (int i = 0; i < (int)sizeof(a); i++)
        a[i] = (int8_t)(i * 37 % 255 - 127);
    return trn_sustained_rate(run_peak, a, 256, PEAK_MACS_PER_ROUND, seconds);
}

#if !defined(TRN_MATMUL_DPBUSD)
/* dst[t * ld_dst + k] = acc[t][k] for t < nt, k < n_rows (n_rows <= TILE_ROWS): two vector stores per token. (The
 * vpdpbusd build stores the last block's sums straight from its epilogue: add_block.) */
static void store_tile(float *dst, int64_t ld_dst, const float (*acc)[TILE_ROWS], int64_t nt, int n_rows) {
    if (n_rows == TILE_ROWS) {
        for (int64_t t = 0; t < nt; t++) {
            _mm256_storeu_ps(dst + t * ld_dst, _mm256_loadu_ps(acc[t]));
            _mm256_storeu_ps(dst + t * ld_dst + 8, _mm256_loadu_ps(acc[t] + 8));
        }
        return;
    }
    for (int64_t t = 0; t < nt; t++)
        memcpy(dst + t * ld_dst, acc[t], (size_t)n_rows * sizeof(float));
}
#endif

/* dst rows r..r+n_rows-1 (n_rows <= TILE_ROWS) for nt tokens (nt <= TILE_TOKENS) whose activations are in q
 * ([nb][nt_padded][256], nt_padded = nt rounded up to WIDE_GROUP, zero past nt), whose negated block sums are in
 * neg_sum ([nb][nt_padded], zero past nt) and whose scales and sums are in xq. */
#if defined(TRN_MATMUL_DPBUSD)
static void tile(const trn_matrix *w, int64_t r, int n_rows, const int8_t *q, const int32_t *neg_sum,
                 int64_t nt_padded, const trn_block_q8_act *xq, int64_t ld_xq, int64_t nt, float *dst,
                 int64_t ld_dst) {
    _Alignas(32) uint8_t rows[TILE_ROWS][TRN_QK_K];
    tile_block tb;
    _Alignas(64) float acc[TILE_TOKENS][TILE_ROWS];
    static const float zeros[WIDE_GROUP * TILE_ROWS];
    const int64_t nb = w->cols / TRN_QK_K;
    /* whole X16 groups (TQ2_0, TQ1_0): the first token group unpacks each block */
    const int fused = (w->type == TRN_TYPE_TQ2_0 || w->type == TRN_TYPE_TQ1_0) && w->layout == TRN_LAYOUT_X16 &&
                      n_rows == TILE_ROWS && r % TRN_X16_ROWS == 0 && r + TILE_ROWS <= trn_layout_full_rows(w);
    const size_t x16_bytes = (size_t)TRN_X16_ROWS * (size_t)trn_type_get(w->type)->block_bytes;
    const uint8_t *group = (const uint8_t *)w->data + (r / TRN_X16_ROWS) * nb * x16_bytes;
    const __mmask16 dst_rows = (__mmask16)((1u << n_rows) - 1u);
/* Block b: its groups' sums added to acc (from zeros where b is 0), or stored to dst where LAST. */
#define TILE_BLOCK(LAST) \
    do { \
        int64_t t0 = 0; \
        if (fused) { \
            const int n = nt > GROUP ? WIDE_GROUP : nt > QUARTER_GROUP ? GROUP : QUARTER_GROUP; \
            const tile_out out = {b == 0 ? zeros : acc[0], (LAST) ? dst + r : acc[0], ld_dst, dst_rows}; \
            if (w->type == TRN_TYPE_TQ2_0) \
                group_block_x16(group + b * x16_bytes, &tb, nt > n, q + b * nt_padded * TRN_QK_K, \
                                neg_sum + b * nt_padded, n, (int)TRN_MIN(n, nt), xq + b, ld_xq, &out, LAST); \
            else \
                group_block_x16_tq1(group + b * x16_bytes, &tb, nt > n, q + b * nt_padded * TRN_QK_K, \
                                    neg_sum + b * nt_padded, n, (int)TRN_MIN(n, nt), xq + b, ld_xq, &out, LAST); \
            t0 = n; \
        } else { \
            unpack_tile(w, r, n_rows, b, rows, &tb); \
        } \
        for (; t0 < nt;) { \
            const int n = nt - t0 > GROUP ? WIDE_GROUP : nt - t0 > QUARTER_GROUP ? GROUP : QUARTER_GROUP; \
            const tile_out out = {b == 0 ? zeros : acc[t0], (LAST) ? dst + t0 * ld_dst + r : acc[t0], ld_dst, \
                                  dst_rows}; \
            group_block(&tb, q + (b * nt_padded + t0) * TRN_QK_K, neg_sum + b * nt_padded + t0, n, \
                        (int)TRN_MIN(n, nt - t0), xq + t0 * ld_xq + b, ld_xq, &out, LAST); \
            t0 += n; \
        } \
    } while (0)
    for (int64_t b = 0; b < nb; b++) {
        prefetch_tile(w, r + TILE_ROWS, b);
        if (b < nb - 1)
            TILE_BLOCK(0);
        else
            TILE_BLOCK(1);
    }
#undef TILE_BLOCK
}
#else
static void tile(const trn_matrix *w, int64_t r, int n_rows, const int8_t *q, const int32_t *neg_sum,
                 int64_t nt_padded, const trn_block_q8_act *xq, int64_t ld_xq, int64_t nt, float *dst,
                 int64_t ld_dst) {
    _Alignas(32) uint8_t rows[TILE_ROWS][TRN_QK_K];
    tile_block tb;
    float acc[TILE_TOKENS][TILE_ROWS];
    (void)neg_sum; /* add_block subtracts each token's sum */
    memset(acc, 0, (size_t)nt * sizeof(acc[0]));
    for (int64_t b = 0; b < w->cols / TRN_QK_K; b++) {
        prefetch_tile(w, r + TILE_ROWS, b);
        unpack_tile(w, r, n_rows, b, rows, &tb);
        for (int64_t t0 = 0; t0 < nt;) { /* groups of 6 while 6 padded tokens are left, then 4 or 2 (an even rest) */
            const int64_t left = nt_padded - t0;
            const int n = left >= TOKEN_GROUP ? TOKEN_GROUP : left >= 4 ? 4 : 2, n_valid = (int)TRN_MIN(n, nt - t0);
            const int8_t *a = q + (b * nt_padded + t0) * TRN_QK_K;
            if (n == TOKEN_GROUP)
                block_sums_6(&tb, a, n_valid, acc + t0, xq + t0 * ld_xq + b, ld_xq);
            else if (n == 4)
                block_sums_4(&tb, a, n_valid, acc + t0, xq + t0 * ld_xq + b, ld_xq);
            else
                block_sums_2(&tb, a, n_valid, acc + t0, xq + t0 * ld_xq + b, ld_xq);
            t0 += n;
        }
    }
    store_tile(dst + r, ld_dst, acc, nt, n_rows);
}
#endif

void TRN_MATMUL_TQ(const trn_matrix *w, const trn_block_q8_act *xq, int64_t ld_xq, float *dst, int64_t ld_dst,
                   int64_t n_tok, trn_rows *rows) {
    const int64_t nb = w->cols / TRN_QK_K, n_tiles = (n_tok + TILE_TOKENS - 1) / TILE_TOKENS;
    const int64_t all_padded = (n_tok + WIDE_GROUP - 1) / WIDE_GROUP * WIDE_GROUP; /* every token tile's, summed */
    const size_t q_bytes = (size_t)(nb * all_padded) * TRN_QK_K;
    int8_t *q = aligned_alloc(64, (q_bytes + (size_t)(nb * all_padded) * sizeof(int32_t) + 63) / 64 * 64);
    if (!q)
        abort(); /* at most a few MB; the backend checked memory at prepare */
    int32_t *neg_sum = (int32_t *)(q + q_bytes);
    /* each token tile's activations and block sums, once for all the row ranges: tile i's at offset i * nb * 64
     * (TILE_TOKENS is a multiple of WIDE_GROUP, so only the last tile is padded) */
    for (int64_t i = 0; i < n_tiles; i++) {
        const int64_t t0 = i * TILE_TOKENS, nt = TRN_MIN(TILE_TOKENS, n_tok - t0);
        const int64_t padded = (nt + WIDE_GROUP - 1) / WIDE_GROUP * WIDE_GROUP;
        int8_t *qt = q + (size_t)(nb * t0) * TRN_QK_K;
        int32_t *st = neg_sum + nb * t0;
        trn_matmul_dense_acts(qt, xq + t0 * ld_xq, ld_xq, nb, nt, padded); /* one base pointer, constant offsets */
        for (int64_t b = 0; b < nb; b++)
            for (int64_t t = 0; t < padded; t++)
                st[b * padded + t] = t < nt ? -xq[(t0 + t) * ld_xq + b].sum : 0;
    }
    int64_t r0, r1;
    while (rows->next(rows, &r0, &r1))
        for (int64_t i = 0; i < n_tiles; i++) {
            const int64_t t0 = i * TILE_TOKENS, nt = TRN_MIN(TILE_TOKENS, n_tok - t0);
            const int64_t padded = (nt + WIDE_GROUP - 1) / WIDE_GROUP * WIDE_GROUP;
            for (int64_t r = r0; r < r1; r += TILE_ROWS)
                tile(w, r, (int)TRN_MIN(TILE_ROWS, r1 - r), q + (size_t)(nb * t0) * TRN_QK_K, neg_sum + nb * t0,
                     padded, xq + t0 * ld_xq, ld_xq, nt, dst + t0 * ld_dst, ld_dst);
        }
    free(q);
}

#if !defined(TRN_MATMUL_DPBUSD) /* one definition, in the AVX2 build; the AVX-512 build calls it too */
void trn_matmul_dense_acts(int8_t *q, const trn_block_q8_act *xq, int64_t ld_xq, int64_t nb, int64_t nt,
                           int64_t padded) {
    for (int64_t b = 0; b < nb; b++)
        for (int64_t t = 0; t < padded; t++) {
            int8_t *row = q + (b * padded + t) * TRN_QK_K;
            if (t < nt)
                memcpy(row, xq[t * ld_xq + b].q, TRN_QK_K);
            else
                memset(row, 0, TRN_QK_K);
        }
}
#endif
