/* kernel_lab.c: numbered variants of the ternary matrix-vector kernel, each checked against the scalar
 * reference and timed on every matrix shape of Trinity-1.1B (llm.c's dev/cuda habit, for the CPU).
 *
 *   ./build/kernel_lab [VARIANT] [REPS] [--hot] [-t THREADS]      (no VARIANT, or 0: all of them)
 *
 * Variants (the winner keeps its number when it moves into cpu_fallback/; "lab" ones live only here):
 *   1  scalar reference, TQ2_0, file layout (ops_ref.c)
 *   2  AVX2, TQ2_0, file layout: rows read one at a time (the unrepacked path)
 *   3  AVX2, TQ2_0 repacked into four-row groups (X4) with software prefetch (the AVX2 table's)
 *   4  AVX2, TQ1_0, file layout (base-3 digits decoded per block, one row at a time)
 *   5  AVX-512 VNNI, TQ2_0, sixteen-row groups (X16): vpdpbusd on masked 2-bit fields (the AVX-512 table's)
 *   6  lab: AVX-512 VNNI, TQ2_0, X4: a zmm per row, four rows' sums folded per block
 *   7  lab: AVX-512BW without VNNI, TQ2_0, X16: vpmaddubsw on shifted fields (CPUs with AVX-512 but no VNNI)
 *   8  AVX2, TQ1_0, X16: digits by byte adds and compares, vpmaddubsw (the AVX2 table's)
 *   9  AVX-512 VNNI, TQ1_0, X16: digits never extracted, two vpdpbusd per digit (the AVX-512 table's)
 *  10  scalar reference, TQ1_0, file layout (ops_ref.c)
 * For each shape: the matrix is larger than the last-level cache when repeated (a fresh copy per repetition is
 * not needed: 22 layers' worth of one shape is allocated and walked), one thread unless -t, best of REPS. Every
 * copy lies on 2 MB pages where the kernel grants them (trn_alloc_huge, as the backend's repacked matrices do),
 * so variants differ by layout and kernel only. Prints time, GB/s of weights and whether the output equals the
 * reference bitwise (int8 activations make that possible).
 * --hot walks one copy over and over instead (from the caches where it fits: the 256-row shape fits in L2), which
 * gives a kernel's compute ceiling rather than its rate from memory. -t THREADS (OpenMP builds) splits each
 * product's rows among threads as the CPU backend does (multiples of four rows, a barrier after each product),
 * which is how decode reads memory: one thread alone does not reach the machine's bandwidth. */
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
#endif

/* ---- the variants ---- */

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
};

/* The kernel of a variant, or NULL where this build or CPU cannot run it. */
static matvec_fn variant_kernel(const variant *v) {
    if (v->table) {
        const trn_cpu_ops *ops = trn_cpu_ops_by_name(v->table);
        return ops ? ops->matvec : NULL;
    }
#ifdef LAB_X86
    return lab_has_avx512() ? v->lab_kernel : NULL;
#else
    return NULL;
#endif
}

/* Best time of `reps` over `walks` products of views[c % copies], rows split among `threads` as the backend
 * splits them (cpu_backend.c: units of four rows, a barrier after each product). */
static double time_kernel(matvec_fn kernel, const trn_matrix *views, int copies, int walks, int reps, int threads,
                          const float *x, const trn_block_q8_act *xq, float *y) {
    double best = 1e30;
#pragma omp parallel num_threads(threads)
    {
        int ith = 0, nth = 1;
#ifdef TRN_HAVE_OPENMP
        ith = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        const int64_t rows = views[0].rows, units = (rows + 3) / 4;
        const int64_t begin = TRN_MIN(rows, units * ith / nth * 4), end = TRN_MIN(rows, units * (ith + 1) / nth * 4);
        for (int k = 0; k < reps; k++) {
            double t0 = 0;
#pragma omp barrier
            if (ith == 0)
                t0 = trn_time_s();
            for (int c = 0; c < walks; c++) {
                kernel(&views[c % copies], x, xq, y, begin, end);
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

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv) {
    const int only = argc > 1 ? atoi(argv[1]) : 0;
    const int reps = argc > 2 ? atoi(argv[2]) : 5;
    const int n_variants = (int)TRN_ARRAY_LEN(variants);
    int hot = 0, threads = 1, bad = only < 0 || only > n_variants || reps < 1;
    for (int i = 3; i < argc && !bad; i++) {
        if (strcmp(argv[i], "--hot") == 0)
            hot = 1;
        else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else
            bad = 1;
    }
#ifndef TRN_HAVE_OPENMP
    bad |= threads != 1;
#endif
    if (bad || threads < 1) {
        fprintf(stderr, "usage: kernel_lab [VARIANT 1..%d, 0 for all] [REPS >= 1] [--hot] [-t THREADS]\n", n_variants);
        return 2;
    }
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
            const double best = time_kernel(kernel, views, copies, walks, reps, threads, x, xq, y);
            const int same = memcmp(y, y_ref, (size_t)rows * sizeof(float)) == 0;
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
    return 0;
}
