/* kernel_lab.c: numbered variants of the ternary matrix-vector kernel, each checked against the scalar
 * reference and timed on every matrix shape of Trinity-1.1B (llm.c's dev/cuda habit, for the CPU).
 *
 *   ./build/kernel_lab [VARIANT] [REPS]      (no VARIANT: all of them)
 *
 * Variants (the winner keeps its number when it moves into cpu_fallback/):
 *   1  scalar reference, file layout (ops_ref.c)
 *   2  AVX2, file layout: rows read one at a time (the unrepacked path)
 *   3  AVX2, TQ2_0 repacked into four-row groups with software prefetch (what the CPU backend uses)
 *   4  AVX2, TQ1_0, file layout (base-3 digits decoded per block)
 * For each shape: the matrix is larger than the last-level cache when repeated (a fresh copy per repetition is
 * not needed: 22 layers' worth of one shape is allocated and walked), single thread, best of REPS. Prints time,
 * GB/s of weights and whether the output equals the reference bitwise (int8 activations make that possible). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_fallback/ops.h"
#include "cpu_fallback/quants.h"
#include "host/common.h"

typedef struct {
    int64_t rows, cols;
    const char *what;
} shape;

static const shape shapes[] = {
    {2048, 2048, "attn_q, attn_output"}, {256, 2048, "attn_k, attn_v"}, {5632, 2048, "ffn_gate, ffn_up"},
    {2048, 5632, "ffn_down"}, {32000, 2048, "output (LM head)"},
};

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
    const trn_cpu_ops *ref = trn_cpu_ops_ref(), *avx2 = trn_cpu_ops_avx2();
    printf("%-3s %-34s %-14s %10s %9s %s\n", "var", "kernel", "shape", "ms", "GB/s", "vs reference");
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        const int64_t rows = shapes[s].rows, cols = shapes[s].cols;
        /* enough copies of the matrix to exceed the caches (at least 256 MB walked per measurement) */
        for (int v = 1; v <= 4; v++) {
            if (only && v != only)
                continue;
            if (v >= 2 && !avx2) {
                printf("%-3d (no AVX2 on this CPU)\n", v);
                continue;
            }
            const trn_type type = v == 4 ? TRN_TYPE_TQ1_0 : TRN_TYPE_TQ2_0;
            const size_t row_bytes = trn_row_bytes(type, cols), bytes = row_bytes * (size_t)rows;
            const int copies = (int)((((size_t)256 << 20) + bytes - 1) / bytes);
            uint8_t *data = trn_alloc(bytes * (size_t)copies);
            float *row = malloc((size_t)cols * sizeof(float)), *x = malloc((size_t)cols * sizeof(float));
            float *y = malloc((size_t)rows * sizeof(float)), *y_ref = malloc((size_t)rows * sizeof(float));
            trn_block_q8_act *xq = trn_alloc((size_t)(cols / TRN_QK_K) * sizeof(trn_block_q8_act));
            if (!data || !row || !x || !y || !y_ref || !xq) {
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
            trn_matrix *views = malloc((size_t)copies * sizeof(trn_matrix));
            void *packed = v == 3 ? trn_alloc(bytes * (size_t)copies) : NULL;
            for (int c = 0; c < copies; c++) {
                views[c] = base;
                views[c].data = data + (size_t)c * bytes;
                if (v == 3)
                    views[c] = trn_repack_tq2_0_x4(&views[c], (uint8_t *)packed + (size_t)c * bytes);
            }
            const trn_cpu_ops *ops = v == 1 ? ref : avx2;
            double best = 1e30;
            for (int k = 0; k < reps; k++) {
                const double t0 = trn_time_s();
                for (int c = 0; c < copies; c++)
                    ops->matvec(&views[c], x, xq, y, 0, rows);
                const double dt = (trn_time_s() - t0) / copies;
                best = dt < best ? dt : best;
            }
            const int same = memcmp(y, y_ref, (size_t)rows * sizeof(float)) == 0;
            const char *names[] = {"", "scalar reference", "avx2, file layout", "avx2, four-row groups + prefetch",
                                   "avx2, tq1_0 file layout"};
            printf("%-3d %-34s %5lldx%-8lld %10.3f %9.2f %s\n", v, names[v], (long long)rows, (long long)cols,
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
