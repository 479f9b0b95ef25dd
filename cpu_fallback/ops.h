/* ops.h: the CPU kernels of every graph op, as a table with one entry per op.
 *
 * Three tables exist: the scalar reference (ops_ref.c: plain loops, the definition of each op), the AVX2
 * kernels (ops_avx2.c, compiled with -mavx2 -mfma -mf16c) and the AVX-512 kernels (ops_avx512.c, compiled
 * with -mavx512f -mavx512bw -mavx512vl -mavx512vnni besides; its ternary products use VNNI, the rest is the
 * AVX2 table's). A table is handed out only where the CPU has its features, checked at run time. All compute
 * the same math; tests compare every entry on odd shapes too.
 *
 * Ternary (TQ1_0, TQ2_0) matrix-vector products use int8 activations, quantized per block of 256 as
 * llama.cpp's fast kernels do: the block dot product is exact in integers, so every table's results are
 * bitwise identical. Other types use float activations (identical up to summation order).
 *
 * Each table names the layout its ternary kernels read fastest (tq2_0_layout, tq1_0_layout; layout.h); the CPU
 * backend repacks weight matrices into it once at load (trn_repack). Every table's matvec accepts every layout. */
#ifndef TRN_OPS_H
#define TRN_OPS_H

#include <stdint.h>

#include "host/tensor_types.h"
#include "layout.h"

/* int8 activations for one block of 256: x[i] ~ d * q[i], with sum = sum(q) (for the -1 offset of codes). */
typedef struct {
    float d;
    int32_t sum;
    int8_t q[TRN_QK_K];
} trn_block_q8_act;

/* Scratch floats of one attention call over n_pos positions of head_dim (in the SIMD tables: 8 heads' scores, n_pos
 * rounded up to 16 each, the same transposed, and 8 heads' queries transposed). */
#define TRN_ATTENTION_SCRATCH(n_pos, head_dim) (16 * (((int64_t)(n_pos) + 15) / 16 * 16) + 8 * (int64_t)(head_dim))

/* The K of one KV head as the attention entry reads it: blocks of TRN_KV_BLOCK positions, each dimension-major, so
 * that dimension d of 16 consecutive positions is one row of 16 floats; positions [0, n) take TRN_K_FLOATS(n, hd)
 * floats (the last block whole). The CPU backend keeps its K caches so (cpu_backend.c). */
#define TRN_KV_BLOCK 16
#define TRN_K_FLOATS(n_pos, head_dim) ((((int64_t)(n_pos) + TRN_KV_BLOCK - 1) / TRN_KV_BLOCK) * TRN_KV_BLOCK * (head_dim))
static inline int64_t trn_k_index(int64_t t, int d, int head_dim) {
    return (t / TRN_KV_BLOCK) * TRN_KV_BLOCK * head_dim + (int64_t)d * TRN_KV_BLOCK + t % TRN_KV_BLOCK;
}

/* The rows a batched product (matmul) computes, handed out a range at a time: next(s, &r0, &r1) stores the next
 * range and returns 1, or returns 0 when none is left. The CPU backend's threads claim a product's rows this way,
 * so that a thread done early takes rows another has not started (cpu_exec.c); trn_rows_range is one fixed range.
 * A kernel prepares its activations once per call, whatever the number of ranges. */
typedef struct trn_rows trn_rows;
struct trn_rows {
    int (*next)(trn_rows *s, int64_t *r0, int64_t *r1);
    int64_t r0, r1; /* trn_rows_range: the range its first next() gives */
};
int trn_rows_range_next(trn_rows *s, int64_t *r0, int64_t *r1);
static inline trn_rows trn_rows_range(int64_t r0, int64_t r1) { return (trn_rows){trn_rows_range_next, r0, r1}; }

typedef struct {
    const char *name; /* "scalar", "avx2", "avx512", "amx" or "amx-emulated" */
    trn_layout tq2_0_layout, tq1_0_layout; /* what the backend repacks ternary matrices into for this table */
    /* 1: the backend holds TQ1_0 matrices as TQ2_0 (trn_repack_as: the same codes and scales at 2 bits per weight
     * instead of 1.69, so every product gives the same bits), in tq2_0_layout: for a table whose TQ1_0 kernel is
     * bound by its arithmetic (base-3 digits) where its TQ2_0 kernel is bound by memory, so that reading 22% more
     * bytes is faster (the AVX2 table; cpu_fallback/README.md). */
    int tq1_0_as_tq2_0;
    /* x[n] -> n/256 blocks (n a multiple of 256). */
    void (*quantize_act)(const float *x, trn_block_q8_act *xq, int64_t n);
    /* dst[r] = W[r] . x for r in [r0, r1); ternary types read xq (the quantized x) when it is not NULL and x
     * otherwise (float activations: per block, d * sum((code - 1) * x)); other types read x. */
    void (*matvec)(const trn_matrix *w, const float *x, const trn_block_q8_act *xq, float *dst, int64_t r0,
                   int64_t r1);
    /* dst[cols] = row `row` of W as floats. */
    void (*get_row)(const trn_matrix *w, int64_t row, float *dst);
    /* dst[i] = x[i] / sqrt(mean(x[0..n)^2) + eps) * weight[i] for i in [begin, end) only (the scale always from
     * all n: threads that each take a range compute the same scale) */
    void (*rmsnorm)(const float *x, const float *weight, float *dst, int64_t n, float eps, int64_t begin, int64_t end);
    /* For each of n_heads heads of head_dim: (x[2i], x[2i+1]) rotated by the angle whose cos and sin are
     * cos_sin[2i], cos_sin[2i+1]. src and dst may be the same. */
    void (*rope)(const float *src, float *dst, int n_heads, int head_dim, const float *cos_sin);
    /* n_q query heads that share one KV head, over n_pos cached positions: for each head h,
     * out[h][hd] = sum_t softmax_t(q[h] . k_t / sqrt(hd)) v_t, where k_t[d] = k_cache[trn_k_index(t, d, hd)] (blocks
     * of 16 positions, above) and v_t = v_cache + t * v_stride; q and out hold the heads one after another, hd floats
     * each. scores: scratch of TRN_ATTENTION_SCRATCH(n_pos, hd) floats. A head's output is the same whatever n_q it is
     * computed with (the backend may split a group anywhere), and the same in the AVX2 and AVX-512 tables. */
    void (*attention)(const float *q, int n_q, const float *k_cache, const float *v_cache, int64_t v_stride,
                      int n_pos, int head_dim, float *scores, float *out);
    /* dst[n] = silu(gate[n]) * up[n], silu(x) = x / (1 + exp(-x)) */
    void (*swiglu)(const float *gate, const float *up, float *dst, int64_t n);
    /* dst[n] = a[n] + b[n] */
    void (*add)(const float *a, const float *b, float *dst, int64_t n);
    /* Batched prefill: dst[t][r] = W[r] . x[t] for tokens t in [0, n_tok) and the rows r of `rows`, i.e. n_tok
     * matrix-vector products that read each weight block once for all tokens. x: n_tok rows of ld_x floats; xq:
     * n_tok rows of ld_xq blocks (x's int8 copy, or NULL, as for matvec); dst: n_tok rows of ld_dst floats.
     * Every element is bitwise what this table's matvec gives for that token: the same exact block sums and the
     * same float steps in the same order (per block acc += (d_w * d_x) * (float)(isum - sum)). May be NULL in a
     * table; callers then use trn_matmul_by_matvec. */
    void (*matmul)(const trn_matrix *w, const float *x, int64_t ld_x, const trn_block_q8_act *xq, int64_t ld_xq,
                   float *dst, int64_t ld_dst, int64_t n_tok, trn_rows *rows);
    /* The multiply-adds per second (int8 activations times ternary codes) that matmul's inner instruction sustains
     * on the calling thread over about `seconds` (trn_sustained_rate, host/common.h): the compute bound of a batched
     * prefill. NULL where the table has no batched ternary kernel. */
    double (*matmul_peak)(double seconds);
    /* What matmul runs for ternary matrices with int8 activations, for reports ("vpdpbusd", "amx tdpbsud", ...);
     * NULL where the table has no batched ternary kernel. */
    const char *matmul_kernel;
    /* Tokens per thread from which the threads of a batch split its tokens for ternary products (each thread every
     * row of its tokens) rather than its rows: the kernel's token tile, so that each thread's share still fills one.
     * 0: always rows (the amx table, whose weight tiles every thread would then unpack; the avx2 table, where it
     * measured no faster). */
    int matmul_split_tokens;
} trn_cpu_ops;

typedef void (*trn_matvec_fn)(const trn_matrix *w, const float *x, const trn_block_q8_act *xq, float *dst, int64_t r0,
                              int64_t r1);

/* matmul as n_tok calls of `matvec` (types and modes without a batched kernel; tables without a matmul entry). */
void trn_matmul_by_matvec(trn_matvec_fn matvec, const trn_matrix *w, const float *x, int64_t ld_x,
                          const trn_block_q8_act *xq, int64_t ld_xq, float *dst, int64_t ld_dst, int64_t n_tok,
                          trn_rows *rows);

/* Tokens per tile of the AVX2 and AVX-512 batched ternary kernels (the avx512 table's matmul_split_tokens). */
enum { TRN_MATMUL_TILE_TOKENS = 64 };

#if defined(TRN_HAVE_AVX2)
/* The batched ternary kernel (TQ1_0, TQ2_0 in any layout, int8 activations), same shapes as matmul: each SIMD table's
 * matmul entry runs its own build for those matrices (ops_avx2_matmul.c): vpmaddubsw in the AVX2 table, 512-bit
 * vpdpbusd in the AVX-512 table (ops_avx512_matmul.c). Both give the same exact sums, so the same outputs. The
 * *_peak functions are the tables' matmul_peak. */
void trn_matmul_tq_maddubs(const trn_matrix *w, const trn_block_q8_act *xq, int64_t ld_xq, float *dst, int64_t ld_dst,
                           int64_t n_tok, trn_rows *rows);
double trn_matmul_tq_maddubs_peak(double seconds);
/* The kernels' copy of nt tokens' int8 activations (xq: rows of ld_xq blocks) as q[nb][padded][256], zeros for the
 * tokens from nt to padded: every token's block b at one stride from one base (ops_avx2_matmul.c). */
void trn_matmul_dense_acts(int8_t *q, const trn_block_q8_act *xq, int64_t ld_xq, int64_t nb, int64_t nt,
                           int64_t padded);
#endif
#if defined(TRN_HAVE_AVX512)
void trn_matmul_tq_dpbusd(const trn_matrix *w, const trn_block_q8_act *xq, int64_t ld_xq, float *dst, int64_t ld_dst,
                          int64_t n_tok, trn_rows *rows);
double trn_matmul_tq_dpbusd_peak(double seconds);
#endif

#if defined(TRN_HAVE_AMX)
/* The batched ternary kernel on AMX tiles (ops_amx_matmul.c), same shapes and the same outputs as the two above:
 * tdpbsud on 16 tokens x 16 rows x 64 weights. trn_matmul_tq_amx runs the instructions (only where trn_cpu_ops_amx
 * is not NULL); trn_matmul_tq_amx_emulated the same code on a scalar tile emulator (any AVX-512 VNNI CPU; tests).
 * trn_matmul_tq_amx_peak is the amx table's matmul_peak. */
void trn_matmul_tq_amx(const trn_matrix *w, const trn_block_q8_act *xq, int64_t ld_xq, float *dst, int64_t ld_dst,
                       int64_t n_tok, trn_rows *rows);
void trn_matmul_tq_amx_emulated(const trn_matrix *w, const trn_block_q8_act *xq, int64_t ld_xq, float *dst,
                                int64_t ld_dst, int64_t n_tok, trn_rows *rows);
double trn_matmul_tq_amx_peak(double seconds);
#endif

const trn_cpu_ops *trn_cpu_ops_ref(void);
/* The AVX2 table, or NULL where it is not compiled in or the CPU lacks AVX2, FMA or F16C. */
const trn_cpu_ops *trn_cpu_ops_avx2(void);
/* The AVX-512 table, or NULL where it is not compiled in or the CPU lacks AVX-512 F, BW, VL or VNNI (or AVX2). Its
 * ternary matrix-vector kernel prefetches the weight stream on Intel CPUs and leaves it to the hardware on others
 * (the measured choice per vendor); trn_cpu_ops_avx512_variant gives either (tests, the kernel lab). */
const trn_cpu_ops *trn_cpu_ops_avx512(void);
const trn_cpu_ops *trn_cpu_ops_avx512_variant(int prefetch);
/* The AMX table: the AVX-512 table (with weight prefetch: AMX CPUs are Intel's) whose matmul runs on AMX tiles, or
 * NULL where it is not compiled in, the AVX-512 table is not available, or the CPU or OS does not let this process
 * use AMX-TILE and AMX-INT8 (*why, where why is not NULL, says which; amx.h). */
const trn_cpu_ops *trn_cpu_ops_amx(const char **why);
/* The same table with its matmul on the scalar tile emulator ("amx-emulated": slow; for tests), wherever the AVX-512
 * table is available and AMX is compiled in; else NULL. */
const trn_cpu_ops *trn_cpu_ops_amx_emulated(void);
/* The fastest table this CPU runs that has run on its hardware: avx512, else avx2, else scalar (amx, checked only on
 * the tile emulator so far, is chosen by name). */
const trn_cpu_ops *trn_cpu_ops_best(void);
/* The table named "scalar", "avx2", "avx512", "amx", "amx-emulated" or "auto" (the best); NULL for another name or
 * a table this build or CPU cannot run. */
const trn_cpu_ops *trn_cpu_ops_by_name(const char *name);
/* The table the CPU backend runs: the one named by `kernels` (the backend configuration's), else by the environment
 * variable TRN_KERNELS (for scripts), else the best. *requested receives the name looked up ("auto" where none was
 * given). NULL where that name is not a table this build and CPU can run. The one place a table is chosen. */
const trn_cpu_ops *trn_cpu_ops_for_backend(const char *kernels, const char **requested);

/* Shared by both tables: dst[rows r0..r1) for Q4_K and Q6_K (dequantize a row, then a float dot product). */
void trn_matvec_via_dequant(const trn_matrix *w, const float *x, float *dst, int64_t r0, int64_t r1,
                            float (*dot)(const float *, const float *, int64_t));

#endif
