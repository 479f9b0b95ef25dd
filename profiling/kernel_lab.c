/* kernel_lab.c: numbered variants of the ternary matrix-vector and matrix-matrix kernels, each checked against the
 * scalar reference and timed on every matrix shape of Trinity-1.1B, so that a kernel is tried here before it goes
 * into cpu_fallback/ (as llm.c's dev/cuda directory does for GPU kernels).
 *
 *   ./build/kernel_lab [VARIANT] [REPS] [--hot] [-t THREADS]                  matrix-vector (decode)
 *   ./build/kernel_lab --matmul [VARIANT] [REPS] [-t THREADS] [--tokens N]    matrix-matrix (batched prefill)
 *   ./build/kernel_lab --attention [REPS]                                     attention of each table
 *   ./build/kernel_lab --mix [REPS]                                           instruction-mix ceilings
 *   ./build/kernel_lab --steady [REPS] [-t THREADS]                           is this machine's compute steady?
 *
 * (no VARIANT, or 0: all of them). Exits with status 1 where any variant's output differs from the reference.
 * Owns the lab-only kernels (alternatives that did not go into cpu_fallback/) and the timing harness; the kernels
 * the tables run are cpu_fallback/'s. The variants are listed beside their tables (variants[], matmul_variants[]);
 * the figures measured with this tool are in profiling/README.md, "Kernel lab". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TRN_HAVE_OPENMP
#include <omp.h>
#endif

#include "cpu_fallback/ops.h"
#include "cpu_fallback/quants.h"
#include "host/common.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LAB_X86 1
#include <immintrin.h>
#endif

typedef void (*matvec_fn)(const trn_matrix *w, const float *x, const trn_block_q8_act *xq, float *dst, int64_t r0,
                          int64_t r1);

typedef struct {
    int64_t rows, cols;
    const char *what;
} shape;

static const shape shapes[] = {
    {2048, 2048, "attn_q, attn_output"}, {256, 2048, "attn_k, attn_v"}, {5632, 2048, "ffn_gate, ffn_up"},
    {2048, 5632, "ffn_down"}, {32000, 2048, "output (LM head)"},
};

/* ---- lab-only kernels: measured alternatives that did not go into cpu_fallback/ ---- */

#ifdef LAB_X86
#define LAB_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

static int lab_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

/* Variant 6: TQ2_0 in X4 groups (264-byte group blocks: four rows' 64 code bytes, then four scales). Field l of
 * row k's zmm of codes, (q >> 2l) & 3, holds weights 32l + m (bytes 0..31) and 128 + 32l + m (bytes 32..63),
 * so its activations are two 32-byte pieces joined once per block for the four rows. One vpdpbusd per field and
 * row; per block the four rows' 16 lanes are folded to four sums. Rows must be whole groups. */
LAB_AVX512 static void lab_tq2_0_x4_vnni(const trn_matrix *w, const float *x, const trn_block_q8_act *xq, float *dst,
                                          int64_t r0, int64_t r1) {
    (void)x;
    const int64_t nb = w->cols / TRN_QK_K;
    const __m512i mask = _mm512_set1_epi8(3);
    for (int64_t r = r0; r < r1; r += 4) {
        const uint8_t *group = (const uint8_t *)w->data + (r / 4) * nb * TRN_X4_GROUP_BLOCK_BYTES;
        __m128 acc = _mm_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *gb = group + b * TRN_X4_GROUP_BLOCK_BYTES;
            for (int i = 0; i < 5; i++)
                _mm_prefetch((const char *)gb + 2048 + 64 * i, _MM_HINT_T0);
            __m512i av[4];
            for (int l = 0; l < 4; l++)
                av[l] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(xq[b].q + 32 * l))),
                                           _mm256_loadu_si256((const __m256i *)(xq[b].q + 128 + 32 * l)), 1);
            __m512i s[4];
            for (int k = 0; k < 4; k++) {
                const __m512i q = _mm512_loadu_si512(gb + 64 * k);
                s[k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(q, mask), av[0]);
                for (int l = 1; l < 4; l++)
                    s[k] = _mm512_dpbusd_epi32(s[k], _mm512_and_si512(_mm512_srli_epi16(q, 2 * l), mask), av[l]);
            }
            __m256i h[4];
            for (int k = 0; k < 4; k++)
                h[k] = _mm256_add_epi32(_mm512_castsi512_si256(s[k]), _mm512_extracti64x4_epi64(s[k], 1));
            const __m256i hh = _mm256_hadd_epi32(_mm256_hadd_epi32(h[0], h[1]), _mm256_hadd_epi32(h[2], h[3]));
            const __m128i isum = _mm_sub_epi32(_mm_add_epi32(_mm256_castsi256_si128(hh), _mm256_extracti128_si256(hh, 1)),
                                               _mm_set1_epi32(xq[b].sum));
            const __m128 d = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(gb + 256))), _mm_set1_ps(xq[b].d));
            acc = _mm_add_ps(acc, _mm_mul_ps(d, _mm_cvtepi32_ps(isum)));
        }
        _mm_storeu_ps(dst + r, acc);
    }
}

/* Variant 7: TQ2_0 in X16 groups with AVX-512BW only: field l is (q >> 2l) & 3 (a mask alone would overflow
 * vpmaddubsw's int16 pairs), multiplied by vpmaddubsw with the broadcast activation dword; int16 pair sums stay
 * exact over 8 columns (8 x 4 x 762 = 24384) and are widened twice per block by vpmaddwd. Rows must be whole
 * groups. */
LAB_AVX512 static void lab_tq2_0_x16_bw(const trn_matrix *w, const float *x, const trn_block_q8_act *xq, float *dst,
                                         int64_t r0, int64_t r1) {
    (void)x;
    const int64_t nb = w->cols / TRN_QK_K;
    const size_t group_block = TRN_X16_ROWS * sizeof(trn_block_tq2_0);
    const __m512i mask = _mm512_set1_epi8(3), ones = _mm512_set1_epi16(1);
    for (int64_t r = r0; r < r1; r += TRN_X16_ROWS) {
        const uint8_t *group = (const uint8_t *)w->data + r / TRN_X16_ROWS * nb * group_block;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *gb = group + b * group_block;
            __m512i isum = _mm512_setzero_si512();
            for (int half = 0; half < 2; half++) {
                __m512i s16 = _mm512_setzero_si512();
                for (int j = 8 * half; j < 8 * half + 8; j++) {
                    _mm_prefetch((const char *)gb + 64 * j + 2048, _MM_HINT_T0);
                    const __m512i q = _mm512_loadu_si512(gb + 64 * j);
                    for (int l = 0; l < 4; l++) {
                        int32_t a;
                        memcpy(&a, xq[b].q + 128 * (j / 8) + 32 * l + 4 * (j % 8), 4);
                        s16 = _mm512_add_epi16(s16, _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(q, 2 * l), mask),
                                                                         _mm512_set1_epi32(a)));
                    }
                }
                isum = _mm512_add_epi32(isum, _mm512_madd_epi16(s16, ones));
            }
            const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(gb + 1024))),
                                           _mm512_set1_ps(xq[b].d));
            acc = _mm512_add_ps(acc, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(isum, _mm512_set1_epi32(xq[b].sum)))));
        }
        _mm512_storeu_ps(dst + r, acc);
    }
}

#if defined(TRN_HAVE_AVX2) /* the table's dense activation copy (ops_avx2_matmul.c) */
/* Matmul variant 6: TQ2_0 X16 groups against tokens in groups of 16, straight from the columns: per block and
 * token group, column j's field l, (q >> 2l) & 3, is the four codes of weights trn_tq2_0_x16_act(j, l) .. + 3 of
 * the 16 rows, multiplied by each token's four activations broadcast from memory (vpdpbusd {1to16}); the block
 * ends with the reference's float steps per token. The table's kernel (variant 4) unpacks a tile's codes once
 * per block into an L1 copy that every token group reads; this one redoes the shifts and masks per token group
 * instead. Activations are copied densely first, q[b][token][256] (tokens padded to 16 with zeros), as the
 * table's kernel does. Rows must be whole groups. */
#define LAB_DPBUSD(acc, t) \
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(c), "m"(*(const int32_t *)(a + (t) * TRN_QK_K)))
LAB_AVX512 static void lab_matmul_x16_direct(const trn_matrix *w, const trn_block_q8_act *xq, int64_t ld_xq,
                                             float *dst, int64_t ld_dst, int64_t n_tok, int64_t r0, int64_t r1) {
    enum { TILE = 64, G = 16 };
    const int64_t nb = w->cols / TRN_QK_K;
    const size_t group_block = TRN_X16_ROWS * sizeof(trn_block_tq2_0);
    int8_t *q = aligned_alloc(64, (size_t)(nb * TILE) * TRN_QK_K);
    if (!q)
        abort();
    for (int64_t t0 = 0; t0 < n_tok; t0 += TILE) {
        const int64_t nt = TRN_MIN(TILE, n_tok - t0), padded = (nt + G - 1) / G * G;
        trn_matmul_dense_acts(q, xq + t0 * ld_xq, ld_xq, nb, nt, padded); /* as the table's kernel */
        for (int64_t first = r0; first < r1; first += TRN_X16_ROWS) {
            const uint8_t *group = (const uint8_t *)w->data + first / TRN_X16_ROWS * nb * group_block;
            __m512 acc[TILE];
            for (int t = 0; t < TILE; t++)
                acc[t] = _mm512_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *gb = group + b * group_block;
                const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(gb + 16 * TRN_X16_COLUMN_BYTES)));
                for (int64_t g = 0; g < nt; g += G) {
                    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0;
                    __m512i s7 = s0, s8 = s0, s9 = s0, s10 = s0, s11 = s0, s12 = s0, s13 = s0, s14 = s0, s15 = s0;
                    for (int j = 0; j < 16; j++) {
                        const __m512i column = _mm512_loadu_si512(gb + TRN_X16_COLUMN_BYTES * j);
#pragma GCC unroll 4
                        for (int l = 0; l < 4; l++) {
                            const __m512i c = _mm512_and_si512(_mm512_srli_epi32(column, 2 * l), _mm512_set1_epi8(3));
                            const int8_t *a = q + (b * padded + g) * TRN_QK_K + 128 * (j / 8) + 32 * l + 4 * (j % 8);
                            LAB_DPBUSD(s0, 0); LAB_DPBUSD(s1, 1); LAB_DPBUSD(s2, 2); LAB_DPBUSD(s3, 3);
                            LAB_DPBUSD(s4, 4); LAB_DPBUSD(s5, 5); LAB_DPBUSD(s6, 6); LAB_DPBUSD(s7, 7);
                            LAB_DPBUSD(s8, 8); LAB_DPBUSD(s9, 9); LAB_DPBUSD(s10, 10); LAB_DPBUSD(s11, 11);
                            LAB_DPBUSD(s12, 12); LAB_DPBUSD(s13, 13); LAB_DPBUSD(s14, 14); LAB_DPBUSD(s15, 15);
                        }
                    }
                    const __m512i s[G] = {s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15};
                    for (int t = 0; t < G && g + t < nt; t++) {
                        const trn_block_q8_act *x = &xq[(t0 + g + t) * ld_xq + b];
                        const __m512i isum = _mm512_sub_epi32(s[t], _mm512_set1_epi32(x->sum));
                        acc[g + t] = _mm512_add_ps(acc[g + t], _mm512_mul_ps(_mm512_mul_ps(d, _mm512_set1_ps(x->d)),
                                                                             _mm512_cvtepi32_ps(isum)));
                    }
                }
            }
            for (int64_t t = 0; t < nt; t++)
                _mm512_storeu_ps(dst + (t0 + t) * ld_dst + first, acc[t]);
        }
    }
    free(q);
}

/* Matmul variant 7: two X16 groups (32 rows) against tokens in groups of 10, straight from the columns: each
 * token's four activations are broadcast into a register once per column field and multiply both groups' codes
 * (20 accumulators), so a vpdpbusd needs half a broadcast instead of one. Otherwise as variant 6. Rows must be
 * whole pairs of groups. Slower than variants 4 and 6: GCC spills its accumulators (profiling/README.md). */
LAB_AVX512 static void lab_matmul_x16_pair(const trn_matrix *w, const trn_block_q8_act *xq, int64_t ld_xq,
                                           float *dst, int64_t ld_dst, int64_t n_tok, int64_t r0, int64_t r1) {
    enum { TILE = 60, G = 10 };
    const int64_t nb = w->cols / TRN_QK_K;
    const size_t group_block = TRN_X16_ROWS * sizeof(trn_block_tq2_0);
    int8_t *q = aligned_alloc(64, (size_t)(nb * TILE) * TRN_QK_K);
    if (!q)
        abort();
    for (int64_t t0 = 0; t0 < n_tok; t0 += TILE) {
        const int64_t nt = TRN_MIN(TILE, n_tok - t0), padded = (nt + G - 1) / G * G;
        trn_matmul_dense_acts(q, xq + t0 * ld_xq, ld_xq, nb, nt, padded); /* as the table's kernel */
        for (int64_t first = r0; first < r1; first += 2 * TRN_X16_ROWS) {
            const uint8_t *group = (const uint8_t *)w->data + first / TRN_X16_ROWS * nb * group_block;
            __m512 acc[TILE][2];
            for (int t = 0; t < TILE; t++)
                acc[t][0] = acc[t][1] = _mm512_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *ga = group + b * group_block, *gb = ga + nb * group_block;
                const __m512 da = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ga + 16 * TRN_X16_COLUMN_BYTES)));
                const __m512 db = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(gb + 16 * TRN_X16_COLUMN_BYTES)));
                for (int64_t g = 0; g < nt; g += G) {
                    __m512i s[G][2];
#pragma GCC unroll 10
                    for (int t = 0; t < G; t++)
                        s[t][0] = s[t][1] = _mm512_setzero_si512();
                    for (int j = 0; j < 16; j++) {
                        const __m512i col_a = _mm512_loadu_si512(ga + TRN_X16_COLUMN_BYTES * j);
                        const __m512i col_b = _mm512_loadu_si512(gb + TRN_X16_COLUMN_BYTES * j);
#pragma GCC unroll 4
                        for (int l = 0; l < 4; l++) {
                            const __m512i ca = _mm512_and_si512(_mm512_srli_epi32(col_a, 2 * l), _mm512_set1_epi8(3));
                            const __m512i cb = _mm512_and_si512(_mm512_srli_epi32(col_b, 2 * l), _mm512_set1_epi8(3));
                            const int8_t *a = q + (b * padded + g) * TRN_QK_K + 128 * (j / 8) + 32 * l + 4 * (j % 8);
#pragma GCC unroll 10
                            for (int t = 0; t < G; t++) {
                                int32_t v;
                                memcpy(&v, a + t * TRN_QK_K, 4);
                                const __m512i x = _mm512_set1_epi32(v);
                                s[t][0] = _mm512_dpbusd_epi32(s[t][0], ca, x);
                                s[t][1] = _mm512_dpbusd_epi32(s[t][1], cb, x);
                            }
                        }
                    }
                    for (int t = 0; t < G && g + t < nt; t++) {
                        const trn_block_q8_act *x = &xq[(t0 + g + t) * ld_xq + b];
                        const __m512i sum = _mm512_set1_epi32(x->sum);
                        const __m512 xd = _mm512_set1_ps(x->d);
                        acc[g + t][0] = _mm512_add_ps(acc[g + t][0], _mm512_mul_ps(_mm512_mul_ps(da, xd),
                                                                                   _mm512_cvtepi32_ps(_mm512_sub_epi32(s[t][0], sum))));
                        acc[g + t][1] = _mm512_add_ps(acc[g + t][1], _mm512_mul_ps(_mm512_mul_ps(db, xd),
                                                                                   _mm512_cvtepi32_ps(_mm512_sub_epi32(s[t][1], sum))));
                    }
                }
            }
            for (int64_t t = 0; t < nt; t++) {
                _mm512_storeu_ps(dst + (t0 + t) * ld_dst + first, acc[t][0]);
                _mm512_storeu_ps(dst + (t0 + t) * ld_dst + first + TRN_X16_ROWS, acc[t][1]);
            }
        }
    }
    free(q);
}

/* Matmul variant 8: two X16 groups (32 rows) unpacked once per block into a 32-row tile (step j: 32 dwords, row k's
 * four codes at dword k), against tokens in groups of 8: per step two code vectors are loaded and each token's four
 * activations broadcast into a register once for both (vpbroadcastd from memory, a load), so 16 vpdpbusd take 10
 * loads instead of 17; the chains start at -x->sum, and the block ends with the reference's float steps per token
 * and 16-row half. Activations are copied densely first (tokens padded to 8). Rows must be whole pairs of groups. */
LAB_AVX512 static void lab_matmul_32x8(const trn_matrix *w, const trn_block_q8_act *xq, int64_t ld_xq, float *dst,
                                       int64_t ld_dst, int64_t n_tok, int64_t r0, int64_t r1) {
    enum { TILE = 64, G = 8 };
    const int64_t nb = w->cols / TRN_QK_K;
    const size_t group_block = TRN_X16_ROWS * sizeof(trn_block_tq2_0);
    int8_t *q = aligned_alloc(64, (size_t)(nb * TILE) * TRN_QK_K);
    if (!q)
        abort();
    _Alignas(64) uint32_t codes[64][32];
    _Alignas(64) float d[32];
    _Alignas(64) float acc[TILE][32];
    for (int64_t t0 = 0; t0 < n_tok; t0 += TILE) {
        const int64_t nt = TRN_MIN(TILE, n_tok - t0), padded = (nt + G - 1) / G * G;
        trn_matmul_dense_acts(q, xq + t0 * ld_xq, ld_xq, nb, nt, padded);
        for (int64_t first = r0; first < r1; first += 2 * TRN_X16_ROWS) {
            const uint8_t *group = (const uint8_t *)w->data + first / TRN_X16_ROWS * nb * group_block;
            memset(acc, 0, sizeof(acc));
            for (int64_t b = 0; b < nb; b++) {
                for (int h = 0; h < 2; h++) {
                    const uint8_t *gb = group + (h * nb + b) * group_block;
                    _mm512_store_ps(d + 16 * h, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(gb + 16 * TRN_X16_COLUMN_BYTES))));
                    for (int j = 0; j < 16; j++) {
                        const __m512i column = _mm512_loadu_si512(gb + j * TRN_X16_COLUMN_BYTES);
                        for (int l = 0; l < 4; l++)
                            _mm512_store_si512(codes[32 * (j / 8) + 8 * l + j % 8] + 16 * h,
                                               _mm512_and_si512(_mm512_srli_epi32(column, 2 * l), _mm512_set1_epi8(3)));
                    }
                }
                for (int64_t g = 0; g < nt; g += G) {
                    const int8_t *a = q + (b * padded + g) * TRN_QK_K;
                    const trn_block_q8_act *xb = xq + (t0 + g) * ld_xq + b;
                    const int valid = (int)TRN_MIN(G, nt - g);
#define LAB_NEG_SUM(t) _mm512_set1_epi32((t) < valid ? -xb[(t) * ld_xq].sum : 0)
                    __m512i a0 = LAB_NEG_SUM(0), a1 = LAB_NEG_SUM(1), a2 = LAB_NEG_SUM(2), a3 = LAB_NEG_SUM(3);
                    __m512i a4 = LAB_NEG_SUM(4), a5 = LAB_NEG_SUM(5), a6 = LAB_NEG_SUM(6), a7 = LAB_NEG_SUM(7);
                    __m512i b0 = a0, b1 = a1, b2 = a2, b3 = a3, b4 = a4, b5 = a5, b6 = a6, b7 = a7;
#define LAB_PAIR(t) \
    do { \
        const __m512i x = _mm512_set1_epi32(*(const int32_t *)(a + (t) * TRN_QK_K + 4 * j)); \
        __asm__("vpdpbusd %2, %1, %0" : "+v"(a##t) : "v"(c0), "v"(x)); \
        __asm__("vpdpbusd %2, %1, %0" : "+v"(b##t) : "v"(c1), "v"(x)); \
    } while (0)
                    for (int j = 0; j < 64; j++) {
                        const __m512i c0 = _mm512_load_si512(codes[j]), c1 = _mm512_load_si512(codes[j] + 16);
                        LAB_PAIR(0); LAB_PAIR(1); LAB_PAIR(2); LAB_PAIR(3);
                        LAB_PAIR(4); LAB_PAIR(5); LAB_PAIR(6); LAB_PAIR(7);
                    }
                    const __m512i s[G][2] = {{a0, b0}, {a1, b1}, {a2, b2}, {a3, b3}, {a4, b4}, {a5, b5}, {a6, b6}, {a7, b7}};
                    for (int t = 0; t < valid; t++) {
                        const __m512 xd = _mm512_set1_ps(xb[t * ld_xq].d);
                        for (int h = 0; h < 2; h++) {
                            const __m512 term = _mm512_mul_ps(_mm512_mul_ps(_mm512_load_ps(d + 16 * h), xd),
                                                              _mm512_cvtepi32_ps(s[t][h]));
                            _mm512_store_ps(acc[g + t] + 16 * h, _mm512_add_ps(_mm512_load_ps(acc[g + t] + 16 * h), term));
                        }
                    }
                }
            }
            for (int64_t t = 0; t < nt; t++)
                memcpy(dst + (t0 + t) * ld_dst + first, acc[t], 32 * sizeof(float));
        }
    }
    free(q);
}
#endif /* TRN_HAVE_AVX2 */
#endif

/* ---- the variants ---- */

/* Matrix-vector variants (the winner keeps its number when it moves into cpu_fallback/; "lab" ones live only here):
 *   1  scalar reference, TQ2_0, file layout (ops_ref.c)
 *   2  AVX2, TQ2_0, file layout: rows read one at a time (the unrepacked path)
 *   3  AVX2, TQ2_0 repacked into four-row groups (X4) with software prefetch (the AVX2 table's until the 18th session)
 *   4  AVX2, TQ1_0, file layout (base-3 digits decoded per block, one row at a time)
 *   5  AVX-512 VNNI, TQ2_0, sixteen-row groups (X16): vpdpbusd on masked 2-bit fields (the AVX-512 table's)
 *   6  lab: AVX-512 VNNI, TQ2_0, X4: a zmm per row, four rows' sums folded per block
 *   7  lab: AVX-512BW without VNNI, TQ2_0, X16: vpmaddubsw on shifted fields (CPUs with AVX-512 but no VNNI)
 *   8  AVX2, TQ1_0, X16: digits by byte adds and compares, vpmaddubsw (the AVX2 table's)
 *   9  AVX-512 VNNI, TQ1_0, X16: digits never extracted, two vpdpbusd per digit (the AVX-512 table's)
 *  10  scalar reference, TQ1_0, file layout (ops_ref.c)
 *  11-14  the AVX-512 table's two variants, TQ2_0 and TQ1_0 X16: weight prefetch 4 KB ahead on (Intel's) and off (AMD's)
 *  15  AVX2, TQ2_0, X16: shifted and masked fields times a broadcast dword, rows in the lanes (the AVX2 table's)
 * For each shape: the matrix is larger than the last-level cache when repeated (a fresh copy per repetition is
 * not needed: 22 layers' worth of one shape is allocated and walked), one thread unless -t, best of REPS. Every
 * copy lies on 2 MB pages where the kernel grants them (trn_alloc_huge, as the backend's repacked matrices do),
 * so variants differ by layout and kernel only. Prints time, GB/s of weights and whether the output equals the
 * reference bitwise (int8 activations make that possible).
 * --hot walks one copy over and over instead (from the caches where it fits: the 256-row shape fits in L2), which
 * gives a kernel's compute ceiling rather than its rate from memory. -t THREADS (OpenMP builds) splits each
 * product's rows among threads as the CPU backend does (multiples of sixteen rows, a barrier after each product),
 * which is how decode reads memory: one thread alone does not reach the machine's bandwidth. */

typedef struct {
    const char *name;
    const char *table; /* the table whose matvec runs ("scalar", "avx2", "avx512"), or NULL for a lab kernel */
    trn_type type;
    trn_layout layout;
    matvec_fn lab_kernel;
} variant;

static const variant variants[] = {
    {"scalar reference", "scalar", TRN_TYPE_TQ2_0, TRN_LAYOUT_ROWS, NULL},
    {"avx2, file layout", "avx2", TRN_TYPE_TQ2_0, TRN_LAYOUT_ROWS, NULL},
    {"avx2, four-row groups + prefetch", "avx2", TRN_TYPE_TQ2_0, TRN_LAYOUT_X4, NULL},
    {"avx2, tq1_0 file layout", "avx2", TRN_TYPE_TQ1_0, TRN_LAYOUT_ROWS, NULL},
    {"avx512 vnni, x16", "avx512", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, NULL},
#ifdef LAB_X86
    {"lab: avx512 vnni, x4", NULL, TRN_TYPE_TQ2_0, TRN_LAYOUT_X4, lab_tq2_0_x4_vnni},
    {"lab: avx512bw maddubs, x16", NULL, TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, lab_tq2_0_x16_bw},
#else
    {"lab: avx512 vnni, x4 (x86 only)", NULL, TRN_TYPE_TQ2_0, TRN_LAYOUT_X4, NULL},
    {"lab: avx512bw maddubs, x16 (x86 only)", NULL, TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, NULL},
#endif
    {"avx2, tq1_0 x16", "avx2", TRN_TYPE_TQ1_0, TRN_LAYOUT_X16, NULL},
    {"avx512 vnni, tq1_0 x16", "avx512", TRN_TYPE_TQ1_0, TRN_LAYOUT_X16, NULL},
    {"scalar reference, tq1_0", "scalar", TRN_TYPE_TQ1_0, TRN_LAYOUT_ROWS, NULL},
    /* the avx512 table's two variants (the vendor decides which the table is, ops.h) */
    {"avx512 vnni, x16, prefetch on", "avx512 prefetch", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, NULL},
    {"avx512 vnni, x16, prefetch off", "avx512 plain", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, NULL},
    {"avx512 vnni, tq1_0 x16, prefetch on", "avx512 prefetch", TRN_TYPE_TQ1_0, TRN_LAYOUT_X16, NULL},
    {"avx512 vnni, tq1_0 x16, prefetch off", "avx512 plain", TRN_TYPE_TQ1_0, TRN_LAYOUT_X16, NULL},
    {"avx2, x16 (the avx2 table's layout)", "avx2", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, NULL},
};

/* The kernel of a variant, or NULL where this build or CPU cannot run it. */
static matvec_fn variant_kernel(const variant *v) {
    if (v->table) {
        const trn_cpu_ops *ops = strncmp(v->table, "avx512 ", 7) == 0
                                     ? trn_cpu_ops_avx512_variant(strcmp(v->table, "avx512 prefetch") == 0)
                                     : trn_cpu_ops_by_name(v->table);
        return ops ? ops->matvec : NULL;
    }
#ifdef LAB_X86
    return lab_has_avx512() ? v->lab_kernel : NULL;
#else
    return NULL;
#endif
}

/* Thread ith's rows [*begin, *end) of `rows`, in units of sixteen rows (the CPU backend's product_rows). */
static void thread_rows(int64_t rows, int ith, int nth, int64_t *begin, int64_t *end) {
    const int64_t units = (rows + 15) / 16;
    *begin = TRN_MIN(rows, units * ith / nth * 16);
    *end = TRN_MIN(rows, units * (ith + 1) / nth * 16);
}

/* One product of a variant on rows [r0, r1) of w, with the rest of its arguments in ctx. */
typedef void (*product_call)(const void *ctx, const trn_matrix *w, int64_t r0, int64_t r1);

/* Best time of `reps` over `walks` products of views[c % copies], rows split among `threads` as the backend
 * splits them (cpu_backend.c: units of sixteen rows, a barrier after each product). */
static double time_products(product_call call, const void *ctx, const trn_matrix *views, int copies, int walks,
                            int reps, int threads) {
    double best = 1e30;
#pragma omp parallel num_threads(threads)
    {
        int ith = 0, nth = 1;
#ifdef TRN_HAVE_OPENMP
        ith = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        int64_t begin, end;
        thread_rows(views[0].rows, ith, nth, &begin, &end);
        for (int k = 0; k < reps; k++) {
            double t0 = 0;
#pragma omp barrier
            if (ith == 0)
                t0 = trn_time_s();
            for (int c = 0; c < walks; c++) {
                call(ctx, &views[c % copies], begin, end);
#pragma omp barrier
            }
            if (ith == 0) {
                const double dt = (trn_time_s() - t0) / walks;
                best = dt < best ? dt : best;
            }
        }
    }
    return best;
}

typedef struct {
    matvec_fn kernel;
    const float *x;
    const trn_block_q8_act *xq;
    float *y;
} matvec_args;

static void call_matvec(const void *ctx, const trn_matrix *w, int64_t r0, int64_t r1) {
    const matvec_args *a = ctx;
    a->kernel(w, a->x, a->xq, a->y, r0, r1);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* ---- matrix-matrix variants (--matmul) ---- */

typedef void (*matmul_fn)(const trn_matrix *w, const trn_block_q8_act *xq, int64_t ld_xq, float *dst, int64_t ld_dst,
                          int64_t n_tok, int64_t r0, int64_t r1);

static void mm_scalar(const trn_matrix *w, const trn_block_q8_act *xq, int64_t ld_xq, float *dst, int64_t ld_dst,
                      int64_t n_tok, int64_t r0, int64_t r1) {
    trn_rows rows = trn_rows_range(r0, r1);
    trn_matmul_by_matvec(trn_cpu_ops_ref()->matvec, w, NULL, 0, xq, ld_xq, dst, ld_dst, n_tok, &rows);
}

static void mm_by_matvec_avx512(const trn_matrix *w, const trn_block_q8_act *xq, int64_t ld_xq, float *dst,
                                int64_t ld_dst, int64_t n_tok, int64_t r0, int64_t r1) {
    trn_rows rows = trn_rows_range(r0, r1);
    trn_matmul_by_matvec(trn_cpu_ops_avx512()->matvec, w, NULL, 0, xq, ld_xq, dst, ld_dst, n_tok, &rows);
}

/* The tables' batched ternary kernels, which take their rows as a trn_rows (ops.h) */
typedef void (*tq_matmul_fn)(const trn_matrix *w, const trn_block_q8_act *xq, int64_t ld_xq, float *dst,
                             int64_t ld_dst, int64_t n_tok, trn_rows *rows);

typedef struct {
    const char *name;
    trn_type type;
    trn_layout layout;
    matmul_fn kernel; /* NULL where this build lacks it or tq is set */
    int (*available)(void); /* whether this CPU runs it */
    tq_matmul_fn tq;        /* a table's kernel instead of `kernel` */
} matmul_variant;

static int always(void) { return 1; }
static int cpu_has_avx512(void) { return trn_cpu_ops_avx512() != NULL; }
#if defined(TRN_HAVE_AVX2)
static int cpu_has_avx2(void) { return trn_cpu_ops_avx2() != NULL; }
#endif
#if defined(TRN_HAVE_AVX512)
static int cpu_has_dpbusd(void) { return trn_cpu_ops_avx512() != NULL; }
#endif

/* Matrix-matrix variants (--matmul; N tokens, default 64, the bench's prompt; the four layer shapes, since a
 * prefill runs the LM head for its last token only):
 *   1  scalar reference, TQ2_0: the reference matrix-vector product once per token (ops_ref.c)
 *   2  AVX-512 VNNI matrix-vector kernel once per token, TQ2_0 X16: the token-by-token path's products
 *   3  AVX2 vpmaddubsw tiles, TQ2_0 X4 (the AVX2 table's matmul until X16, variant 9)
 *   4  AVX-512 VNNI tiles, TQ2_0 X16 (the AVX-512 table's matmul: trn_matmul_tq_dpbusd)
 *   5  AVX-512 VNNI tiles, TQ1_0 X16 (the AVX-512 table's matmul)
 *   6  lab: AVX-512 VNNI straight from the X16 columns, TQ2_0: no unpacked tile, each column's four fields
 *      shifted and masked in registers once per group of 16 tokens
 *   7  lab: as 6 on 32 rows (two X16 groups) and 10 tokens, each activation broadcast once for both groups
 *   8  lab: 32-row tiles (two X16 groups unpacked once per block) on 8-token groups, each token's activations
 *      broadcast into a register once for both 16-row halves
 *   9  AVX2 vpmaddubsw tiles, TQ2_0 X16: 16-row tiles, the columns as they are (the AVX2 table's matmul)
 * Prints time per product, GB/s of weights, G multiply-adds per second (rows x cols x tokens / time) and whether
 * every output equals the reference bitwise. */
static const matmul_variant matmul_variants[] = {
    {"scalar reference, per token", TRN_TYPE_TQ2_0, TRN_LAYOUT_ROWS, mm_scalar, always, NULL},
    {"avx512 vnni matvec, per token", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, mm_by_matvec_avx512, cpu_has_avx512, NULL},
#if defined(TRN_HAVE_AVX2)
    {"avx2 maddubs tiles, x4", TRN_TYPE_TQ2_0, TRN_LAYOUT_X4, NULL, cpu_has_avx2, trn_matmul_tq_maddubs},
#else
    {"avx2 maddubs tiles, x4", TRN_TYPE_TQ2_0, TRN_LAYOUT_X4, NULL, always, NULL},
#endif
#if defined(TRN_HAVE_AVX512)
    {"avx512 vnni tiles, x16", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, NULL, cpu_has_dpbusd, trn_matmul_tq_dpbusd},
    {"avx512 vnni tiles, tq1_0 x16", TRN_TYPE_TQ1_0, TRN_LAYOUT_X16, NULL, cpu_has_dpbusd, trn_matmul_tq_dpbusd},
#else
    {"avx512 vnni tiles, x16", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, NULL, always, NULL},
    {"avx512 vnni tiles, tq1_0 x16", TRN_TYPE_TQ1_0, TRN_LAYOUT_X16, NULL, always, NULL},
#endif
#if defined(LAB_X86) && defined(TRN_HAVE_AVX2)
    {"lab: vnni from x16 columns", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, lab_matmul_x16_direct, lab_has_avx512, NULL},
    {"lab: vnni, 32 rows x 10 tokens", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, lab_matmul_x16_pair, lab_has_avx512, NULL},
    {"lab: vnni tiles, 32 rows x 8 tokens", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, lab_matmul_32x8, lab_has_avx512, NULL},
#else
    {"lab: vnni from x16 columns (x86, avx2 build)", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, NULL, always, NULL},
    {"lab: vnni, 32 rows x 10 tokens (x86, avx2 build)", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, NULL, always, NULL},
    {"lab: vnni tiles, 32 rows x 8 tokens (x86, avx2 build)", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, NULL, always, NULL},
#endif
#if defined(TRN_HAVE_AVX2)
    {"avx2 maddubs tiles, x16", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, NULL, cpu_has_avx2, trn_matmul_tq_maddubs},
#else
    {"avx2 maddubs tiles, x16", TRN_TYPE_TQ2_0, TRN_LAYOUT_X16, NULL, always, NULL},
#endif
};

typedef struct {
    matmul_fn kernel;
    tq_matmul_fn tq;
    const trn_block_q8_act *xq;
    int64_t ld_xq, ld_dst, n_tok;
    float *y;
} matmul_args;

static void call_matmul(const void *ctx, const trn_matrix *w, int64_t r0, int64_t r1) {
    const matmul_args *a = ctx;
    trn_rows rows = trn_rows_range(r0, r1);
    if (a->tq)
        a->tq(w, a->xq, a->ld_xq, a->y, a->ld_dst, a->n_tok, &rows);
    else
        a->kernel(w, a->xq, a->ld_xq, a->y, a->ld_dst, a->n_tok, r0, r1);
}

/* The matrix-matrix table: returns the number of variants whose output differed from the reference. */
static int run_matmul(int only, int reps, int threads, int64_t n_tok) {
    int differ = 0;
    const trn_cpu_ops *best_ops = trn_cpu_ops_best();
    if (best_ops->matmul_peak) /* what the best table's batched kernel could reach: its inner loop alone */
        printf("peak: %.1f GMAC/s per thread (%s table's matmul_peak: the inner loop alone, activations in L1, "
               "sustained over 0.2 s)\n",
               best_ops->matmul_peak(0.2) / 1e9, best_ops->name);
    printf("%-3s %-34s %-14s %10s %9s %9s %s\n", "var", "kernel", "shape", "ms", "GB/s", "GMAC/s", "vs reference");
    for (size_t s = 0; s + 1 < TRN_ARRAY_LEN(shapes); s++) { /* not the LM head */
        const int64_t rows = shapes[s].rows, cols = shapes[s].cols;
        for (int v = 1; v <= (int)TRN_ARRAY_LEN(matmul_variants); v++) {
            if (only && v != only)
                continue;
            const matmul_variant *var = &matmul_variants[v - 1];
            if ((!var->kernel && !var->tq) || !var->available()) {
                printf("%-3d %-34s (not available on this CPU or build)\n", v, var->name);
                continue;
            }
            const size_t row_bytes = trn_row_bytes(var->type, cols), bytes = row_bytes * (size_t)rows;
            /* copies walked in turn, 32 MB at least, so that weights come from memory as in a prefill; the
             * scalar reference walks one product only */
            const int walks = v == 1 ? 1 : (int)((((size_t)32 << 20) + bytes - 1) / bytes);
            uint8_t *data = trn_alloc_huge(bytes * (size_t)walks);
            void *packed = var->layout != TRN_LAYOUT_ROWS ? trn_alloc_huge(bytes * (size_t)walks) : NULL;
            float *row = malloc((size_t)cols * sizeof(float)), *x = malloc((size_t)cols * sizeof(float));
            float *y = malloc((size_t)(rows * n_tok) * sizeof(float)), *y_ref = malloc((size_t)(rows * n_tok) * sizeof(float));
            const int64_t ld_xq = cols / TRN_QK_K;
            trn_block_q8_act *xq = trn_alloc((size_t)(ld_xq * n_tok) * sizeof(trn_block_q8_act));
            trn_matrix *views = malloc((size_t)walks * sizeof(trn_matrix));
            if (!data || !row || !x || !y || !y_ref || !xq || !views || (var->layout != TRN_LAYOUT_ROWS && !packed)) {
                fprintf(stderr, "out of memory\n");
                exit(1);
            }
            for (int64_t r = 0; r < rows; r++) {
                for (int64_t i = 0; i < cols; i++)
                    row[i] = (float)((int)(next() % 3) - 1) * (float)(1 + r % 7);
                trn_quantize_row(var->type, row, data + (size_t)r * row_bytes, cols);
            }
            for (int c = 1; c < walks; c++)
                memcpy(data + (size_t)c * bytes, data, bytes);
            for (int64_t t = 0; t < n_tok; t++) {
                for (int64_t i = 0; i < cols; i++)
                    x[i] = (float)(next() % 2001) / 1000.0f - 1.0f;
                trn_cpu_ops_ref()->quantize_act(x, xq + t * ld_xq, cols);
            }
            trn_matrix base = {var->type, data, rows, cols, row_bytes, TRN_LAYOUT_ROWS};
            mm_scalar(&base, xq, ld_xq, y_ref, rows, n_tok, 0, rows);
            for (int c = 0; c < walks; c++) {
                views[c] = base;
                views[c].data = data + (size_t)c * bytes;
                if (packed)
                    views[c] = trn_repack(&views[c], var->layout, (uint8_t *)packed + (size_t)c * bytes);
            }
            memset(y, 0xff, (size_t)(rows * n_tok) * sizeof(float)); /* NaNs: a row left unwritten differs */
            const matmul_args args = {var->kernel, var->tq, xq, ld_xq, rows, n_tok, y};
            const double best = time_products(call_matmul, &args, views, walks, walks, reps, threads);
            const int same = memcmp(y, y_ref, (size_t)(rows * n_tok) * sizeof(float)) == 0;
            differ += !same;
            printf("%-3d %-34s %5lldx%-8lld %10.3f %9.2f %9.1f %s\n", v, var->name, (long long)rows, (long long)cols,
                   best * 1e3, bytes / best / 1e9, (double)rows * (double)cols * (double)n_tok / best / 1e9,
                   same ? "identical" : "DIFFERS");
            free(views);
            trn_free(packed);
            trn_free(data);
            trn_free(xq);
            free(row);
            free(x);
            free(y);
            free(y_ref);
        }
        printf("    (%s, %lld tokens)\n", shapes[s].what, (long long)n_tok);
    }
    return differ;
}

/* ---- attention (--attention) ---- */

/* Each table's attention entry for Trinity-1.1B's group (8 query heads on one KV head, head_dim 64) at 16, 150 and
 * 1000 positions, hot in cache, best of REPS x 200 calls: ns per head and position, the normalized error against
 * the scalar reference, and whether the AVX-512 table's output is bitwise the AVX2 one's; then the same calls with K
 * and V from memory, as in a decode step (copies of them, 64 MB in all, one call on each in turn, best of REPS). */
static int run_attention(int reps) {
    enum { HEADS = 8, HD = 64 };
    static const int positions[] = {16, 150, 1000};
    static const char *tables[] = {"scalar", "avx2", "avx512"};
    int bad = 0;
    printf("%-8s %9s %12s %12s %12s %s\n", "table", "positions", "us per call", "ns/head-pos", "from memory",
           "vs reference");
    for (size_t p = 0; p < TRN_ARRAY_LEN(positions); p++) {
        const int n_pos = positions[p];
        float *q = trn_alloc(HEADS * HD * sizeof(float)), *k = trn_alloc((size_t)TRN_K_FLOATS(n_pos, HD) * sizeof(float));
        float *v = trn_alloc((size_t)n_pos * HD * sizeof(float)), *scores = trn_alloc((size_t)TRN_ATTENTION_SCRATCH(n_pos, HD) * sizeof(float));
        float *out[3], *ref = trn_alloc(HEADS * HD * sizeof(float));
        for (int i = 0; i < HEADS * HD; i++)
            q[i] = (float)(next() % 2001) / 1000.0f - 1.0f;
        for (int64_t i = 0; i < TRN_K_FLOATS(n_pos, HD); i++)
            k[i] = (float)(next() % 2001) / 1000.0f - 1.0f;
        for (int64_t i = 0; i < (int64_t)n_pos * HD; i++)
            v[i] = (float)(next() % 2001) / 1000.0f - 1.0f;
        trn_cpu_ops_ref()->attention(q, HEADS, k, v, HD, n_pos, HD, scores, ref);
        const int64_t kv_floats = TRN_K_FLOATS(n_pos, HD) + (int64_t)n_pos * HD;
        const int copies = (int)((((int64_t)64 << 20) / 4 + kv_floats - 1) / kv_floats);
        float *kv = trn_alloc_huge((size_t)(copies * kv_floats) * sizeof(float)); /* K then V, per copy */
        if (!kv) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        for (int c = 0; c < copies; c++) {
            memcpy(kv + c * kv_floats, k, (size_t)TRN_K_FLOATS(n_pos, HD) * sizeof(float));
            memcpy(kv + c * kv_floats + TRN_K_FLOATS(n_pos, HD), v, (size_t)n_pos * HD * sizeof(float));
        }
        for (int t = 0; t < 3; t++) {
            out[t] = trn_alloc(HEADS * HD * sizeof(float));
            const trn_cpu_ops *ops = trn_cpu_ops_by_name(tables[t]);
            if (!ops) {
                printf("%-8s %9d (not available on this CPU or build)\n", tables[t], n_pos);
                trn_free(out[t]);
                out[t] = NULL;
                continue;
            }
            double best = 1e30;
            for (int r = 0; r < reps; r++) {
                const double t0 = trn_time_s();
                for (int i = 0; i < 200; i++)
                    ops->attention(q, HEADS, k, v, HD, n_pos, HD, scores, out[t]);
                best = TRN_MIN(best, (trn_time_s() - t0) / 200);
            }
            double cold = 1e30;
            for (int r = 0; r < reps; r++) {
                const double t0 = trn_time_s();
                for (int c = 0; c < copies; c++) {
                    const float *kc = kv + c * kv_floats;
                    ops->attention(q, HEADS, kc, kc + TRN_K_FLOATS(n_pos, HD), HD, n_pos, HD, scores, out[t]);
                }
                cold = TRN_MIN(cold, (trn_time_s() - t0) / copies);
            }
            double err = 0, norm = 0;
            for (int i = 0; i < HEADS * HD; i++) {
                err += (double)(out[t][i] - ref[i]) * (out[t][i] - ref[i]);
                norm += (double)ref[i] * ref[i];
            }
            bad += err / norm > 1e-10;
            printf("%-8s %9d %12.2f %12.2f %12.2f nmse %.2g", tables[t], n_pos, best * 1e6,
                   best * 1e9 / (HEADS * n_pos), cold * 1e9 / (HEADS * n_pos), err / norm);
            if (t == 2 && out[1]) {
                const int same = memcmp(out[1], out[2], HEADS * HD * sizeof(float)) == 0;
                bad += !same;
                printf(", %s the avx2 output", same ? "bitwise" : "DIFFERS from");
            }
            printf("\n");
        }
        for (int t = 0; t < 3; t++)
            trn_free(out[t]);
        trn_free(q), trn_free(k), trn_free(v), trn_free(scores), trn_free(ref), trn_free(kv);
    }
    return bad;
}

/* ---- steadiness (--steady) ---- */

static int compare_rates(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The best table's batched inner loop in short stretches (matmul_peak(0): a warm-up and one stretch, tens of us),
 * 200 x REPS of them on one thread, then on THREADS threads at once: percentiles of GMAC/s per thread. A machine
 * whose vector pipes another tenant takes at times (a VM's threads on hardware threads of one core) shows two
 * modes, or a rate that falls when its threads run together: compare its compute figures only as same-run ratios
 * (profiling/README.md, nineteenth session). */
static int run_steady(int reps, int threads) {
    const trn_cpu_ops *ops = trn_cpu_ops_best();
    if (!ops->matmul_peak) {
        printf("--steady: the %s table has no batched kernel; nothing measured\n", ops->name);
        return 0;
    }
    const int n = 200 * reps;
    double *rates = malloc((size_t)n * (size_t)threads * sizeof(double));
    if (!rates) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    printf("the %s table's batched inner loop in %d stretches per thread (GMAC/s per thread)\n", ops->name, n);
    printf("%-8s %8s %8s %8s %8s %8s\n", "threads", "min", "p10", "median", "p90", "max");
    for (int nth = 1;; nth = threads) {
#pragma omp parallel num_threads(nth)
        {
            int ith = 0;
#ifdef TRN_HAVE_OPENMP
            ith = omp_get_thread_num();
#endif
            for (int i = 0; i < n; i++)
                rates[(size_t)ith * (size_t)n + (size_t)i] = ops->matmul_peak(0.0) / 1e9;
        }
        const size_t all = (size_t)n * (size_t)nth;
        qsort(rates, all, sizeof(double), compare_rates);
        printf("%-8d %8.1f %8.1f %8.1f %8.1f %8.1f\n", nth, rates[0], rates[all / 10], rates[all / 2],
               rates[all * 9 / 10], rates[all - 1]);
        if (nth == threads)
            break;
    }
    free(rates);
    return 0;
}

/* ---- instruction mixes (--mix) ---- */

#ifdef LAB_X86
/* --mix: loops of register-only 512-bit instructions, independent of each other (every vpdpbusd accumulates into its own
 * register, eight or ten chains, enough to hide its latency): what a core issues of the ternary kernels' arithmetic
 * with no loads and no dependencies between the unpacking and the multiply-adds, i.e. an upper bound on those
 * kernels' speed from compute alone. The TQ2_0 column is the decode kernel's work per 64-byte X16 column (four
 * vpandd and four vpdpbusd), the TQ1_0 one its base-3 work per column (five digits: two vpaddb and two vpdpbusd
 * each). Printed in ns per iteration and as GB/s of weights per core: the compute ceilings the --hot figures are
 * measured against. */
#define MIX_DP(r) "vpdpbusd %%zmm14, %%zmm15, %%zmm" #r "\n\t"
#define MIX_ADD(r) "vpaddb %%zmm14, %%zmm15, %%zmm" #r "\n\t"
#define MIX_AND(r) "vpandd %%zmm14, %%zmm15, %%zmm" #r "\n\t"
#define MIX_CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
                     "xmm11", "xmm12", "xmm13"
#define MIX_LOOP(fn, body) \
    LAB_AVX512 static void fn(long n) { \
        for (long i = 0; i < n; i++) \
            __asm__ volatile(body ::: MIX_CLOBBERS); \
    }
MIX_LOOP(mix_dp8, MIX_DP(0) MIX_DP(1) MIX_DP(2) MIX_DP(3) MIX_DP(4) MIX_DP(5) MIX_DP(6) MIX_DP(7))
MIX_LOOP(mix_add16, MIX_ADD(0) MIX_ADD(1) MIX_ADD(2) MIX_ADD(3) MIX_ADD(4) MIX_ADD(5) MIX_ADD(6) MIX_ADD(7)
                    MIX_ADD(8) MIX_ADD(9) MIX_ADD(10) MIX_ADD(11) MIX_ADD(12) MIX_ADD(13) MIX_ADD(0) MIX_ADD(1))
MIX_LOOP(mix_dp8_add8, MIX_DP(0) MIX_ADD(8) MIX_DP(1) MIX_ADD(9) MIX_DP(2) MIX_ADD(10) MIX_DP(3) MIX_ADD(11)
                       MIX_DP(4) MIX_ADD(12) MIX_DP(5) MIX_ADD(13) MIX_DP(6) MIX_ADD(8) MIX_DP(7) MIX_ADD(9))
MIX_LOOP(mix_dp8_add16, MIX_DP(0) MIX_ADD(8) MIX_ADD(9) MIX_DP(1) MIX_ADD(10) MIX_ADD(11) MIX_DP(2) MIX_ADD(12)
                        MIX_ADD(13) MIX_DP(3) MIX_ADD(8) MIX_ADD(9) MIX_DP(4) MIX_ADD(10) MIX_ADD(11) MIX_DP(5)
                        MIX_ADD(12) MIX_ADD(13) MIX_DP(6) MIX_ADD(8) MIX_ADD(9) MIX_DP(7) MIX_ADD(10) MIX_ADD(11))
MIX_LOOP(mix_tq2_columns2, MIX_AND(8) MIX_DP(0) MIX_AND(9) MIX_DP(1) MIX_AND(10) MIX_DP(2) MIX_AND(11) MIX_DP(3)
                           MIX_AND(12) MIX_DP(4) MIX_AND(13) MIX_DP(5) MIX_AND(8) MIX_DP(6) MIX_AND(9) MIX_DP(7))
MIX_LOOP(mix_tq1_column, MIX_ADD(10) MIX_ADD(11) MIX_DP(0) MIX_DP(1) MIX_ADD(12) MIX_ADD(13) MIX_DP(2) MIX_DP(3)
                         MIX_ADD(10) MIX_ADD(11) MIX_DP(4) MIX_DP(5) MIX_ADD(12) MIX_ADD(13) MIX_DP(6) MIX_DP(7)
                         MIX_ADD(10) MIX_ADD(11) MIX_DP(8) MIX_DP(9))

static int run_mix(int reps) {
    if (!lab_has_avx512()) {
        printf("--mix: this CPU lacks AVX-512 VNNI; nothing measured\n");
        return 0;
    }
    static const struct {
        void (*loop)(long);
        const char *what;
        int dp, other, columns; /* per iteration; columns: 64-byte X16 columns of the kernel the mix stands for */
    } mixes[] = {
        {mix_dp8, "8 vpdpbusd", 8, 0, 0},
        {mix_add16, "16 vpaddb", 0, 16, 0},
        {mix_dp8_add8, "8 vpdpbusd + 8 vpaddb", 8, 8, 0},
        {mix_dp8_add16, "8 vpdpbusd + 16 vpaddb", 8, 16, 0},
        {mix_tq2_columns2, "TQ2_0: 2 columns (8 vpandd + 8 vpdpbusd)", 8, 8, 2},
        {mix_tq1_column, "TQ1_0: 1 column (10 vpaddb + 10 vpdpbusd)", 10, 10, 1},
    };
    enum { ITERS = 20000000 };
    double unit = 0.0; /* ns per vpdpbusd in the first loop */
    printf("%-44s %10s %14s %16s\n", "mix (one iteration)", "ns/iter", "vs 8 vpdpbusd", "GB/s per core");
    for (size_t m = 0; m < TRN_ARRAY_LEN(mixes); m++) {
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
            const double t0 = trn_time_s();
            mixes[m].loop(ITERS);
            best = TRN_MIN(best, (trn_time_s() - t0) / ITERS);
        }
        if (m == 0)
            unit = best / 8;
        printf("%-44s %10.3f %13.2fx", mixes[m].what, best * 1e9, best / (8 * unit));
        if (mixes[m].columns)
            printf(" %16.1f", 64.0 * mixes[m].columns / best / 1e9);
        printf("\n");
    }
    printf("(%.2f G vpdpbusd per second alone: one per cycle at that clock)\n", 1e-9 / unit);
    return 0;
}
#else
static int run_mix(int reps) {
    (void)reps;
    printf("--mix: x86-64 only; nothing measured\n");
    return 0;
}
#endif

int main(int argc, char **argv) {
    int only = 0, reps = 5, positional = 0, hot = 0, matmul = 0, attention = 0, mix = 0, steady = 0, threads = 1;
    int bad = 0;
    int64_t n_tok = 64;
    for (int i = 1; i < argc && !bad; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--hot") == 0) {
            hot = 1;
        } else if (strcmp(argv[i], "--matmul") == 0) {
            matmul = 1;
        } else if (strcmp(argv[i], "--attention") == 0) {
            attention = 1;
        } else if (strcmp(argv[i], "--mix") == 0) {
            mix = 1;
        } else if (strcmp(argv[i], "--steady") == 0) {
            steady = 1;
        } else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
            threads = (int)strtol(argv[++i], &end, 10);
            bad = *end != '\0';
        } else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) {
            n_tok = strtoll(argv[++i], &end, 10);
            bad = *end != '\0' || n_tok < 1 || n_tok > 4096;
        } else if (positional < 2) {
            const long value = strtol(argv[i], &end, 10);
            bad = *end != '\0' || argv[i][0] == '\0';
            *(positional++ == 0 ? &only : &reps) = (int)value;
        } else {
            bad = 1;
        }
    }
    if ((attention || mix || steady) && positional == 1) { /* --attention REPS, --mix REPS, --steady REPS */
        reps = only;
        only = 0;
    }
    const int n_variants = matmul ? (int)TRN_ARRAY_LEN(matmul_variants) : (int)TRN_ARRAY_LEN(variants);
    bad |= only < 0 || only > n_variants || reps < 1 || threads < 1 || (matmul && hot);
#ifndef TRN_HAVE_OPENMP
    bad |= threads != 1;
#endif
    if (bad) {
        fprintf(stderr, "usage: kernel_lab [VARIANT 1..%d, 0 for all] [REPS >= 1] [--hot] [-t THREADS]\n"
                        "       kernel_lab --matmul [VARIANT 1..%d, 0 for all] [REPS >= 1] [-t THREADS] [--tokens 1..4096]\n"
                        "       kernel_lab --attention [REPS >= 1]\n"
                        "       kernel_lab --mix [REPS >= 1]\n"
                        "       kernel_lab --steady [REPS >= 1] [-t THREADS]\n",
                (int)TRN_ARRAY_LEN(variants), (int)TRN_ARRAY_LEN(matmul_variants));
        return 2;
    }
    bad |= (attention || mix) && (attention + mix + matmul + hot > 1 || threads != 1 || only != 0);
    bad |= steady && (attention + mix + matmul + hot > 0 || only != 0);
    if (bad) {
        fprintf(stderr, "kernel_lab: --attention and --mix take REPS only, --steady REPS and -t (no --hot, --matmul or "
                        "each other)\n");
        return 2;
    }
    if (steady)
        return run_steady(reps, threads);
    if (mix)
        return run_mix(reps);
    if (attention)
        return run_attention(reps) ? 1 : 0;
    if (matmul)
        return run_matmul(only, reps, threads, n_tok) ? 1 : 0;
    int differ = 0;
    const trn_cpu_ops *ref = trn_cpu_ops_ref();
    printf("%-3s %-34s %-14s %10s %9s %s\n", "var", "kernel", "shape", "ms", "GB/s", "vs reference");
    for (size_t s = 0; s < TRN_ARRAY_LEN(shapes); s++) {
        const int64_t rows = shapes[s].rows, cols = shapes[s].cols;
        /* enough copies of the matrix to exceed the caches (at least 256 MB walked per measurement) */
        for (int v = 1; v <= n_variants; v++) {
            if (only && v != only)
                continue;
            const variant *var = &variants[v - 1];
            const matvec_fn kernel = variant_kernel(var);
            if (!kernel) {
                printf("%-3d %-34s (not available on this CPU or build)\n", v, var->name);
                continue;
            }
            const trn_type type = var->type;
            const size_t row_bytes = trn_row_bytes(type, cols), bytes = row_bytes * (size_t)rows;
            const int walks = (int)((((size_t)256 << 20) + bytes - 1) / bytes), copies = hot ? 1 : walks;
            uint8_t *data = trn_alloc_huge(bytes * (size_t)copies);
            float *row = malloc((size_t)cols * sizeof(float)), *x = malloc((size_t)cols * sizeof(float));
            float *y = malloc((size_t)rows * sizeof(float)), *y_ref = malloc((size_t)rows * sizeof(float));
            trn_block_q8_act *xq = trn_alloc((size_t)(cols / TRN_QK_K) * sizeof(trn_block_q8_act));
            trn_matrix *views = malloc((size_t)copies * sizeof(trn_matrix));
            void *packed = var->layout != TRN_LAYOUT_ROWS ? trn_alloc_huge(bytes * (size_t)copies) : NULL;
            if (!data || !row || !x || !y || !y_ref || !xq || !views || (var->layout != TRN_LAYOUT_ROWS && !packed)) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
            for (int64_t r = 0; r < rows; r++) {
                for (int64_t i = 0; i < cols; i++)
                    row[i] = (float)((int)(next() % 3) - 1);
                trn_quantize_row(type, row, data + (size_t)r * row_bytes, cols);
            }
            for (int c = 1; c < copies; c++)
                memcpy(data + (size_t)c * bytes, data, bytes);
            for (int64_t i = 0; i < cols; i++)
                x[i] = (float)(next() % 2001) / 1000.0f - 1.0f;
            ref->quantize_act(x, xq, cols);
            trn_matrix base = {type, data, rows, cols, row_bytes, TRN_LAYOUT_ROWS};
            ref->matvec(&base, x, xq, y_ref, 0, rows);
            for (int c = 0; c < copies; c++) {
                views[c] = base;
                views[c].data = data + (size_t)c * bytes;
                if (packed)
                    views[c] = trn_repack(&views[c], var->layout, (uint8_t *)packed + (size_t)c * bytes);
            }
            const matvec_args args = {kernel, x, xq, y};
            const double best = time_products(call_matvec, &args, views, copies, walks, reps, threads);
            const int same = memcmp(y, y_ref, (size_t)rows * sizeof(float)) == 0;
            differ += !same;
            printf("%-3d %-34s %5lldx%-8lld %10.3f %9.2f %s\n", v, var->name, (long long)rows, (long long)cols,
                   best * 1e3, bytes / best / 1e9, same ? "identical" : "DIFFERS");
            free(views);
            trn_free(packed);
            trn_free(data);
            trn_free(xq);
            free(row);
            free(x);
            free(y);
            free(y_ref);
        }
        printf("    (%s)\n", shapes[s].what);
    }
    return differ ? 1 : 0;
}
